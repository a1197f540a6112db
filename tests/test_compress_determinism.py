"""The compressed bytes must not depend on the CPU the build runs on.

ISA-L and libzstd pick code paths at run time from the CPU's features (SSE4.2, AVX2, AVX-512).
This test runs the same compression with this very interpreter and wheels three times: natively,
and under Debian's ``qemu-x86_64`` (package ``qemu-user``) emulating a Haswell (AVX2, no
AVX-512) and a Nehalem (SSE4.2, no AVX) CPU, and requires identical output for every allowed gzip
level and a representative set of zstd levels.

So that it cannot pass vacuously, it also checks that the emulation really is a different CPU:
CPUID inside each emulated run must report the emulated features, and ISA-L level 3 (which
dispatches to different deflate code per instruction set, and is therefore not allowed) must
give different bytes under the two emulated CPUs.

On x86-64 Linux the test fails when ``qemu-x86_64`` is missing, unless
``BOOTC_EMBED_SKIP_QEMU=1`` is set; elsewhere it is skipped.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import bootc_embed
from bootc_embed import _compress as c

# Runs in a child interpreter: natively and under qemu. Prints one JSON object.
CHILD = r"""
import ctypes, hashlib, json, mmap, sys
from isal import isal_zlib
from bootc_embed import _compress as c

def pseudo_random(n, seed):
    blocks = (n + 31) // 32
    return b"".join(
        hashlib.sha256(seed + i.to_bytes(8, "little")).digest() for i in range(blocks)
    )[:n]

def text(n):
    out, size, i = [], 0, 0
    while size < n:
        line = (f"usr/share/doc/pkg{i % 89}/file_{i % 997}.txt mode=0644 size={i * 7919 % 99991} "
                f"{'lorem ipsum dolor sit amet ' * (i % 5)}\n").encode()
        out.append(line)
        size += len(line)
        i += 1
    return b"".join(out)[:n]

# A few MiB of mixed data: compressible text, incompressible bytes, runs, more text.
data = (text(1_500_000) + pseudo_random(1_000_000, b"cpu") + bytes(200_000)
        + bytes(range(256)) * 1000 + text(600_000)[::-1])

def cpuid(leaf, subleaf=0):
    # push rbx; mov r8, rdx; mov eax, edi; mov ecx, esi; cpuid;
    # mov [r8], eax; mov [r8+4], ebx; mov [r8+8], ecx; mov [r8+12], edx; pop rbx; ret
    code = bytes.fromhex("53 4989d0 89f8 89f1 0fa2 418900 41895804 41894808 4189500c 5b c3")
    prot = mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC
    page = mmap.mmap(-1, mmap.PAGESIZE, prot=prot)
    page.write(code)
    address = ctypes.addressof(ctypes.c_char.from_buffer(page))
    func = ctypes.CFUNCTYPE(None, ctypes.c_uint32, ctypes.c_uint32,
                            ctypes.POINTER(ctypes.c_uint32))(address)
    regs = (ctypes.c_uint32 * 4)()
    func(leaf, subleaf, regs)
    return list(regs)

try:
    _, _, ecx1, _ = cpuid(1)
    _, ebx7, _, _ = cpuid(7)
    features = {"sse4_2": bool(ecx1 >> 20 & 1), "avx": bool(ecx1 >> 28 & 1),
                "avx2": bool(ebx7 >> 5 & 1), "avx512f": bool(ebx7 >> 16 & 1)}
except Exception as exc:  # e.g. W^X policies forbidding executable anonymous memory
    features = {"error": repr(exc)}

digests = {}
for spec in sys.argv[1:]:
    algorithm, level = spec.split(":")
    level = int(level)
    if algorithm == "isal-raw":  # a level check_level refuses: plain ISA-L, fed like ours
        deflate = isal_zlib.compressobj(level, isal_zlib.DEFLATED, -15)
        out = b"".join(deflate.compress(data[i:i + c.CHUNK_SIZE])
                       for i in range(0, len(data), c.CHUNK_SIZE)) + deflate.flush()
    else:
        out = c.compress_bytes(algorithm, level, data)
    digests[spec] = hashlib.sha256(out).hexdigest()
print(json.dumps({"input": hashlib.sha256(data).hexdigest(), "size": len(data),
                  "features": features, "digests": digests}))
"""

GZIP_SPECS = [f"gzip:{level}" for level in c.LEVELS["gzip"]]
ZSTD_LEVELS = sorted(
    {1, 3, c.DEFAULT_LEVEL["zstd"], 10, max(c.LEVELS["zstd"])} & set(c.LEVELS["zstd"])
)
ZSTD_SPECS = [f"zstd:{level}" for level in ZSTD_LEVELS]
ALLOWED_SPECS = GZIP_SPECS + ZSTD_SPECS
SENSITIVE_SPEC = "isal-raw:3"  # known to differ between AVX2 and SSE4.2: proves the CPUs differ

# CPU model -> (features it must report, features it must not report).
EMULATED = {
    "Haswell": ({"sse4_2", "avx", "avx2"}, {"avx512f"}),
    "Nehalem": ({"sse4_2"}, {"avx", "avx2", "avx512f"}),
}


def _qemu() -> str:
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("CPU emulation check needs an x86-64 Linux host")
    qemu = shutil.which("qemu-x86_64")
    if qemu is None:
        if os.environ.get("BOOTC_EMBED_SKIP_QEMU") == "1":
            pytest.skip("qemu-x86_64 not installed and BOOTC_EMBED_SKIP_QEMU=1")
        pytest.fail(
            "qemu-x86_64 is missing: install Debian's qemu-user package "
            "(or set BOOTC_EMBED_SKIP_QEMU=1 to skip this check)"
        )
    return qemu


def _run(prefix: list[str]) -> dict[str, object]:
    # sys.executable as is (not resolved): a venv's python finds its pyvenv.cfg through the path
    # it was started by, and qemu passes that path on as argv[0]. PYTHONPATH points at the
    # package being tested, whether or not it is installed in that environment.
    env = dict(os.environ)
    package_root = str(Path(bootc_embed.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    env.pop("PYTHONHOME", None)
    command = [*prefix, sys.executable, "-c", CHILD, *ALLOWED_SPECS, SENSITIVE_SPEC]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{' '.join(prefix) or 'native'} run failed:\n{done.stderr}"
    result: dict[str, object] = json.loads(done.stdout)
    return result


@pytest.fixture(scope="module")
def runs() -> dict[str, dict[str, object]]:
    qemu = _qemu()
    with open(sys.executable, "rb") as interpreter:
        assert interpreter.read(4) == b"\x7fELF", f"{sys.executable} is not an ELF binary"
    prefixes = {"native": []} | {cpu: [qemu, "-cpu", cpu] for cpu in EMULATED}
    with ThreadPoolExecutor(len(prefixes)) as pool:
        futures = {name: pool.submit(_run, prefix) for name, prefix in prefixes.items()}
        return {name: future.result() for name, future in futures.items()}


def test_same_input_everywhere(runs: dict[str, dict[str, object]]) -> None:
    inputs = {name: (run["input"], run["size"]) for name, run in runs.items()}
    assert len(set(inputs.values())) == 1, inputs
    assert 3 << 20 < runs["native"]["size"] < 8 << 20  # type: ignore[operator]


def test_emulated_cpus_are_really_different(runs: dict[str, dict[str, object]]) -> None:
    for cpu, (present, absent) in EMULATED.items():
        features = runs[cpu]["features"]
        assert isinstance(features, dict)
        if "error" not in features:
            reported = {name for name, on in features.items() if on}
            assert present <= reported, f"qemu -cpu {cpu} lacks {present - reported}"
            assert not absent & reported, f"qemu -cpu {cpu} reports {absent & reported}"
    # Independently of CPUID: a CPU-dependent compressor must see the difference.
    digests = {cpu: runs[cpu]["digests"][SENSITIVE_SPEC] for cpu in EMULATED}  # type: ignore[index]
    assert len(set(digests.values())) == len(EMULATED), (
        f"ISA-L level 3 gave the same bytes under {sorted(EMULATED)}: the emulation does not "
        "change ISA-L's code paths, so this test would not notice CPU-dependent output"
    )


@pytest.mark.parametrize("spec", ALLOWED_SPECS)
def test_output_is_cpu_independent(runs: dict[str, dict[str, object]], spec: str) -> None:
    digests = {name: run["digests"][spec] for name, run in runs.items()}  # type: ignore[index]
    assert len(set(digests.values())) == 1, f"{spec} output depends on the CPU: {digests}"


def test_covers_required_levels() -> None:
    assert set(GZIP_SPECS) == {f"gzip:{level}" for level in c.LEVELS["gzip"]}
    assert {1, 3, 10, c.DEFAULT_LEVEL["zstd"], max(c.LEVELS["zstd"])} <= set(ZSTD_LEVELS)
