"""Session fixtures for the end-to-end tests: real test images, a loopback registry, private podman.

Heavy fixtures are lazy: a test that does not ask for them does not pay for them. What takes long
(debootstrap, buildah builds) is cached on disk between runs on the same machine, under
``$BOOTC_EMBED_TEST_CACHE`` (default ``/var/tmp/bootc-embed-test-cache``), keyed by a hash of the
Containerfiles and the image-building code. Everything else (registry, podman stores, mounts) is
private to the session under ``/var/tmp/bootc-embed-test-work/<pid>-...`` and removed at the end;
leftovers of a killed session are cleaned up by the next one.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support import containers, images, ocilayout, toolimage
from support.containers import Podman, Registry

CACHE_DIR = Path(os.environ.get("BOOTC_EMBED_TEST_CACHE", "/var/tmp/bootc-embed-test-cache"))
WORK_ROOT = Path("/var/tmp/bootc-embed-test-work")
BOOTC_EMBED = Path(sys.executable).parent / "bootc-embed"


def _clean_stale_sessions() -> None:
    if not WORK_ROOT.exists():
        return
    for d in WORK_ROOT.iterdir():
        pid_s = d.name.split("-", 1)[0]
        if pid_s.isdigit() and not containers.pid_alive(int(pid_s)):
            containers.remove_tree(d)


@pytest.fixture(scope="session")
def session_dir():
    """A private work directory for this session (podman stores, registry, outputs)."""
    _clean_stale_sessions()
    containers.clean_stale_runroots()
    WORK_ROOT.mkdir(parents=True, exist_ok=True)
    d = WORK_ROOT / f"{os.getpid()}-{int(time.time())}"
    d.mkdir()
    yield d
    containers.remove_tree(d)


@pytest.fixture(scope="session")
def container_env(session_dir):
    """Environment for podman/buildah/skopeo: our containers.conf, a private default store.

    Also exported to this process's environment for the session so that no podman call, even
    one that forgets ``--root``, can reach the machine's default store.
    """
    containers.check_environment()
    default_runroot = containers.short_runroot()
    conf = containers.write_storage_conf(
        session_dir / "storage.conf", session_dir / "default-root", default_runroot
    )
    env = containers.container_env(conf)
    saved = {k: os.environ.get(k) for k in ("CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF")}
    os.environ["CONTAINERS_CONF"] = env["CONTAINERS_CONF"]
    os.environ["CONTAINERS_STORAGE_CONF"] = env["CONTAINERS_STORAGE_CONF"]
    yield env
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    # the private default store, in case anything used it
    containers.remove_tree(session_dir / "default-root")
    containers.remove_tree(default_runroot)


@pytest.fixture(scope="session")
def test_images(container_env) -> images.TestImages:
    """OCI layouts of base, app1, app2 (zstd) and app3 (hand-made), tag ``1`` (cached)."""
    t0 = time.monotonic()
    imgs = images.ensure_images(CACHE_DIR, container_env)
    for name in ("base", *images.APP_IMAGES):
        imgs.image(name)  # readable, or fail here with a clear message
    print(f"\n[fixtures] test images ready in {time.monotonic() - t0:.1f} s", flush=True)
    return imgs


@pytest.fixture(scope="session")
def wheelhouse(session_dir) -> Path:
    """Wheels installing this checkout's bootc-embed offline, on the image's Python and ours."""
    ours = f"{sys.version_info.major}.{sys.version_info.minor}"
    pythons = tuple(sorted({toolimage.IMAGE_PYTHON, ours}))
    return toolimage.build_wheelhouse(session_dir / "wheelhouse", CACHE_DIR, pythons)


@pytest.fixture(scope="session")
def tool_image(session_dir, container_env, wheelhouse):
    """bootc-embed's container image, built from the repository's Containerfile (private store)."""
    img = toolimage.build_tool_image(
        session_dir / "tool-image", container_env, CACHE_DIR, wheelhouse
    )
    try:
        yield img
    finally:
        img.podman.destroy()


class RegistryImages:
    """The app images as pushed to the loopback registry: short name → full name."""

    def __init__(self, registry: Registry, names: dict[str, str]) -> None:
        self.registry = registry
        self.names = names

    def __getitem__(self, short: str) -> str:
        return self.names[short]


@pytest.fixture(scope="session")
def registry(session_dir, container_env, test_images):
    """A loopback ``docker-registry`` holding app1..app3 exactly as in their OCI layouts."""
    t0 = time.monotonic()
    reg = Registry(session_dir / "registry", container_env).start()
    try:
        names = {}
        for short in images.APP_IMAGES:
            name = reg.push_layout(test_images.ref(short), f"bootc-embed-test/{short}:1")
            want = test_images.image(short).manifest_digest
            got = reg.manifest_digest(name)
            assert got == want, f"registry changed {short}'s manifest: {got} != {want}"
            names[short] = name
        print(f"\n[fixtures] registry {reg.host} ready in {time.monotonic() - t0:.1f} s")
        yield RegistryImages(reg, names)
    finally:
        reg.stop()


@pytest.fixture(scope="session")
def reference_podman(session_dir, container_env, registry):
    """A podman root that pulled every app image from the registry (never sees our store)."""
    t0 = time.monotonic()
    pm = Podman(session_dir / "ref" / "root", container_env)
    try:
        for short in images.APP_IMAGES:
            pm("pull", "-q", "--tls-verify=false", registry[short])
        print(f"\n[fixtures] reference pulls done in {time.monotonic() - t0:.1f} s")
        yield pm
    finally:
        pm.destroy()


def mounted_tree(pm: Podman, name: str):
    """Snapshot of an image's file tree, as a container created from it sees it.

    ``podman create`` + ``podman mount`` (then unmounted and removed): podman 4.3's
    ``podman image mount`` fails with "layer not known" for an image in a read-only additional
    store, while a container (its writable layer in the primary store) mounts fine.
    """
    from support import trees

    cid = pm("create", "--network", "none", name, "true").stdout.strip()
    try:
        path = pm("mount", cid).stdout.strip()
        assert path and Path(path).is_dir(), f"podman mount {cid} ({name}) gave {path!r}"
        return trees.snapshot(Path(path))
    finally:
        pm("umount", cid, check=False)
        pm("rm", "-f", cid, check=False)


@pytest.fixture(scope="session")
def reference_trees(reference_podman, registry):
    """short name → file tree of the registry-pulled image (computed once, on demand)."""
    cache: dict[str, dict] = {}

    class Trees:
        def __getitem__(self, short: str):
            if short not in cache:
                cache[short] = mounted_tree(reference_podman, registry[short])
            return cache[short]

    return Trees()


# --------------------------------------------------------------------------------------------
# running the tool


class BootcEmbedResult:
    def __init__(self, proc: subprocess.CompletedProcess, argv: list[str]) -> None:
        self.proc = proc
        self.argv = argv
        self.returncode = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr

    def describe(self) -> str:
        return (
            f"$ {' '.join(self.argv)}\nexit {self.returncode}\n"
            f"--- stdout ---\n{self.stdout[-4000:]}\n--- stderr ---\n{self.stderr[-4000:]}"
        )

    def json(self) -> dict:
        try:
            return json.loads(self.stdout)
        except json.JSONDecodeError as e:
            raise AssertionError(f"--json output is not JSON ({e}):\n{self.describe()}") from None


_private_cache: list[Path] = []


def private_xdg_cache() -> Path:
    """An XDG_CACHE_HOME of this test session: the tool's layer cache never touches ~/.cache."""
    if not _private_cache:
        WORK_ROOT.mkdir(parents=True, exist_ok=True)
        d = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-xdg-cache-", dir=WORK_ROOT))
        atexit.register(shutil.rmtree, d, True)
        _private_cache.append(d)
    return _private_cache[0]


def run_bootc_embed(*args: str | os.PathLike, timeout: float = 1200) -> BootcEmbedResult:
    """Run the ``bootc-embed`` command with this session's private cache home."""
    if not BOOTC_EMBED.exists():
        raise RuntimeError(
            f"{BOOTC_EMBED} not found: install the package into this Python's environment "
            "(pip install -e '.[test]', as .ci/run does)"
        )
    argv = [str(BOOTC_EMBED), *(os.fspath(a) for a in args)]
    env = dict(os.environ)
    env.pop("COLUMNS", None)
    env["XDG_CACHE_HOME"] = str(private_xdg_cache())
    proc = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env=env,
        errors="replace",
    )
    return BootcEmbedResult(proc, argv)


@pytest.fixture(scope="session")
def bootc_embed():
    """A function running the installed ``bootc-embed`` command (subprocess, captured)."""
    return run_bootc_embed


__all__ = ["BootcEmbedResult", "ocilayout", "run_bootc_embed"]


# --------------------------------------------------------------------------------------------
# the fault suites (tests/test_faults_*.py)


@pytest.fixture(scope="session")
def fault_images(tmp_path_factory):
    """The fault suites' base and apps (support/faultimages.py) as OCI layouts."""
    from support.faultimages import write_fault_images

    return write_fault_images(tmp_path_factory.mktemp("fault-images"))


@pytest.fixture(scope="session")
def fault_registry(tmp_path_factory, fault_images):
    """A loopback docker-registry holding faults/base:1, faults/app1:1 and faults/app2:1 (the
    fault images, unchanged); it records every request in its access log."""
    from registry_support import Registry as LoggingRegistry
    from registry_support import skopeo_push

    reg = LoggingRegistry(tmp_path_factory.mktemp("fault-registry")).start()
    try:
        for which in ("base", "app1", "app2"):
            skopeo_push(getattr(fault_images, which), reg, f"faults/{which}:1")
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="session")
def fault_reference(tmp_path_factory, fault_images):
    """The manifest digest of a clean build of the fault images (from their layouts): what a
    build that recovered from a fault must give."""
    from support.faultrun import Build, Sandbox
    from support.leftovers import tags

    box = Sandbox(tmp_path_factory.mktemp("fault-reference"))
    out = box.out / "ref"
    r = Build(box, ["build", *fault_images.build_args(), "--output", f"oci:{out}:1"]).run()
    assert r.returncode == 0, r.describe()
    return tags(out)["1"]


@pytest.fixture
def box(tmp_path):
    """A :class:`support.faultrun.Sandbox` for one fault-suite test: private output directory,
    $TMPDIR, --tmpdir, cache and home."""
    from support.faultrun import Sandbox

    return Sandbox(tmp_path / "box")


@pytest.fixture
def proxy(fault_registry):
    """A :class:`support.faultproxy.FaultProxy` in front of the fault registry (no faults yet)."""
    from support.faultproxy import FaultProxy

    p = FaultProxy(fault_registry.host).start()
    try:
        yield p
    finally:
        p.stop()
