"""Tests of bootc_embed._compress: deterministic compression and strict decompression."""

from __future__ import annotations

import array
import gzip
import hashlib
import io
import struct
import zlib

import pytest
import zstandard

from bootc_embed import _compress as c
from bootc_embed.errors import BootcEmbedError, CompressionError

MiB = 1 << 20


def pseudo_random(n: int, seed: bytes = b"bootc-embed") -> bytes:
    """Incompressible bytes that depend on nothing but *n* and *seed* (SHA-256 counter mode)."""
    blocks = (n + 31) // 32
    return b"".join(hashlib.sha256(seed + i.to_bytes(8, "little")).digest() for i in range(blocks))[
        :n
    ]


def text(n: int) -> bytes:
    """Compressible, tar-like text that depends only on *n*."""
    lines = []
    size = 0
    i = 0
    while size < n:
        line = (
            f"usr/lib/python3/site-packages/pkg{i % 97}/module_{i % 1013}.py "
            f"mode=0644 uid={i % 7} size={(i * 7919) % 100_003} sha={i * 2654435761 % 2**32:08x}\n"
        ).encode()
        lines.append(line)
        size += len(line)
        i += 1
    return b"".join(lines)[:n]


def mixed(n: int) -> bytes:
    """Text, incompressible bytes and zero runs, *n* bytes in all."""
    quarter = n // 4
    return (text(2 * quarter) + pseudo_random(quarter) + bytes(n - 3 * quarter))[:n]


SAMPLE = mixed(MiB + MiB // 2)  # crosses one CHUNK_SIZE boundary
ALL_LEVELS = [(alg, level) for alg in ("gzip", "zstd") for level in c.LEVELS[alg]]


def decompress_reference(algorithm: str, blob: bytes) -> bytes:
    """Decompress with another implementation than ours (stdlib gzip, zstandard)."""
    if algorithm == "gzip":
        return gzip.decompress(blob)
    reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(blob), read_across_frames=True)
    return reader.read()


def ours(blob: bytes, kind: c.Kind) -> bytes:
    return c.open_decompressed(io.BytesIO(blob), kind).read()


def gzip_member(
    payload: bytes,
    *,
    extra: bytes | None = None,
    name: bytes | None = None,
    comment: bytes | None = None,
    hcrc: bool = False,
    mtime: int = 0,
) -> bytes:
    """A gzip member with the given optional header fields, deflated by the stdlib."""
    flags = (
        (0x04 if extra is not None else 0)
        | (0x08 if name is not None else 0)
        | (0x10 if comment is not None else 0)
        | (0x02 if hcrc else 0)
    )
    header = b"\x1f\x8b\x08" + bytes([flags]) + struct.pack("<I", mtime) + b"\x00\x03"
    if extra is not None:
        header += struct.pack("<H", len(extra)) + extra
    if name is not None:
        header += name + b"\0"
    if comment is not None:
        header += comment + b"\0"
    if hcrc:
        header += struct.pack("<H", zlib.crc32(header) & 0xFFFF)
    deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
    body = deflate.compress(payload) + deflate.flush()
    return header + body + struct.pack("<II", zlib.crc32(payload), len(payload) & 0xFFFFFFFF)


def skippable(payload: bytes, nibble: int = 0) -> bytes:
    return struct.pack("<II", 0x184D2A50 | nibble, len(payload)) + payload


# -- constants and levels ----------------------------------------------------------------------


def test_constants() -> None:
    assert c.CHUNK_SIZE == 1 << 20
    assert c.DEFAULT_LEVEL == {"gzip": 2, "zstd": 3}
    levels = c.LEVELS
    assert levels == {"gzip": range(0, 3), "zstd": range(1, 20)}
    assert c.MEDIA_TYPES == {
        "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
        "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
    }
    for algorithm, level in c.DEFAULT_LEVEL.items():
        assert level in c.LEVELS[algorithm]


@pytest.mark.parametrize(("algorithm", "level"), ALL_LEVELS)
def test_check_level_accepts_allowed(algorithm: str, level: int) -> None:
    assert c.check_level(algorithm, level) == level


def test_check_level_default() -> None:
    assert c.check_level("gzip", None) == 2
    assert c.check_level("zstd", None) == 3


@pytest.mark.parametrize(
    ("algorithm", "level", "allowed"),
    [
        ("gzip", 3, "0..2"),
        ("gzip", 9, "0..2"),
        ("gzip", -1, "0..2"),
        ("zstd", 0, "1..19"),
        ("zstd", 20, "1..19"),
        ("zstd", 22, "1..19"),
        ("zstd", -1, "1..19"),
        ("zstd", True, "1..19"),
    ],
)
def test_check_level_rejects(algorithm: str, level: int, allowed: str) -> None:
    with pytest.raises(CompressionError, match=rf"{algorithm}.*{level!r}.*{allowed}"):
        c.check_level(algorithm, level)
    with pytest.raises(CompressionError, match=allowed):
        c.CompressingWriter(algorithm, level, io.BytesIO())


@pytest.mark.parametrize("algorithm", ["xz", "bzip2", "", "GZIP", "none"])
def test_check_level_rejects_algorithm(algorithm: str) -> None:
    with pytest.raises(CompressionError, match="gzip or zstd"):
        c.check_level(algorithm, None)
    with pytest.raises(CompressionError):
        c.compress_bytes(algorithm, 1, b"x")


def test_compression_error_is_a_bootc_embed_error() -> None:
    assert issubclass(CompressionError, BootcEmbedError)


# -- compression -------------------------------------------------------------------------------


@pytest.mark.parametrize(("algorithm", "level"), ALL_LEVELS)
def test_round_trip(algorithm: str, level: int) -> None:
    blob = c.compress_bytes(algorithm, level, SAMPLE)
    assert decompress_reference(algorithm, blob) == SAMPLE
    assert ours(blob, algorithm) == SAMPLE  # type: ignore[arg-type]
    assert len(blob) < len(SAMPLE)


@pytest.mark.parametrize("algorithm", ["gzip", "zstd"])
def test_empty_input(algorithm: str) -> None:
    blob = c.compress_bytes(algorithm, c.DEFAULT_LEVEL[algorithm], b"")
    assert decompress_reference(algorithm, blob) == b""
    assert ours(blob, algorithm) == b""  # type: ignore[arg-type]


@pytest.mark.parametrize("level", c.LEVELS["gzip"])
def test_gzip_header_and_trailer(level: int) -> None:
    blob = c.compress_bytes("gzip", level, SAMPLE)
    # magic, deflate, no flags, mtime 0, XFL 0, OS 255 (unknown)
    assert blob[:10] == bytes.fromhex("1f8b 0800 00000000 00ff")
    assert blob[:10] == c.GZIP_HEADER
    crc, isize = struct.unpack("<II", blob[-8:])
    assert crc == zlib.crc32(SAMPLE)
    assert isize == len(SAMPLE)
    # Exactly one member: the raw deflate stream ends right before the trailer.
    inflate = zlib.decompressobj(-15)
    assert inflate.decompress(blob[10:]) == SAMPLE
    assert inflate.eof
    assert inflate.unused_data == blob[-8:]


@pytest.mark.parametrize("level", [1, 3, 19])
def test_zstd_frame_header(level: int) -> None:
    blob = c.compress_bytes("zstd", level, SAMPLE)
    assert blob[:4] == bytes.fromhex("28b52ffd")
    # Frame header descriptor: no content size, not single-segment, checksum, no dictionary.
    assert blob[4] == 0x04
    params = zstandard.get_frame_parameters(blob)
    assert params.content_size == zstandard.CONTENTSIZE_UNKNOWN
    assert params.has_checksum
    assert params.dict_id == 0
    assert zstandard.frame_content_size(blob) == -1


def pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def irregular_pieces(data: bytes) -> list[bytes]:
    sizes = [0, 1, 2, 3, 5, 0, 4093, 65536, MiB - 1, 1, 1, MiB + 7, 17]
    out = []
    pos = 0
    i = 0
    while pos < len(data):
        size = sizes[i % len(sizes)]
        out.append(data[pos : pos + size])
        pos += size
        i += 1
    return out


@pytest.mark.parametrize("algorithm", ["gzip", "zstd"])
def test_output_independent_of_write_sizes(algorithm: str) -> None:
    data = mixed(3 * MiB + 12345)
    level = c.DEFAULT_LEVEL[algorithm]
    expected = c.compress_bytes(algorithm, level, data)
    splits = {
        "7777": pieces(data, 7777),
        "3MiB": pieces(data, 3 * MiB),
        "CHUNK_SIZE": pieces(data, c.CHUNK_SIZE),
        "CHUNK_SIZE+1": pieces(data, c.CHUNK_SIZE + 1),
        "CHUNK_SIZE-1": pieces(data, c.CHUNK_SIZE - 1),
        "irregular": irregular_pieces(data),
    }
    for what, parts in splits.items():
        assert b"".join(parts) == data
        sink = io.BytesIO()
        with c.CompressingWriter(algorithm, level, sink) as writer:
            for part in parts:
                assert writer.write(part) == len(part)
        assert sink.getvalue() == expected, f"{algorithm}: writes of {what} changed the output"


@pytest.mark.parametrize("algorithm", ["gzip", "zstd"])
def test_output_independent_of_one_byte_writes(algorithm: str) -> None:
    data = mixed(MiB + 1000)  # every byte written alone, across a chunk boundary
    level = c.DEFAULT_LEVEL[algorithm]
    sink = io.BytesIO()
    writer = c.CompressingWriter(algorithm, level, sink)
    for i in range(len(data)):
        writer.write(data[i : i + 1])
    writer.close()
    assert sink.getvalue() == c.compress_bytes(algorithm, level, data)


@pytest.mark.parametrize("algorithm", ["gzip", "zstd"])
def test_write_accepts_buffers(algorithm: str) -> None:
    words = array.array("I", range(300_000))
    raw = words.tobytes()
    expected = c.compress_bytes(algorithm, 1, raw)
    for value in (bytearray(raw), memoryview(raw), memoryview(words), words):
        sink = io.BytesIO()
        with c.CompressingWriter(algorithm, 1, sink) as writer:
            assert writer.write(value) == len(raw)  # type: ignore[arg-type]
        assert sink.getvalue() == expected


def test_caller_buffer_may_be_reused_after_write() -> None:
    data = mixed(2 * MiB + 3)
    sink = io.BytesIO()
    buffer = bytearray(100_000)
    with c.CompressingWriter("gzip", 2, sink) as writer:
        for pos in range(0, len(data), len(buffer)):
            part = data[pos : pos + len(buffer)]
            buffer[: len(part)] = part
            writer.write(memoryview(buffer)[: len(part)])
            buffer[:] = bytes(len(buffer))  # clobber: the writer must have copied what it keeps
    assert sink.getvalue() == c.compress_bytes("gzip", 2, data)


class RecordingSink:
    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def close(self) -> None:
        self.closed = True


def test_writer_lifecycle() -> None:
    sink = RecordingSink()
    writer = c.CompressingWriter("gzip", 1, sink)  # type: ignore[arg-type]
    assert b"".join(sink.parts) == c.GZIP_HEADER  # header goes out at once
    writer.write(SAMPLE)
    assert writer.bytes_in == len(SAMPLE)
    writer.close()
    assert writer.closed
    assert not sink.closed  # the sink belongs to the caller
    blob = b"".join(sink.parts)
    assert writer.bytes_out == len(blob)
    assert blob == c.compress_bytes("gzip", 1, SAMPLE)
    writer.close()  # idempotent
    assert b"".join(sink.parts) == blob
    with pytest.raises(ValueError, match="closed"):
        writer.write(b"more")


def test_writer_context_manager_abandons_on_error() -> None:
    sink = io.BytesIO()
    with pytest.raises(RuntimeError), c.CompressingWriter("gzip", 2, sink) as writer:
        writer.write(b"partial data")
        raise RuntimeError("boom")
    assert writer.closed
    assert not sink.closed
    assert sink.getvalue() == c.GZIP_HEADER  # no deflate end, no trailer
    with pytest.raises(ValueError, match="closed"):
        writer.write(b"more")


def test_compress_bytes_matches_writer() -> None:
    for algorithm, level in (("gzip", 0), ("zstd", 7)):
        sink = io.BytesIO()
        with c.CompressingWriter(algorithm, level, sink) as writer:
            writer.write(SAMPLE)
        assert c.compress_bytes(algorithm, level, SAMPLE) == sink.getvalue()


# Golden digests: a pinned-library upgrade (or any change here) that changes a single output byte
# must be a deliberate decision, because every changed byte costs every host a download.
GOLDEN_INPUT_SHA256 = "503c3f1bc85e7001462056559c8aa6482de2ede0bf9f32d89c17ae59d73b9c0d"
GOLDEN = {
    ("gzip", 0): "5a3c0fd6f091925e8adc51cbb0c70376db555f70fcfe91bd13bd44523d12a6bc",
    ("gzip", 1): "a50d86565f2abb80bb0a9d46dd13e48a6fdb609fe4cb7d933740a1f01a7e1b1e",
    ("gzip", 2): "406da8b2bf6627d56da221b11e509fc11ff8c01369caad325bc2af35f101b64c",
    ("zstd", 1): "268ac8f4bf6a9af60eabdf6bed44a9c0961ffde591167bb120a44889553539d4",
    ("zstd", 3): "d85d080d03ce7df8eb00ea961275f62422c5838dd8aeebe148d685174b27dd00",
    ("zstd", 10): "9ecd55e78c00990cc3dc2491fc9158bc1e73696f2cd7bf357e583fda76fd03c9",
    ("zstd", 19): "0fab9c3adb982dd19086ff37cc095185ae1d72d4281c537014c884522aebeef6",
}


def golden_input() -> bytes:
    return text(900_000) + pseudo_random(700_000, b"golden") + bytes(50_000) + text(600_000)


def test_golden_input_is_stable() -> None:
    assert hashlib.sha256(golden_input()).hexdigest() == GOLDEN_INPUT_SHA256


@pytest.mark.parametrize(("algorithm", "level"), sorted(GOLDEN))
def test_golden_output(algorithm: str, level: int) -> None:
    blob = c.compress_bytes(algorithm, level, golden_input())
    assert hashlib.sha256(blob).hexdigest() == GOLDEN[(algorithm, level)], (
        f"{algorithm} level {level} output changed: layer digests of every image change"
    )


# -- detection ---------------------------------------------------------------------------------


def test_detect() -> None:
    assert c.detect(c.compress_bytes("gzip", 1, b"abc")) == "gzip"
    assert c.detect(gzip.compress(b"abc")) == "gzip"
    assert c.detect(c.compress_bytes("zstd", 3, b"abc")) == "zstd"
    assert c.detect(b"\x1f\x8b\x08") == "gzip"
    assert c.detect(bytes.fromhex("28b52ffd")) == "zstd"
    assert c.detect(b"") == "none"
    assert c.detect(b"\x1f") == "none"
    assert c.detect(b"\x1f\x8b") == "none"
    assert c.detect(b"\x1f\x8b\x07" + bytes(10)) == "none"  # not deflate
    assert c.detect(bytes.fromhex("28b52f")) == "none"
    assert c.detect(skippable(b"x") + c.compress_bytes("zstd", 3, b"")) == "none"
    assert c.detect(b"usr/\0\0\0" + bytes(505)) == "none"  # a tar header
    assert c.detect(b"BZh91AY&SY") == "none"


# -- decompression -----------------------------------------------------------------------------


def test_none_is_passed_through() -> None:
    raw = io.BytesIO(b"plain tar")
    assert c.open_decompressed(raw, "none") is raw


def test_unknown_kind() -> None:
    with pytest.raises(CompressionError):
        c.open_decompressed(io.BytesIO(b""), "xz")  # type: ignore[arg-type]


@pytest.mark.parametrize("algorithm", ["gzip", "zstd"])
def test_read_patterns(algorithm: str) -> None:
    blob = c.compress_bytes(algorithm, 1, SAMPLE)
    stream = c.open_decompressed(io.BytesIO(blob), algorithm)  # type: ignore[arg-type]
    got = bytearray()
    while block := stream.read(512):
        assert len(block) <= 512
        got += block
    assert got == SAMPLE
    stream = c.open_decompressed(io.BytesIO(blob), algorithm)  # type: ignore[arg-type]
    buffer = bytearray(3 * MiB)
    got = bytearray()
    while n := stream.readinto(buffer):
        got += buffer[:n]
    assert got == SAMPLE
    assert stream.read() == b""


@pytest.mark.parametrize("algorithm", ["gzip", "zstd"])
def test_decompression_does_not_close_source(algorithm: str) -> None:
    raw = io.BytesIO(c.compress_bytes(algorithm, 1, b"hello") + b"rest")
    stream = c.open_decompressed(raw, algorithm)  # type: ignore[arg-type]
    with pytest.raises(CompressionError):
        stream.read()
    stream.close()
    assert not raw.closed


@pytest.mark.parametrize("algorithm", ["gzip", "zstd"])
def test_large_expansion_reads_are_bounded(algorithm: str) -> None:
    zeros = 64 * MiB
    sink = io.BytesIO()
    with c.CompressingWriter(algorithm, 1, sink) as writer:
        block = bytes(MiB)
        for _ in range(zeros // MiB):
            writer.write(block)
    blob = sink.getvalue()
    assert len(blob) < MiB
    stream = c.open_decompressed(io.BytesIO(blob), algorithm)  # type: ignore[arg-type]
    total = 0
    while block := stream.read(MiB):
        assert len(block) <= MiB
        assert not any(block)
        total += len(block)
    assert total == zeros


def test_gzip_multi_member() -> None:
    a, b = SAMPLE[:700_000], SAMPLE[700_000:]
    blob = c.compress_bytes("gzip", 2, a) + c.compress_bytes("gzip", 0, b)
    assert ours(blob, "gzip") == SAMPLE
    assert gzip.decompress(blob) == SAMPLE
    # Empty members and members from other compressors with every optional header field.
    parts = [
        c.compress_bytes("gzip", 1, b""),
        gzip.compress(b"stdlib ", mtime=1234567890),
        gzip_member(b"extra ", extra=b"\x01\x02AB" + bytes(300)),
        gzip_member(b"name ", name=b"layer.tar"),
        gzip_member(b"comment ", comment=b"made by hand"),
        gzip_member(b"all", extra=b"xy", name=b"n" * 511, comment=b"c" * 511, hcrc=True),
        gzip_member(b""),
    ]
    blob = b"".join(parts)
    assert gzip.decompress(blob) == b"stdlib extra name comment all"
    assert ours(blob, "gzip") == b"stdlib extra name comment all"


class Dribble(io.RawIOBase):
    """A source that returns at most *step* bytes per read (headers split across reads)."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data = data
        self._pos = 0
        self._step = step

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        n = min(self._step, len(buffer), len(self._data) - self._pos)
        buffer[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        return n


@pytest.mark.parametrize("step", [1, 3, 7, 1000])
def test_sources_returning_short_reads(step: int) -> None:
    payload = mixed(50_000)
    gz = gzip_member(
        payload[:20_000], extra=b"e" * 40, name=b"x" * 300, comment=b"c", hcrc=True
    ) + c.compress_bytes("gzip", 2, payload[20_000:])
    zst = (
        skippable(b"s" * 20)
        + c.compress_bytes("zstd", 3, payload[:30_000])
        + c.compress_bytes("zstd", 19, payload[30_000:])
        + skippable(b"", 15)
    )
    for kind, blob in (("gzip", gz), ("zstd", zst)):
        stream = c.open_decompressed(Dribble(blob, step), kind)  # type: ignore[arg-type]
        assert stream.read() == payload, kind


def test_zstd_frames_and_skippable_frames() -> None:
    a, b = SAMPLE[:800_000], SAMPLE[800_000:]
    one_shot = zstandard.ZstdCompressor(level=5, write_content_size=True).compress(b)
    assert zstandard.frame_content_size(one_shot) == len(b)
    blob = (
        skippable(b"zstd:chunked-like metadata")
        + c.compress_bytes("zstd", 3, a)
        + skippable(b"", 7)
        + one_shot
        + c.compress_bytes("zstd", 1, b"")
        + skippable(bytes(100_000), 15)
    )
    assert ours(blob, "zstd") == SAMPLE
    # Frames written by a multi-threaded compressor, without checksum, in a single segment.
    threaded = zstandard.ZstdCompressor(level=3, threads=2, write_checksum=False).compress(SAMPLE)
    assert ours(threaded, "zstd") == SAMPLE
    small = zstandard.ZstdCompressor(level=3, write_content_size=True).compress(b"tiny")
    assert ours(small + small, "zstd") == b"tinytiny"


def test_zstd_only_skippable_frames() -> None:
    assert ours(skippable(b"abc"), "zstd") == b""


ONE_BYTE_MEMBER = c.compress_bytes("gzip", 1, b"a")


@pytest.mark.parametrize(
    ("blob", "clean_ends"),
    [
        (c.compress_bytes("gzip", 2, mixed(40_000)), set()),
        (gzip_member(b"x" * 1000, extra=b"ab", name=b"nm", comment=b"cm", hcrc=True), set()),
        (ONE_BYTE_MEMBER + c.compress_bytes("gzip", 1, b"b"), {len(ONE_BYTE_MEMBER)}),
    ],
    ids=["ours", "all-header-fields", "two-members"],
)
def test_gzip_truncated_anywhere(blob: bytes, clean_ends: set[int]) -> None:
    for cut in range(len(blob)):
        if cut in clean_ends:
            assert ours(blob[:cut], "gzip") == b"a"
            continue
        with pytest.raises(CompressionError, match="truncated gzip"):
            ours(blob[:cut], "gzip")


def zstd_structure_offsets(blob: bytes) -> list[int]:
    """Offsets where a frame, block header, block body or checksum starts (an independent walk)."""
    offsets = []
    pos = 0
    while pos < len(blob):
        offsets.append(pos)
        magic = int.from_bytes(blob[pos : pos + 4], "little")
        if magic & 0xFFFFFFF0 == 0x184D2A50:
            pos += 8 + int.from_bytes(blob[pos + 4 : pos + 8], "little")
            continue
        assert magic == 0xFD2FB528
        descriptor = blob[pos + 4]
        single = descriptor & 0x20
        pos += 5 + (not single) + (0, 1, 2, 4)[descriptor & 3]
        pos += (1 if single else 0, 2, 4, 8)[descriptor >> 6]
        last = False
        while not last:
            offsets.append(pos)
            header = int.from_bytes(blob[pos : pos + 3], "little")
            last = bool(header & 1)
            pos += 3
            offsets.append(pos)
            pos += 1 if (header >> 1) & 3 == 1 else header >> 3
        if descriptor & 0x04:
            offsets.append(pos)
            pos += 4
    assert pos == len(blob)
    return offsets


def test_zstd_truncated_anywhere() -> None:
    payload = mixed(600_000)
    first = c.compress_bytes("zstd", 3, payload)  # several blocks, raw and compressed
    second = zstandard.ZstdCompressor(level=1, write_content_size=True).compress(b"x" * 5000)
    rle = zstandard.ZstdCompressor(level=1).compress(bytes(300_000))  # RLE blocks after the first
    blob = first + second + skippable(b"s") + rle
    frame_ends = {len(first), len(first) + len(second), len(first) + len(second) + 9}
    structure = zstd_structure_offsets(blob)
    assert len(structure) > 20
    cuts = set(range(0, len(blob), 101))
    for offset in structure:  # every cut near a frame, block or checksum boundary
        cuts.update(range(max(0, offset - 3), min(len(blob), offset + 5)))
    for cut in sorted(cuts - frame_ends):
        with pytest.raises(CompressionError, match="truncated zstd"):
            ours(blob[:cut], "zstd")
    assert ours(blob[: len(first)], "zstd") == payload
    assert ours(blob[: len(first) + len(second) + 9], "zstd") == payload + b"x" * 5000


@pytest.mark.parametrize("kind", ["gzip", "zstd"])
def test_empty_stream_is_truncated(kind: c.Kind) -> None:
    with pytest.raises(CompressionError, match=f"truncated {kind}.*empty"):
        ours(b"", kind)


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (b"PK\x03\x04" + bytes(30), "not gzip data"),
        (b"\x1f\x8b\x07" + bytes(30), "compression method"),
        (c.compress_bytes("gzip", 2, SAMPLE) + b"x", "trailing data"),
        (c.compress_bytes("gzip", 2, SAMPLE) + b"garbage!garbage!", "trailing data"),
        (c.compress_bytes("gzip", 2, SAMPLE) + bytes(1), "trailing data"),
        (c.compress_bytes("gzip", 2, SAMPLE) + bytes(1024), "trailing data"),  # zero padding
        (c.compress_bytes("gzip", 2, b"a") + b"\x1f\x8b\x09" + bytes(20), "compression method"),
        (gzip_member(b"x", name=b"n" * 512), "longer than 511"),
        (gzip_member(b"x", comment=b"c" * 600), "longer than 511"),
    ],
    ids=[
        "magic",
        "method",
        "one-trailing-byte",
        "trailing-garbage",
        "one-zero-byte",
        "zero-padding",
        "bad-second-member",
        "long-name",
        "long-comment",
    ],
)
def test_gzip_corrupt_structure(blob: bytes, message: str) -> None:
    with pytest.raises(CompressionError, match=rf"corrupt gzip.*{message}"):
        ours(blob, "gzip")


def test_gzip_bad_header_crc() -> None:
    blob = bytearray(gzip_member(b"payload", name=b"abc", hcrc=True))
    blob[14] ^= 0x01  # last byte of FHCRC (10 fixed + "abc\0" = 14, FHCRC at 14..15)
    with pytest.raises(CompressionError, match=r"corrupt gzip.*header checksum"):
        ours(bytes(blob), "gzip")


@pytest.mark.parametrize("where", ["crc", "isize", "body"])
def test_gzip_corrupt_content(where: str) -> None:
    blob = bytearray(c.compress_bytes("gzip", 2, SAMPLE))
    index = {"crc": -8, "isize": -2, "body": len(blob) // 2}[where]
    blob[index] ^= 0x40
    with pytest.raises(CompressionError, match="corrupt gzip"):
        ours(bytes(blob), "gzip")


def test_gzip_corrupt_deflate_block() -> None:
    blob = bytearray(c.compress_bytes("gzip", 2, SAMPLE))
    blob[10] |= 0x06  # BTYPE 11: reserved block type
    with pytest.raises(CompressionError, match="corrupt gzip"):
        ours(bytes(blob), "gzip")


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (b"PK\x03\x04" + bytes(30), "not zstd data"),
        (c.compress_bytes("zstd", 3, SAMPLE) + b"x", "trailing data"),
        (c.compress_bytes("zstd", 3, SAMPLE) + bytes(1), "trailing data"),
        (c.compress_bytes("zstd", 3, SAMPLE) + bytes(512), "trailing data"),
        (c.compress_bytes("zstd", 3, b"a") + b"garbage!", "trailing data"),
        (bytes.fromhex("28b52ffd") + b"\x08" + bytes(20), "reserved bit"),
        (bytes.fromhex("28b52ffd") + b"\x20\x05" + b"\x07\x00\x00", "reserved block type"),
    ],
    ids=[
        "magic",
        "one-trailing-byte",
        "one-zero-byte",
        "zero-padding",
        "trailing-garbage",
        "reserved-bit",
        "reserved-block",
    ],
)
def test_zstd_corrupt_structure(blob: bytes, message: str) -> None:
    with pytest.raises(CompressionError, match=rf"corrupt zstd.*{message}"):
        ours(blob, "zstd")


@pytest.mark.parametrize("where", ["checksum", "body"])
def test_zstd_corrupt_content(where: str) -> None:
    blob = bytearray(c.compress_bytes("zstd", 3, SAMPLE))
    blob[-1 if where == "checksum" else len(blob) // 2] ^= 0x40
    with pytest.raises(CompressionError, match="corrupt zstd"):
        ours(bytes(blob), "zstd")


def test_zstd_content_size_mismatch() -> None:
    frame = bytearray(zstandard.ZstdCompressor(level=3, write_content_size=True).compress(SAMPLE))
    params = zstandard.get_frame_parameters(bytes(frame))
    assert params.content_size == len(SAMPLE)
    # Bump the frame content size field by one.
    descriptor = frame[4]
    assert descriptor >> 6 == 2  # a 4-byte content size
    offset = 5 if descriptor & 0x20 else 6  # after the window descriptor, if any
    fcs = int.from_bytes(frame[offset : offset + 4], "little")
    assert fcs == len(SAMPLE)
    frame[offset : offset + 4] = (fcs + 1).to_bytes(4, "little")
    with pytest.raises(CompressionError, match="corrupt zstd"):
        ours(bytes(frame), "zstd")


def test_zstd_needs_dictionary() -> None:
    samples = [text(1000 + i * 37)[i:] for i in range(200)]
    dictionary = zstandard.train_dictionary(2048, samples)
    blob = zstandard.ZstdCompressor(dict_data=dictionary).compress(text(5000))
    with pytest.raises(CompressionError, match="corrupt zstd"):
        ours(blob, "zstd")
