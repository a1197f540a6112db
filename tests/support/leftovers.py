"""What a build left behind: files under given roots, and a registry's tags, blobs and uploads.

A fault test lists the roots before the build and after it, and asserts on the difference;
:func:`temporaries` names what looks like a build's temporary work wherever it is.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

# Names of bootc-embed's temporary work: the layout/archive work directory beside the output
# (.NAME.bootc-embed-*), the staging directory inside an existing layout, the push and
# containers-storage work under $TMPDIR, a new index.json, a cache entry being written.
TEMPORARY = re.compile(
    r"^(\.[^/]*\.bootc-embed-.*|\.bootc-embed-staging-.*|bootc-embed-(push|storage)-.*"
    r"|\.index\.json\.bootc-embed-.*|\.new-.*)$"
)


def listing(roots: Iterable[Path]) -> set[str]:
    """Every path (directories too) under the roots, symlinks not followed."""
    out: set[str] = set()
    for root in roots:
        root = Path(root)
        if not root.exists():
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            for name in (*dirnames, *filenames):
                out.add(os.path.join(dirpath, name))
    return out


def new_paths(before: set[str], after: set[str], allowed: Iterable[str] = ()) -> list[str]:
    """The paths added since ``before``, only the topmost of each new tree, minus those
    matching one of the ``allowed`` regexes (searched in the path)."""
    pats = [re.compile(p) for p in allowed]
    added = sorted(after - before)
    top: list[str] = []
    for p in added:
        if top and p.startswith(top[-1] + "/"):
            continue
        top.append(p)
    return [p for p in top if not any(r.search(p) for r in pats)]


def temporaries(roots: Iterable[Path]) -> list[str]:
    """Paths under the roots whose names are bootc-embed's temporary work."""
    return sorted(p for p in listing(roots) if TEMPORARY.match(os.path.basename(p)))


# --------------------------------------------------------------------------------------------
# an OCI layout left by a build: complete, or not there


def layout_problems(layout: Path) -> list[str]:
    """Why ``layout`` is not a complete OCI layout (every manifest, config and layer of every
    tagged image present and matching its digest); empty when it is."""
    problems: list[str] = []
    index_path = layout / "index.json"
    try:
        index = json.loads(index_path.read_bytes())
    except (OSError, ValueError) as e:
        return [f"index.json unreadable: {e}"]

    def blob(digest: str) -> bytes | None:
        p = layout / "blobs" / "sha256" / digest.removeprefix("sha256:")
        if p.is_symlink() or not p.is_file():
            problems.append(f"blob {digest} missing or not a regular file")
            return None
        data = p.read_bytes()
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            problems.append(f"blob {digest} does not match its digest")
            return None
        return data

    for entry in index.get("manifests", []):
        raw = blob(entry["digest"])
        if raw is None:
            continue
        manifest = json.loads(raw)
        for desc in [manifest["config"], *manifest.get("layers", [])]:
            blob(desc["digest"])
    return problems


def tags(layout: Path) -> dict[str, str]:
    """tag → manifest digest of an OCI layout (empty when there is no index.json)."""
    try:
        index = json.loads((layout / "index.json").read_bytes())
    except OSError:
        return {}
    return {
        m.get("annotations", {}).get("org.opencontainers.image.ref.name", ""): m["digest"]
        for m in index.get("manifests", [])
    }


# --------------------------------------------------------------------------------------------
# a registry (docker-registry's filesystem storage)


@dataclass
class RegistryState:
    tags: dict[str, set[str]] = field(default_factory=dict)  # repository → tags
    blobs: set[str] = field(default_factory=set)  # digests stored
    uploads: list[str] = field(default_factory=list)  # upload sessions still open (repo/uuid)


def registry_state(data: Path) -> RegistryState:
    """What a docker-registry whose storage root is ``data`` holds."""
    root = Path(data) / "docker/registry/v2"
    state = RegistryState()
    blobs = root / "blobs/sha256"
    if blobs.is_dir():
        for d in blobs.glob("*/*"):
            if (d / "data").is_file():
                state.blobs.add("sha256:" + d.name)
    repos = root / "repositories"
    if repos.is_dir():
        for manifests in repos.rglob("_manifests"):
            repo = str(manifests.parent.relative_to(repos))
            tag_dir = manifests / "tags"
            state.tags[repo] = {t.name for t in tag_dir.iterdir()} if tag_dir.is_dir() else set()
        for uploads in repos.rglob("_uploads"):
            repo = str(uploads.parent.relative_to(repos))
            state.uploads += [f"{repo}/{u.name}" for u in uploads.iterdir()]
    return state
