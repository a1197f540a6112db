"""bootc-embed benchmark: the targets of issue 2, measured in one run.

Measures, on this machine and in this run:

1. the Containerfile recipe that bootc-embed replaces (``buildah bud --no-cache`` of
   containerfiles/recipe.Containerfile, pulling the web app from a loopback registry), its wall
   time and the compressed bytes it adds to the OS image;
2. ``bootc-embed build`` of the same web app on one core (``taskset -c 0``), best of N, and the
   bytes it adds;
3. the floor on one core (floor.py: inflate + ISA-L level 2 deflate + 4 x sha256 of the web app's
   layers, no tar work);
4. the size of bootc-embed's default gzip output against the same tars at zlib level 6;
5. bootc-embed's peak RSS on a synthetic image with a 1 GiB layer (bigimage.py);

then prints a table with ratios and PASS/FAIL per target, optionally as JSON (``--json FILE``).

Images are built once and cached under /var/tmp/bootc-embed-bench-cache (``--cache-dir``), keyed
by the Containerfiles' hashes, in a private podman/buildah store. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import datetime
import fcntl
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Container, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CONTAINERFILES = HERE / "containerfiles"
CONTAINERS_CONF = HERE / "containers.conf"
DEFAULT_CACHE = Path("/var/tmp/bootc-embed-bench-cache")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
#: Bump to throw away every cached image.
CACHE_FORMAT = "1"
CHUNK = 1 << 20
MB = 1_000_000

TARGET_SPEEDUP = 10.0
TARGET_FLOOR_RATIO = 1.5
TARGET_SIZE_RATIO = 1.10
TARGET_PEAK_MB = 200.0
REFERENCE_FLOOR_S = 1.47  # shared/docs/baseline.md, web app, one core

LAYER_ANNOTATION = "io.bootc-embed.layer"


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


# ------------------------------------------------------------------------------------------
# Subprocesses


def container_env() -> dict[str, str]:
    env = dict(os.environ)
    env["CONTAINERS_CONF"] = str(CONTAINERS_CONF)
    return env


def run(
    cmd: Sequence[str], *, capture: bool = False, env: dict[str, str] | None = None, **kw: Any
) -> subprocess.CompletedProcess[str]:
    """Run *cmd*; on failure raise with its output."""
    res = subprocess.run(
        list(cmd),
        env=env or container_env(),
        text=True,
        stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        **kw,
    )
    if res.returncode:
        raise BenchError(
            f"command failed ({res.returncode}): {' '.join(cmd)}\n{res.stderr.strip()[-4000:]}"
        )
    return res


@dataclass
class Measured:
    seconds: float
    cpu_seconds: float
    max_rss_kib: int
    returncode: int
    stdout: str
    stderr: str


def run_measured(cmd: Sequence[str], env: dict[str, str] | None = None) -> Measured:
    """Run *cmd*, returning its wall time and its own peak RSS (from wait4)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(list(cmd), stdout=out, stderr=err, env=env or container_env())
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Measured(
            seconds,
            usage.ru_utime + usage.ru_stime,
            usage.ru_maxrss,
            proc.returncode,
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
        )


# ------------------------------------------------------------------------------------------
# Private container store and cache


class Store:
    """A private podman/buildah overlay store under the cache directory."""

    def __init__(self, cache: Path) -> None:
        self.root = cache / "store" / "root"
        self.runroot = cache / "store" / "runroot"
        # podman's own state (its "alive" file, locks) would otherwise live in the machine-wide
        # /run/libpod, shared with every other podman on the machine.
        self.tmp = cache / "store" / "tmp"

    def args(self) -> list[str]:
        root = ["--root", str(self.root), "--runroot", str(self.runroot)]
        return [*root, "--storage-driver", "overlay"]

    def podman_cmd(self, *args: str) -> list[str]:
        return ["podman", *self.args(), "--tmpdir", str(self.tmp), *args]

    def podman(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return run(self.podman_cmd(*args), **kw)

    def buildah_cmd(self, *args: str) -> list[str]:
        return ["buildah", *self.args(), *args]

    def ref(self, name: str) -> str:
        return f"containers-storage:[overlay@{self.root}+{self.runroot}]{name}"

    def has_image(self, name: str) -> bool:
        res = subprocess.run(
            self.podman_cmd("image", "exists", name),
            env=container_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return res.returncode == 0


class Cache:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.stamps = path / "stamps"
        self.stamps.mkdir(parents=True, exist_ok=True)

    def fresh(self, name: str, key: str) -> bool:
        stamp = self.stamps / name
        return stamp.exists() and stamp.read_text() == key

    def stamp(self, name: str, key: str) -> None:
        (self.stamps / name).write_text(key)

    def forget(self, name: str) -> None:
        (self.stamps / name).unlink(missing_ok=True)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        with open(self.path / "lock", "w") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log(f"waiting for another benchmark run holding {self.path / 'lock'}")
                fcntl.flock(f, fcntl.LOCK_EX)
            yield


def key_of(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        b = p.encode() if isinstance(p, str) else p
        h.update(len(b).to_bytes(8, "big") + b)
    return h.hexdigest()


@dataclass
class Images:
    store: Store
    base_layout: Path  # OCI layout, tag "1"
    web_layout: Path  # OCI layout, tag "1"
    #: The cache key of each image built ("debian-min", "base", "web"): images built on top of
    #: them (bench/updates.py) derive their keys from these.
    keys: dict[str, str] = field(default_factory=dict)


def build_image(
    cache: Cache,
    store: Store,
    name: str,
    containerfile: Path,
    image: str,
    key: str,
    build_args: Sequence[str] = (),
) -> None:
    """``buildah bud --layers`` *containerfile* into *image* unless the stamp *name* says that
    *key* built it already; a rebuild invalidates the image's OCI layout (stamp ``oci-NAME``)."""
    if cache.fresh(name, key) and store.has_image(image):
        return
    log(f"buildah bud --layers {containerfile.name} {' '.join(build_args)} → {image}")
    cmd = store.buildah_cmd("bud", "--network", "host", "--layers")
    for arg in build_args:
        cmd += ["--build-arg", arg]
    run([*cmd, "-f", str(containerfile), "-t", image, str(CONTAINERFILES)])
    cache.stamp(name, key)
    cache.forget(f"oci-{name}")


def export_layout(cache: Cache, store: Store, name: str, image: str, key: str) -> Path:
    """*image* as the OCI layout ``oci/NAME`` (tag "1") of the cache, copied once per *key*."""
    layout = cache.path / "oci" / name
    if not (cache.fresh(f"oci-{name}", key) and (layout / "index.json").exists()):
        log(f"skopeo copy {image} → oci:{layout}:1")
        shutil.rmtree(layout, ignore_errors=True)
        layout.parent.mkdir(parents=True, exist_ok=True)
        run(["skopeo", "copy", "-q", store.ref(image), f"oci:{layout}:1"])
        cache.stamp(f"oci-{name}", key)
    return layout


def setup_images(cache: Cache, mirror: str) -> Images:
    store = Store(cache.path)
    store.root.mkdir(parents=True, exist_ok=True)
    store.runroot.mkdir(parents=True, exist_ok=True)
    store.tmp.mkdir(parents=True, exist_ok=True)

    # debootstrap → localhost/debian-min:12
    debian_key = key_of(CACHE_FORMAT, "debootstrap --variant=minbase bookworm", mirror)
    if not (cache.fresh("debian-min", debian_key) and store.has_image("localhost/debian-min:12")):
        tarball = cache.path / "debian-min.tar"
        if not (cache.fresh("debian-min.tar", debian_key) and tarball.exists()):
            rootfs = cache.path / "debian-min.rootfs"
            shutil.rmtree(rootfs, ignore_errors=True)
            log(f"debootstrap --variant=minbase bookworm ({mirror}), about a minute")
            run(["debootstrap", "--variant=minbase", "bookworm", str(rootfs), mirror])
            run(["tar", "--numeric-owner", "--xattrs", "-C", str(rootfs), "-cf", str(tarball), "."])
            shutil.rmtree(rootfs)
            cache.stamp("debian-min.tar", debian_key)
        log("podman import → localhost/debian-min:12")
        store.podman(
            "import",
            "--change",
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--change",
            'CMD ["/bin/bash"]',
            str(tarball),
            "localhost/debian-min:12",
        )
        cache.stamp("debian-min", debian_key)
        for name in ("base", "web", "oci-base", "oci-web"):
            cache.forget(name)

    keys = {"debian-min": debian_key}
    layouts = {}
    for name in ("base", "web"):
        containerfile = CONTAINERFILES / f"{name}.Containerfile"
        key = key_of(debian_key, containerfile.read_bytes())
        image = f"localhost/{name}:1"
        build_image(cache, store, name, containerfile, image, key)
        layouts[name] = export_layout(cache, store, name, image, key)
        keys[name] = key
    return Images(store, layouts["base"], layouts["web"], keys)


# ------------------------------------------------------------------------------------------
# OCI layouts


def read_manifest(layout: Path, tag: str = "1") -> dict[str, Any]:
    index = json.loads((layout / "index.json").read_text())
    for desc in index["manifests"]:
        if desc.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag:
            return json.loads(blob_path(layout, desc["digest"]).read_bytes())
    raise BenchError(f"no tag {tag!r} in {layout}")


def blob_path(layout: Path, digest: str) -> Path:
    algo, hexd = digest.split(":", 1)
    return layout / "blobs" / algo / hexd


def read_config(layout: Path, tag: str = "1") -> dict[str, Any]:
    m = read_manifest(layout, tag)
    return json.loads(blob_path(layout, m["config"]["digest"]).read_bytes())


# ------------------------------------------------------------------------------------------
# Loopback registry


@contextlib.contextmanager
def registry(workdir: Path) -> Iterator[str]:
    """A docker-registry on 127.0.0.1:<free port>; yields "127.0.0.1:PORT"."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    storage = workdir / "registry-data"
    storage.mkdir()
    config = workdir / "registry.yml"
    config.write_text(
        "version: 0.1\n"
        "log: {level: error}\n"
        f"storage: {{filesystem: {{rootdirectory: {storage}}}, delete: {{enabled: true}}}}\n"
        f"http: {{addr: 127.0.0.1:{port}}}\n"
    )
    logfile = open(workdir / "registry.log", "wb")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        ["docker-registry", "serve", str(config)], stdout=logfile, stderr=subprocess.STDOUT
    )
    addr = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://{addr}/v2/", timeout=2):
                    break
            except (urllib.error.URLError, ConnectionError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise BenchError(
                        "docker-registry did not start:\n"
                        + (workdir / "registry.log").read_text(errors="replace")[-2000:]
                    ) from None
                time.sleep(0.1)
        yield addr
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        logfile.close()


# ------------------------------------------------------------------------------------------
# Measurements


def build_recipe(
    store: Store, app: str, workdir: Path, dest: str, base_image: str | None = None
) -> tuple[Measured, list[str]]:
    """Time ``buildah bud --no-cache`` of recipe.Containerfile pulling *app* (FROM *base_image*
    instead of the Containerfile's ``localhost/base:1`` when given), copy the result to the
    skopeo destination *dest* (compressed as buildah would push it) and remove it from the store.
    """
    tag = "localhost/bench-recipe:latest"
    if store.has_image(tag):  # left by an interrupted run
        store.podman("rmi", "-f", tag)
    iidfile = workdir / "recipe.iid"
    cmd = store.buildah_cmd("bud", "--network", "host", "--no-cache", "--iidfile", str(iidfile))
    if base_image:
        cmd += ["--from", base_image]
    cmd += ["--build-arg", f"APP={app}", "-f", str(CONTAINERFILES / "recipe.Containerfile")]
    cmd += ["-t", tag, str(CONTAINERFILES)]
    base = base_image or "localhost/base:1"
    log(f"recipe: buildah bud --no-cache recipe.Containerfile, FROM {base}, APP={app} (timed)")
    m = run_measured(cmd)
    if m.returncode:
        raise BenchError(f"recipe build failed ({m.returncode}):\n{m.stderr[-4000:]}")
    log(f"recipe: {m.seconds:.1f} s; skopeo copy → {dest}")
    try:
        run(["skopeo", "copy", "-q", store.ref(tag), dest])
    finally:
        try:
            store.podman("rmi", "-f", iidfile.read_text().strip())
        except (BenchError, OSError) as exc:
            log(f"warning: could not remove the recipe's image: {exc}")
    return m, cmd


def measure_recipe(images: Images, app: str, workdir: Path) -> dict[str, Any]:
    out = workdir / "recipe-oci"
    m, cmd = build_recipe(images.store, app, workdir, f"oci:{out}:1")
    base = read_manifest(images.base_layout)
    result = read_manifest(out)
    base_diff_ids = read_config(images.base_layout)["rootfs"]["diff_ids"]
    result_diff_ids = read_config(out)["rootfs"]["diff_ids"]
    if result_diff_ids[: len(base_diff_ids)] != base_diff_ids:
        raise BenchError("the recipe's result does not start with the base's layers")
    added = result["layers"][len(base["layers"]) :]
    shutil.rmtree(out)
    return {
        "seconds": m.seconds,
        "layers_added": len(added),
        "bytes_added": sum(d["size"] for d in added),
        "command": " ".join(cmd),
    }


def bootc_embed_cmd(python: str) -> list[str]:
    script = Path(python).parent / "bootc-embed"
    if script.exists():
        return [str(script)]
    return [python, "-c", "import sys; from bootc_embed.cli import main; sys.exit(main())"]


def embed_env(cache_home: Path) -> dict[str, str]:
    """Environment for bootc-embed: its layer cache (default $XDG_CACHE_HOME/bootc-embed) is
    private to the benchmark, so runs start cold unless meant otherwise and nothing is left in
    the user's cache."""
    env = container_env()
    env["XDG_CACHE_HOME"] = str(cache_home)
    return env


def embed_once(
    tool: list[str],
    base: Path,
    image_arg: str,
    out: Path,
    pin: bool,
    cache_home: Path,
    extra: Sequence[str] = (),
) -> tuple[Measured, dict[str, Any]]:
    shutil.rmtree(out, ignore_errors=True)
    cmd = [*tool, "build", "--base", f"oci:{base}:1", "--image", image_arg]
    cmd += ["--output", f"oci:{out}:1", "--json", *extra]
    if pin:
        cmd = ["taskset", "-c", "0", *cmd]
    m = run_measured(cmd, env=embed_env(cache_home))
    if m.returncode:
        raise BenchError(f"bootc-embed failed ({m.returncode}): {' '.join(cmd)}\n{m.stderr}")
    return m, json.loads(m.stdout)


def has_layer_cache(tool: list[str]) -> bool:
    """Whether this bootc-embed has a layer cache (and so --no-cache)."""
    res = subprocess.run([*tool, "build", "--help"], capture_output=True, text=True)
    return "--no-cache" in res.stdout


def appended_layers(layout: Path) -> list[dict[str, Any]]:
    return [
        d for d in read_manifest(layout)["layers"] if LAYER_ANNOTATION in d.get("annotations", {})
    ]


def floor_once(python: str, images: Images) -> dict[str, Any]:
    blobs = [
        str(blob_path(images.web_layout, d["digest"]))
        for d in read_manifest(images.web_layout)["layers"]
    ]
    cmd = ["taskset", "-c", "0", python, str(HERE / "floor.py"), "--repeat", "1", *blobs]
    return json.loads(run(cmd, capture=True).stdout)


def measure_timed(
    tool: list[str], python: str, images: Images, name: str, runs: int, floor: bool, workdir: Path
) -> tuple[dict[str, Any], dict[str, Any] | None, Path]:
    """bootc-embed on one core, best of *runs*, each run preceded by a floor run (also one core).

    Interleaving makes both see the same machine: other load on the machine slows both alike.
    """
    out = workdir / "embed-oci"
    image_arg = f"{name}=oci:{images.web_layout}:1"
    times, cpu, rss, loads, no_cache, seen_base = [], [], [], [], [], []
    digests: list[str | None] = []  # of every output: all the same, or bootc-embed has a bug
    floors: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    layer_cache = has_layer_cache(tool)
    if floor:
        log("timing: floor (inflate + ISA-L 2 deflate + 4 x sha256) and bootc-embed, interleaved")
    cache_home = workdir / "xdg-cache"
    for i in range(runs):
        loads.append(os.getloadavg()[0])
        if floor:
            f = floor_once(python, images)
            floors.append(f)
            log(f"floor run {i + 1}/{runs}: {f['seconds']:.2f} s (CPU {f['cpu_seconds']:.2f} s)")
        shutil.rmtree(cache_home, ignore_errors=True)
        m, summary = embed_once(tool, images.base_layout, image_arg, out, True, cache_home)
        times.append(m.seconds)
        cpu.append(m.cpu_seconds)
        rss.append(m.max_rss_kib)
        digests.append(summary.get("manifest_digest"))
        log(
            f"bootc-embed run {i + 1}/{runs}: {m.seconds:.2f} s (CPU {m.cpu_seconds:.2f} s), "
            f"peak RSS {m.max_rss_kib // 1024} MiB" + (", empty layer cache" if layer_cache else "")
        )
        if layer_cache:
            m2, summary2 = embed_once(
                tool, images.base_layout, image_arg, out, True, cache_home, ["--no-cache"]
            )
            digests.append(summary2.get("manifest_digest"))
            no_cache.append(m2.seconds)
            log(f"bootc-embed --no-cache run {i + 1}/{runs}: {m2.seconds:.2f} s")
    warm = None
    if layer_cache:
        # The last default run filled cache_home: a rebuild now finds every layer there.
        m3, warm_summary = embed_once(tool, images.base_layout, image_arg, out, True, cache_home)
        warm = m3.seconds
        log(f"bootc-embed with a warm layer cache: {warm:.2f} s")
        digests.append(warm_summary.get("manifest_digest"))
        # The base's scans cached, no app layer: a new app version on a base seen before.
        for i in range(runs):
            for entry in (cache_home / "bootc-embed").iterdir():
                if entry.name != "base-scan":
                    shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
            m4, seen_summary = embed_once(
                tool, images.base_layout, image_arg, out, True, cache_home
            )
            seen_base.append(m4.seconds)
            digests.append(seen_summary.get("manifest_digest"))
            log(f"bootc-embed, base scans cached, run {i + 1}/{runs}: {m4.seconds:.2f} s")
        shutil.rmtree(cache_home, ignore_errors=True)
    added = appended_layers(out)
    app = [d for d in added if d["annotations"][LAYER_ANNOTATION] == "app"]
    bytes_added = sum(d["size"] for d in added)
    if len(set(digests)) != 1:
        log(f"warning: the runs gave different outputs: {sorted(set(map(str, digests)))}")
    if summary.get("bytes_added") not in (None, bytes_added):
        raise BenchError(
            f"--json bytes_added {summary['bytes_added']} != appended layer sizes {bytes_added}"
        )
    web_layers = read_manifest(images.web_layout)["layers"]
    embed = {
        "seconds": min(times),
        "runs": times,
        "cpu_seconds": min(cpu),
        "cpu_runs": cpu,
        "max_rss_kib": max(rss),
        "layer_cache": layer_cache,
        "no_cache_seconds": min(no_cache) if no_cache else None,
        "no_cache_runs": no_cache,
        "warm_cache_seconds": warm,
        "seen_base_seconds": min(seen_base) if seen_base else None,
        "seen_base_runs": seen_base,
        "manifest_digests": sorted(set(map(str, digests))),
        "loadavg_before_runs": loads,
        "layers_added": len(added),
        "app_layers": len(app),
        "bytes_added": bytes_added,
        "app_bytes": sum(d["size"] for d in app),
        "input_bytes": sum(d["size"] for d in web_layers),
        "input_uncompressed_bytes": floors[0]["inflated"] if floors else None,
        "command": " ".join(
            [
                "taskset -c 0",
                *tool,
                f"build --base oci:{images.base_layout}:1",
                f"--image {name}=oci:{images.web_layout}:1",
                "--output oci:OUT:1 --json",
            ]
        ),
    }
    floor_result = None
    if floors:
        floor_result = {
            "seconds": min(f["seconds"] for f in floors),
            "runs": [f["seconds"] for f in floors],
            "cpu_seconds": min(f["cpu_seconds"] for f in floors),
            "cpu_runs": [f["cpu_seconds"] for f in floors],
            "layer_seconds": min(floors, key=lambda f: f["seconds"])["layer_seconds"],
            **{k: floors[0][k] for k in ("compressed_in", "inflated", "deflated_out")},
        }
    return embed, floor_result, out


def _zlib6(path: str) -> tuple[int, int, int]:
    """(blob size, inflated size, gzip size at stdlib zlib level 6) of one gzip blob."""
    import zlib

    try:
        from isal import isal_zlib as inflater
    except ImportError:  # pragma: no cover
        inflater = zlib  # type: ignore[assignment]
    deflate = zlib.compressobj(6, zlib.DEFLATED, 31)
    inflate = inflater.decompressobj(31)
    n_blob = n_raw = n_out = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            n_blob += len(chunk)
            while chunk:
                data = inflate.decompress(chunk)
                n_raw += len(data)
                n_out += len(deflate.compress(data))
                chunk = b""
                if inflate.eof and inflate.unused_data:
                    chunk = inflate.unused_data
                    inflate = inflater.decompressobj(31)
    data = inflate.flush()
    n_raw += len(data)
    n_out += len(deflate.compress(data)) + len(deflate.flush())
    return n_blob, n_raw, n_out


def measure_size(out: Path) -> dict[str, Any]:
    app = [d for d in appended_layers(out) if d["annotations"][LAYER_ANNOTATION] == "app"]
    paths = [str(blob_path(out, d["digest"])) for d in app]
    log(f"size: recompressing {len(paths)} app layers with zlib level 6")
    with concurrent.futures.ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        sizes = list(pool.map(_zlib6, paths))
    total = sum(s[0] for s in sizes)
    zlib6 = sum(s[2] for s in sizes)
    return {
        "ratio": total / zlib6,
        "output_bytes": total,
        "zlib6_bytes": zlib6,
        "uncompressed_bytes": sum(s[1] for s in sizes),
        "layers": [
            {"digest": d["digest"], "size": s[0], "uncompressed": s[1], "zlib6": s[2]}
            for d, s in zip(app, sizes, strict=True)
        ],
    }


def big_image(cache: Cache, images: Images, python: str) -> Path:
    base_cfg = read_config(images.base_layout)
    os_name, arch = base_cfg.get("os", "linux"), base_cfg.get("architecture", "amd64")
    layout = cache.path / "oci" / "big"
    bigimage_src = (HERE / "bigimage.py").read_bytes()
    key = key_of(CACHE_FORMAT, bigimage_src, os_name, arch)
    if cache.fresh("big", key) and (layout / "index.json").exists():
        return layout
    log("memory: generating the synthetic image with a 1 GiB layer (cached)")
    shutil.rmtree(layout, ignore_errors=True)
    code = (
        "import sys, pathlib; sys.path.insert(0, sys.argv[1]); import bigimage; "
        "print(bigimage.write_image(pathlib.Path(sys.argv[2]), os_name=sys.argv[3], "
        "arch=sys.argv[4]))"
    )
    run([python, "-c", code, str(HERE), str(layout), os_name, arch])
    cache.stamp("big", key)
    return layout


def measure_memory(
    tool: list[str], cache: Cache, images: Images, python: str, workdir: Path
) -> dict[str, Any]:
    layout = big_image(cache, images, python)
    layer = read_manifest(layout)["layers"][0]
    out = workdir / "big-oci"
    log("memory: bootc-embed build of the 1 GiB-layer image (peak RSS from wait4)")
    image_arg = f"localhost/big:1=oci:{layout}:1"
    cache_home = workdir / "xdg-cache"
    shutil.rmtree(cache_home, ignore_errors=True)
    m, _ = embed_once(tool, images.base_layout, image_arg, out, False, cache_home)
    shutil.rmtree(cache_home, ignore_errors=True)
    shutil.rmtree(out)
    cfg = read_config(layout)
    return {
        "peak_rss_kib": m.max_rss_kib,
        "peak_rss_mb": m.max_rss_kib * 1024 / MB,
        "seconds": m.seconds,
        "layer_compressed_bytes": layer["size"],
        "layer_diff_id": cfg["rootfs"]["diff_ids"][0],
    }


def profile(
    python: str, images: Images, name: str, workdir: Path, top: int, floor: dict[str, Any] | None
) -> str:
    """Where bootc-embed's time goes on one core: per-layer times, then cProfile's top costs."""
    out = workdir / "profile-oci"
    build = ["build", "--base", f"oci:{images.base_layout}:1"]
    build += ["--image", f"{name}=oci:{images.web_layout}:1", "--output", f"oci:{out}:1"]
    text = []
    if floor:
        per_layer = ", ".join(f"{t:.2f}" for t in floor["layer_seconds"])
        text.append(f"--- floor per layer, best run: {per_layer} s ---\n")
    for extra in (["--no-cprofile"], []):
        shutil.rmtree(out, ignore_errors=True)
        cmd = ["taskset", "-c", "0", python, str(HERE / "profile_build.py"), "--top", str(top)]
        log(f"profile: bootc-embed on one core {'timed per layer' if extra else 'under cProfile'}")
        cache_home = workdir / "xdg-cache"
        shutil.rmtree(cache_home, ignore_errors=True)
        res = run([*cmd, *extra, "--", *build], capture=True, env=embed_env(cache_home))
        shutil.rmtree(cache_home, ignore_errors=True)
        text.append(res.stdout)
    shutil.rmtree(out, ignore_errors=True)
    return "".join(text)


# ------------------------------------------------------------------------------------------
# Report


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    git = subprocess.run(
        ["git", "-C", str(HERE.parent), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
    )
    return {
        "source": git.stdout.strip() if git.returncode == 0 else None,
        "cpu": cpu,
        "cores": os.cpu_count(),
        "loadavg_at_start": os.getloadavg(),
        "kernel": os.uname().release,
    }


def verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("PASS" if ok else "FAIL")


def report(results: dict[str, Any]) -> str:
    r = results
    rows: list[tuple[str, str, str, str]] = []

    def row(label: str, value: str, target: str = "", ok: bool | None = None) -> None:
        rows.append((label, value, target, "" if ok is None else verdict(ok)))

    recipe, embed, floor = r.get("recipe"), r.get("embed"), r.get("floor")
    size, mem = r.get("size"), r.get("memory")
    if embed:
        raw = f" / {embed['input_uncompressed_bytes'] / MB:.1f}" if floor else ""
        row(
            f"web app: {embed['app_layers']} layers, MB gzip{' / tar' if floor else ''}",
            f"{embed['input_bytes'] / MB:.1f}{raw}",
        )
    if recipe:
        row("recipe build (buildah bud --no-cache)", f"{recipe['seconds']:.1f} s")
    if embed:
        n = len(embed["runs"])
        cold = ", cold" if embed.get("layer_cache") else ""
        row(f"bootc-embed build, 1 core, best of {n}{cold}", f"{embed['seconds']:.2f} s")
        row("  (its CPU time, user+sys)", f"{embed['cpu_seconds']:.2f} s")
        if embed.get("no_cache_seconds") is not None:
            row("  (with --no-cache)", f"{embed['no_cache_seconds']:.2f} s")
        if embed.get("warm_cache_seconds") is not None:
            row("  (rebuild, warm layer cache)", f"{embed['warm_cache_seconds']:.2f} s")
    if recipe and embed:
        speedup = recipe["seconds"] / embed["seconds"]
        row(
            "speedup: recipe / bootc-embed",
            f"{speedup:.1f}x",
            f">= {TARGET_SPEEDUP:g}x",
            speedup >= TARGET_SPEEDUP,
        )
    if floor:
        row(
            f"floor, 1 core, best of {len(floor['runs'])}",
            f"{floor['seconds']:.2f} s",
            f"(ref {REFERENCE_FLOOR_S} s)",
        )
    if floor and embed:
        ratio = embed["seconds"] / floor["seconds"]
        row(
            "bootc-embed / floor (wall)",
            f"{ratio:.2f}x",
            f"<= {TARGET_FLOOR_RATIO:g}x",
            ratio <= TARGET_FLOOR_RATIO,
        )
        row("  (CPU time ratio)", f"{embed['cpu_seconds'] / floor['cpu_seconds']:.2f}x")
        row(
            f"  (bootc-embed / reference floor {REFERENCE_FLOOR_S} s)",
            f"{embed['seconds'] / REFERENCE_FLOOR_S:.2f}x",
        )
        if embed.get("seen_base_seconds") is not None:
            seen = embed["seen_base_seconds"]
            row(f"  (base scans cached: {seen:.2f} s) / floor", f"{seen / floor['seconds']:.2f}x")
    if size:
        row(
            "app layers: default gzip / zlib 6",
            f"{size['ratio']:.3f}",
            f"<= {TARGET_SIZE_RATIO:.2f}",
            size["ratio"] <= TARGET_SIZE_RATIO,
        )
    if mem:
        row(
            "peak RSS, 1 GiB layer",
            f"{mem['peak_rss_mb']:.0f} MB",
            f"< {TARGET_PEAK_MB:g} MB",
            mem["peak_rss_mb"] < TARGET_PEAK_MB,
        )
    if embed:
        row("  (peak RSS, web app)", f"{embed['max_rss_kib'] * 1024 / MB:.0f} MB")
    if recipe:
        row("bytes added: recipe", f"{recipe['bytes_added'] / MB:.1f} MB")
    if embed:
        row("bytes added: bootc-embed", f"{embed['bytes_added'] / MB:.1f} MB")
    if recipe and embed:
        row(
            "bytes added: recipe / bootc-embed",
            f"{recipe['bytes_added'] / embed['bytes_added']:.1f}x",
        )
    lines = table_lines([("measure", "value", "target", "result"), *rows], right=(1,))
    return heading("bootc-embed benchmark", r) + "\n" + "\n".join(lines)


def table_lines(rows: Sequence[Sequence[str]], right: Container[int]) -> list[str]:
    """``rows`` (the header first) as aligned text columns, a rule under the header; the
    columns in ``right`` are right-aligned. Shared by every bench/ table."""
    widths = [max(len(cells[i]) for cells in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()
        for cells in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def heading(title: str, r: dict[str, Any]) -> str:
    """A bench/ table's first line: what, when, which machine, which source."""
    m = r["machine"]
    return (
        f"{title}, {r['date']}: {m['cpu']}, {m['cores']} cores, "
        f"load average at start {m['loadavg_at_start'][0]:.2f}, source {m['source']}"
    )


def targets(results: dict[str, Any]) -> dict[str, bool | None]:
    r = results
    out: dict[str, bool | None] = {}
    if r.get("recipe") and r.get("embed"):
        out["speedup"] = r["recipe"]["seconds"] / r["embed"]["seconds"] >= TARGET_SPEEDUP
    if r.get("floor") and r.get("embed"):
        out["floor_ratio"] = r["embed"]["seconds"] / r["floor"]["seconds"] <= TARGET_FLOOR_RATIO
    if r.get("size"):
        out["size_ratio"] = r["size"]["ratio"] <= TARGET_SIZE_RATIO
    if r.get("memory"):
        out["peak_memory"] = r["memory"]["peak_rss_mb"] < TARGET_PEAK_MB
    return out


# ------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/run",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--python",
        default=sys.executable,
        help="Python with bootc_embed installed (default: this one)",
    )
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    p.add_argument(
        "--runs",
        type=int,
        default=3,
        help="bootc-embed and floor runs; the best counts (default 3)",
    )
    p.add_argument(
        "--skip-recipe", action="store_true", help="do not build the recipe (no speedup)"
    )
    p.add_argument(
        "--skip-memory", action="store_true", help="do not measure the 1 GiB-layer image"
    )
    p.add_argument("--skip-size", action="store_true", help="do not recompress with zlib 6")
    p.add_argument("--skip-floor", action="store_true", help="do not measure the floor")
    p.add_argument(
        "--profile",
        choices=["auto", "always", "never"],
        default="auto",
        help="profile bootc-embed on one core: auto = when the floor target is missed",
    )
    p.add_argument("--profile-top", type=int, default=25, help="rows of the profile to print")
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=DEFAULT_CACHE,
        help=f"image cache (default {DEFAULT_CACHE})",
    )
    p.add_argument(
        "--mirror",
        default=os.environ.get("BENCH_DEBIAN_MIRROR", DEFAULT_MIRROR),
        help="Debian mirror for debootstrap",
    )
    return p.parse_args(argv)


def check_tools(python: str, need_recipe: bool) -> None:
    missing = [
        t for t in ("podman", "buildah", "skopeo", "debootstrap", "taskset") if not shutil.which(t)
    ]
    if need_recipe and not shutil.which("docker-registry"):
        missing.append("docker-registry")
    if missing:
        raise BenchError(
            "missing tools: " + " ".join(missing) + " (apt-get install -y podman buildah skopeo "
            "debootstrap docker-registry util-linux)"
        )
    res = subprocess.run(
        [python, "-c", "import bootc_embed, isal; print(bootc_embed.__file__)"],
        capture_output=True,
        text=True,
    )
    if res.returncode:
        raise BenchError(f"{python} cannot import bootc_embed and isal: use --python\n{res.stderr}")
    log(f"python {python}; bootc_embed from {res.stdout.strip()}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("bench/run needs root (podman/buildah stores, debootstrap)", file=sys.stderr)
        return 2
    results: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
    }
    try:
        check_tools(args.python, not args.skip_recipe)
        tool = bootc_embed_cmd(args.python)
        args.cache_dir.mkdir(parents=True, exist_ok=True)
        cache = Cache(args.cache_dir)
        with (
            cache.locked(),
            tempfile.TemporaryDirectory(prefix="bootc-embed-bench.", dir="/var/tmp") as tmp,
        ):
            workdir = Path(tmp)
            images = setup_images(cache, args.mirror)
            with registry(workdir) as addr:
                app = f"{addr}/web:1"
                log(f"registry on {addr}; skopeo copy oci:{images.web_layout}:1 → docker://{app}")
                run(
                    [
                        "skopeo",
                        "copy",
                        "-q",
                        "--dest-tls-verify=false",
                        f"oci:{images.web_layout}:1",
                        f"docker://{app}",
                    ]
                )
                if not args.skip_recipe:
                    results["recipe"] = measure_recipe(images, app, workdir)
                results["embed"], floor, out = measure_timed(
                    tool, args.python, images, app, args.runs, not args.skip_floor, workdir
                )
                if floor:
                    results["floor"] = floor
            if not args.skip_size:
                results["size"] = measure_size(out)
            shutil.rmtree(out)
            if not args.skip_memory:
                results["memory"] = measure_memory(tool, cache, images, args.python, workdir)
            results["targets"] = targets(results)
            missed_floor = results["targets"].get("floor_ratio") is False
            if args.profile == "always" or (args.profile == "auto" and missed_floor):
                results["profile"] = profile(
                    args.python, images, app, workdir, args.profile_top, results.get("floor")
                )
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    table = report(results)
    print(table)
    if "profile" in results:
        print("\nWhere bootc-embed's time goes, one core:\n")
        print(results["profile"])
    if args.json:
        Path(args.json).write_text(json.dumps({**results, "table": table}, indent=2) + "\n")
    return 0 if all(results["targets"].values()) else 3


if __name__ == "__main__":
    sys.exit(main())
