"""Tar streams: a reader with Go ``archive/tar`` semantics and a deterministic writer.

The reader follows the semantics of the Go reader that containers/storage and tar-split use
(``github.com/vbatts/tar-split/archive/tar``), because the tar-split records we write must be
the ones podman would write for the same layer. It keeps, for every entry, the offsets of the raw
bytes that precede the entry's content (headers, extension records, padding): tar-split stores
those bytes verbatim.

The writer emits POSIX ustar headers, splitting long names into prefix/name when they fit and
adding a PAX extended header only when a value does not fit ustar fields. Output depends only on
its arguments.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from ._digest import Readable

BLOCK = 512
_ZERO_BLOCK = bytes(BLOCK)

# Type flags.
REG = b"0"
REGA = b"\x00"
LINK = b"1"
SYMLINK = b"2"
CHAR = b"3"
BLOCKDEV = b"4"
DIR = b"5"
FIFO = b"6"
CONT = b"7"
XHEADER = b"x"
XGLOBAL = b"g"
GNU_LONGNAME = b"L"
GNU_LONGLINK = b"K"
GNU_SPARSE = b"S"

_HEADER_ONLY = {LINK, SYMLINK, CHAR, BLOCKDEV, DIR, FIFO}
# Go's maxSpecialFileSize: a PAX or GNU long-name/long-link header is read whole, so a larger
# one is refused (ErrFieldTooLong) rather than held in memory.
MAX_SPECIAL = 1 << 20


class TarFormatError(Exception):
    """The stream is not a valid tar archive (message says where)."""


@dataclass(slots=True)
class TarEntry:
    """One entry as Go's ``tar.Reader.Next`` returns it."""

    name: bytes
    typeflag: bytes
    mode: int
    uid: int
    gid: int
    size: int  # the header's size (after PAX), what tar-split records
    mtime: int
    linkname: bytes = b""
    devmajor: int = 0
    devminor: int = 0
    pax_mtime: str | None = None
    xattrs: dict[str, bytes] = field(default_factory=dict)
    data_offset: int = 0  # offset of this entry's content in the stream
    data_size: int = 0  # bytes of content actually stored in the stream
    crc: int = 0  # CRC-64/ISO of the content (when the reader computes it)
    raw: bytes = b""  # raw bytes since the previous entry's content (when capturing)


def _parse_string(b: bytes) -> bytes:
    i = b.find(b"\x00")
    return b if i < 0 else b[:i]


def _parse_numeric(b: bytes, what: str) -> int:
    if b[:1] < b"\x80":
        # octal digits, padded with spaces or NULs (Go: strconv.ParseUint(s, 8, 64))
        s = _parse_string(b.strip(b" \x00"))
        if not s:
            return 0
        if _OCTAL.fullmatch(s) is None:
            raise TarFormatError(f"invalid {what} field {b!r} in tar header")
        return int(s, 8)
    if b and b[0] & 0x80:
        # base-256; the sign bit is 0x40 of the first byte
        neg = bool(b[0] & 0x40)
        x = b[0] & 0x7F
        for c in b[1:]:
            x = (x << 8) | c
        if neg:
            x -= 1 << (8 * len(b) - 1)
        return x
    raise TarFormatError(f"invalid {what} field {b!r} in tar header")


def _checksum_ok(blk: bytes) -> bool:
    stored = blk[148:156].strip(b" \x00")
    try:
        value = int(_parse_string(stored) or b"0", 8)
    except ValueError:
        return False
    unsigned = sum(blk) - sum(blk[148:156]) + 8 * 32
    if value == unsigned:
        return True
    signed = sum((c - 256 if c > 127 else c) for c in blk[:148]) + 8 * 32
    signed += sum((c - 256 if c > 127 else c) for c in blk[156:])
    return value == signed


_OCTAL = re.compile(rb"[0-7]+")
# PAX numbers are Go int64s (strconv.ParseInt(v, 10, 64)): at most 19 digits, which also keeps
# int() clear of Python's 4300-digit conversion limit
_DECIMAL = re.compile(rb"[+-]?[0-9]{1,19}")
_PAX_TIME = re.compile(r"^-?[0-9]{1,19}(\.[0-9]+)?$")
_INT64_MAX = (1 << 63) - 1


def _parse_pax(data: bytes) -> dict[str, bytes]:
    records: dict[str, bytes] = {}
    buf = data
    while buf:
        sp = buf.find(b" ")
        if sp <= 0:
            raise TarFormatError("invalid PAX record")
        try:
            n = int(buf[:sp])
        except ValueError:
            raise TarFormatError("invalid PAX record length") from None
        if n < 5 or n > len(buf) or buf[n - 1 : n] != b"\n":
            raise TarFormatError("invalid PAX record length")
        record = buf[sp + 1 : n - 1]
        buf = buf[n:]
        eq = record.find(b"=")
        if eq <= 0:
            raise TarFormatError("invalid PAX record")
        key = record[:eq].decode("utf-8", "surrogateescape")
        records[key] = record[eq + 1 :]
    return records


class _Buffered:
    """Buffered reading from a stream; every chunk read is shown to ``on_chunk`` once.

    Bytes taken with :meth:`read` or :meth:`skip` (everything but entry content) are also kept
    in ``raw`` when ``capture`` is on: tar-split stores them verbatim.
    """

    __slots__ = ("_buf", "_chunk", "_on_chunk", "_pos", "_raw", "capture", "eof", "offset", "raw")

    def __init__(
        self, raw: Readable, on_chunk: Callable[[bytes], None] | None, chunk: int, capture: bool
    ) -> None:
        self._raw = raw
        self._on_chunk = on_chunk
        self._chunk = chunk
        self._buf = b""
        self._pos = 0
        self.offset = 0  # absolute offset of the next unread byte
        self.eof = False
        self.capture = capture
        self.raw: list[bytes] = []

    def _fill(self) -> bool:
        if self.eof:
            return False
        data = self._raw.read(self._chunk)
        if not data:
            self.eof = True
            return False
        if self._on_chunk is not None:
            self._on_chunk(data)
        rest = len(self._buf) - self._pos
        self._buf = self._buf[self._pos :] + data if rest else data
        self._pos = 0
        return True

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes; fewer only at the end of the stream."""
        while len(self._buf) - self._pos < n:
            if not self._fill():
                break
        out = self._buf[self._pos : self._pos + n]
        self._pos += len(out)
        self.offset += len(out)
        if self.capture:
            self.raw.append(out)
        return out

    def skip(self, n: int) -> int:
        """Read ``n`` raw bytes (kept when capturing); returns how many there were."""
        return len(self.read(n)) if n <= 1 << 20 else self.consume(n, self._keep)

    def _keep(self, piece: memoryview) -> None:
        if self.capture:
            self.raw.append(bytes(piece))

    def take_raw(self) -> bytes:
        out = b"".join(self.raw)
        self.raw.clear()
        return out

    def consume(self, n: int, fn: Callable[[memoryview], None] | None) -> int:
        """Pass the next ``n`` bytes, piece by piece, to ``fn``; returns how many there were."""
        done = 0
        while done < n:
            avail = len(self._buf) - self._pos
            if avail == 0:
                if not self._fill():
                    break
                avail = len(self._buf) - self._pos
            take = min(avail, n - done)
            if fn is not None:
                fn(memoryview(self._buf)[self._pos : self._pos + take])
            self._pos += take
            self.offset += take
            done += take
        return done

    def drain(self, piece: Callable[[bytes], None] | None) -> None:
        """Read to the end of the stream, in pieces of at most 1 MiB."""
        while True:
            if self._pos == len(self._buf) and not self._fill():
                return
            take = min(len(self._buf) - self._pos, 1 << 20)
            if piece is not None:
                piece(self._buf[self._pos : self._pos + take])
            self._pos += take
            self.offset += take


def _both(
    first: Callable[[memoryview], None], second: Callable[[memoryview], None]
) -> Callable[[memoryview], None]:
    def piece(p: memoryview) -> None:
        first(p)
        second(p)

    return piece


class TarReader:
    """Iterates a tar stream the way Go's reader does.

    ``on_chunk`` sees every byte of the stream exactly once, in order (for hashing). After an
    entry is yielded, its content may be taken with :meth:`read_content`; content not taken is
    skipped when iteration resumes. With ``crc``, each entry's content CRC is computed into
    ``entry.crc``. With ``capture``, ``entry.raw`` holds the raw bytes between the previous
    entry's content and this entry's content (what tar-split stores as a segment), and after
    the iteration ``trailer`` holds the raw bytes after the last content: Go's last raw read
    (padding and end-of-archive blocks) then any trailing bytes in 1 MiB pieces. A ``tap``
    set after an entry is yielded also sees that entry's content, however it is taken or
    skipped (so one reader can serve two consumers).
    """

    def __init__(
        self,
        raw: Readable,
        on_chunk: Callable[[bytes], None] | None = None,
        chunk_size: int = 1 << 20,
        crc: Callable[..., int] | None = None,
        capture: bool = False,
    ) -> None:
        self._in = _Buffered(raw, on_chunk, chunk_size, capture)
        self._crc = crc
        self._pending: TarEntry | None = None
        self.tap: Callable[[memoryview], None] | None = None  # also sees the current content
        self.end_offset = 0  # offset just after the end-of-archive blocks
        self.total_size = 0  # length of the whole stream (after the iteration)
        self.trailer: list[bytes] = []

    def _read_block(self) -> bytes | None:
        blk = self._in.read(BLOCK)
        if not blk:
            return None
        if len(blk) < BLOCK:
            raise TarFormatError("unexpected end of tar stream (truncated header)")
        return blk

    def _read_special(self, size: int) -> bytes:
        data = self._in.read(size)
        if len(data) < size:
            raise TarFormatError("unexpected end of tar stream (truncated extension header)")
        return data

    def _skip_padding(self, size: int) -> None:
        pad = -size % BLOCK
        if pad and self._in.skip(pad) < pad:
            raise TarFormatError("unexpected end of tar stream (truncated padding)")

    def skim(self) -> None:
        """From now on, neither keep raw bytes nor compute CRCs: only headers are wanted."""
        self._in.capture = False
        self._in.raw.clear()
        self._crc = None

    def read_content(self, fn: Callable[[memoryview], None] | None) -> None:
        """Pass the current entry's content, piece by piece, to ``fn``."""
        e = self._pending
        if e is None:
            return
        self._pending = None
        nb = e.data_size
        tap = self.tap
        if tap is not None:
            self.tap = None
            if nb:
                fn = tap if fn is None else _both(tap, fn)
        crc_fn = self._crc
        if crc_fn is not None and nb:
            state = [0]

            def piece(p: memoryview) -> None:
                state[0] = crc_fn(p, state[0])
                if fn is not None:
                    fn(p)

            got = self._in.consume(nb, piece)
            e.crc = state[0]
        else:
            got = self._in.consume(nb, fn)
        if got < nb:
            raise TarFormatError(
                f"unexpected end of tar stream in the content of "
                f"{e.name.decode('utf-8', 'replace')!r}"
            )
        self._skip_padding(nb)  # the padding belongs to the next raw segment

    def __iter__(self) -> Iterator[TarEntry]:
        return self._entries()

    def _entries(self) -> Iterator[TarEntry]:
        inp = self._in
        while True:
            pax: dict[str, bytes] = {}
            long_name: bytes | None = None
            long_link: bytes | None = None
            while True:
                blk = self._read_block()
                if blk is None:
                    self._finish()
                    return
                if blk == _ZERO_BLOCK:
                    blk2 = self._read_block()
                    if blk2 is None or blk2 == _ZERO_BLOCK:
                        self._finish()
                        return
                    raise TarFormatError("zero block followed by a non-zero block in tar stream")
                if not _checksum_ok(blk):
                    raise TarFormatError(
                        f"invalid tar header checksum at offset {inp.offset - 512}"
                    )
                typeflag = blk[156:157]
                size = _parse_numeric(blk[124:136], "size")
                if size < 0:
                    raise TarFormatError("negative size in tar header")
                if (
                    typeflag in (XHEADER, XGLOBAL, GNU_LONGNAME, GNU_LONGLINK)
                    and size > MAX_SPECIAL
                ):
                    raise TarFormatError(
                        f"extension header of {size} bytes at offset {inp.offset - 512} is "
                        f"larger than 1 MiB"
                    )
                if typeflag in (XHEADER, XGLOBAL):
                    records = _parse_pax(self._read_special(size))
                    if typeflag == XGLOBAL:
                        # Go returns a global header as an entry of its own, with no content;
                        # its padding goes to the next raw segment.
                        entry = TarEntry(
                            name=_parse_string(blk[0:100]),
                            typeflag=XGLOBAL,
                            mode=0,
                            uid=0,
                            gid=0,
                            size=0,
                            mtime=0,
                            data_offset=inp.offset,
                        )
                        entry.raw = inp.take_raw()
                        yield entry
                        self._skip_padding(size)
                        break
                    self._skip_padding(size)
                    pax = records
                    continue
                if typeflag in (GNU_LONGNAME, GNU_LONGLINK):
                    value = _parse_string(self._read_special(size))
                    self._skip_padding(size)
                    if typeflag == GNU_LONGNAME:
                        long_name = value
                    else:
                        long_link = value
                    continue
                entry = self._make_entry(blk, typeflag, size, pax, long_name, long_link)
                entry.data_offset = inp.offset
                entry.data_size = 0 if entry.typeflag in _HEADER_ONLY else entry.size
                entry.raw = inp.take_raw()
                self._pending = entry
                yield entry
                self.read_content(None)
                break

    def _finish(self) -> None:
        self.end_offset = self._in.offset
        if self._in.capture:
            self.trailer.append(self._in.take_raw())
            self._in.drain(self.trailer.append)
        else:
            self._in.drain(None)
        self.total_size = self._in.offset

    def _make_entry(
        self,
        blk: bytes,
        typeflag: bytes,
        size: int,
        pax: dict[str, bytes],
        long_name: bytes | None,
        long_link: bytes | None,
    ) -> TarEntry:
        magic = blk[257:263]
        version = blk[263:265]
        name = _parse_string(blk[0:100])
        if magic == b"ustar\x00":
            if blk[508:512] == b"tar\x00":
                prefix = _parse_string(blk[345:476])  # star
            else:
                prefix = _parse_string(blk[345:500])
            if prefix:
                name = prefix + b"/" + name
        elif not (magic == b"ustar " and version == b" \x00"):
            pass  # V7: no prefix, no owner names
        entry = TarEntry(
            name=name,
            typeflag=typeflag,
            mode=_parse_numeric(blk[100:108], "mode"),
            uid=_parse_numeric(blk[108:116], "uid"),
            gid=_parse_numeric(blk[116:124], "gid"),
            size=size,
            mtime=_parse_numeric(blk[136:148], "mtime"),
            linkname=_parse_string(blk[157:257]),
        )
        if typeflag in (CHAR, BLOCKDEV) and magic in (b"ustar\x00", b"ustar "):
            entry.devmajor = _parse_numeric(blk[329:337], "devmajor")
            entry.devminor = _parse_numeric(blk[337:345], "devminor")
        for key, value in pax.items():
            if key == "path":
                entry.name = value
            elif key == "linkpath":
                entry.linkname = value
            elif key in ("uid", "gid", "size"):
                if _DECIMAL.fullmatch(value) is None or not 0 <= int(value) <= _INT64_MAX:
                    raise TarFormatError(f"invalid PAX {key} record {value[:40]!r}")
                setattr(entry, key, int(value))
            elif key == "mtime":
                text = value.decode("ascii", "replace")
                if not _PAX_TIME.match(text) or abs(int(text.split(".")[0])) > _INT64_MAX:
                    raise TarFormatError(f"invalid PAX mtime record {value[:40]!r}")
                entry.pax_mtime = text
                entry.mtime = int(text.split(".")[0])
            elif key.startswith("SCHILY.xattr."):
                entry.xattrs[key[len("SCHILY.xattr.") :]] = value
            elif key.startswith("GNU.sparse."):
                entry.typeflag = GNU_SPARSE
        if long_name is not None:
            entry.name = long_name
        if long_link is not None:
            entry.linkname = long_link
        if entry.typeflag == REGA:
            entry.typeflag = DIR if entry.name.endswith(b"/") else REG
        return entry


# ---------------------------------------------------------------------------------------------
# Writer


def _octal(value: int, width: int) -> bytes:
    """``width``-byte numeric field: zero-padded octal digits and a NUL."""
    return b"%0*o\x00" % (width - 1, value)


def _fits_octal(value: int, width: int) -> bool:
    return 0 <= value < 8 ** (width - 1)


def _split_ustar(name: bytes) -> tuple[bytes, bytes] | None:
    """(prefix, name) when ``name`` fits ustar's fields, else None (as Go's writer splits)."""
    if len(name) <= 100:
        return b"", name
    length = len(name)
    if length > 156:
        length = 156
    elif name[length - 1 : length] == b"/":
        length -= 1
    i = name.rfind(b"/", 0, length)
    if i <= 0:
        return None
    suffix_len = len(name) - i - 1
    if suffix_len == 0 or suffix_len > 100 or i > 155:
        return None
    return name[:i], name[i + 1 :]


def _pax_record(key: str, value: bytes) -> bytes:
    body = b" " + key.encode() + b"=" + value + b"\n"
    n = len(body) + 1
    while len(str(n)) + len(body) != n:
        n = len(str(n)) + len(body)
    return str(n).encode() + body


_USTAR = struct.Struct("100s8s8s8s12s12s8sc100s8s32s32s8s8s155s12x")


def _ustar_block(
    name: bytes,
    prefix: bytes,
    mode: int,
    uid: int,
    gid: int,
    size: int,
    mtime: int,
    typeflag: bytes,
    linkname: bytes,
    devmajor: int,
    devminor: int,
) -> bytes:
    fields = [
        name,
        b"%07o\x00" % mode,
        b"%07o\x00" % uid,
        b"%07o\x00" % gid,
        b"%011o\x00" % size,
        b"%011o\x00" % mtime,
        b"        ",
        typeflag,
        linkname,
        b"ustar\x0000",
        b"",
        b"",
        b"%07o\x00" % devmajor,
        b"%07o\x00" % devminor,
        prefix,
    ]
    blk = _USTAR.pack(*fields)
    fields[6] = b"%06o\x00 " % sum(blk)
    return _USTAR.pack(*fields)


def _is_ascii(b: bytes) -> bool:
    return b.isascii() and b"\x00" not in b


def tar_header(
    name: str,
    typeflag: bytes,
    *,
    mode: int = 0o644,
    uid: int = 0,
    gid: int = 0,
    size: int = 0,
    mtime: int = 0,
    linkname: str = "",
    devmajor: int = 0,
    devminor: int = 0,
    xattrs: dict[str, bytes] | None = None,
    pax_mtime: str | None = None,
) -> bytes:
    """The header block(s) of one entry: an optional PAX header, then the ustar block.

    Owner names stay empty so that every extractor uses the numeric ids.
    """
    bname = name.encode("utf-8")
    blink = linkname.encode("utf-8")
    records: dict[str, bytes] = {}
    split = _split_ustar(bname) if _is_ascii(bname) else None
    if split is None:
        records["path"] = bname
        prefix, short = b"", _fallback_name(bname)
    else:
        prefix, short = split
    if len(blink) > 100 or not _is_ascii(blink):
        records["linkpath"] = blink
        blink = _fallback_name(blink)
    if not _fits_octal(uid, 8):
        records["uid"] = str(uid).encode()
        uid = 0
    if not _fits_octal(gid, 8):
        records["gid"] = str(gid).encode()
        gid = 0
    if not _fits_octal(size, 12):
        records["size"] = str(size).encode()
        size_field = 0
    else:
        size_field = size
    if pax_mtime is not None:
        records["mtime"] = pax_mtime.encode()
    if not _fits_octal(mtime, 12):
        records.setdefault("mtime", str(mtime).encode())
        mtime = 0 if mtime < 0 else 8**11 - 1
    if xattrs:
        for key, value in xattrs.items():
            records["SCHILY.xattr." + key] = value
    block = _ustar_block(
        short, prefix, mode, uid, gid, size_field, mtime, typeflag, blink, devmajor, devminor
    )
    if not records:
        return block
    body = b"".join(_pax_record(k, records[k]) for k in sorted(records))
    pax_hdr = _ustar_block(b"././@PaxHeader", b"", 0o644, 0, 0, len(body), 0, XHEADER, b"", 0, 0)
    return pax_hdr + body + bytes(-len(body) % BLOCK) + block


def _fallback_name(b: bytes) -> bytes:
    """The ustar field value written beside a PAX record: an ASCII-safe truncation."""
    ascii_only = bytes(c if 32 <= c < 127 else 0x5F for c in b)
    return ascii_only[-100:] if len(ascii_only) > 100 else ascii_only


def padding(size: int) -> bytes:
    return bytes(-size % BLOCK)


END_OF_ARCHIVE = bytes(2 * BLOCK)
