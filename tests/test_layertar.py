"""``bootc_embed._layertar``: a layer blob of an OCI layout opened as a tar stream, whatever its
compression, with the blob's digest checked at the end. The blobs are written here with the
standard library and the zstandard package, not with bootc_embed."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import zstandard
from unit_support.oci import info, tar_of, write_layout

from bootc_embed._layertar import LayerTar, open_layer_tar
from bootc_embed._model import Descriptor
from bootc_embed._reference import parse_reference
from bootc_embed._tar import TarFormatError
from bootc_embed._transports import ImageSource, open_source
from bootc_embed.errors import CompressionError, DigestMismatchError

FILES = {"etc/hello": b"hello\n", "usr/bin/app": bytes(range(256)) * 4000}
TAR = tar_of(
    [(info("etc", tarfile.DIRTYPE), b"")] + [(info(name), data) for name, data in FILES.items()]
)
COMPRESS = {
    "gzip": lambda tar: gzip.compress(tar, mtime=0),
    "zstd": lambda tar: zstandard.ZstdCompressor(level=3).compress(tar),
    "none": lambda tar: tar,
}


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def source(tmp_path: Path) -> Iterator[ImageSource]:
    """An OCI layout; blobs are added to it by :func:`_put`."""
    src = open_source(parse_reference(write_layout(tmp_path / "layout", [TAR])))
    yield src
    src.close()


def _put(source: ImageSource, blob: bytes, size: int | None = None) -> Descriptor:
    root = Path(source.reference.path)
    digest = _digest(blob)
    (root / "blobs" / "sha256" / digest[7:]).write_bytes(blob)
    return Descriptor("application/vnd.oci.image.layer.v1.tar", digest, len(blob) + (size or 0))


def _read_all(layer: LayerTar) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for e in layer:
        buf = bytearray()
        layer.reader.read_content(buf.extend)
        out[e.name.decode()] = bytes(buf)
    return out


@pytest.mark.parametrize("kind", sorted(COMPRESS))
def test_every_compression_reads_as_the_same_tar(source: ImageSource, kind: str) -> None:
    blob = COMPRESS[kind](TAR)
    desc = _put(source, blob)
    counted: list[int] = []
    copy = io.BytesIO()
    with open_layer_tar(
        source, desc, "layer", diff_hash=True, advance=counted.append, copy_to=copy
    ) as layer:
        assert layer.compression == kind
        entries = _read_all(layer)
    assert entries == {"etc/": b"", **FILES}
    assert layer.diff_digest == _digest(TAR)
    assert sum(counted) == len(blob)  # the whole blob went through the stream
    assert copy.getvalue() == blob


def test_the_digest_is_checked_when_the_block_ends_early(source: ImageSource) -> None:
    blob = bytearray(TAR)
    desc = _put(source, bytes(blob))
    blob[-2000] ^= 0xFF  # near the end: the first entries still read
    path = Path(source.reference.path) / "blobs" / "sha256" / desc.digest[7:]
    path.write_bytes(bytes(blob))
    first = []
    with (
        pytest.raises(DigestMismatchError, match="layer 1: blob content does not match"),
        open_layer_tar(source, desc, "layer 1") as layer,
    ):
        first.append(next(iter(layer)).name)
    assert first == [b"etc/"]
    # not read at all: still checked
    with pytest.raises(DigestMismatchError), open_layer_tar(source, desc, "layer 1"):
        pass


def test_a_blob_shorter_than_its_descriptor_is_truncated(source: ImageSource) -> None:
    desc = _put(source, TAR, size=10)
    with (
        pytest.raises(DigestMismatchError, match="is truncated"),
        open_layer_tar(source, desc, "layer") as layer,
    ):
        _read_all(layer)


def test_errors_of_the_content_are_left_to_the_caller(source: ImageSource) -> None:
    corrupt = bytearray(gzip.compress(TAR, mtime=0))
    corrupt[20:40] = bytes(20)
    desc = _put(source, bytes(corrupt))
    with pytest.raises(CompressionError), open_layer_tar(source, desc, "layer") as layer:
        _read_all(layer)
    not_tar = _put(source, gzip.compress(b"x" * 1000, mtime=0))
    with pytest.raises(TarFormatError), open_layer_tar(source, not_tar, "layer") as layer:
        _read_all(layer)


def test_a_layer_tar_used_by_hand_verifies_on_request(source: ImageSource) -> None:
    desc = _put(source, COMPRESS["zstd"](TAR))
    with LayerTar(source, desc, "layer", capture=True) as layer:
        names = [e.name for e in layer]
        layer.verify()
        with pytest.raises(ValueError, match="without diff_hash"):
            _ = layer.diff_digest
    assert names == [b"etc/", b"etc/hello", b"usr/bin/app"]
    assert layer.reader.trailer  # capture: the raw bytes after the last entry were kept
