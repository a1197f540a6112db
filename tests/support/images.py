"""The suite's test images, built once per machine and cached on disk.

- ``debian-min``: ``debootstrap --variant=minbase bookworm``, ``podman import``-ed (rootfs tarball
  cached on its own).
- ``base``: a bootc-like base (debian-min + ``LABEL containers.bootc=1``).
- ``app1``: many layers with every kind of entry (tests/images/app1/Containerfile).
- ``app2``: the web app of shared/bench, exported with zstd layers.
- ``app3``: written by hand (no buildah): debian-min's layer plus layers with tar quirks that
  buildah never writes (GNU long names, ``./`` and ``/`` prefixes, missing parent directories,
  whiteouts inside an opaque directory of the same layer, an empty layer, uncompressed blobs).

Images are built with ``buildah bud --network host --layers`` into a private store and exported
with skopeo as OCI layouts under ``<cache>/images-<key>/<name>`` (tag ``1``). The key hashes the
Containerfiles and this file, so editing either rebuilds.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import shutil
import struct
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

from . import ocilayout
from .containers import Podman, remove_tree, run

CACHE_VERSION = "3"
IMAGES_DIR = Path(__file__).resolve().parents[1] / "images"
TAG = "1"
BUILT_IMAGES = ("base", "app1", "app2")
APP_IMAGES = ("app1", "app2", "app3")
DEBIAN_MIN = "localhost/debian-min:12"
ROOTFS_KEY = "bookworm-minbase-v1"
# the base the tests build bootc-embed's own container image on (Containerfile at the repository
# root): python3 with venv, plus what the image ships for run time (skopeo, the CA bundle), so
# that building it needs no network. skopeo's containers-common depends on the virtual package
# container-network-stack, which debootstrap does not resolve: one of its providers is named.
PYTHON_ROOTFS_KEY = "bookworm-minbase-python-v1"
PYTHON_ROOTFS_PACKAGES = (
    "python3",
    "python3-venv",
    "skopeo",
    "containernetworking-plugins",
    "ca-certificates",
)
DEBIAN_MIRROR = "http://deb.debian.org/debian"


def log(msg: str) -> None:
    print(f"[test-images {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def cache_key() -> str:
    h = hashlib.sha256()
    h.update(CACHE_VERSION.encode() + b"\0" + ROOTFS_KEY.encode() + b"\0")
    h.update(Path(__file__).read_bytes())
    h.update((Path(__file__).parent / "ocilayout.py").read_bytes())
    for p in sorted(IMAGES_DIR.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(IMAGES_DIR)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def with_retry(fn, attempts: int = 2, before_retry=None):
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except AssertionError as e:
            if attempt == attempts:
                raise
            log(f"failed, retrying in 10 s: {str(e).splitlines()[0]}")
            time.sleep(10)
            if before_retry is not None:
                before_retry()


@contextlib.contextmanager
def locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# --------------------------------------------------------------------------------------------
# root filesystem


def ensure_rootfs(cache: Path, key: str = ROOTFS_KEY, include: tuple[str, ...] = ()) -> Path:
    """A debootstrap minbase bookworm root filesystem as a tarball (cached under ``key``).

    ``include``: packages added to minbase (``debootstrap --include``); ``key`` names them.
    """
    final = cache / f"rootfs-{key}.tar"
    if final.exists():
        return final
    with locked(cache / "rootfs.lock"):
        if final.exists():
            return final
        work = cache / f"rootfs-{key}.tmp"
        remove_tree(work)
        work.mkdir(parents=True)
        t0 = time.monotonic()
        extra = [f"--include={','.join(include)}"] if include else []
        log(f"debootstrap --variant=minbase {' '.join(extra)} bookworm (about 30 s)")
        try:
            with_retry(
                lambda: run(
                    [
                        "debootstrap",
                        "--variant=minbase",
                        *extra,
                        "bookworm",
                        work / "rootfs",
                        DEBIAN_MIRROR,
                    ],
                    timeout=1200,
                ),
                before_retry=lambda: remove_tree(work / "rootfs"),
            )
            # no apt lists/caches in the image (apt-get update in builds fetches its own)
            for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
                for p in (work / "rootfs" / junk).glob("*"):
                    if p.is_file():
                        p.unlink()
            run(
                [
                    "tar",
                    "--numeric-owner",
                    "--xattrs",
                    "--xattrs-include=*",
                    "-C",
                    work / "rootfs",
                    "-cf",
                    work / "rootfs.tar",
                    ".",
                ],
                timeout=600,
            )
            (work / "rootfs.tar").rename(final)
        finally:
            remove_tree(work)
        log(f"root filesystem {key} ready in {time.monotonic() - t0:.0f} s")
    return final


# --------------------------------------------------------------------------------------------
# app1's generated build-context file


def special_tar() -> bytes:
    """Entries only ADD of a tarball makes: xattrs (user.*, a file capability), a block device."""
    cap = struct.pack("<IIIII", 0x02000001, 1 << 10, 0, 0, 0)  # cap_net_bind_service=ep, v2
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:

        def add(ti: tarfile.TarInfo, data: bytes | None = None) -> None:
            ti.mtime = 1600000000
            ti.uname = ti.gname = ""
            if data is not None:
                ti.size = len(data)
                t.addfile(ti, io.BytesIO(data))
            else:
                t.addfile(ti)

        d = tarfile.TarInfo("opt/special")
        d.type, d.mode = tarfile.DIRTYPE, 0o755
        d.pax_headers = {"SCHILY.xattr.user.dirattr": "on a directory"}
        add(d)
        f = tarfile.TarInfo("opt/special/xattr-file")
        f.mode = 0o644
        f.pax_headers = {"SCHILY.xattr.user.test": "value1", "SCHILY.xattr.user.other": "x" * 300}
        add(f, b"has user xattrs\n")
        f = tarfile.TarInfo("opt/special/capability")
        f.mode = 0o755
        f.pax_headers = {"SCHILY.xattr.security.capability": cap.decode("latin-1")}
        add(f, b"#!/bin/sh\ntrue\n")
        b = tarfile.TarInfo("opt/special/blk")
        b.type, b.mode, b.gid, b.devmajor, b.devminor = tarfile.BLKTYPE, 0o660, 6, 7, 1
        add(b)
        f = tarfile.TarInfo("opt/special/owned-by-tar")
        f.mode, f.uid, f.gid = 0o640, 4242, 4343
        add(f, b"owned\n")
    return buf.getvalue()


# --------------------------------------------------------------------------------------------
# app3: layers written by hand


def app3_layers() -> list[bytes]:
    gnu = ocilayout.TarBuilder(fmt=tarfile.GNU_FORMAT)
    long_dir = "srv/" + "g" * 120
    (
        gnu.dir("./", mode=0o755, mtime=1500000000)
        .dir("./srv/", mode=0o755)
        .file("./srv/dot-slash", b"dot slash\n")
        .file("/srv/leading-slash", b"leading slash\n")
        .file("srv/a/../cleaned", b"cleaned name\n")
        .dir(long_dir + "/", mode=0o750, uid=10, gid=20)
        .file(long_dir + "/" + "f" * 150, b"gnu long name\n", uid=3000000, gid=3000000)
        .symlink("srv/gnu-long-target", "/" + long_dir + "/" + "f" * 150)
        .hardlink("srv/gnu-long-hardlink", long_dir + "/" + "f" * 150)
        # no entries for srv/noparent/ and srv/noparent/deep/: podman creates them
        .file("srv/noparent/deep/file", b"no parent entries\n", mode=0o600)
        .dir("srv/wdir/", mode=0o750)
        .file("srv/wdir/x", b"x\n")
        .file("srv/wdir/y", b"y\n")
        .dir("srv/opq2/", mode=0o755)
        .file("srv/opq2/stale", b"hidden later\n")
        .file("srv/opq2/also-stale", b"hidden later\n")
        .file("srv/mode7777", b"all bits\n", mode=0o7777)
        .file("srv/utf8-é-日本", b"utf-8 name\n")
    )
    layer_a = gnu.bytes()

    pax = ocilayout.TarBuilder(fmt=tarfile.PAX_FORMAT)
    (
        # a whiteout whose directory has no entry of its own in this layer
        pax.whiteout("srv/wdir/x")
        # an opaque directory with a whiteout inside it (the whiteout hides nothing)
        .dir("srv/opq2/", mode=0o755)
        .opaque("srv/opq2/")
        .whiteout("srv/opq2/stale")
        .file("srv/opq2/fresh", b"fresh\n")
        .file("srv/pax-" + "p" * 200, b"pax long name\n", xattrs={"user.pax": "yes"})
    )
    layer_b = pax.bytes()
    return [layer_a, layer_b, ocilayout.empty_tar()]


def write_app3(out: Path, app1: ocilayout.Image) -> ocilayout.Image:
    base_desc = app1.layers[0]
    base = ocilayout.LayerSpec(
        blob_path=app1.blob(base_desc["digest"]),
        descriptor=base_desc,
        diff_id=app1.diff_ids[0],
    )
    a, b, empty = app3_layers()
    config = ocilayout.default_config(
        [],
        config={
            "Cmd": ["/bin/sh"],
            "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
            "Labels": {"org.example.test": "app3"},
        },
        history=[],
    )
    return ocilayout.write_image(
        out,
        [
            base,
            ocilayout.LayerSpec(tar=a, compression="gzip"),
            ocilayout.LayerSpec(tar=b, compression="none"),
            ocilayout.LayerSpec(tar=empty, compression="gzip"),
        ],
        tag=TAG,
        config=config,
    )


# --------------------------------------------------------------------------------------------


@dataclass
class TestImages:
    root: Path

    def layout(self, name: str) -> Path:
        return self.root / name

    def image(self, name: str) -> ocilayout.Image:
        return ocilayout.read_image(self.layout(name), TAG)

    def ref(self, name: str) -> str:
        return f"oci:{self.layout(name)}:{TAG}"


def ensure_images(cache: Path, env: dict[str, str]) -> TestImages:
    key = cache_key()
    final = cache / f"images-{key}"
    if (final / "complete").exists():
        log(f"using cached test images {final}")
        return TestImages(final)
    with locked(cache / "images.lock"):
        if (final / "complete").exists():
            return TestImages(final)
        t0 = time.monotonic()
        rootfs = ensure_rootfs(cache)
        work = cache / f"images-{key}.tmp"
        remove_tree(work)
        work.mkdir(parents=True)
        store = Podman(work / "store" / "root", env)
        try:
            _build_all(work, store, rootfs, env)
        finally:
            store.destroy()
            remove_tree(work / "store")
            remove_tree(work / "ctx")
        (work / "complete").write_text(key + "\n")
        remove_tree(final)
        work.rename(final)
        # older generations of the test images: drop them once nobody can still be using them
        # (another checkout's session may be reading one right now)
        for old in cache.glob("images-*"):
            done = old / "complete"
            stale = not done.exists() or time.time() - done.stat().st_mtime > 2 * 86400
            if old.is_dir() and old != final and stale and not old.name.endswith(".tmp"):
                remove_tree(old)
        log(f"test images built in {time.monotonic() - t0:.0f} s: {final}")
    return TestImages(final)


def _build_all(work: Path, store: Podman, rootfs: Path, env: dict[str, str]) -> None:
    t = time.monotonic()
    store("import", "--change", 'CMD ["/bin/bash"]', rootfs, DEBIAN_MIN)
    log(f"podman import {DEBIAN_MIN}: {time.monotonic() - t:.0f} s")
    buildah = [
        "buildah",
        "--root",
        str(store.root),
        "--runroot",
        str(store.runroot),
        "--storage-driver",
        "overlay",
    ]
    layouts = work / "layouts"
    layouts.mkdir()
    for name in BUILT_IMAGES:
        t = time.monotonic()
        ctx = work / "ctx" / name
        shutil.copytree(IMAGES_DIR / name, ctx)
        if name == "app1":
            (ctx / "special.tar").write_bytes(special_tar())
        tag = f"localhost/bootc-embed-test/{name}:{TAG}"
        bud = [
            *buildah,
            "bud",
            "--network",
            "host",
            "--layers",
            "--pull=never",
            "-t",
            tag,
            "-f",
            ctx / "Containerfile",
            ctx,
        ]
        # apt-get inside a build reaches the Debian mirror: one retry for a network hiccup
        with_retry(lambda bud=bud: run(bud, env=env, timeout=1800))
        extra = ["--dest-compress-format", "zstd"] if name == "app2" else []
        store.skopeo_copy(store.storage_ref(tag), f"oci:{layouts / name}:{TAG}", *extra)
        log(f"built and exported {name}: {time.monotonic() - t:.0f} s")
    # final place of the layouts is work/<name>
    for name in BUILT_IMAGES:
        (layouts / name).rename(work / name)
    layouts.rmdir()
    write_app3(work / "app3", ocilayout.read_image(work / "app1", TAG))
