"""Pinned, deterministic compression and format-sniffing decompression of layer blobs.

Compression: the bytes written are a function of ``(algorithm, level, input bytes)`` only. They do
not depend on how callers split the input across :meth:`CompressingWriter.write` calls, on the
system's libraries, on the wall clock or on the CPU the build runs on:

* the compressors come from wheels that bundle their own library, pinned exactly in
  ``pyproject.toml`` (``isal==1.9.1`` for gzip, ``zstandard==0.25.0`` for zstd); the standard
  library's ``zlib``/``gzip`` (system zlib, zlib-ng on Fedora) are never used for output;
* the compressor is always fed exactly :data:`CHUNK_SIZE` bytes per call (the last call of a
  stream is shorter; an empty stream makes no call), whatever the callers' write sizes;
* gzip: a 10-byte header written here (``1f 8b 08``, flags 0, mtime 0, XFL 0, OS 255 "unknown"),
  raw deflate from ``isal.isal_zlib.compressobj(level, DEFLATED, -15)`` finished with
  ``Z_FINISH``, and the trailer (CRC-32, ISIZE; little endian);
* zstd: ``zstandard.ZstdCompressor(level=level, write_checksum=True, write_content_size=False,
  threads=0)``: one frame, single-threaded streaming compression (``threads=0``: libzstd's
  multi-threaded mode cuts the input into jobs and gives different bytes), no content size in
  the frame header (the size is not known up front, and writing it only when it is would make
  the bytes depend on the API used), an XXH64 content checksum (what the zstd CLI and Go's
  ``klauspost/compress`` write by default), no dictionary;
* only levels whose output was checked to be CPU-independent are allowed (:data:`LEVELS`): the
  same Python and wheels under ``qemu-x86_64 -cpu Haswell`` (AVX2), ``-cpu Nehalem`` (SSE4.2)
  and natively on an AVX-512 host produce the same bytes (``tests/test_compress_determinism.py``
  keeps checking it). ISA-L level 3 is excluded: it dispatches to different deflate code per
  instruction set and gives a different output on each of those three CPUs. zstd levels above 19
  ("ultra") are excluded as well: they need windows of up to 128 MiB that decoders may refuse.

Decompression (:func:`open_decompressed`) follows what Go's readers accept, since podman,
buildah and skopeo read the same blobs with them:

* gzip: multi-member streams are read as one stream (Go's ``compress/gzip`` multistream mode);
  every member's CRC-32 and ISIZE are verified. Data after a member must be another complete
  gzip member: anything else, **including zero padding**, is an error, as in Go (``gzip: invalid
  header``). Header fields are parsed the way Go does: FEXTRA, FNAME, FCOMMENT (each string at
  most 511 bytes) and FHCRC (verified); reserved flag bits are ignored.
* zstd: any sequence of zstd frames and skippable frames (so ``zstd:chunked`` blobs read as plain
  zstd); frame structure is walked here so that a stream cut short anywhere, even between
  blocks, is reported as truncated (libzstd's streaming reader silently stops there). Data after
  the last frame that is not a frame is an error. Frames must not need a dictionary, and their
  window must be at most 128 MiB (libzstd's default limit).
* an empty stream is an error for both formats (Go's gzip reader refuses it too).

Corrupt or truncated input raises :class:`~bootc_embed.errors.CompressionError`, whose message
says "corrupt" or "truncated" and the offset in the compressed stream where it was noticed.
"""

from __future__ import annotations

import io
from types import TracebackType
from typing import BinaryIO, Final, Literal, NoReturn, TypeVar, overload

import zstandard
from isal import igzip_lib, isal_zlib

from ._digest import Readable
from .errors import CompressionError

__all__ = [
    "CHUNK_SIZE",
    "DEFAULT_LEVEL",
    "GZIP_HEADER",
    "LEVELS",
    "MEDIA_TYPES",
    "Algorithm",
    "CompressingWriter",
    "Kind",
    "check_level",
    "compress_bytes",
    "detect",
    "open_decompressed",
]

Algorithm = Literal["gzip", "zstd"]
Kind = Literal["gzip", "zstd", "none"]

#: The compressor is fed exactly this many bytes per call (the last call of a stream is shorter).
CHUNK_SIZE: Final = 1 << 20

#: Level used when none is given.
DEFAULT_LEVEL: Final[dict[str, int]] = {"gzip": 2, "zstd": 3}

#: Allowed levels: those whose output was verified to be the same on AVX-512, AVX2 and SSE4.2 CPUs.
LEVELS: Final[dict[str, range]] = {"gzip": range(0, 3), "zstd": range(1, 20)}

#: OCI media type of a tar layer compressed with each algorithm.
MEDIA_TYPES: Final[dict[str, str]] = {
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
}

_WHY_LIMITED: Final[dict[str, str]] = {
    "gzip": "higher ISA-L levels give different bytes on different CPUs",
    "zstd": "only these were verified to give the same bytes on every CPU",
}

#: gzip member header we write: magic, CM=deflate, FLG=0, MTIME=0, XFL=0, OS=255 (unknown).
GZIP_HEADER: Final = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"

_GZIP_MAGIC: Final = b"\x1f\x8b"
_ZSTD_MAGIC: Final = b"\x28\xb5\x2f\xfd"
_ZSTD_MAGIC_INT: Final = 0xFD2FB528
_ZSTD_SKIPPABLE_INT: Final = 0x184D2A50  # low 4 bits free

_R = TypeVar("_R", bound=Readable)

#: How many compressed bytes decompressors read from their source at a time.
_READ_SIZE: Final = 1 << 20


def _range_text(allowed: range) -> str:
    return f"{allowed.start}..{allowed.stop - 1}"


def check_level(algorithm: str, level: int | None) -> int:
    """Return the effective level for *algorithm* (the default when *level* is ``None``).

    Raises :class:`CompressionError` for an unknown algorithm or a level outside :data:`LEVELS`.
    """
    allowed = LEVELS.get(algorithm)
    if allowed is None:
        choices = " or ".join(sorted(LEVELS))
        raise CompressionError(f"unsupported compression {algorithm!r}: use {choices}")
    if level is None:
        return DEFAULT_LEVEL[algorithm]
    if isinstance(level, bool) or not isinstance(level, int) or level not in allowed:
        raise CompressionError(
            f"{algorithm} compression level {level!r} is not allowed: allowed levels are "
            f"{_range_text(allowed)} (default {DEFAULT_LEVEL[algorithm]}); "
            f"{_WHY_LIMITED[algorithm]}"
        )
    return level


class _Gzip:
    """Raw ISA-L deflate between a hand-written header and trailer."""

    __slots__ = ("_crc", "_deflate", "_size")

    def __init__(self, level: int) -> None:
        self._deflate = isal_zlib.compressobj(level, isal_zlib.DEFLATED, -15)
        self._crc = 0
        self._size = 0

    def header(self) -> bytes:
        return GZIP_HEADER

    def compress(self, chunk: bytes | bytearray | memoryview) -> bytes:
        self._crc = isal_zlib.crc32(chunk, self._crc)
        self._size += len(chunk)
        return self._deflate.compress(chunk)

    def finish(self) -> bytes:
        tail = self._deflate.flush(isal_zlib.Z_FINISH)
        trailer = self._crc.to_bytes(4, "little") + (self._size & 0xFFFFFFFF).to_bytes(4, "little")
        return tail + trailer


class _Zstd:
    """One single-threaded zstd frame with checksum and without content size."""

    __slots__ = ("_cobj",)

    def __init__(self, level: int) -> None:
        cctx = zstandard.ZstdCompressor(
            level=level, write_checksum=True, write_content_size=False, threads=0
        )
        self._cobj = cctx.compressobj()

    def header(self) -> bytes:
        return b""

    def compress(self, chunk: bytes | bytearray | memoryview) -> bytes:
        return self._cobj.compress(chunk)

    def finish(self) -> bytes:
        return self._cobj.flush(zstandard.COMPRESSOBJ_FLUSH_FINISH)


class CompressingWriter:
    """A write-only stream that compresses into *sink* deterministically.

    Input is cut into pieces of exactly :data:`CHUNK_SIZE` bytes before it reaches the
    compressor, so the output does not depend on how the input is split across :meth:`write`
    calls. :meth:`close` writes the end of the stream but does not close *sink*. Used as a
    context manager, the stream is finished on a normal exit and abandoned (no trailer) when
    the block raises.
    """

    def __init__(self, algorithm: str, level: int, sink: BinaryIO) -> None:
        level = check_level(algorithm, level)
        self.algorithm: Algorithm = "gzip" if algorithm == "gzip" else "zstd"
        self.level = level
        self._sink = sink
        self._codec: _Gzip | _Zstd = _Gzip(level) if algorithm == "gzip" else _Zstd(level)
        self._buf = bytearray(CHUNK_SIZE)
        self._view = memoryview(self._buf)
        self._fill = 0
        self._closed = False
        self._bytes_in = 0
        self._bytes_out = 0
        self._emit(self._codec.header())

    @property
    def bytes_in(self) -> int:
        """Uncompressed bytes written so far."""
        return self._bytes_in

    @property
    def bytes_out(self) -> int:
        """Compressed bytes passed to the sink so far."""
        return self._bytes_out

    @property
    def closed(self) -> bool:
        return self._closed

    def _emit(self, out: bytes) -> None:
        if out:
            self._sink.write(out)
            self._bytes_out += len(out)

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Compress *data*; returns the number of bytes consumed (all of them)."""
        if self._closed:
            raise ValueError("write to a closed CompressingWriter")
        mv = memoryview(data)
        if mv.ndim != 1 or mv.itemsize != 1:
            mv = mv.cast("B")
        n = len(mv)
        if not n:
            return 0
        self._bytes_in += n
        pos = 0
        fill = self._fill
        if fill:
            take = min(CHUNK_SIZE - fill, n)
            self._view[fill : fill + take] = mv[:take]
            fill += take
            pos = take
            if fill < CHUNK_SIZE:
                self._fill = fill
                return n
            self._emit(self._codec.compress(self._buf))
            fill = 0
        # Full chunks straight from the caller's buffer, without copying.
        while n - pos >= CHUNK_SIZE:
            self._emit(self._codec.compress(mv[pos : pos + CHUNK_SIZE]))
            pos += CHUNK_SIZE
        rest = n - pos
        if rest:
            self._view[:rest] = mv[pos:]
        self._fill = rest
        return n

    def close(self) -> None:
        """Compress the buffered input and write the end of the stream. Does not close the sink."""
        if self._closed:
            return
        self._closed = True
        if self._fill:
            self._emit(self._codec.compress(self._view[: self._fill]))
            self._fill = 0
        self._emit(self._codec.finish())
        self._release()

    def _release(self) -> None:
        self._closed = True
        self._view.release()
        self._buf = bytearray()

    def __enter__(self) -> CompressingWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        elif not self._closed:
            self._release()


def compress_bytes(algorithm: str, level: int, data: bytes) -> bytes:
    """Compress *data* in one go; the same bytes a :class:`CompressingWriter` writes."""
    out = io.BytesIO()
    with CompressingWriter(algorithm, level, out) as writer:
        writer.write(data)
    return out.getvalue()


def detect(head: bytes) -> Kind:
    """Name the compression of a stream from its first bytes (4 are enough).

    Same rules as containers/image: gzip is ``1f 8b 08``, zstd is a zstd frame magic
    ``28 b5 2f fd``; anything else (including a too-short head) is ``"none"``.
    """
    if head[:3] == _GZIP_MAGIC + b"\x08":
        return "gzip"
    if head[:4] == _ZSTD_MAGIC:
        return "zstd"
    return "none"


@overload
def open_decompressed(raw: Readable, kind: Literal["gzip", "zstd"]) -> BinaryIO: ...
@overload
def open_decompressed(raw: _R, kind: Kind) -> _R | BinaryIO: ...
def open_decompressed(raw: Readable, kind: Kind) -> Readable:
    """A readable stream of the decompressed bytes of *raw*, compressed as *kind*.

    *raw* is read sequentially from its current position. Closing the returned stream does not
    close *raw*. Reads raise :class:`CompressionError` on corrupt or truncated data; see the
    module documentation for exactly what is accepted.
    """
    if kind == "none":
        return raw
    if kind == "gzip":
        return io.BufferedReader(_GzipReader(raw), buffer_size=CHUNK_SIZE)
    if kind == "zstd":
        return io.BufferedReader(_ZstdReader(raw), buffer_size=CHUNK_SIZE)
    raise CompressionError(f"unsupported compression {kind!r}: expected gzip, zstd or none")


class _GzipReader(io.RawIOBase):
    """Multi-member gzip, strict like Go's ``compress/gzip``, inflated by ISA-L."""

    def __init__(self, raw: Readable) -> None:
        super().__init__()
        self._raw = raw
        self._in: bytes = b""  # compressed bytes read but not handed to a decompressor yet
        self._pos = 0  # start of the unused part of self._in
        self._consumed = 0  # compressed offset of self._in[0]
        self._raw_eof = False
        self._read_total = 0  # compressed bytes read from the source
        self._inflate: igzip_lib.IgzipDecompressor | None = None
        self._member_start = 0
        self._members = 0
        self._done = False

    def readable(self) -> bool:
        return True

    def close(self) -> None:  # does not close the source
        self._inflate = None
        self._in = b""
        super().close()

    # -- compressed input ------------------------------------------------------------------

    def _offset(self) -> int:
        return self._consumed + self._pos

    def _available(self) -> int:
        return len(self._in) - self._pos

    def _fill(self, need: int) -> bool:
        """Make at least *need* unused bytes available; False if the source ends first."""
        while self._available() < need:
            if self._raw_eof:
                return False
            chunk = self._raw.read(_READ_SIZE)
            if not chunk:
                self._raw_eof = True
                return False
            self._read_total += len(chunk)
            self._consumed += self._pos
            self._in = self._in[self._pos :] + bytes(chunk)
            self._pos = 0
        return True

    def _take(self) -> bytes | memoryview:
        """All unused input, or the next chunk from the source (empty at its end)."""
        if self._available():
            data = memoryview(self._in)[self._pos :]
            self._consumed += len(self._in)
            self._in = b""
            self._pos = 0
            return data
        self._consumed += len(self._in)
        self._in = b""
        self._pos = 0
        if self._raw_eof:
            return b""
        chunk = self._raw.read(_READ_SIZE)
        if not chunk:
            self._raw_eof = True
            return b""
        self._read_total += len(chunk)
        self._consumed += len(chunk)
        return chunk

    # -- errors ----------------------------------------------------------------------------

    def _corrupt(self, what: str, offset: int | None = None) -> CompressionError:
        at = self._offset() if offset is None else offset
        return CompressionError(f"corrupt gzip data: {what} (at compressed offset {at})")

    def _truncated(self, what: str) -> CompressionError:
        return CompressionError(
            f"truncated gzip data: {what} (stream ends at compressed offset {self._read_total})"
        )

    # -- members ---------------------------------------------------------------------------

    def _peek(self, rel: int, n: int, field: str) -> bytes:
        """The *n* header bytes at *rel* past the start of the unused input."""
        if not self._fill(rel + n):
            raise self._truncated(f"incomplete header ({field}) of gzip member {self._members + 1}")
        p = self._pos + rel
        return self._in[p : p + n]

    def _start_member(self) -> bool:
        """Parse the next member header; False at a clean end of the stream."""
        if not self._fill(1):
            if self._members == 0:
                raise self._truncated("empty stream")
            return False
        start = self._offset()
        self._fill(10)
        head = self._in[self._pos : self._pos + 10]
        if head[:2] != _GZIP_MAGIC[: len(head)]:
            if self._members == 0:
                raise self._corrupt("not gzip data (bad magic number)")
            raise self._corrupt(
                f"data after gzip member {self._members} is not another gzip member "
                "(trailing data is not allowed)"
            )
        head = self._peek(0, 10, "fixed part")
        if head[2] != 8:
            raise self._corrupt(f"unknown compression method {head[2]} in gzip header")
        flags = head[3]
        crc = isal_zlib.crc32(head)
        rel = 10
        if flags & 0x04:  # FEXTRA
            xlen_bytes = self._peek(rel, 2, "FEXTRA")
            extra = self._peek(rel + 2, int.from_bytes(xlen_bytes, "little"), "FEXTRA")
            crc = isal_zlib.crc32(extra, isal_zlib.crc32(xlen_bytes, crc))
            rel += 2 + len(extra)
        for flag, field in ((0x08, "FNAME"), (0x10, "FCOMMENT")):
            if flags & flag:
                text = self._header_string(rel, field)
                crc = isal_zlib.crc32(text, crc)
                rel += len(text)
        if flags & 0x02:  # FHCRC
            if int.from_bytes(self._peek(rel, 2, "FHCRC"), "little") != crc & 0xFFFF:
                raise self._corrupt("gzip header checksum mismatch", start)
            rel += 2
        self._pos += rel
        self._member_start = start
        self._members += 1
        self._inflate = igzip_lib.IgzipDecompressor(flag=igzip_lib.DECOMP_GZIP_NO_HDR_VER)
        return True

    def _header_string(self, rel: int, field: str) -> bytes:
        """The NUL-terminated header string at *rel*, NUL included (at most 512 bytes, as Go)."""
        while True:
            p = self._pos + rel
            end = self._in.find(b"\0", p, p + 512)
            if end >= 0:
                return self._in[p : end + 1]
            if len(self._in) - p >= 512:
                raise self._corrupt(f"gzip header {field} field longer than 511 bytes")
            if not self._fill(self._available() + 1):
                raise self._truncated(
                    f"incomplete header ({field}) of gzip member {self._members + 1}"
                )

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        out_view = memoryview(buffer).cast("B")
        want = len(out_view)
        if not want or self._done:
            return 0
        while True:
            inflate = self._inflate
            if inflate is None:
                if not self._start_member():
                    self._done = True
                    return 0
                inflate = self._inflate
                assert inflate is not None
            if inflate.needs_input:
                data = self._take()
                if not data:
                    raise self._truncated(f"gzip member {self._members} is incomplete")
            else:
                data = b""
            try:
                out = inflate.decompress(data, want)
            except igzip_lib.IsalError as exc:
                raise CompressionError(
                    f"corrupt gzip data in member {self._members} (starting at compressed offset "
                    f"{self._member_start}): {_isal_reason(exc)}"
                ) from None
            if inflate.eof:
                self._inflate = None
                unused = inflate.unused_data
                if unused:
                    self._consumed -= len(unused)
                    self._in = unused
                    self._pos = 0
            n = len(out)
            if n:
                out_view[:n] = out
                return n


def _isal_reason(exc: BaseException) -> str:
    text = str(exc)
    if "checksum" in text.lower():
        return "CRC-32 or length in the member trailer does not match the data"
    return text or type(exc).__name__


class _ZstdFrames:
    """Source for libzstd that walks the frame structure of what it hands over.

    libzstd's streaming decoder stops silently when its input ends inside a frame, so the
    frames, blocks, checksums and skippable frames are delimited here: an end of input that is
    not at a frame boundary is reported as truncated, and bytes that do not start a frame as
    corrupt. Block contents are left to libzstd.
    """

    _FRAME, _BLOCK, _BODY, _CHECKSUM = range(4)

    def __init__(self, raw: Readable) -> None:
        self._raw = raw
        self._buf: bytes = b""
        self._view = memoryview(self._buf)
        self._emit = 0  # start of the checked bytes not yet handed out
        self._scan = 0  # end of the checked bytes
        self._base = 0  # compressed offset of self._buf[0]
        self._state = self._FRAME
        self._body = 0  # bytes still to come of the current block body or skippable frame
        self._last = False
        self._checksum = False
        self._frames = 0
        self._eof = False

    def _corrupt(self, what: str) -> CompressionError:
        return CompressionError(
            f"corrupt zstd data: {what} (at compressed offset {self._base + self._scan})"
        )

    def read(self, size: int = -1) -> bytes | memoryview:
        while True:
            self._advance()
            if self._scan > self._emit:
                end = self._scan if size < 0 else min(self._scan, self._emit + size)
                out = self._view[self._emit : end]
                self._emit = end
                return out
            if self._eof:
                return b""
            self._refill()

    def _refill(self) -> None:
        chunk = self._raw.read(_READ_SIZE)
        if not chunk:
            self._eof = True
            end = self._base + len(self._buf)
            if self._frames == 0 and end == 0:
                raise CompressionError("truncated zstd data: empty stream")
            pending = self._buf[self._scan :]
            if self._state == self._FRAME and not _could_start_frame(pending):
                self._raise_not_a_frame()
            if self._state != self._FRAME or pending:
                raise CompressionError(
                    f"truncated zstd data: the stream ends inside a frame "
                    f"(at compressed offset {end})"
                )
            return
        tail = self._buf[self._scan :]
        self._base += self._scan
        self._buf = tail + bytes(chunk) if tail else bytes(chunk)
        self._view = memoryview(self._buf)
        self._emit = self._scan = 0

    def _advance(self) -> None:
        buf = self._buf
        size = len(buf)
        while True:
            scan = self._scan
            avail = size - scan
            state = self._state
            if state == self._BODY:
                if self._body:
                    step = min(self._body, avail)
                    self._scan += step
                    self._body -= step
                    if self._body:
                        return
                if not self._last:
                    self._state = self._BLOCK
                elif self._checksum:
                    self._state = self._CHECKSUM
                else:
                    self._state = self._FRAME
            elif state == self._BLOCK:
                if avail < 3:
                    return
                header = int.from_bytes(buf[scan : scan + 3], "little")
                block_type = (header >> 1) & 3
                if block_type == 3:
                    raise self._corrupt("reserved block type")
                self._last = bool(header & 1)
                self._body = 1 if block_type == 1 else header >> 3  # RLE blocks hold one byte
                self._scan += 3
                self._state = self._BODY
            elif state == self._CHECKSUM:
                if avail < 4:
                    return
                self._scan += 4
                self._state = self._FRAME
            else:
                if avail < 4:
                    return
                magic = int.from_bytes(buf[scan : scan + 4], "little")
                if magic == _ZSTD_MAGIC_INT:
                    if avail < 5:
                        return
                    descriptor = buf[scan + 4]
                    if descriptor & 0x08:
                        raise self._corrupt("reserved bit set in zstd frame header")
                    single_segment = bool(descriptor & 0x20)
                    length = (
                        5
                        + (0 if single_segment else 1)
                        + (0, 1, 2, 4)[descriptor & 3]
                        + (1 if single_segment else 0, 2, 4, 8)[descriptor >> 6]
                    )
                    if avail < length:
                        return
                    self._checksum = bool(descriptor & 0x04)
                    self._scan += length
                    self._state = self._BLOCK
                elif magic & 0xFFFFFFF0 == _ZSTD_SKIPPABLE_INT:
                    if avail < 8:
                        return
                    self._body = int.from_bytes(buf[scan + 4 : scan + 8], "little")
                    self._last = True
                    self._checksum = False
                    self._scan += 8
                    self._state = self._BODY
                else:
                    self._raise_not_a_frame()
                self._frames += 1

    def _raise_not_a_frame(self) -> NoReturn:
        if self._frames:
            raise self._corrupt(
                f"data after zstd frame {self._frames} is not a zstd frame "
                "(trailing data is not allowed)"
            )
        raise self._corrupt("not zstd data (bad magic number)")


def _could_start_frame(head: bytes) -> bool:
    """Whether *head* (shorter than a frame header) can be the start of a zstd frame."""
    head = head[:4]
    if head == _ZSTD_MAGIC[: len(head)]:
        return True
    return head[0] & 0xF0 == 0x50 and head[1:] == b"\x2a\x4d\x18"[: len(head) - 1]


class _ZstdReader(io.RawIOBase):
    """Decompresses a sequence of zstd and skippable frames with libzstd."""

    def __init__(self, raw: Readable) -> None:
        super().__init__()
        self._frames = _ZstdFrames(raw)
        self._reader = zstandard.ZstdDecompressor().stream_reader(
            self._frames, read_size=_READ_SIZE, read_across_frames=True, closefd=False
        )

    def readable(self) -> bool:
        return True

    def close(self) -> None:  # does not close the source
        self._reader.close()
        super().close()

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        try:
            return self._reader.readinto(buffer)
        except zstandard.ZstdError as exc:
            raise CompressionError(
                f"corrupt zstd data (near compressed offset {self._frames._base}): {exc}"
            ) from None
