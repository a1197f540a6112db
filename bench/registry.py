"""bootc-embed registry benchmark: the targets of issue 3 (registry transport), measured in one run.

Starts two loopback registries, A (the inputs: base:1 and web:1, seeded with skopeo from bench/run's
OCI layouts) and B (the outputs), and measures, best of N runs, every client pinned alike (by
default ``taskset -c 0``; ``--no-pin``: none):

1. the baseline: ``skopeo copy docker://A/base:1 docker://B/...`` and the same for web:1, each
   into a new repository of B with an empty blob-info cache (so skopeo skips and mounts nothing);
   and, apart, skopeo's pull only (A to an OCI layout) and push only (the layouts to B);
2. ``bootc-embed build`` from A to a new repository of B (``--no-cache``);
3. the same build from the OCI layouts to an OCI layout: the embedding work without transfers;
4. derived: bootc-embed's pull + push cost = (2) - (3), against (1) (target <= 1.3x); and (2)
   against the detour through skopeo: pull (1), build (3), push of (3)'s output with skopeo;
5. a second push of the unchanged output into the same repository of B (warm layer cache; and
   ``--no-cache --previous`` the pushed image): blob upload requests in B's access log (target
   0) and the time spent inside HTTP requests, from a driver that runs bootc-embed in-process
   with the HTTP transport timed (target < 1 s).

Prints a table with PASS/FAIL per target, optionally JSON (``--json FILE``). Exit status 0 all
targets met, 3 one missed, 1 error. Images, cache and registry helper are bench/run.py's. See
docs/benchmarks.md, "Registry transfers".
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import run as bench
from run import MB, BenchError, log

HERE = Path(__file__).resolve().parent

#: bootc-embed's pull + push time / skopeo copy's, same images, same run (issue 3).
TARGET_TRANSFER_RATIO = 1.3
#: Second push of an unchanged output: blob upload requests, and seconds inside HTTP requests.
TARGET_SECOND_PUSH_UPLOADS = 0
TARGET_SECOND_PUSH_NETWORK_S = 1.0

#: Where containers/image (skopeo) keeps, for root, which registry repositories hold which blobs.
BLOB_INFO_CACHE = Path("/var/lib/containers/cache")
_CLONE_NEWNS = 0x00020000
_MS_REC = 0x4000
_MS_PRIVATE = 1 << 18


# ------------------------------------------------------------------------------------------
# skopeo's blob-info cache


def private_blob_info_cache() -> None:
    """Move this process (and so every command it starts) into a private mount namespace with
    an empty tmpfs on /var/lib/containers/cache.

    skopeo remembers there which repositories of a registry hold which blobs, and mounts a
    blob from one repository of B into another instead of copying it: after the first run
    every copy into B would be a few mounts. :func:`forget_blob_locations` empties it before
    each skopeo command, and the machine's own cache is neither read nor written. Must be
    called while the process has one thread."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.unshare.argtypes = [ctypes.c_int]
    libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]

    def check(rc: int, what: str) -> None:
        if rc != 0:
            err = ctypes.get_errno()
            raise BenchError(f"{what}: {os.strerror(err)}")

    check(libc.unshare(_CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    check(libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None), "mount --make-rprivate /")
    BLOB_INFO_CACHE.mkdir(parents=True, exist_ok=True)
    target = str(BLOB_INFO_CACHE).encode()
    check(libc.mount(b"tmpfs", target, b"tmpfs", 0, b"mode=0700"), f"mount tmpfs {target!r}")


def forget_blob_locations() -> None:
    for entry in BLOB_INFO_CACHE.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


# ------------------------------------------------------------------------------------------
# Registries and their access logs

_LINE = re.compile(
    r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[0-9.]+" (?P<status>\d{3}) (?P<size>\d+)'
)
_DIGEST = re.compile(r"digest=(sha256(?::|%3A)[0-9a-f]{64})", re.IGNORECASE)


@dataclass
class Registry:
    """One loopback registry started by bench/run.py's helper, and its access log (the
    helper's registry.log: docker-registry writes one combined-format line per request)."""

    name: str
    addr: str
    workdir: Path

    @property
    def logfile(self) -> Path:
        return self.workdir / "registry.log"

    def blob_size(self, digest: str) -> int:
        hexd = digest.split(":", 1)[1]
        data = self.workdir / "registry-data/docker/registry/v2/blobs/sha256" / hexd[:2] / hexd
        return (data / "data").stat().st_size

    def mark(self) -> int:
        """A marker request; the log offset just after its line (everything later in the log
        was requested after this call)."""
        token = uuid.uuid4().hex
        with urllib.request.urlopen(f"http://{self.addr}/v2/?bench-mark={token}", timeout=10):
            pass
        deadline = time.monotonic() + 10
        while True:
            text = self.logfile.read_bytes()
            at = text.find(f"bench-mark={token}".encode())
            if at >= 0:
                end = text.find(b"\n", at)
                if end >= 0:
                    return end + 1
            if time.monotonic() > deadline:
                raise BenchError(f"registry {self.name}: marker request not in {self.logfile}")
            time.sleep(0.02)

    def traffic(self, start: int) -> dict[str, Any]:
        """What was requested since the offset *start*: a new marker closes the span."""
        end = self.mark()
        text = self.logfile.read_bytes()[start:end].decode(errors="replace")
        by_method: dict[str, int] = {}
        uploads = mounts = completed = downloads = 0
        pushed = pulled = 0
        for line in text.splitlines():
            m = _LINE.search(line)
            if m is None or "bench-mark=" in m["path"]:
                continue
            method, path, status = m["method"], m["path"], int(m["status"])
            by_method[method] = by_method.get(method, 0) + 1
            if "/blobs/uploads" in path and method in ("POST", "PATCH", "PUT"):
                uploads += 1
                if method == "POST" and "mount=" in path and status == 201:
                    mounts += 1
                if method == "PUT" and status == 201 and (d := _DIGEST.search(path)):
                    completed += 1
                    pushed += self.blob_size(urllib.parse.unquote(d[1]))
            elif method == "GET" and "/blobs/sha256" in path and status in (200, 206):
                downloads += 1
                pulled += int(m["size"])
        return {
            "requests": sum(by_method.values()),
            "by_method": by_method,
            "blob_upload_requests": uploads,
            "blobs_uploaded": completed,
            "bytes_uploaded": pushed,
            "blobs_mounted": mounts,
            "blobs_downloaded": downloads,
            "bytes_downloaded": pulled,
        }


# ------------------------------------------------------------------------------------------
# Timed commands


class Runner:
    def __init__(self, a: Registry, b: Registry, pin: bool, workdir: Path) -> None:
        self.a, self.b = a, b
        self.pin = ["taskset", "-c", "0"] if pin else []
        self.workdir = workdir

    def timed(
        self, label: str, cmd: Sequence[str], env: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """Run *cmd* (pinned as configured) after flushing dirty pages and emptying skopeo's
        blob-info cache; its wall and CPU time and both registries' traffic."""
        os.sync()  # earlier pushes' writeback must not land in this measurement
        forget_blob_locations()
        starts = (self.a.mark(), self.b.mark())
        full = [*self.pin, *cmd]
        m = bench.run_measured(full, env=env)
        if m.returncode:
            raise BenchError(f"{label} failed ({m.returncode}): {' '.join(full)}\n{m.stderr}")
        result: dict[str, Any] = {
            "seconds": m.seconds,
            "cpu_seconds": m.cpu_seconds,
            "command": " ".join(full),
            "A": self.a.traffic(starts[0]),
            "B": self.b.traffic(starts[1]),
        }
        if m.stdout.strip().startswith("{"):
            result["stdout_json"] = json.loads(m.stdout)
        log(f"{label}: {m.seconds:.2f} s (CPU {m.cpu_seconds:.2f} s)")
        return result

    def skopeo(self, label: str, pairs: Sequence[tuple[str, str]]) -> dict[str, Any]:
        """skopeo copy of each (source, destination), one after the other; times summed."""
        parts = []
        for src, dest in pairs:
            cmd = ["skopeo", "copy", "-q", "--src-tls-verify=false", "--dest-tls-verify=false"]
            parts.append(self.timed(f"{label} {src}", [*cmd, src, dest]))
        return combine(parts)


def combine(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    def total(reg: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for p in parts:
            for k, v in p[reg].items():
                if isinstance(v, dict):
                    d = out.setdefault(k, {})
                    for kk, vv in v.items():
                        d[kk] = d.get(kk, 0) + vv
                else:
                    out[k] = out.get(k, 0) + v
        return out

    return {
        "seconds": sum(p["seconds"] for p in parts),
        "cpu_seconds": sum(p["cpu_seconds"] for p in parts),
        "A": total("A"),
        "B": total("B"),
        "parts": list(parts),
    }


def best(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The fastest run, with every run's time beside it."""
    fastest = min(runs, key=lambda r: r["seconds"])
    return {**fastest, "runs": [r["seconds"] for r in runs]}


# ------------------------------------------------------------------------------------------
# The measurements


def measure(
    runner: Runner,
    tool: list[str],
    python: str,
    images: bench.Images,
    runs: int,
) -> dict[str, Any]:
    a, b, wd = runner.a.addr, runner.b.addr, runner.workdir
    cache_home = wd / "xdg-cache"
    env = bench.embed_env(cache_home)
    src = {"base": f"docker://{a}/base:1", "web": f"docker://{a}/web:1"}
    name = f"{a}/web:1"  # the name the registry build gives the app: the local build too
    layouts = {"base": images.base_layout, "web": images.web_layout}

    def embed_reg(output: str, extra: Sequence[str] = ()) -> list[str]:
        cmd = [*tool, "build", "--base", src["base"], "--image", src["web"], "--output", output]
        return [*cmd, "--tls-verify=false", "--json", *extra]

    per_run: dict[str, list[dict[str, Any]]] = {
        k: [] for k in ("skopeo_copy", "embed_registry", "embed_local", "pull", "push", "push_out")
    }
    for i in range(1, runs + 1):
        log(f"run {i}/{runs}")
        per_run["skopeo_copy"].append(
            runner.skopeo(
                "skopeo copy",
                [(src[n], f"docker://{b}/sk-{i}-{n}:1") for n in ("base", "web")],
            )
        )
        shutil.rmtree(cache_home, ignore_errors=True)
        per_run["embed_registry"].append(
            runner.timed(
                "bootc-embed registry → registry",
                embed_reg(f"docker://{b}/out-{i}:1", ["--no-cache"]),
                env,
            )
        )
        local = wd / f"local-{i}"
        per_run["embed_local"].append(
            runner.timed(
                "bootc-embed local → local",
                [
                    *tool,
                    "build",
                    "--base",
                    f"oci:{layouts['base']}:1",
                    "--image",
                    f"{name}=oci:{layouts['web']}:1",
                    "--output",
                    f"oci:{local}:1",
                    "--json",
                    "--no-cache",
                ],
                env,
            )
        )
        pulled = wd / f"pull-{i}"
        pulled.mkdir()
        per_run["pull"].append(
            runner.skopeo("skopeo pull", [(src[n], f"oci:{pulled / n}:1") for n in ("base", "web")])
        )
        per_run["push"].append(
            runner.skopeo(
                "skopeo push",
                [(f"oci:{pulled / n}:1", f"docker://{b}/skp-{i}-{n}:1") for n in ("base", "web")],
            )
        )
        per_run["push_out"].append(
            runner.skopeo(
                "skopeo push of the output", [(f"oci:{local}:1", f"docker://{b}/det-{i}:1")]
            )
        )
        shutil.rmtree(pulled)
        shutil.rmtree(local)

    result: dict[str, Any] = {k: best(v) for k, v in per_run.items()}
    digests = {
        "registry": sorted(
            {r["stdout_json"]["manifest_digest"] for r in per_run["embed_registry"]}
        ),
        "local": sorted({r["stdout_json"]["manifest_digest"] for r in per_run["embed_local"]}),
    }
    result["manifest_digests"] = digests
    result["per_run_ratio"] = [
        (r["seconds"] - loc["seconds"]) / s["seconds"]
        for r, loc, s in zip(
            per_run["embed_registry"], per_run["embed_local"], per_run["skopeo_copy"], strict=True
        )
    ]

    # Second push of the unchanged output, into the last run's repository.
    target = f"docker://{b}/out-{runs}:1"
    second: dict[str, Any] = {"repository": target}
    shutil.rmtree(cache_home, ignore_errors=True)
    log(f"second push into {target}: first with an empty layer cache (fills it)")
    second["cold_cache"] = probe_run(runner, python, embed_reg(target), env, "cold layer cache")
    for key, extra, what in (
        ("warm_cache", [], "warm layer cache"),
        ("previous", ["--no-cache", "--previous", target], "--no-cache --previous"),
    ):
        done = [probe_run(runner, python, embed_reg(target, extra), env, what) for _ in range(runs)]
        second[key] = {
            **best(done),
            "all_upload_requests": [r["B"]["blob_upload_requests"] for r in done],
            "all_network_seconds": [r["probe"]["network_seconds"] for r in done],
            "network_seconds": min(r["probe"]["network_seconds"] for r in done),
            "manifest_digests": sorted({r["stdout_json"]["manifest_digest"] for r in done}),
        }
    result["second_push"] = second
    shutil.rmtree(cache_home, ignore_errors=True)
    return result


def probe_run(
    runner: Runner, python: str, embed_cmd: list[str], env: dict[str, str], what: str
) -> dict[str, Any]:
    """One bootc-embed build (the CLI *embed_cmd*) run in-process by this script's ``_probe``
    mode, which times the HTTP transport; its report is merged into the timed result."""
    with tempfile.NamedTemporaryFile(dir=runner.workdir, suffix=".json") as f:
        cmd = [python, str(HERE / "registry.py"), "_probe", "--report", f.name, "--"]
        cmd += embed_cmd[embed_cmd.index("build") :]
        res = runner.timed(f"second push, {what}", cmd, env)
        res["probe"] = json.loads(Path(f.name).read_text())
    p = res["probe"]
    log(
        f"  {what}: {res['B']['blob_upload_requests']} blob upload requests, "
        f"{p['network_seconds']:.3f} s in HTTP requests, {p['requests']} requests"
    )
    return res


# ------------------------------------------------------------------------------------------
# In-process driver: bootc-embed with its HTTP transport timed


def _merge(spans: Sequence[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for s, e in sorted(spans):
        if e <= end:
            continue
        total += e - max(s, end)
        end = e
    return total


def probe(argv: Sequence[str]) -> int:
    """``registry.py _probe --report FILE -- build ARGS...``: run ``bootc-embed build ARGS`` in
    this process with httpx's transport wrapped, and write to FILE the wall time of the build,
    the time during which at least one HTTP request was being sent or its response read
    (``network_seconds``, the union over threads; ``network_thread_seconds`` sums them), and
    the requests made."""
    p = argparse.ArgumentParser(prog="registry.py _probe")
    p.add_argument("--report", required=True, type=Path)
    p.add_argument("cli", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    cli_args = args.cli[1:] if args.cli[:1] == ["--"] else args.cli

    import httpx

    from bootc_embed.cli import main as cli

    spans: list[tuple[float, float]] = []
    requests: dict[str, int] = {}
    lock = threading.Lock()

    def record(t0: float) -> None:
        t1 = time.perf_counter()
        with lock:
            spans.append((t0, t1))

    class TimedStream(httpx.SyncByteStream):
        def __init__(self, inner: httpx.SyncByteStream) -> None:
            self._inner = inner

        def __iter__(self) -> Iterator[bytes]:
            it = iter(self._inner)
            while True:
                t0 = time.perf_counter()
                try:
                    chunk = next(it)
                except StopIteration:
                    return
                finally:
                    record(t0)
                yield chunk

        def close(self) -> None:
            t0 = time.perf_counter()
            try:
                self._inner.close()
            finally:
                record(t0)

    original = httpx.HTTPTransport.handle_request

    def handle_request(self: httpx.HTTPTransport, request: httpx.Request) -> httpx.Response:
        key = f"{request.method} {request.url.host}:{request.url.port}"
        with lock:
            requests[key] = requests.get(key, 0) + 1
        t0 = time.perf_counter()
        try:
            response = original(self, request)
        finally:
            record(t0)
        assert isinstance(response.stream, httpx.SyncByteStream)
        response.stream = TimedStream(response.stream)
        return response

    httpx.HTTPTransport.handle_request = handle_request  # type: ignore[method-assign]
    t0 = time.perf_counter()
    code: int | str | None = 0
    try:
        cli.main(args=cli_args, prog_name="bootc-embed", standalone_mode=False)
    except SystemExit as e:
        code = e.code
    wall = time.perf_counter() - t0
    args.report.write_text(
        json.dumps(
            {
                "build_seconds": wall,
                "network_seconds": _merge(spans),
                "network_thread_seconds": sum(e - s for s, e in spans),
                "requests": sum(requests.values()),
                "requests_by_method_host": requests,
                "exit": code,
            },
            indent=2,
        )
    )
    return code if isinstance(code, int) else 1


# ------------------------------------------------------------------------------------------
# Targets and report


def checks(r: dict[str, Any]) -> dict[str, dict[str, Any]]:
    m = r["measured"]
    sp = m["second_push"]
    transfer = m["embed_registry"]["seconds"] - m["embed_local"]["seconds"]
    detour = m["pull"]["seconds"] + m["embed_local"]["seconds"] + m["push_out"]["seconds"]
    out: dict[str, dict[str, Any]] = {
        "transfer_ratio": {
            "ok": transfer / m["skopeo_copy"]["seconds"] <= TARGET_TRANSFER_RATIO,
            "target": f"<= {TARGET_TRANSFER_RATIO:g}x skopeo copy",
        },
        "detour_ratio": {
            "ok": m["embed_registry"]["seconds"] / detour <= TARGET_TRANSFER_RATIO,
            "target": f"<= {TARGET_TRANSFER_RATIO:g}x skopeo pull + local build + skopeo push",
        },
        "same_output": {
            "ok": len(m["manifest_digests"]["registry"]) == 1
            and m["manifest_digests"]["registry"] == m["manifest_digests"]["local"]
            and all(
                sp[k]["manifest_digests"] == m["manifest_digests"]["registry"]
                for k in ("warm_cache", "previous")
            )
            and sp["cold_cache"]["stdout_json"]["manifest_digest"]
            in m["manifest_digests"]["registry"],
            "target": "every build, registry or local, gives the same manifest digest",
        },
    }
    for key in ("warm_cache", "previous"):
        out[f"second_push_{key}_uploads"] = {
            "ok": max(sp[key]["all_upload_requests"]) == TARGET_SECOND_PUSH_UPLOADS,
            "target": f"{TARGET_SECOND_PUSH_UPLOADS} blob upload requests, every run",
        }
        out[f"second_push_{key}_network"] = {
            "ok": sp[key]["network_seconds"] < TARGET_SECOND_PUSH_NETWORK_S,
            "target": f"< {TARGET_SECOND_PUSH_NETWORK_S:g} s in HTTP requests",
        }
    return out


def report(r: dict[str, Any]) -> str:
    m, c = r["measured"], r["checks"]
    n = len(m["skopeo_copy"]["runs"])
    rows: list[tuple[str, str, str, str]] = [("measure", "value", "target", "result")]

    def row(label: str, value: str = "", target: str = "", key: str = "") -> None:
        rows.append((label, value, target, bench.verdict(c[key]["ok"]) if key else ""))

    def s(key: str) -> str:
        return f"{m[key]['seconds']:.2f} s"

    def mb(x: dict[str, Any], reg: str, what: str) -> str:
        return f"{x[reg][f'bytes_{what}'] / MB:.0f} MB"

    sk, reg, loc = m["skopeo_copy"], m["embed_registry"], m["embed_local"]
    row(f"skopeo copy A → B, base + web, best of {n}", s("skopeo_copy"))
    row(
        "  (blobs pulled / pushed / mounted)",
        f"{mb(sk, 'A', 'downloaded')} / {mb(sk, 'B', 'uploaded')} / {sk['B']['blobs_mounted']}",
    )
    row("  skopeo pull only, A → OCI layouts", s("pull"))
    row("  skopeo push only, the layouts → B", s("push"))
    row(f"bootc-embed build A → B, --no-cache, best of {n}", s("embed_registry"))
    row(
        "  (blobs pulled / pushed / mounted)",
        f"{mb(reg, 'A', 'downloaded')} / {mb(reg, 'B', 'uploaded')} / {reg['B']['blobs_mounted']}",
    )
    row(f"bootc-embed build OCI → OCI, --no-cache, best of {n}", s("embed_local"))
    transfer = reg["seconds"] - loc["seconds"]
    row("bootc-embed pull + push = (A → B) − (OCI → OCI)", f"{transfer:.2f} s")
    row(
        "pull + push: bootc-embed / skopeo copy",
        f"{transfer / sk['seconds']:.2f}x",
        f"<= {TARGET_TRANSFER_RATIO:g}x",
        "transfer_ratio",
    )
    per_run = m["per_run_ratio"]
    row(
        f"  (each run's own ratio; median {statistics.median(per_run):.2f}x)",
        " / ".join(f"{x:.2f}" for x in per_run),
    )
    row("skopeo push of bootc-embed's output, OCI → B", s("push_out"))
    detour = m["pull"]["seconds"] + loc["seconds"] + m["push_out"]["seconds"]
    row("detour: skopeo pull + OCI → OCI + skopeo push", f"{detour:.2f} s")
    row(
        "bootc-embed A → B / detour",
        f"{reg['seconds'] / detour:.2f}x",
        f"<= {TARGET_TRANSFER_RATIO:g}x",
        "detour_ratio",
    )
    inputs = m["pull"]["seconds"] + loc["seconds"] + m["push"]["seconds"]
    row("  (pushing base + web instead of the output)", f"{reg['seconds'] / inputs:.2f}x")
    row(
        "same manifest digest, every build (A → B, OCI → OCI)",
        "yes" if c["same_output"]["ok"] else "NO",
        "",
        "same_output",
    )
    sp = m["second_push"]
    cold = sp["cold_cache"]
    row("second push of the unchanged output to B:")
    row(
        "  empty layer cache (fills it): time / upload requests",
        f"{cold['seconds']:.2f} s / {cold['B']['blob_upload_requests']}",
    )
    for key, title in (
        ("warm_cache", "warm layer cache"),
        ("previous", "--no-cache --previous B/out"),
    ):
        x = sp[key]
        row(f"  {title}, best of {len(x['runs'])}: whole build", f"{x['seconds']:.2f} s")
        row(
            "    blob upload requests (B's log)",
            str(max(x["all_upload_requests"])),
            f"{TARGET_SECOND_PUSH_UPLOADS}",
            f"second_push_{key}_uploads",
        )
        row(
            "    time inside HTTP requests",
            f"{x['network_seconds']:.3f} s",
            f"< {TARGET_SECOND_PUSH_NETWORK_S:g} s",
            f"second_push_{key}_network",
        )
        row(
            "    requests to A / B; blobs read from A",
            f"{x['A']['requests']} / {x['B']['requests']}; {x['A']['blobs_downloaded']} "
            f"({x['A']['bytes_downloaded'] / MB:.0f} MB)",
        )
    lines = bench.table_lines(rows, right=(1,))
    head = (
        bench.heading("bootc-embed registry transfers", r)
        + f"\nclients (skopeo, bootc-embed): {r['pinning']}; registries A and B: not pinned"
    )
    return head + "\n" + "\n".join(lines)


# ------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/registry",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--python",
        default=sys.executable,
        help="Python with bootc_embed installed (default: this one)",
    )
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    p.add_argument("--runs", type=int, default=3, help="timed runs of each; the best counts")
    p.add_argument(
        "--no-pin",
        dest="pin",
        action="store_false",
        help="run skopeo and bootc-embed unpinned (default: both taskset -c 0)",
    )
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=bench.DEFAULT_CACHE,
        help=f"image cache, shared with bench/run (default {bench.DEFAULT_CACHE})",
    )
    p.add_argument(
        "--mirror",
        default=os.environ.get("BENCH_DEBIAN_MIRROR", bench.DEFAULT_MIRROR),
        help="Debian mirror for debootstrap",
    )
    return p.parse_args(argv)


def versions() -> dict[str, str]:
    out = {}
    for name, cmd in (("skopeo", ["skopeo", "--version"]), ("registry", ["docker-registry", "-v"])):
        res = subprocess.run(cmd, capture_output=True, text=True)
        out[name] = (res.stdout or res.stderr).strip()
    return out


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_probe"]:
        return probe(argv[1:])
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("bench/registry needs root (podman/buildah stores, mount namespace)", file=sys.stderr)
        return 1
    results: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": bench.machine(),
        "pinning": "both pinned to core 0 (taskset -c 0)" if args.pin else "both unpinned",
        "runs": args.runs,
    }
    try:
        private_blob_info_cache()
        bench.check_tools(args.python, True)
        results["versions"] = versions()
        tool = bench.bootc_embed_cmd(args.python)
        args.cache_dir.mkdir(parents=True, exist_ok=True)
        cache = bench.Cache(args.cache_dir)
        with (
            cache.locked(),
            tempfile.TemporaryDirectory(prefix="bootc-embed-registry.", dir="/var/tmp") as tmp,
        ):
            workdir = Path(tmp)
            images = bench.setup_images(cache, args.mirror)
            (workdir / "a").mkdir()
            (workdir / "b").mkdir()
            with bench.registry(workdir / "a") as addr_a, bench.registry(workdir / "b") as addr_b:
                a = Registry("A", addr_a, workdir / "a")
                b = Registry("B", addr_b, workdir / "b")
                for name, layout in (("base", images.base_layout), ("web", images.web_layout)):
                    log(f"registry A on {addr_a}: skopeo copy → docker://{addr_a}/{name}:1")
                    bench.run(
                        [
                            "skopeo",
                            "copy",
                            "-q",
                            "--dest-tls-verify=false",
                            f"oci:{layout}:1",
                            f"docker://{addr_a}/{name}:1",
                        ]
                    )
                log(f"registry B on {addr_b}")
                runner = Runner(a, b, args.pin, workdir)
                results["measured"] = measure(runner, tool, args.python, images, args.runs)
        results["checks"] = checks(results)
    except BenchError as exc:
        print(f"bench/registry: {exc}", file=sys.stderr)
        return 1
    except (subprocess.SubprocessError, OSError, KeyError, ValueError) as exc:
        print(f"bench/registry: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    table = report(results)
    print(table)
    if args.json:
        Path(args.json).write_text(json.dumps({**results, "table": table}, indent=2) + "\n")
    return 0 if all(c["ok"] for c in results["checks"].values()) else 3


if __name__ == "__main__":
    sys.exit(main())
