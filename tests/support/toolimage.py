"""bootc-embed's own container image (the repository's Containerfile), built as users build it.

No registry base image is reachable here, so the base is made with debootstrap (python3, venv,
skopeo, CA certificates: :data:`images.PYTHON_ROOTFS_PACKAGES`) and ``podman import``-ed. pip
cannot reach PyPI from inside a build here either, so the build installs from a wheelhouse in the
build context, as the Containerfile documents for offline builds:

- :func:`build_wheelhouse`: bootc-embed's dependencies (and setuptools, its build backend) as
  binary wheels for the given Python versions, downloaded once per machine (the one step that
  needs PyPI) and cached under the test cache, keyed by ``pyproject.toml``; plus bootc-embed's own
  wheel, built offline from this checkout every session.
- :func:`build_tool_image`: the build context (what ``.containerignore`` lets through, plus the
  wheelhouse), ``podman build --network none`` on the debootstrap base.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

from . import images
from .containers import Podman, remove_tree, run

REPO = Path(__file__).resolve().parents[2]
# bookworm's python3, the interpreter of the image the tests build
IMAGE_PYTHON = "3.11"
# manylinux tags that bookworm's glibc (2.36) runs; pip download matches --platform exactly
PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_28_x86_64")
BASE_NAME = "localhost/bootc-embed-test/python-base:12"
IMAGE_NAME = "localhost/bootc-embed:test"
SOURCE_URL = "https://example.com/bootc-embed-test"
DEPS_CACHE_VERSION = "1"


def pip(*args: str | Path, timeout: float = 600) -> None:
    # no pip configuration of this machine (local indexes, constraints): what a user's pip does
    env = {**os.environ, "PIP_CONFIG_FILE": "/dev/null", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    run([sys.executable, "-m", "pip", "-q", *args], env=env, timeout=timeout)


def context_entries() -> list[str]:
    """What ``.containerignore`` lets into the build context (its ``!`` lines, without the
    wheelhouse), plus the Containerfile and the ignore file itself."""
    entries = ["Containerfile", ".containerignore"]
    for line in (REPO / ".containerignore").read_text().splitlines():
        if line.startswith("!") and line[1:].rstrip("/") != "wheelhouse":
            entries.append(line[1:].rstrip("/"))
    return entries


def copy_sources(dest: Path) -> Path:
    dest.mkdir(parents=True)
    for name in context_entries():
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest / name)
    return dest


def dependency_wheels(cache: Path, pythons: tuple[str, ...]) -> Path:
    """Binary wheels of the dependencies and of setuptools for ``pythons`` (cached per machine)."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    requirements = [
        *pyproject["project"]["dependencies"],
        *pyproject["build-system"]["requires"],
    ]
    h = hashlib.sha256(DEPS_CACHE_VERSION.encode())
    h.update(repr((requirements, pythons, PLATFORMS)).encode())
    final = cache / f"wheels-{h.hexdigest()[:16]}"
    if (final / "complete").exists():
        return final
    with images.locked(cache / "wheels.lock"):
        if (final / "complete").exists():
            return final
        work = cache / f"{final.name}.tmp"
        remove_tree(work)
        work.mkdir(parents=True)
        platforms = [a for p in PLATFORMS for a in ("--platform", p)]
        for py in pythons:
            pip(
                "download",
                "--dest",
                work,
                "--only-binary=:all:",
                "--python-version",
                py,
                *platforms,
                *requirements,
            )
        (work / "complete").write_text("")
        remove_tree(final)
        work.rename(final)
    return final


def build_wheelhouse(dest: Path, cache: Path, pythons: tuple[str, ...]) -> Path:
    """A directory of wheels that installs bootc-embed offline on each of ``pythons``."""
    t0 = time.monotonic()
    deps = dependency_wheels(cache, pythons)
    dest.mkdir(parents=True)
    for w in deps.glob("*.whl"):
        shutil.copy2(w, dest / w.name)
    src = copy_sources(dest.parent / f"{dest.name}-src")
    try:
        # offline: the build backend comes from the wheelhouse too
        pip("wheel", "--no-deps", "--no-index", "--find-links", dest, "--wheel-dir", dest, src)
    finally:
        remove_tree(src)
    images.log(f"wheelhouse ready in {time.monotonic() - t0:.0f} s: {dest}")
    return dest


@dataclass
class ToolImage:
    podman: Podman  # the private store holding it
    name: str


def build_tool_image(work: Path, env: dict[str, str], cache: Path, wheelhouse: Path) -> ToolImage:
    t0 = time.monotonic()
    rootfs = images.ensure_rootfs(cache, images.PYTHON_ROOTFS_KEY, images.PYTHON_ROOTFS_PACKAGES)
    pm = Podman(work / "root", env)
    pm("import", "--change", 'CMD ["/bin/bash"]', rootfs, BASE_NAME, timeout=600)
    ctx = copy_sources(work / "context")
    shutil.copytree(wheelhouse, ctx / "wheelhouse")
    pm(
        "build",
        "--network",
        "none",
        "--pull=never",
        "--build-arg",
        f"BASE={BASE_NAME}",
        "--build-arg",
        "PIP_OPTIONS=--no-index --find-links=/src/wheelhouse",
        "--build-arg",
        f"SOURCE_URL={SOURCE_URL}",
        "--tag",
        IMAGE_NAME,
        ctx,
        timeout=1200,
    )
    images.log(f"bootc-embed image built in {time.monotonic() - t0:.0f} s")
    return ToolImage(pm, IMAGE_NAME)
