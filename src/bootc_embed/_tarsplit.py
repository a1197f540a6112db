"""tar-split records (``github.com/vbatts/tar-split/tar/storage``).

podman rebuilds a layer's original tar from these records and the files under ``diff/`` when an
image is pushed, saved or copied out of the store. The stream is gzip of JSON lines, each an
entry: a *segment* (type 2) carries raw bytes verbatim (headers, padding, end of archive); a
*file* (type 1) names the entry whose content is read back from ``diff/`` and checked against
the CRC-64/ISO in its payload.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Iterator
from typing import IO, BinaryIO

import fastcrc

from . import _compress
from .errors import BootcEmbedError

SEGMENT = 2
FILE = 1
_crc64 = fastcrc.crc64.go_iso
# tar-split is always gzip at this level, whatever the layer compression, so that the bytes
# of an output layer never depend on --compression.
TARSPLIT_LEVEL = 2


def crc64(data: bytes | memoryview, crc: int = 0) -> int:
    """CRC-64/ISO as Go's ``crc64.ISO`` table, chainable like ``crc64.Update``."""
    return _crc64(data, crc) if crc else _crc64(data)


# Printable ASCII that Go's encoder writes as is: no quote, backslash, <, > or &.
_PLAIN = re.compile(r"[ !#-%'-;=?-\[\]-~]*")


def _go_json_string(s: str) -> str:
    if _PLAIN.fullmatch(s):
        return f'"{s}"'  # the usual file name
    return (
        json.dumps(s, ensure_ascii=False)
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


class TarSplitWriter:
    """Writes tar-split JSON lines, gzip-compressed, to ``sink``."""

    def __init__(self, sink: BinaryIO) -> None:
        self._gz = _compress.CompressingWriter("gzip", TARSPLIT_LEVEL, sink)
        self._position = 0
        self._lines: list[bytes] = []
        self._pending = 0

    def _add(self, line: bytes) -> None:
        self._lines.append(line)
        self._pending += len(line)
        if self._pending >= 1 << 16:
            self._flush()

    def _flush(self) -> None:
        self._gz.write(b"".join(self._lines))
        self._lines.clear()
        self._pending = 0

    def segment(self, payload: bytes | memoryview) -> None:
        if not len(payload):
            return
        self._add(
            b'{"type":2,"payload":"%b","position":%d}\n'
            % (binascii.b2a_base64(payload, newline=False), self._position)
        )
        self._position += 1

    def file(self, name: bytes, size: int, crc: int) -> None:
        try:
            name_part = b'"name":' + _go_json_string(name.decode("utf-8")).encode("utf-8")
        except UnicodeDecodeError:
            name_part = b'"name_raw":"%b"' % binascii.b2a_base64(name, newline=False)
        size_part = b',"size":%d' % size if size else b""
        payload = (
            b'"%b"' % binascii.b2a_base64(crc.to_bytes(8, "big"), newline=False)
            if size > 0
            else b"null"
        )
        self._add(
            b'{"type":1,%b%b,"payload":%b,"position":%d}\n'
            % (name_part, size_part, payload, self._position)
        )
        self._position += 1

    def close(self) -> None:
        self._flush()
        self._gz.close()


def write_tarsplit(tar: BinaryIO, sink: BinaryIO) -> None:
    """tar-split records of a whole uncompressed tar stream."""
    from ._tar import TarReader

    reader = TarReader(tar, crc=crc64, capture=True)
    ts = TarSplitWriter(sink)
    for e in reader:
        ts.segment(e.raw)
        reader.read_content(None)
        ts.file(e.name, e.size, e.crc)
    for piece in reader.trailer:
        ts.segment(piece)
    ts.close()


def read_entries(stream: BinaryIO) -> Iterator[dict[str, object]]:
    """Decoded entries of a tar-split stream (gzip of JSON lines)."""
    raw = _compress.open_decompressed(stream, "gzip")
    pending = b""
    while True:
        chunk = raw.read(1 << 16)
        if not chunk:
            break
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if line.strip():
                yield json.loads(line)
    if pending.strip():
        yield json.loads(pending)


def entry_name(entry: dict[str, object]) -> bytes:
    if entry.get("name_raw"):
        return base64.b64decode(str(entry["name_raw"]))
    return str(entry.get("name") or "").encode("utf-8")


def reassemble(
    stream: BinaryIO,
    open_file: Callable[[bytes], IO[bytes]],
    write: Callable[[bytes], object],
) -> None:
    """Rebuild the original tar: segments verbatim, file contents from ``open_file(name)``.

    Every file's content is checked against its size and CRC; a mismatch raises
    :class:`BootcEmbedError` naming the entry.
    """
    for entry in read_entries(stream):
        if entry.get("type") == SEGMENT:
            write(base64.b64decode(str(entry.get("payload") or "")))
            continue
        size = int(entry.get("size") or 0)  # type: ignore[call-overload]
        if size == 0:
            continue
        name = entry_name(entry)
        crc = 0
        remaining = size
        with open_file(name) as f:
            while remaining:
                chunk = f.read(min(remaining, 1 << 20))
                if not chunk:
                    break
                crc = crc64(chunk, crc)
                remaining -= len(chunk)
                write(chunk)
        expected = base64.b64decode(str(entry.get("payload") or ""))
        if remaining or crc.to_bytes(8, "big") != expected:
            shown = name.decode("utf-8", "replace")
            raise BootcEmbedError(f"tar-split: content of {shown!r} does not match its record")
