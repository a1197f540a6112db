"""OCI layer path semantics: whiteout names, overlay's whiteout xattrs, name cleaning.

One definition for every reader of layers: the transform (what reaches ``diff/``), the base
scan (what the base holds) and verify (the host's merged view).
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator

#: An entry named ``.wh.NAME`` deletes NAME of the layers below (OCI image spec).
WH_PREFIX = ".wh."
#: ``.wh..wh..opq`` in a directory hides what the layers below have in it.
WH_OPAQUE = ".wh..wh..opq"
#: Paths starting so (``.wh..wh.plnk``, ``.wh..wh.aufs`` at the layer root) are AUFS metadata,
#: skipped as podman skips them.
WH_META = ".wh..wh."
#: overlayfs (Linux 6.7+): a file with this xattr is a whiteout.
OVERLAY_WHITEOUT = "trusted.overlay.whiteout"
#: overlayfs: ``y`` on an opaque directory, ``x`` on one that holds xattr whiteouts.
OVERLAY_OPAQUE = "trusted.overlay.opaque"


def clean(name: str) -> str | None:
    """The path an entry names, as podman (and ostree) clean it: no leading ``/`` or ``./``,
    ``.`` and ``..`` resolved, no trailing ``/``; ``.`` for the root. None when the path
    leaves the layer root."""
    if not name.startswith((".", "/")) and "/." not in name and "//" not in name:
        return name.rstrip("/") or "."  # already clean: the usual case
    while name.startswith("./"):
        name = name[2:]
    p = posixpath.normpath(name.lstrip("/")) if name else "."
    if p == ".." or p.startswith("../"):
        return None
    return "." if p in ("", ".") else p


def rooted(name: str) -> str:
    """The path an entry names when ``..`` cannot leave the root (it stays at ``/``, as
    extracting under a root does); ``""`` for the root itself."""
    return posixpath.normpath("/" + name).lstrip("/")


def parents(path: str) -> Iterator[str]:
    """The directories above ``path``, top-down (``a``, ``a/b`` for ``a/b/c``)."""
    parts = path.split("/")
    for i in range(1, len(parts)):
        yield "/".join(parts[:i])
