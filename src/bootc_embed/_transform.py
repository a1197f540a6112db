"""One app layer in, one re-rooted store layer out.

Pass 1 reads the input blob once: it verifies the blob digest, inflates, verifies the diff_id,
parses every header (Go ``archive/tar`` semantics), computes each file's CRC-64 for tar-split,
and spools the inflated tar to a temporary file. What it learns (which directories hold
whiteouts or are opaque, which parents are missing, where hardlinks point) decides the output.

Pass 2 reads the spool once, in order: it writes the tar-split records (raw segments verbatim)
and the re-rooted entries into the compressor, hashing both the tar (output diff_id) and the
compressed blob (output digest) as they stream to the destination's staging area.
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
from ._model import FOREIGN_MARKERS, Descriptor
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
from ._transports import ImageSource, open_blob
from .errors import (
    BootcEmbedError,
    CompressionError,
    DigestMismatchError,
    ImageFormatError,
    LayerContentError,
)

Whiteouts = Literal["xattr", "chardev", "ostree"]
WHITEOUT_FORMS: tuple[str, ...] = ("xattr", "chardev", "ostree")
FORMAT_VERSION = "1"

WH_PREFIX = ".wh."
WH_OPAQUE = ".wh..wh..opq"
WH_META = ".wh..wh."
OVERLAY_WHITEOUT = "trusted.overlay.whiteout"
OVERLAY_OPAQUE = "trusted.overlay.opaque"
_BUF = 1 << 20
_DEVICE_TYPES = {b"3", b"4", b"6"}
_KEEP_TYPES = {REG, CONT, DIR, SYMLINK, LINK}
_INPUT_COMPRESSION = {
    "gzip": _storage.COMPRESSION_GZIP,
    "zstd": _storage.COMPRESSION_ZSTD,
    "none": _storage.COMPRESSION_NONE,
}


class Progress:
    """Progress of one layer; the default does nothing."""

    def start(self, phase: str, total: int) -> None:
        pass

    def advance(self, n: int) -> None:
        pass


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
    blob_path: Path
    input_diff_size: int
    input_compression: int
    uids: tuple[int, ...]
    gids: tuple[int, ...]
    whiteouts: int = 0
    whiteouts_dropped: int = 0
    left_out: int = 0
    left_out_paths: list[str] = field(default_factory=list)


def check_layer_descriptor(desc: Descriptor, what: str) -> None:
    mt = desc.media_type
    if desc.urls or any(m in mt for m in FOREIGN_MARKERS):
        raise ImageFormatError(
            f"{what}: foreign/non-distributable layer ({mt}) cannot be embedded: its content is "
            f"not in the image"
        )
    if mt and "tar" not in mt and "layer" not in mt:
        raise ImageFormatError(f"{what}: unsupported layer media type {mt!r}")


class _Prefixed:
    """``head`` followed by the rest of ``raw``."""

    def __init__(self, head: bytes, raw: BinaryIO) -> None:
        self._head = head
        self._raw = raw

    def read(self, n: int = -1) -> bytes:
        if self._head:
            if n is None or n < 0:
                data, self._head = self._head + self._raw.read(), b""
                return data
            data, self._head = self._head[:n], self._head[n:]
            return data
        return self._raw.read(n)

    def readinto(self, buf: bytearray | memoryview) -> int:
        data = self.read(len(buf))
        buf[: len(data)] = data
        return len(data)

    def readable(self) -> bool:
        return True


def _clean(name: str) -> str | None:
    """podman's name cleaning; None when the path leaves the layer root."""
    while name.startswith("./"):
        name = name[2:]
    p = posixpath.normpath(name.lstrip("/")) if name else "."
    if p == ".." or p.startswith("../"):
        return None
    return "." if p in ("", ".") else p


def _decode(raw: bytes, what: str, kind: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise LayerContentError(
            f"{what}: {kind} {raw!r} is not valid UTF-8; bootc's importer rejects such names"
        ) from None


@dataclass
class _Plan:
    """What pass 1 learned about a layer."""

    actions: list[tuple[str, str, str]]  # per entry: (action, cleaned path, extra)
    dir_entries: dict[str, TarEntry]
    opaque: set[str]
    has_whiteouts: set[str]
    uids: set[int]
    gids: set[int]
    whiteouts: int = 0
    dropped: int = 0
    left_out: list[str] = field(default_factory=list)
    link_meta: dict[str, TarEntry] = field(default_factory=dict)
    link_xattrs: dict[str, dict[str, bytes]] = field(default_factory=dict)
    whiteouts_form: str = "xattr"


def _analyse(entries: list[TarEntry], whiteouts: str, what: str) -> _Plan:
    plan = _Plan([], {}, set(), set(), set(), set())
    kept: dict[str, bytes] = {}  # path -> typeflag, for entries that reach diff/
    left_out: set[str] = set()
    wh_targets: list[tuple[str, str, int]] = []
    first_index: dict[str, int] = {}
    link_of: dict[str, str] = {}
    for i, e in enumerate(entries):
        name = _decode(e.name, what, "entry name")
        where = f"{what}: entry {name!r}"
        if e.typeflag == XGLOBAL:
            plan.actions.append(("skip", "", ""))
            continue
        base = posixpath.basename(name.rstrip("/"))
        if not base.startswith(WH_PREFIX):
            plan.uids.add(e.uid)
            plan.gids.add(e.gid)
        path = _clean(name)
        if path is None:
            raise LayerContentError(f"{where} leaves the layer root")
        if path == WH_META.rstrip(".") or path.startswith(WH_META):
            plan.actions.append(("skip", path, ""))  # AUFS metadata, skipped like podman
            continue
        base = posixpath.basename(path)
        parent = posixpath.dirname(path) or "."
        if base == WH_OPAQUE:
            plan.opaque.add(parent)
            plan.whiteouts += 1
            plan.actions.append(("skip", path, ""))
            continue
        if base.startswith(WH_PREFIX):
            target = base[len(WH_PREFIX) :]
            if target.startswith(WH_PREFIX) or not target:
                raise LayerContentError(
                    f"{where}: a whiteout of a '.wh.' name cannot be written without a '.wh.' "
                    f"name in the store (ostree would treat it as a whiteout)"
                )
            plan.actions.append(("whiteout", path, target))
            wh_targets.append((parent, target, i))
            continue
        if e.typeflag in _DEVICE_TYPES:
            left_out.add(path)
            plan.left_out.append(path)
            plan.actions.append(("leftout", path, ""))
            continue
        if e.typeflag not in _KEEP_TYPES:
            kind = "sparse file" if e.typeflag == b"S" else f"entry of type {e.typeflag!r}"
            raise LayerContentError(f"{where}: {kind} is not supported (podman cannot apply it)")
        if path in kept:
            raise LayerContentError(
                f"{where} appears twice in the layer (tar-split and podman reject duplicates)"
            )
        if e.typeflag == SYMLINK:
            _decode(e.linkname, what, f"symlink target of {name!r}")
        extra = ""
        if e.typeflag == LINK:
            link = _decode(e.linkname, what, f"hardlink target of {name!r}")
            target = _clean(link)
            if target is None or target == ".":
                raise LayerContentError(f"{where}: hardlink target {link!r} leaves the layer root")
            if target in left_out:
                left_out.add(path)
                plan.left_out.append(path)
                plan.actions.append(("leftout", path, ""))
                continue
            if kept.get(target) in (None, DIR):
                raise LayerContentError(
                    f"{where}: hardlink target {link!r} is not an earlier file of the same layer"
                )
            root = link_of.get(target, target)
            link_of[path] = root
            extra = root
            # the inode takes the metadata of the last header naming it (as podman applies them)
            plan.link_meta[root] = e
            plan.link_xattrs.setdefault(root, _app_xattrs(entries[first_index[root]])).update(
                _app_xattrs(e)
            )
        for k in e.xattrs:
            _decode(k.encode("utf-8", "surrogateescape"), what, f"xattr name on {name!r}")
        if e.typeflag == DIR or path == ".":
            plan.dir_entries[path] = e
        kept[path] = DIR if path == "." else e.typeflag
        first_index.setdefault(path, i)
        plan.actions.append(("keep", path, extra))
    for parent, target, i in wh_targets:
        if parent in plan.opaque:
            plan.dropped += 1
            plan.actions[i] = ("skip", plan.actions[i][1], "")
            continue
        victim = target if parent == "." else f"{parent}/{target}"
        if victim in kept:
            raise LayerContentError(
                f"{what}: entry {victim!r} is both deleted (whiteout) and created in the layer"
            )
        plan.has_whiteouts.add(parent)
        plan.whiteouts += 1
    for d in plan.has_whiteouts | plan.opaque:
        if d != "." and kept.get(d) not in (None, DIR):
            raise LayerContentError(f"{what}: whiteout inside {d!r}, which is not a directory")
    plan.whiteouts_form = whiteouts
    return plan


class _Out:
    """Tar bytes → sha256 (diff_id) → compressor → sha256 (digest) → file."""

    def __init__(self, algorithm: str, level: int, f: BinaryIO) -> None:
        self.tar_hash = hashlib.sha256()
        self.blob_hash = hashlib.sha256()
        self.tar_size = 0
        self.blob_size = 0
        self._f = f
        self._comp = _compress.CompressingWriter(algorithm, level, self)  # type: ignore[arg-type]

    def write(self, data: bytes | memoryview) -> int:  # the compressor's sink
        self.blob_hash.update(data)
        self.blob_size += len(data)
        self._f.write(data)
        return len(data)

    def emit(self, data: bytes | memoryview) -> None:
        self.tar_hash.update(data)
        self.tar_size += len(data)
        self._comp.write(data)

    def close(self) -> None:
        self._comp.close()


def _overlay_xattrs(plan: _Plan, d: str) -> dict[str, bytes]:
    if d in plan.opaque:
        return {OVERLAY_OPAQUE: b"y"}
    if d in plan.has_whiteouts and plan.whiteouts_form == "xattr":
        return {OVERLAY_OPAQUE: b"x"}
    return {}


def _app_xattrs(e: TarEntry) -> dict[str, bytes]:
    return {k: v for k, v in e.xattrs.items() if not k.startswith("trusted.overlay.")}


def _store_prefix(store: str) -> str:
    return store.strip("/")


def _parents(path: str) -> Iterator[str]:
    parts = path.split("/")
    for i in range(1, len(parts)):
        yield "/".join(parts[:i])


def _read_exact(f: BinaryIO, n: int, what: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise BootcEmbedError(f"{what}: temporary spool file is short")
    return data


def transform_layer(
    job: LayerJob, staging: Path, tmpdir: str | None = None, progress: Progress | None = None
) -> LayerResult:
    """Run both passes for one layer; the output blob is left in ``staging``."""
    progress = progress or Progress()
    what = job.what
    check_layer_descriptor(job.descriptor, what)
    with (
        tempfile.TemporaryFile(dir=tmpdir, prefix="bootc-embed-spool-") as spool,
        tempfile.SpooledTemporaryFile(max_size=16 << 20, dir=tmpdir) as tarsplit_file,
    ):
        entries, reader, kind = _pass1(job, spool, progress)
        plan = _analyse(entries, job.whiteouts, what)
        fd, name = tempfile.mkstemp(dir=staging, prefix="layer-")
        blob_path = Path(name)
        try:
            with os.fdopen(fd, "wb") as f:
                out = _Out(job.compression, job.level, f)
                _pass2(job, spool, tarsplit_file, entries, reader, plan, out, progress)
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
        input_diff_size=reader.total_size,
        input_compression=_INPUT_COMPRESSION[kind],
        uids=_storage.sorted_ids(plan.uids),
        gids=_storage.sorted_ids(plan.gids),
        whiteouts=plan.whiteouts,
        whiteouts_dropped=plan.dropped,
        left_out=len(plan.left_out),
        left_out_paths=plan.left_out,
    )


def _pass1(
    job: LayerJob, spool: BinaryIO, progress: Progress
) -> tuple[list[TarEntry], TarReader, str]:
    what = job.what
    progress.start("reading", job.descriptor.size)
    raw = open_blob(job.source, job.descriptor, what)
    try:
        counted = _Counting(raw, progress.advance)
        head = counted.read(4)
        kind = _compress.detect(head)
        stream = _compress.open_decompressed(_Prefixed(head, counted), kind)  # type: ignore[arg-type]
        diff_hash = hashlib.sha256()

        def on_chunk(data: bytes) -> None:
            diff_hash.update(data)
            spool.write(data)

        reader = TarReader(stream, on_chunk, crc=crc64)
        try:
            entries = list(reader)
        except (TarFormatError, CompressionError) as e:
            _prefer_digest_error(raw)
            if isinstance(e, CompressionError):
                raise CompressionError(f"{what}: {e}") from None
            raise ImageFormatError(f"{what}: not a valid tar stream: {e}") from None
        raw.verify()
    finally:
        raw.close()
    actual = "sha256:" + diff_hash.hexdigest()
    if actual != job.diff_id:
        raise DigestMismatchError(
            f"{what}: uncompressed content does not match the config's diff_id: expected "
            f"{job.diff_id}, got {actual}"
        )
    return entries, reader, kind


def _prefer_digest_error(raw: object) -> None:
    """When the blob itself is corrupt, say so rather than how decompression failed."""
    try:
        raw.verify()  # type: ignore[attr-defined]
    except DigestMismatchError:
        raise
    except BootcEmbedError:
        pass


class _Counting:
    def __init__(self, raw: BinaryIO, advance: Callable[[int], None]) -> None:
        self._raw = raw
        self._advance = advance

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        if data:
            self._advance(len(data))
        return data

    def readinto(self, buf: bytearray | memoryview) -> int:
        data = self.read(len(buf))
        buf[: len(data)] = data
        return len(data)

    def readable(self) -> bool:
        return True


def _pass2(
    job: LayerJob,
    spool: BinaryIO,
    tarsplit_file: BinaryIO,
    entries: list[TarEntry],
    reader: TarReader,
    plan: _Plan,
    out: _Out,
    progress: Progress,
) -> None:
    what = job.what
    store = _store_prefix(job.store)
    layer_dir = f"{store}/overlay/{job.layer_id}"
    diff = f"{layer_dir}/diff"
    emit = out.emit
    progress.start("writing", reader.total_size)

    def dir_header(path: str, **kw: object) -> bytes:
        return tar_header(path + "/", DIR, mode=0o755, **kw)  # type: ignore[arg-type]

    # The store's skeleton for this layer: everything bootc-embed creates is root 0755/0644.
    for p in [*_parents(store + "/x"), f"{store}/overlay", layer_dir]:
        emit(dir_header(p))
    link = _storage.link_id(job.layer_id)
    emit_file(emit, f"{layer_dir}/link", link.encode())
    if job.ancestors:
        emit_file(emit, f"{layer_dir}/lower", _storage.lower_chain(job.ancestors).encode())
    else:
        emit(dir_header(f"{layer_dir}/empty"))
    emit(dir_header(f"{layer_dir}/merged"))
    emit(dir_header(f"{layer_dir}/work"))
    emit(dir_header(f"{store}/overlay/l"))
    emit(
        tar_header(
            f"{store}/overlay/l/{link}", SYMLINK, mode=0o777, linkname=f"../{job.layer_id}/diff"
        )
    )

    emitted_dirs: set[str] = {"."}
    # podman ignores a layer's "./" entry: diff/ is always 0555 root:root (overlay defaultPerms)
    emit(tar_header(diff + "/", DIR, mode=0o555, xattrs=_overlay_xattrs(plan, ".") or None))

    def ensure_parents(path: str) -> None:
        for p in _parents(path):
            if p not in emitted_dirs:
                emitted_dirs.add(p)
                emit(_entry_dir_header(diff, p, plan.dir_entries.get(p), plan))

    ts = TarSplitWriter(tarsplit_file)  # type: ignore[arg-type]
    buf = bytearray(_BUF)
    view = memoryview(buf)
    spool.seek(0)
    pos = 0
    form = job.whiteouts
    for e, (action, path, extra) in zip(entries, plan.actions, strict=True):
        seg_len = e.data_offset - pos
        ts.segment(_read_exact(spool, seg_len, what))
        ts.file(e.name, e.size, e.crc)
        pos = e.data_offset
        if action == "keep":
            if path == ".":
                pass
            elif e.typeflag == DIR:
                if path not in emitted_dirs:
                    ensure_parents(path)
                    emitted_dirs.add(path)
                    emit(_entry_dir_header(diff, path, e, plan))
            else:
                ensure_parents(path)
                mode = e.mode & 0o7777
                xattrs = _app_xattrs(e)
                name = f"{diff}/{path}"
                if e.typeflag == SYMLINK:
                    emit(_hdr(name, SYMLINK, e, mode, xattrs, linkname=e.linkname.decode()))
                elif e.typeflag == LINK:
                    emit(_hdr(name, LINK, e, mode, xattrs, linkname=f"{diff}/{extra}"))
                else:
                    final = plan.link_meta.get(path)
                    if final is not None:  # podman applies each hardlink's header to the inode
                        mode = final.mode & 0o7777
                        xattrs = plan.link_xattrs[path]
                        e_meta = final
                    else:
                        e_meta = e
                    emit(_hdr(name, REG, e_meta, mode, xattrs, size=e.data_size))
                    remaining = e.data_size
                    while remaining:
                        n = spool.readinto(view[: min(remaining, _BUF)])  # type: ignore[attr-defined]
                        if not n:
                            raise BootcEmbedError(f"{what}: temporary spool file is short")
                        emit(view[:n])
                        remaining -= n
                        progress.advance(n)
                    emit(padding(e.data_size))
                    pos += e.data_size
                    continue
        elif action == "whiteout":
            parent = posixpath.dirname(path) or "."
            ensure_parents(path)
            if parent not in emitted_dirs:
                emitted_dirs.add(parent)
                emit(_entry_dir_header(diff, parent, plan.dir_entries.get(parent), plan))
            target = extra if parent == "." else f"{parent}/{extra}"
            if form == "chardev":
                emit(
                    tar_header(
                        f"{diff}/{target}", CHAR, mode=0, uid=e.uid, gid=e.gid, mtime=e.mtime
                    )
                )
            elif form == "ostree":
                ost = f".ostree-wh.{extra}" if parent == "." else f"{parent}/.ostree-wh.{extra}"
                emit(
                    tar_header(
                        f"{diff}/{ost}", REG, mode=0o644, uid=e.uid, gid=e.gid, mtime=e.mtime
                    )
                )
            else:
                emit(
                    tar_header(
                        f"{diff}/{target}",
                        REG,
                        mode=0o644,
                        uid=e.uid,
                        gid=e.gid,
                        mtime=e.mtime,
                        xattrs={OVERLAY_WHITEOUT: b"y"},
                    )
                )
        # content of entries that do not reach diff/ (devices never have any) is skipped
        if e.data_size:
            spool.seek(e.data_size, os.SEEK_CUR)
            pos += e.data_size
            progress.advance(e.data_size)
    ts.end(lambda n: _read_exact(spool, n, what), pos, reader.end_offset, reader.total_size)
    ts.close()
    emit(dir_header(f"{store}/overlay-layers"))
    size = tarsplit_file.tell()
    tarsplit_file.seek(0)
    emit(tar_header(f"{store}/overlay-layers/{job.layer_id}.tar-split.gz", REG, size=size))
    while True:
        chunk = tarsplit_file.read(_BUF)
        if not chunk:
            break
        emit(chunk)
    emit(padding(size))
    emit(END_OF_ARCHIVE)


def emit_file(emit: Callable[[bytes], None], name: str, data: bytes) -> None:
    emit(tar_header(name, REG, size=len(data)))
    emit(data)
    emit(padding(len(data)))


def _hdr(
    name: str,
    typeflag: bytes,
    e: TarEntry,
    mode: int,
    xattrs: dict[str, bytes],
    *,
    linkname: str = "",
    size: int = 0,
) -> bytes:
    return tar_header(
        name,
        typeflag,
        mode=mode,
        uid=e.uid,
        gid=e.gid,
        size=size,
        mtime=e.mtime,
        linkname=linkname,
        xattrs=xattrs or None,
        pax_mtime=e.pax_mtime,
    )


def _entry_dir_header(diff: str, path: str, e: TarEntry | None, plan: _Plan) -> bytes:
    """A directory of diff/: its own entry's metadata, or what podman gives a missing parent."""
    name = diff + "/" if path == "." else f"{diff}/{path}/"
    xattrs = {**(_app_xattrs(e) if e else {}), **_overlay_xattrs(plan, path)}
    if e is None:
        return tar_header(name, DIR, mode=0o755, xattrs=xattrs or None)
    return tar_header(
        name,
        DIR,
        mode=e.mode & 0o7777,
        uid=e.uid,
        gid=e.gid,
        mtime=e.mtime,
        xattrs=dict(sorted(xattrs.items())) or None,
        pax_mtime=e.pax_mtime,
    )
