"""File-tree snapshots of a mounted image, and readable differences between two of them."""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

# xattrs that describe the store, not the image: overlayfs hides its own, SELinux labels the host.
IGNORED_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.", "security.selinux")

SPECIAL_TYPES = ("chr", "blk", "fifo", "sock")


@dataclass(frozen=True)
class Entry:
    type: str  # dir file symlink chr blk fifo sock
    mode: int  # permission bits incl. setuid/setgid/sticky
    uid: int
    gid: int
    size: int | None  # non-directories
    mtime_ns: int | None  # non-directories
    target: str | None  # symlinks
    sha256: str | None  # regular files
    rdev: tuple[int, int] | None  # devices
    xattrs: tuple[tuple[str, bytes], ...]
    links: str | None  # hardlinked regular files: the first path (sorted) of the inode's group

    def describe(self) -> str:
        parts = [self.type, f"mode={self.mode:04o}", f"uid={self.uid}", f"gid={self.gid}"]
        if self.size is not None:
            parts.append(f"size={self.size}")
        if self.mtime_ns is not None:
            parts.append(f"mtime_ns={self.mtime_ns}")
        if self.target is not None:
            parts.append(f"target={self.target!r}")
        if self.sha256 is not None:
            parts.append(f"sha256={self.sha256[:16]}")
        if self.rdev is not None:
            parts.append(f"rdev={self.rdev[0]}:{self.rdev[1]}")
        if self.xattrs:
            parts.append("xattrs=" + ",".join(f"{k}={v!r}" for k, v in self.xattrs))
        if self.links is not None:
            parts.append(f"hardlinked-with={self.links!r}")
        return " ".join(parts)


def _type(st: os.stat_result) -> str:
    m = st.st_mode
    if stat.S_ISDIR(m):
        return "dir"
    if stat.S_ISREG(m):
        return "file"
    if stat.S_ISLNK(m):
        return "symlink"
    if stat.S_ISCHR(m):
        return "chr"
    if stat.S_ISBLK(m):
        return "blk"
    if stat.S_ISFIFO(m):
        return "fifo"
    if stat.S_ISSOCK(m):
        return "sock"
    return "unknown"


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _xattrs(path: str) -> tuple[tuple[str, bytes], ...]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return ()
    out = []
    for n in sorted(names):
        if n.startswith(IGNORED_XATTR_PREFIXES):
            continue
        try:
            out.append((n, os.getxattr(path, n, follow_symlinks=False)))
        except OSError:
            continue
    return tuple(out)


class Tree(dict):
    """path → Entry; ``phantoms``: names readdir listed but lstat could not find.

    (overlayfs shows a 0:0 whiteout that podman writes inside a directory the same layer made
    opaque as such a name: listed, yet ENOENT.)
    """

    phantoms: list[str]


def snapshot(root: Path) -> Tree:
    """Every entry below ``root`` (``.`` is the root itself), never following symlinks.

    Paths are relative and may contain any byte (decoded with surrogateescape).
    """
    root_s = os.fspath(root)
    raw: dict[str, tuple[os.stat_result, str]] = {}
    phantoms: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root_s):
        dirnames.sort()
        for name in ["", *sorted(dirnames), *sorted(filenames)]:
            if name == "" and dirpath != root_s:
                continue
            full = os.path.join(dirpath, name) if name else dirpath
            rel = os.path.relpath(full, root_s)
            try:
                raw[rel] = (os.lstat(full), full)
            except FileNotFoundError:
                phantoms.append(rel)

    groups: dict[tuple[int, int], list[str]] = {}
    for rel, (st, _full) in raw.items():
        if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
            groups.setdefault((st.st_dev, st.st_ino), []).append(rel)
    leader: dict[str, str] = {}
    for paths in groups.values():
        if len(paths) > 1:
            first = min(paths)
            for p in paths:
                leader[p] = first

    out = Tree()
    out.phantoms = phantoms
    for rel, (st, full) in raw.items():
        t = _type(st)
        out[rel] = Entry(
            type=t,
            mode=stat.S_IMODE(st.st_mode),
            uid=st.st_uid,
            gid=st.st_gid,
            size=None if t == "dir" else st.st_size,
            mtime_ns=None if t == "dir" else st.st_mtime_ns,
            target=os.readlink(full) if t == "symlink" else None,
            sha256=_sha256(full) if t == "file" else None,
            rdev=(os.major(st.st_rdev), os.minor(st.st_rdev)) if t in ("chr", "blk") else None,
            xattrs=_xattrs(full),
            links=leader.get(rel),
        )
    return out


def without_special_files(tree: dict[str, Entry]) -> tuple[dict[str, Entry], list[str]]:
    """The tree without device nodes, fifos and sockets (which the store leaves out)."""
    kept = {p: e for p, e in tree.items() if e.type not in SPECIAL_TYPES}
    dropped = sorted(p for p, e in tree.items() if e.type in SPECIAL_TYPES)
    # a hardlink group whose other members were devices cannot exist (only regular files are
    # grouped), so nothing else to fix up
    return kept, dropped


def differences(expected: dict[str, Entry], actual: dict[str, Entry]) -> list[str]:
    lines = []
    for p in sorted(set(expected) | set(actual)):
        e, a = expected.get(p), actual.get(p)
        if e == a:
            continue
        if a is None:
            lines.append(f"missing   {p!r}: expected {e.describe()}")  # type: ignore[union-attr]
        elif e is None:
            lines.append(f"unexpected {p!r}: {a.describe()}")
        else:
            fields = [
                f"{f}: expected {getattr(e, f)!r}, got {getattr(a, f)!r}"
                for f in Entry.__dataclass_fields__
                if getattr(e, f) != getattr(a, f)
            ]
            lines.append(f"differs   {p!r}: " + "; ".join(fields))
    return lines


def format_differences(lines: list[str], limit: int = 40) -> str:
    shown = lines[:limit]
    more = f"\n  ... and {len(lines) - limit} more" if len(lines) > limit else ""
    return f"{len(lines)} differing paths (first {len(shown)}):\n  " + "\n  ".join(shown) + more
