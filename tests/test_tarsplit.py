"""tar-split records (``bootc_embed._tarsplit``) against the tar-split files real podman wrote
for the reference image, reassembly of the original tar, and the CRC-64 podman checks."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import posixpath
import tarfile
from pathlib import Path
from typing import IO, Any

import pytest
from unit_support.oci import info, tar_of

from bootc_embed import BootcEmbedError, _tarsplit
from bootc_embed._tarsplit import crc64, entry_name, read_entries, reassemble, write_tarsplit

REF = Path(__file__).parent / "data" / "podman-ref"
RECORDINGS = {"podman-4.3.1": REF, "podman-5.4.2": REF / "podman5"}
EXPECTED = json.loads((REF / "expected.json").read_text())
LAYERS = EXPECTED["layers"]
NON_UTF8_NAME = b"srv/caf\xe9"


def _layer_tar(layer: dict[str, Any]) -> bytes:
    blob = (REF / "image" / "blobs" / "sha256" / layer["blob_digest"][7:]).read_bytes()
    tar = gzip.decompress(blob) if blob[:2] == b"\x1f\x8b" else blob
    assert "sha256:" + hashlib.sha256(tar).hexdigest() == layer["diff_id"]
    return tar


def _ours(tar: bytes) -> bytes:
    sink = io.BytesIO()
    write_tarsplit(io.BytesIO(tar), sink)
    return sink.getvalue()


def _podmans(recording: str, layer: dict[str, Any]) -> bytes:
    return (RECORDINGS[recording] / "tar-split" / f"{layer['id']}.tar-split.gz").read_bytes()


def _decoded(stream: bytes) -> list[dict[str, Any]]:
    return list(read_entries(io.BytesIO(stream)))


def _without_empty_segments(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # podman 4.3 (tar-split in containers/storage 1.43) appends one empty segment at the very
    # end; podman 5 does not. It carries no bytes, so it is left out of the comparison. No other
    # adjustment is needed: segment boundaries, trailer included, match podman's exactly.
    return [e for e in entries if not (e["type"] == _tarsplit.SEGMENT and e["payload"] == "")]


@pytest.mark.parametrize("recording", sorted(RECORDINGS))
@pytest.mark.parametrize("layer", LAYERS, ids=lambda la: f"L{la['index']}")
def test_write_tarsplit_gives_the_entries_podman_wrote(
    recording: str, layer: dict[str, Any]
) -> None:
    theirs = _decoded(_podmans(recording, layer))
    ours = _decoded(_ours(_layer_tar(layer)))
    assert _without_empty_segments(ours) == _without_empty_segments(theirs)
    assert all(e["position"] == i for i, e in enumerate(ours))
    if recording == "podman-4.3.1":
        assert theirs[-1] == {"type": 2, "payload": "", "position": len(ours)}


@pytest.mark.parametrize("layer", LAYERS, ids=lambda la: f"L{la['index']}")
def test_write_tarsplit_json_lines_are_byte_identical_to_podman_5(layer: dict[str, Any]) -> None:
    # The gzip bytes differ (other compressor), the JSON text must not.
    theirs = gzip.decompress(_podmans("podman-5.4.2", layer))
    assert gzip.decompress(_ours(_layer_tar(layer))) == theirs


def test_a_non_utf8_name_is_recorded_as_name_raw_like_podman() -> None:
    layer = LAYERS[2]
    for entries in (_decoded(_ours(_layer_tar(layer))), _decoded(_podmans("podman-4.3.1", layer))):
        raw = [e for e in entries if "name_raw" in e]
        assert len(raw) == 1
        (entry,) = raw
        assert "name" not in entry
        assert base64.b64decode(entry["name_raw"]) == NON_UTF8_NAME
        assert entry_name(entry) == NON_UTF8_NAME
        assert entry["size"] == 38


def test_file_entries_carry_the_crc64_of_the_content_and_null_for_empty_files() -> None:
    tar = _layer_tar(LAYERS[0])
    contents = _contents_by_name(tar)
    files = [e for e in _decoded(_ours(tar)) if e["type"] == _tarsplit.FILE]
    assert files
    for e in files:
        data = contents.get(entry_name(e), b"")
        if e.get("size"):
            assert e["size"] == len(data)
            assert base64.b64decode(e["payload"]) == crc64(data).to_bytes(8, "big")
        else:
            assert "size" not in e
            assert e["payload"] is None


# -- reassembly ------------------------------------------------------------------------------------


def _contents_by_name(tar: bytes) -> dict[bytes, bytes]:
    """Content of every regular file by its raw tar name (Python's reader, not ours)."""
    out: dict[bytes, bytes] = {}
    with tarfile.open(
        fileobj=io.BytesIO(tar), mode="r:", encoding="utf-8", errors="surrogateescape"
    ) as tf:
        for m in tf:
            if m.isreg():
                f = tf.extractfile(m)
                assert f is not None
                out[m.name.encode("utf-8", "surrogateescape")] = f.read()
    return out


def _clean(name: bytes) -> bytes:
    return posixpath.normpath(b"/" + name).lstrip(b"/")


def _diff_dir(tar: bytes, root: Path) -> Path:
    """The layer's regular files written under ``root`` by cleaned name, as in ``diff/``."""
    for name, data in _contents_by_name(tar).items():
        path = os.path.join(os.fsencode(root), _clean(name))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
    return root


def _opener(root: Path):  # type: ignore[no-untyped-def]
    def open_file(name: bytes) -> IO[bytes]:
        return open(os.path.join(os.fsencode(root), _clean(name)), "rb")

    return open_file


def _reassembled(tarsplit: bytes, root: Path) -> bytes:
    out = io.BytesIO()
    reassemble(io.BytesIO(tarsplit), _opener(root), out.write)
    return out.getvalue()


@pytest.mark.parametrize("layer", LAYERS, ids=lambda la: f"L{la['index']}")
def test_reassemble_rebuilds_the_exact_original_tar_from_our_tarsplit(
    layer: dict[str, Any], tmp_path: Path
) -> None:
    tar = _layer_tar(layer)
    rebuilt = _reassembled(_ours(tar), _diff_dir(tar, tmp_path))
    assert rebuilt == tar
    assert "sha256:" + hashlib.sha256(rebuilt).hexdigest() == layer["diff_id"]


@pytest.mark.parametrize("recording", sorted(RECORDINGS))
@pytest.mark.parametrize("layer", LAYERS, ids=lambda la: f"L{la['index']}")
def test_reassemble_rebuilds_the_original_tar_from_podmans_tarsplit(
    recording: str, layer: dict[str, Any], tmp_path: Path
) -> None:
    tar = _layer_tar(layer)
    rebuilt = _reassembled(_podmans(recording, layer), _diff_dir(tar, tmp_path))
    assert "sha256:" + hashlib.sha256(rebuilt).hexdigest() == layer["diff_id"]


def test_reassemble_raises_when_a_file_content_does_not_match_its_crc(tmp_path: Path) -> None:
    tar = _layer_tar(LAYERS[0])
    root = _diff_dir(tar, tmp_path)
    target = root / "etc" / "hosts"
    data = bytearray(target.read_bytes())
    data[0] ^= 0x01  # same size, other content
    target.write_bytes(bytes(data))
    with pytest.raises(BootcEmbedError, match="etc/hosts"):
        _reassembled(_ours(tar), root)


def test_reassemble_raises_when_a_file_is_shorter_than_its_record(tmp_path: Path) -> None:
    tar = _layer_tar(LAYERS[0])
    root = _diff_dir(tar, tmp_path)
    target = root / "etc" / "hosts"
    target.write_bytes(target.read_bytes()[:-1])
    with pytest.raises(BootcEmbedError, match="etc/hosts"):
        _reassembled(_ours(tar), root)


def test_reassemble_raises_for_a_non_utf8_name_whose_content_changed(tmp_path: Path) -> None:
    tar = _layer_tar(LAYERS[2])
    root = _diff_dir(tar, tmp_path)
    path = os.path.join(os.fsencode(root), NON_UTF8_NAME)
    with open(path, "r+b") as f:
        first = f.read(1)
        f.seek(0)
        f.write(bytes([first[0] ^ 0xFF]))
    with pytest.raises(BootcEmbedError):
        _reassembled(_ours(tar), root)


@pytest.mark.parametrize(
    "tail",
    [b"", bytes(1024), bytes(1024 + 10240), bytes(1024) + b"trailing garbage" * 100],
    ids=["no-end-of-archive", "end-of-archive-only", "record-padding", "garbage-after-end"],
)
def test_tarsplit_round_trips_any_ending_and_a_multi_mebibyte_file(
    tail: bytes, tmp_path: Path
) -> None:
    big = os.urandom(3 << 20 | 123)
    body = tar_of(
        [
            (info("d", tarfile.DIRTYPE), b""),
            (info("d/big.bin"), big),
            (info("d/empty"), b""),
            (info("d/" + "x" * 150), b"long name"),
            (info("d/small", uid=3_000_000), b"abc"),
        ],
        fmt=tarfile.PAX_FORMAT,
    )
    end = body.rstrip(b"\0")
    end += bytes(-len(end) % 512)  # the last content's padding, without end-of-archive blocks
    tar = end + tail
    tarsplit = _ours(tar)
    entries = _decoded(tarsplit)
    # segments with the files' contents put back in place give the input
    contents = _contents_by_name(end + bytes(1024))
    rebuilt = b"".join(
        base64.b64decode(e["payload"])
        if e["type"] == _tarsplit.SEGMENT
        else contents.get(entry_name(e), b"")
        for e in entries
    )
    assert rebuilt == tar
    assert _reassembled(tarsplit, _diff_dir(end + bytes(1024), tmp_path)) == tar


# -- CRC-64 ----------------------------------------------------------------------------------------


def test_crc64_is_gos_crc64_iso_check_value() -> None:
    assert crc64(b"123456789") == 0xB90956C775A41001
    assert crc64(b"") == 0


def test_crc64_chains_like_gos_update() -> None:
    a, b = b"hello, ", b"world" * 1000
    assert crc64(b, crc64(a)) == crc64(a + b)
    assert crc64(memoryview(b), crc64(a)) == crc64(a + b)
    # chaining through an empty piece changes nothing
    assert crc64(b"", crc64(a)) == crc64(a)


def test_crc64_of_podmans_recorded_file_entries() -> None:
    tar = _layer_tar(LAYERS[0])
    contents = _contents_by_name(tar)
    entries = _decoded(_podmans("podman-5.4.2", LAYERS[0]))
    checked = 0
    for e in entries:
        if e["type"] == _tarsplit.FILE and e.get("size"):
            crc = int.from_bytes(base64.b64decode(e["payload"]), "big")
            assert crc64(contents[entry_name(e)]) == crc
            checked += 1
    assert checked >= 3


# -- the writer's JSON -----------------------------------------------------------------------------


def _lines(write: Any) -> list[bytes]:
    sink = io.BytesIO()
    w = _tarsplit.TarSplitWriter(sink)
    write(w)
    w.close()
    return gzip.decompress(sink.getvalue()).splitlines()


def test_empty_segments_are_not_written_and_take_no_position() -> None:
    lines = _lines(lambda w: (w.segment(b""), w.segment(b"ab"), w.file(b"f", 0, 0)))
    assert lines == [
        b'{"type":2,"payload":"YWI=","position":0}',
        b'{"type":1,"name":"f","payload":null,"position":1}',
    ]


def test_names_are_escaped_as_gos_encoding_json_escapes_them() -> None:
    name = 'a<b>&c\u2028d\u2029"e\\é'
    lines = _lines(lambda w: w.file(name.encode(), 1, crc64(b"x")))
    expected = (
        '{"type":1,"name":"a\\u003cb\\u003e\\u0026c\\u2028d\\u2029\\"e\\\\é","size":1,'
        '"payload":"%s","position":0}' % base64.b64encode(crc64(b"x").to_bytes(8, "big")).decode()
    )
    assert lines == [expected.encode()]
    assert json.loads(lines[0])["name"] == name
