"""One app layer in, one re-rooted store layer out, in one streaming pass.

The input blob is read once: its digest is verified, it is inflated (diff_id verified), every
header is parsed with Go ``archive/tar`` semantics, and each entry goes straight to the output:
re-rooted under ``<store>/overlay/<layer-id>/diff/``, whiteouts in the chosen form, into the
compressor and the destination's staging area, hashing the tar (output diff_id) and the blob
(output digest) on the way. The raw header bytes and content CRCs become the layer's tar-split.

A directory's header must carry what is known only later (``trusted.overlay.opaque`` when a
whiteout or opaque marker shows up among its children, the metadata of its own entry when that
comes after its children, the last hardlink header's metadata on a file). The pass writes
optimistically; when the layer contradicts something already written, it stops writing, reads
on to learn the rest of the layer (:class:`_Classifier`), and a second streaming pass writes it
with that knowledge. Layers without such surprises are read once, others twice.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal

from . import _compress, _storage
from ._contract import StorePaths, WhiteoutForm
from ._layerpath import (
    OVERLAY_OPAQUE,
    OVERLAY_WHITEOUT,
    WH_META,
    WH_OPAQUE,
    WH_PREFIX,
    clean,
    parents,
)
from ._layertar import LayerTar
from ._model import FOREIGN_MARKERS, Descriptor
from ._progress import Progress
from ._tar import (
    CHAR,
    CONT,
    DIR,
    END_OF_ARCHIVE,
    LINK,
    REG,
    SYMLINK,
    XGLOBAL,
    TarEntry,
    TarFormatError,
    TarReader,
    padding,
    tar_header,
)
from ._tarsplit import TarSplitWriter, crc64
from ._transports import ImageSource
from .errors import (
    BootcEmbedError,
    CompressionError,
    DigestMismatchError,
    ImageFormatError,
    LayerContentError,
)

Whiteouts = Literal["xattr", "chardev", "ostree"]
WHITEOUT_FORMS: tuple[str, ...] = tuple(f.value for f in WhiteoutForm)
_BUF = 1 << 20
_DEVICE_TYPES = {b"3", b"4", b"6"}
_KEEP_TYPES = {REG, CONT, DIR, SYMLINK, LINK}
_INPUT_COMPRESSION = {
    "gzip": _storage.COMPRESSION_GZIP,
    "zstd": _storage.COMPRESSION_ZSTD,
    "none": _storage.COMPRESSION_NONE,
}


@dataclass(frozen=True)
class LayerJob:
    """Everything one layer's transform needs; its output depends on nothing else."""

    source: ImageSource
    image: str  # how errors name the image
    index: int  # 1-based position in the image
    count: int
    descriptor: Descriptor
    diff_id: str  # from the config
    layer_id: str
    ancestors: tuple[str, ...]  # layer ids, nearest first
    store: str
    whiteouts: str
    compression: str
    level: int

    @property
    def what(self) -> str:
        return f"{self.image}: layer {self.index}/{self.count} ({self.descriptor.digest})"


@dataclass
class LayerResult:
    layer_id: str
    digest: str
    size: int
    diff_id: str
    media_type: str
    blob_path: Path | None  # None: the destination already holds the blob
    input_diff_size: int
    input_compression: int
    uids: tuple[int, ...]
    gids: tuple[int, ...]
    whiteouts: int = 0
    whiteouts_dropped: int = 0
    left_out: int = 0
    left_out_paths: list[str] = field(default_factory=list)
    reused_from: str | None = None
    input_read: bool = False  # made from the input, read whole and checked (``observe`` saw it)


def check_layer_descriptor(desc: Descriptor, what: str) -> None:
    mt = desc.media_type
    if desc.urls or any(m in mt for m in FOREIGN_MARKERS):
        raise ImageFormatError(
            f"{what}: foreign/non-distributable layer ({mt}) cannot be embedded: its content is "
            f"not in the image"
        )
    if mt and "tar" not in mt and "layer" not in mt:
        raise ImageFormatError(f"{what}: unsupported layer media type {mt!r}")


def _decode(raw: bytes, what: str, kind: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise LayerContentError(
            f"{what}: {kind} {raw!r} is not valid UTF-8; bootc's importer rejects such names"
        ) from None


def _app_xattrs(e: TarEntry) -> dict[str, bytes]:
    return _app_xattrs_of(e.xattrs)


def _app_xattrs_of(xattrs: dict[str, bytes] | None) -> dict[str, bytes]:
    """The app's own xattrs: overlay's are ours to set."""
    if not xattrs:
        return {}
    return {k: v for k, v in xattrs.items() if not k.startswith("trusted.overlay.")}


class _Classifier:
    """Decides, entry by entry, what reaches ``diff/``, and learns what the layer holds.

    Raises :class:`LayerContentError` for entries that cannot be embedded.
    """

    def __init__(self, what: str) -> None:
        self.what = what
        self.kept: dict[str, bytes] = {}  # path -> typeflag of what reaches diff/
        self.left_out: list[str] = []
        self._left_out: set[str] = set()
        self.opaque: set[str] = set()
        self.whiteout_parents: set[str] = set()
        self.dir_entries: dict[str, TarEntry] = {}
        self.link_meta: dict[str, TarEntry] = {}  # file -> last header naming its inode
        self.link_xattrs: dict[str, dict[str, bytes]] = {}
        self._xattrs: dict[str, dict[str, bytes]] = {}  # of files, for their hardlinks
        self._link_root: dict[str, str] = {}
        self._victims: list[tuple[str, str]] = []  # (parent, deleted path)
        self.uids: set[int] = set()
        self.gids: set[int] = set()
        self.markers = 0

    def classify(self, e: TarEntry) -> tuple[str, str, str]:
        """(action, cleaned path, extra): keep, whiteout, opaque, leftout or skip."""
        what = self.what
        name = _decode(e.name, what, "entry name")
        if e.typeflag == XGLOBAL:
            return ("skip", "", "")
        if not name.rstrip("/").rpartition("/")[2].startswith(WH_PREFIX):
            self.uids.add(e.uid)
            self.gids.add(e.gid)
        path = clean(name)
        if path is None:
            raise LayerContentError(f"{what}: entry {name!r} leaves the layer root")
        if path.startswith(WH_META):
            return ("skip", path, "")  # AUFS metadata, skipped like podman does
        parent, _, base = path.rpartition("/")
        parent = parent or "."
        if base == WH_OPAQUE:
            self.opaque.add(parent)
            self.markers += 1
            return ("opaque", parent, "")
        if base.startswith(WH_PREFIX):
            target = base[len(WH_PREFIX) :]
            if not target or target.startswith(WH_PREFIX):
                raise LayerContentError(
                    f"{what}: entry {name!r}: a whiteout of a '.wh.' name cannot be written "
                    f"without a '.wh.' name in the store (ostree would treat it as a whiteout)"
                )
            self.whiteout_parents.add(parent)
            self._victims.append((parent, target if parent == "." else f"{parent}/{target}"))
            return ("whiteout", parent, target)
        if e.typeflag in _DEVICE_TYPES:
            self._left_out.add(path)
            self.left_out.append(path)
            return ("leftout", path, "")
        if e.typeflag not in _KEEP_TYPES:
            kind = "sparse file" if e.typeflag == b"S" else f"entry of type {e.typeflag!r}"
            raise LayerContentError(
                f"{what}: entry {name!r}: {kind} is not supported (podman cannot apply it)"
            )
        if path in self.kept:
            raise LayerContentError(
                f"{what}: entry {name!r} appears twice in the layer (tar-split and podman "
                f"reject duplicates)"
            )
        for k in e.xattrs:
            _decode(k.encode("utf-8", "surrogateescape"), what, f"xattr name on {name!r}")
        extra = ""
        if e.typeflag == SYMLINK:
            _decode(e.linkname, what, f"symlink target of {name!r}")
        elif e.typeflag == LINK:
            link = _decode(e.linkname, what, f"hardlink target of {name!r}")
            target = clean(link)
            if target is None or target == ".":
                raise LayerContentError(
                    f"{what}: entry {name!r}: hardlink target {link!r} leaves the layer root"
                )
            if target in self._left_out:
                self._left_out.add(path)
                self.left_out.append(path)
                return ("leftout", path, "")
            if self.kept.get(target) in (None, DIR):
                raise LayerContentError(
                    f"{what}: entry {name!r}: hardlink target {link!r} is not an earlier file of "
                    f"the same layer"
                )
            root = self._link_root.get(target, target)
            self._link_root[path] = root
            extra = root
            # podman applies each header naming the inode to it: the last one wins
            self.link_meta[root] = e
            merged = self.link_xattrs.setdefault(root, _app_xattrs_of(self._xattrs.get(root)))
            merged.update(_app_xattrs(e))
        if path == ".":
            return ("skip", ".", "")  # podman ignores the layer's root entry
        if e.typeflag == DIR:
            self.dir_entries[path] = e
        self.kept[path] = e.typeflag
        if e.xattrs and e.typeflag != DIR:
            self._xattrs[path] = e.xattrs
        return ("keep", path, extra)

    def dropped(self, parent: str) -> bool:
        """A whiteout inside a directory the same layer makes opaque hides nothing."""
        return parent in self.opaque

    def finish(self) -> None:
        for parent, victim in self._victims:
            if not self.dropped(parent) and victim in self.kept:
                raise LayerContentError(
                    f"{self.what}: entry {victim!r} is both deleted (whiteout) and created in "
                    f"the layer"
                )
        for d in self.whiteout_parents | self.opaque:
            if d != "." and self.kept.get(d) not in (None, DIR):
                raise LayerContentError(
                    f"{self.what}: whiteout inside {d!r}, which is not a directory"
                )

    @property
    def whiteouts(self) -> int:
        return self.markers + sum(1 for p, _ in self._victims if not self.dropped(p))

    @property
    def whiteouts_dropped(self) -> int:
        return sum(1 for p, _ in self._victims if self.dropped(p))


class _Contradiction(Exception):
    """Raised inside the optimistic pass; turned into :class:`_Restart` once the layer is read."""


class _Restart(Exception):
    """The layer contradicts what the optimistic pass already wrote; ``plan`` has learnt the
    whole layer (the pass went on reading, without writing, after the contradiction)."""

    def __init__(self, plan: _Classifier) -> None:
        super().__init__("layer must be written again")
        self.plan = plan


class _Out:
    """Tar bytes → sha256 (diff_id) → compressor → sha256 (digest) → file.

    The most recent output (up to :attr:`WINDOW` bytes) is held back as pieces that can still
    be replaced (:meth:`replace`): a directory header that must gain an opaque marking, or a
    file header whose metadata a later hardlink header changes, is rewritten in place while
    it is in the window; only older contradictions make the layer be written again. When the
    window is flushed, small pieces are gathered and passed on together: per-call overhead,
    not bytes, is what costs in a layer of many small files.
    """

    WINDOW = 16 << 20
    _GATHER = 1 << 16

    def __init__(self, algorithm: str, level: int, f: BinaryIO) -> None:
        self.tar_hash = hashlib.sha256()
        self.blob_hash = hashlib.sha256()
        self.tar_size = 0
        self.blob_size = 0
        self._f = f
        self._pieces: list[bytes | memoryview] = []
        self._first = 0  # handle of self._pieces[0]
        self._held = 0  # bytes in self._pieces
        self._comp = _compress.CompressingWriter(algorithm, level, self)  # type: ignore[arg-type]

    def write(self, data: bytes | memoryview) -> int:  # the compressor's sink
        self.blob_hash.update(data)
        self.blob_size += len(data)
        self._f.write(data)
        return len(data)

    def emit(self, data: bytes | memoryview) -> int:
        """Append ``data``; returns a handle for :meth:`replace`."""
        self._pieces.append(data)
        self._held += len(data)
        handle = self._first + len(self._pieces) - 1
        if self._held > self.WINDOW:
            self._flush(self._held - self.WINDOW // 2)
        return handle

    def replace(self, handle: int, data: bytes) -> bool:
        """Rewrite a piece still held back; False when it was passed on already."""
        i = handle - self._first
        if i < 0:
            return False
        self._held += len(data) - len(self._pieces[i])
        self._pieces[i] = data
        return True

    def _flush(self, at_least: int) -> None:
        done = 0
        small = bytearray()
        n = 0
        for piece in self._pieces:
            if done >= at_least:
                break
            n += 1
            done += len(piece)
            if len(piece) < 4096:
                small += piece
                if len(small) >= self._GATHER:
                    self._pass(small)
                    small = bytearray()
            else:
                if small:
                    self._pass(small)
                    small = bytearray()
                self._pass(piece)
        if small:
            self._pass(small)
        del self._pieces[:n]
        self._first += n
        self._held -= done

    def _pass(self, data: bytes | bytearray | memoryview) -> None:
        self.tar_hash.update(data)
        self.tar_size += len(data)
        self._comp.write(data)

    def close(self) -> None:
        self._flush(self._held + 1)
        self._comp.close()


class _Input:
    """The input layer as a verified tar stream: blob digest, then diff_id, checked at the end."""

    def __init__(
        self, job: LayerJob, progress: Progress, capture: bool, copy_to: BinaryIO | None = None
    ) -> None:
        self.job = job
        try:
            self._layer = LayerTar(
                job.source,
                job.descriptor,
                job.what,
                copy_to=copy_to,
                advance=progress.advance,
                diff_hash=True,
                crc=crc64 if capture else None,
                capture=capture,
            )
        except CompressionError as e:
            raise CompressionError(f"{job.what}: {e}") from None
        self._raw = self._layer.blob
        self.kind = self._layer.compression
        self.reader = self._layer.reader

    def entries(self) -> Iterator[TarEntry]:
        what = self.job.what
        try:
            yield from self.reader
        except (TarFormatError, CompressionError) as e:
            self._prefer_digest_error()
            if isinstance(e, CompressionError):
                raise CompressionError(f"{what}: {e}") from None
            raise ImageFormatError(f"{what}: not a valid tar stream: {e}") from None

    def _prefer_digest_error(self) -> None:
        """When the blob itself is corrupt, say so rather than how decompression failed."""
        try:
            self._raw.verify()
        except DigestMismatchError:
            raise
        except BootcEmbedError:
            pass

    def verify(self) -> None:
        self._layer.verify()
        actual = self._layer.diff_digest
        if actual != self.job.diff_id:
            raise DigestMismatchError(
                f"{self.job.what}: uncompressed content does not match the config's diff_id: "
                f"expected {self.job.diff_id}, got {actual}"
            )

    def close(self) -> None:
        self._layer.close()


Observer = Callable[[TarEntry, TarReader], None]


def transform_layer(
    job: LayerJob,
    staging: Path,
    tmpdir: str | None = None,
    progress: Progress | None = None,
    observe: Observer | None = None,
    copy_to: BinaryIO | None = None,
) -> LayerResult:
    """Transform one layer; the output blob is left in ``staging``. ``observe``, if given, is
    called with every entry of the input layer as it is read (it may set the reader's ``tap``
    to see the entry's content too), once per entry. ``copy_to``, if given, receives the input
    blob's bytes as they are read (whole and digest-checked once this returns)."""
    progress = progress or Progress()
    check_layer_descriptor(job.descriptor, job.what)
    try:
        return _attempt(job, staging, tmpdir, None, progress, observe, copy_to)
    except _Restart as restart:
        plan = restart.plan
    plan.finish()
    return _attempt(job, staging, tmpdir, plan, progress, None, None)


def _attempt(
    job: LayerJob,
    staging: Path,
    tmpdir: str | None,
    plan: _Classifier | None,
    progress: Progress,
    observe: Observer | None,
    copy_to: BinaryIO | None,
) -> LayerResult:
    fd, name = tempfile.mkstemp(dir=staging, prefix="layer-")
    blob_path = Path(name)
    try:
        with (
            os.fdopen(fd, "wb") as f,
            tempfile.SpooledTemporaryFile(max_size=16 << 20, dir=tmpdir) as tarsplit_file,
        ):
            out = _Out(job.compression, job.level, f)
            progress.start("embedding", job.descriptor.size)
            inp = _Input(job, progress, capture=True, copy_to=copy_to)
            writer = _Writer(job, out, plan)
            try:
                complete = writer.run(inp, tarsplit_file, observe)  # type: ignore[arg-type]
                inp.verify()
            finally:
                inp.close()
            live = writer.live
            if not complete:
                raise _Restart(live)
            live.finish()
            out.close()
    except BaseException:
        blob_path.unlink(missing_ok=True)
        raise
    return LayerResult(
        layer_id=job.layer_id,
        digest="sha256:" + out.blob_hash.hexdigest(),
        size=out.blob_size,
        diff_id="sha256:" + out.tar_hash.hexdigest(),
        media_type=_compress.MEDIA_TYPES[job.compression],
        blob_path=blob_path,
        input_diff_size=inp.reader.total_size,
        input_compression=_INPUT_COMPRESSION[inp.kind],
        uids=_storage.sorted_ids(live.uids),
        gids=_storage.sorted_ids(live.gids),
        whiteouts=live.whiteouts,
        whiteouts_dropped=live.whiteouts_dropped,
        left_out=len(live.left_out),
        left_out_paths=live.left_out,
        input_read=True,
    )


def emit_file(emit: Callable[[bytes], None], name: str, data: bytes) -> None:
    emit(tar_header(name, REG, size=len(data)))
    emit(data)
    emit(padding(len(data)))


def _dir_header(path: str) -> bytes:
    """A directory bootc-embed itself creates: root, 0755, mtime 0."""
    return tar_header(path + "/", DIR, mode=0o755)


class _Writer:
    """Streams one layer into the output, with ``plan`` (the whole layer, known) or without
    (optimistic: on a contradiction, reads on only to learn the layer; see :meth:`run`)."""

    def __init__(self, job: LayerJob, out: _Out, plan: _Classifier | None) -> None:
        self.job = job
        self.out = out
        self.plan = plan
        self.live = _Classifier(job.what)
        self.know = plan or self.live
        self.paths = StorePaths.of(job.store)
        self.diff = self.paths.diff(job.layer_id)
        self.emitted_dirs: dict[str, bytes | None] = {}
        self.emitted_meta: dict[str, tuple[TarEntry, dict[str, bytes]]] = {}
        self.handles: dict[str, int] = {}  # path -> output piece of its header
        self.whiteout_handles: dict[str, list[int]] = {}  # directory -> its whiteouts written
        self.headers: dict[str, tuple[str, bytes, int, str]] = {}  # file -> header arguments

    def _wanted(self, d: str) -> bytes | None:
        """The ``trusted.overlay.opaque`` value directory ``d`` needs."""
        if d in self.know.opaque:
            return b"y"
        if d in self.know.whiteout_parents and self.job.whiteouts == "xattr":
            return b"x"
        return None

    def _emit_dir(self, d: str) -> None:
        self.handles[d] = self.out.emit(self._dir_bytes(d))

    def _dir_bytes(self, d: str) -> bytes:
        """A directory of diff/: its own entry's metadata, or what podman gives a missing one."""
        value = self._wanted(d)
        self.emitted_dirs[d] = value
        overlay = {OVERLAY_OPAQUE: value} if value else {}
        if d == ".":
            # podman ignores a layer's "./" entry: diff/ is 0555 root:root (defaultPerms)
            return tar_header(self.diff + "/", DIR, mode=0o555, xattrs=overlay or None)
        e = self.know.dir_entries.get(d)
        name = f"{self.diff}/{d}/"
        if e is None:
            return tar_header(name, DIR, mode=0o755, xattrs=overlay or None)
        return _entry_header(name, DIR, e, dict(sorted({**_app_xattrs(e), **overlay}.items())))

    def _rewrite_dir(self, d: str) -> None:
        """Rewrite ``d``'s header with what is known now, or give up on this pass."""
        if self.plan is not None or not self.out.replace(self.handles[d], self._dir_bytes(d)):
            raise _Contradiction

    def _ensure_parents(self, path: str) -> None:
        if posixpath.dirname(path) in self.emitted_dirs:
            return
        for p in parents(path):
            if p not in self.emitted_dirs:
                self._emit_dir(p)

    def _marked_dir(self, d: str) -> None:
        """A directory that holds a whiteout or an opaque marker: written now if the layer did
        not need it yet (it may have no other entry), else its marking checked."""
        if d in self.emitted_dirs:
            self._check_dir(d)
        else:
            self._ensure_parents(d)
            self._emit_dir(d)

    def _check_dir(self, d: str) -> None:
        """``d`` was written already: its opaque marking must still be right."""
        if self.emitted_dirs[d] != self._wanted(d):
            self._rewrite_dir(d)
        if d in self.know.opaque:
            # whiteouts written in it before it turned out opaque hide nothing: drop them
            for h in self.whiteout_handles.pop(d, ()):
                if not self.out.replace(h, b""):
                    raise _Contradiction

    def _skeleton(self) -> None:
        """Everything bootc-embed creates for the layer: root, 0755 dirs, 0644 files, mtime 0."""
        emit, job, paths = self.out.emit, self.job, self.paths
        lid = job.layer_id
        for p in [*paths.ancestors(), paths.overlay, paths.layer_dir(lid)]:
            emit(_dir_header(p))
        link = _storage.link_id(lid)
        emit_file(emit, paths.link_file(lid), link.encode())
        if job.ancestors:
            emit_file(emit, paths.lower(lid), _storage.lower_chain(job.ancestors).encode())
        else:
            emit(_dir_header(paths.empty(lid)))
        emit(_dir_header(paths.merged(lid)))
        emit(_dir_header(paths.work(lid)))
        emit(_dir_header(paths.link_dir))
        emit(tar_header(paths.link(link), SYMLINK, mode=0o777, linkname=paths.link_target(lid)))
        self._emit_dir(".")

    def run(self, inp: _Input, tarsplit_file: BinaryIO, observe: Observer | None = None) -> bool:
        """Write the layer; False when it must be written again with ``self.live`` as plan
        (the rest of the layer was then read only to learn it)."""
        ts = TarSplitWriter(tarsplit_file)
        self._skeleton()
        reader = inp.reader
        entries = inp.entries()
        for e in entries:
            if observe is not None:
                observe(e, reader)
            ts.segment(e.raw)
            e.raw = b""  # directories' entries are kept: not their raw bytes
            action, path, extra = self.live.classify(e)
            try:
                if action == "keep":
                    self._keep(e, path, extra, reader)
                elif action == "whiteout":
                    self._whiteout(e, path, extra)
                elif action == "opaque":
                    self._marked_dir(path)
            except _Contradiction:
                reader.skim()
                for rest in entries:
                    if observe is not None:
                        observe(rest, reader)
                    self.live.classify(rest)
                return False
            reader.read_content(None)  # what is not written (devices have none) is skipped
            ts.file(e.name, e.size, e.crc)
        for piece in reader.trailer:
            ts.segment(piece)
        ts.close()
        self._tarsplit(tarsplit_file)
        return True

    def _keep(self, e: TarEntry, path: str, extra: str, reader: TarReader) -> None:
        emit = self.out.emit
        if e.typeflag == DIR:
            if path in self.emitted_dirs:
                if self.plan is None:
                    self._rewrite_dir(path)  # written already as a missing parent
                return
            self._ensure_parents(path)
            self._emit_dir(path)
            return
        self._ensure_parents(path)
        name = f"{self.diff}/{path}"
        if e.typeflag == LINK:
            xattrs = self.live.link_xattrs[extra]
            if self.plan is None and _meta(*self.emitted_meta[extra]) != _meta(e, xattrs):
                # the inode's metadata changes after it was written: rewrite its header
                name0, typeflag, size, linkname = self.headers[extra]
                header = _entry_header(name0, typeflag, e, xattrs, linkname=linkname, size=size)
                if not self.out.replace(self.handles[extra], header):
                    raise _Contradiction
                self.emitted_meta[extra] = (e, xattrs)
            emit(_entry_header(name, LINK, e, _app_xattrs(e), linkname=f"{self.diff}/{extra}"))
            return
        meta, xattrs = e, _app_xattrs(e)
        if self.plan is not None and path in self.plan.link_meta:
            meta, xattrs = self.plan.link_meta[path], self.plan.link_xattrs[path]
        self.emitted_meta[path] = (meta, xattrs)
        if e.typeflag == SYMLINK:
            link = e.linkname.decode()
            self.headers[path] = (name, SYMLINK, 0, link)
            self.handles[path] = emit(_entry_header(name, SYMLINK, meta, xattrs, linkname=link))
            return
        self.headers[path] = (name, REG, e.data_size, "")
        self.handles[path] = emit(_entry_header(name, REG, meta, xattrs, size=e.data_size))
        reader.read_content(emit)  # type: ignore[arg-type]
        emit(padding(e.data_size))

    def _whiteout(self, e: TarEntry, parent: str, target: str) -> None:
        if self.know.dropped(parent):
            return
        self._marked_dir(parent)
        form = self.job.whiteouts
        rel = target if parent == "." else f"{parent}/{target}"
        if form == "chardev":
            # what podman writes itself: a 0:0 character device, mode 0, the whiteout's owner
            header = tar_header(
                f"{self.diff}/{rel}", CHAR, mode=0, uid=e.uid, gid=e.gid, mtime=_mtime(e)
            )
        elif form == "ostree":
            ost = f".ostree-wh.{target}" if parent == "." else f"{parent}/.ostree-wh.{target}"
            header = tar_header(f"{self.diff}/{ost}", REG, uid=e.uid, gid=e.gid, mtime=_mtime(e))
        else:
            header = tar_header(
                f"{self.diff}/{rel}",
                REG,
                uid=e.uid,
                gid=e.gid,
                mtime=_mtime(e),
                xattrs={OVERLAY_WHITEOUT: b"y"},
            )
        self.whiteout_handles.setdefault(parent, []).append(self.out.emit(header))

    def _tarsplit(self, tarsplit_file: BinaryIO) -> None:
        emit = self.out.emit
        emit(_dir_header(self.paths.overlay_layers))
        size = tarsplit_file.tell()
        tarsplit_file.seek(0)
        emit(tar_header(self.paths.tar_split(self.job.layer_id), REG, size=size))
        while chunk := tarsplit_file.read(_BUF):
            emit(chunk)
        emit(padding(size))
        emit(END_OF_ARCHIVE)


# podman bounds times to [epoch, 1<<63-1 ns] when it applies a layer (pkg/archive boundTime)
_MAX_MTIME = (1 << 63) // 10**9


def _mtime(e: TarEntry) -> int:
    return min(max(e.mtime, 0), _MAX_MTIME)


def _pax_mtime(e: TarEntry) -> str | None:
    """Sub-second mtimes are kept, except where podman would bound the time."""
    return e.pax_mtime if 0 <= e.mtime < _MAX_MTIME else None


def _meta(e: TarEntry, xattrs: dict[str, bytes]) -> tuple[object, ...]:
    return (e.mode & 0o7777, e.uid, e.gid, e.mtime, e.pax_mtime, sorted(xattrs.items()))


def _entry_header(
    name: str,
    typeflag: bytes,
    e: TarEntry,
    xattrs: dict[str, bytes],
    *,
    linkname: str = "",
    size: int = 0,
) -> bytes:
    return tar_header(
        name,
        typeflag,
        mode=e.mode & 0o7777,
        uid=e.uid,
        gid=e.gid,
        size=size,
        mtime=_mtime(e),
        linkname=linkname,
        xattrs=xattrs or None,
        pax_mtime=_pax_mtime(e),
    )
