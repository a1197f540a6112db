"""The local layer cache: transformed layers on this machine, found by their reuse key.

A cache entry is a finished output blob with the store facts about its input (``meta.json``),
keyed by :class:`~._contract.ReuseKey`, the compression and level, and the identity of the code
that makes a layer's bytes (so an entry made by other code is never used).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from ._contract import ReuseKey
from ._reuse import Reusable

# What decides a layer's bytes (besides the compressors): a change in any of them changes the
# cache's keys.
_CODE_FILES = (
    "_compress.py",
    "_contract.py",
    "_layerpath.py",
    "_storage.py",
    "_tar.py",
    "_tarsplit.py",
    "_transform.py",
)


def _code_identity() -> str:
    """The compressors' versions and the code that decides a layer's bytes: a cache entry
    made by other code is never used, even when the format version was not bumped."""
    import isal
    import zstandard

    h = hashlib.sha256(f"isal {isal.__version__} zstandard {zstandard.__version__}".encode())
    here = Path(__file__).parent
    for name in _CODE_FILES:
        h.update((here / name).read_bytes())
    return h.hexdigest()


_CODE_IDENTITY = _code_identity()


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "bootc-embed"


def parse_size(text: str) -> int:
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = t[-1:] if t[-1:] in units else ""
    number = t[: len(t) - len(unit)] if unit else t
    try:
        value = float(number)
    except ValueError:
        raise ValueError(f"not a size: {text!r} (e.g. 10G, 500M)") from None
    if value < 0:
        raise ValueError(f"not a size: {text!r}")
    return int(value * units[unit])


class LayerCache:
    """Transformed layers on this machine, keyed like :class:`ReuseKey` plus the compression.

    Entries are directories written elsewhere and renamed into place (atomic); a lock file
    serialises insertion and eviction (least recently used first, by entry mtime). A corrupt
    entry is detected by digest when it is copied out, dropped, and rebuilt by the caller.
    """

    VERSION = "v1"

    def __init__(self, directory: Path, max_size: int) -> None:
        self.root = directory / self.VERSION
        self.max_size = max_size
        (self.root / "layers").mkdir(parents=True, exist_ok=True)

    @staticmethod
    def entry_id(key: ReuseKey, compression: str, level: int) -> str:
        ident = {
            "key": [key.layer_id, key.source_diff_id, key.store, key.whiteouts, key.format],
            "compression": compression,
            "level": level,
            "code": _CODE_IDENTITY,
        }
        return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()

    def _dir(self, entry: str) -> Path:
        return self.root / "layers" / entry

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.root / "lock", "a+b") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def get(self, key: ReuseKey, compression: str, level: int) -> Reusable | None:
        d = self._dir(self.entry_id(key, compression, level))
        try:
            meta = json.loads((d / "meta.json").read_bytes())
            os.utime(d)  # least recently used: the entry's mtime
            blob = d / "blob"

            def opener() -> BinaryIO:
                return open(blob, "rb")

            return Reusable(
                media_type=str(meta["media_type"]),
                digest=str(meta["digest"]),
                size=int(meta["size"]),
                diff_id=str(meta["diff_id"]),
                uids=tuple(meta["uids"]),
                gids=tuple(meta["gids"]),
                input_diff_size=int(meta["input_diff_size"]),
                input_compression=meta.get("input_compression"),
                input_digest=meta.get("input_digest"),
                whiteouts=int(meta.get("whiteouts", 0)),
                left_out=int(meta.get("left_out", 0)),
                left_out_paths=tuple(meta.get("left_out_paths", ())),
                open=opener,
                origin=f"cache entry {d}",
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def drop(self, key: ReuseKey, compression: str, level: int) -> None:
        with self._locked():
            shutil.rmtree(self._dir(self.entry_id(key, compression, level)), ignore_errors=True)

    def put(
        self, key: ReuseKey, compression: str, level: int, blob: Path, meta: dict[str, Any]
    ) -> None:
        """Add a finished blob (copied; ``blob`` stays where it is)."""
        target = self._dir(self.entry_id(key, compression, level))
        if target.exists():
            return
        tmp = Path(tempfile.mkdtemp(prefix=".new-", dir=self.root))
        try:
            try:
                os.link(blob, tmp / "blob")
            except OSError:
                shutil.copyfile(blob, tmp / "blob")
            (tmp / "meta.json").write_bytes(json.dumps(meta, sort_keys=True).encode())
            with self._locked():
                try:
                    os.rename(tmp, target)
                except OSError:
                    return  # another build put it there first
                self._evict()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _evict(self) -> None:
        entries = []
        total = 0
        for d in (self.root / "layers").iterdir():
            try:
                st = d.stat()
                size = (d / "blob").stat().st_size
            except OSError:
                continue
            entries.append((st.st_mtime_ns, size, d))
            total += size
        for _, size, d in sorted(entries):
            if total <= self.max_size:
                break
            shutil.rmtree(d, ignore_errors=True)
            total -= size
