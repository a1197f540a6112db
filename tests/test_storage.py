"""The containers-storage format functions (``bootc_embed._storage``) against what real podman
4.3.1 and 5.4.2 wrote for the reference image (tests/data/podman-ref)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest

from bootc_embed import _storage
from bootc_embed._contract import BigData, ImageRecord, LayerRecord, layers_json
from bootc_embed._storage import (
    bigdata_filename,
    layer_id,
    layer_ids,
    link_id,
    lower_chain,
)

REF = Path(__file__).parent / "data" / "podman-ref"
RECORDINGS = {"podman-4.3.1": REF, "podman-5.4.2": REF / "podman5"}


def _expected(recording: str) -> dict[str, Any]:
    return json.loads((RECORDINGS[recording] / "expected.json").read_text())


@pytest.fixture(params=sorted(RECORDINGS), scope="module")
def recording(request: pytest.FixtureRequest) -> str:
    return request.param


# -- layer ids -------------------------------------------------------------------------------------


def test_layer_id_reproduces_every_id_podman_recorded(recording: str) -> None:
    exp = _expected(recording)
    parent = None
    for layer in exp["layers"]:
        assert layer["parent"] == parent
        assert layer_id(parent, layer["diff_id"]) == layer["id"]
        parent = layer["id"]
    assert parent == exp["image"]["top_layer"]


def test_layer_ids_of_the_whole_chain_match_podman(recording: str) -> None:
    exp = _expected(recording)
    assert layer_ids([la["diff_id"] for la in exp["layers"]]) == [la["id"] for la in exp["layers"]]


def test_layer_ids_match_the_ids_in_podmans_layers_json(recording: str) -> None:
    exp = _expected(recording)
    records = json.loads((RECORDINGS[recording] / "layers.json").read_text())
    diff_ids = [la["diff_id"] for la in exp["layers"]]
    assert layer_ids(diff_ids) == [r["id"] for r in records]
    assert [r.get("parent") for r in records] == [None, *layer_ids(diff_ids)[:-1]]


def test_base_layer_id_is_the_diff_id_hex_and_child_ids_are_not_oci_chain_ids() -> None:
    a = "sha256:" + "a" * 64
    b = "sha256:" + "b" * 64
    assert layer_id(None, a) == "a" * 64
    child = layer_id("a" * 64, b)
    assert child == hashlib.sha256(("a" * 64 + "+" + "b" * 64).encode()).hexdigest()
    chain_id = hashlib.sha256(f"{a} {b}".encode()).hexdigest()  # what OCI would compute
    assert child != chain_id


def test_image_id_is_the_config_digest_hex(recording: str) -> None:
    image = _expected(recording)["image"]
    assert _storage.digest_hex(image["config_digest"]) == image["id"]


@pytest.mark.parametrize(
    "bad", ["sha512:" + "a" * 128, "a" * 64, "sha256:" + "A" * 64, "sha256:abc", ""]
)
def test_layer_id_refuses_what_is_not_a_sha256_digest(bad: str) -> None:
    with pytest.raises(ValueError):
        layer_id(None, bad)


# -- big-data file names ---------------------------------------------------------------------------


def test_bigdata_filename_gives_exactly_the_file_names_podman_wrote(recording: str) -> None:
    image = _expected(recording)["image"]
    by_key = image["big_data_file_names_by_key"]
    assert "manifest" in by_key
    assert set(by_key) == set(image["big_data_keys"])
    for key, name in by_key.items():
        assert bigdata_filename(key) == name, key
    on_disk = sorted(p.name for p in (RECORDINGS[recording] / "big-data").iterdir())
    assert sorted(bigdata_filename(k) for k in image["big_data_keys"]) == on_disk


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("manifest", "manifest"),
        ("a.b.0", "a.b.0"),
        ("Manifest", "=" + base64.b64encode(b"Manifest").decode()),
        ("x-y", "=" + base64.b64encode(b"x-y").decode()),
        ("k", "k"),
        ("kk", "kk"),
    ],
)
def test_bigdata_filename_keeps_only_dot_digit_lowercase_keys(key: str, name: str) -> None:
    assert bigdata_filename(key) == name


# -- link ids and lower chains ---------------------------------------------------------------------

_LINK = re.compile(r"^[A-Z2-7]{26}$")


def test_link_id_is_26_chars_of_base32_of_sha256_of_the_layer_id_hex() -> None:
    for lid in [la["id"] for la in _expected("podman-4.3.1")["layers"]]:
        link = link_id(lid)
        assert _LINK.match(link)
        expected = base64.b32encode(hashlib.sha256(lid.encode("ascii")).digest()).decode()[:26]
        assert link == expected
        assert link_id(lid) == link  # deterministic


def test_link_ids_have_the_shape_podman_uses(recording: str) -> None:
    for layer in _expected(recording)["layers"]:
        assert _LINK.match(layer["link"])  # podman's own (random) links
        assert _LINK.match(link_id(layer["id"]))


def test_link_ids_are_distinct_for_10000_layer_ids() -> None:
    ids = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(10_000)]
    links = {link_id(i) for i in ids}
    assert len(links) == len(ids)
    assert all(_LINK.match(link) for link in links)


def test_lower_chain_lists_ancestor_links_nearest_first() -> None:
    a, b, c = (hashlib.sha256(x).hexdigest() for x in (b"a", b"b", b"c"))
    assert lower_chain([a]) == f"l/{link_id(a)}"
    assert lower_chain([c, b, a]) == f"l/{link_id(c)}:l/{link_id(b)}:l/{link_id(a)}"


def test_lower_chain_has_the_format_podman_wrote(recording: str) -> None:
    for layer in _expected(recording)["layers"]:
        if layer["lower"] is not None:
            assert re.fullmatch(r"l/[A-Z2-7]{26}(:l/[A-Z2-7]{26})*", layer["lower"])
    layers = _expected(recording)["layers"]
    # podman's L2 lower: its parent's link, then its grandparent's
    assert layers[2]["lower"] == f"l/{layers[1]['link']}:l/{layers[0]['link']}"


def test_lower_chain_holds_at_most_500_layers() -> None:
    ids = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(501)]
    assert len(lower_chain(ids[:500]).split(":")) == 500
    with pytest.raises(ValueError):
        lower_chain(ids)


# -- layers.json and images.json records -----------------------------------------------------------


def _layer_record(rec: dict[str, Any]) -> LayerRecord:
    return LayerRecord(
        id=rec["id"],
        parent=rec.get("parent"),
        created=rec["created"],
        compressed_digest=rec["compressed-diff-digest"],
        compressed_size=rec["compressed-size"],
        diff_digest=rec["diff-digest"],
        diff_size=rec["diff-size"],
        compression=rec.get("compression", _storage.COMPRESSION_NONE),
        uids=tuple(rec["uidset"]),
        gids=tuple(rec["gidset"]),
    )


def test_layer_record_json_has_podmans_keys_in_podmans_order(recording: str) -> None:
    raw = (RECORDINGS[recording] / "layers.json").read_bytes()
    podman = json.loads(raw)
    exp = _expected(recording)
    for rec, layer in zip(podman, exp["layers"], strict=True):
        ours = _layer_record(rec).to_json()
        assert ours == rec
        assert list(ours) == list(rec)
        assert list(ours) == layer["layers_json_keys_in_order"]


def test_layers_json_is_byte_identical_to_podmans(recording: str) -> None:
    raw = (RECORDINGS[recording] / "layers.json").read_bytes()
    records = [_layer_record(r) for r in json.loads(raw)]
    assert layers_json(records) == raw


def test_layer_record_omits_compression_for_an_uncompressed_layer() -> None:
    rec = LayerRecord("a" * 64, None, "t", "sha256:x", 1, "sha256:x", 1, 0, (0,), (0,))
    assert "compression" not in rec.to_json()
    assert "parent" not in rec.to_json()
    gz = LayerRecord("b" * 64, "a" * 64, "t", "sha256:y", 1, "sha256:x", 1, 2, (0,), (0,))
    assert gz.to_json()["compression"] == _storage.COMPRESSION_GZIP == 2
    assert gz.to_json()["parent"] == "a" * 64
    assert _storage.COMPRESSION_ZSTD == 4


def _image_record(recording: str) -> tuple[ImageRecord, dict[str, Any]]:
    folder = RECORDINGS[recording]
    podman = json.loads((folder / "images.json").read_text())[0]
    big = tuple(
        BigData(key, (folder / "big-data" / bigdata_filename(key)).read_bytes())
        for key in podman["big-data-names"]
    )
    rec = ImageRecord(
        id=podman["id"],
        digest=podman["digest"],
        names=tuple(podman["names"]),
        top_layer=podman["layer"],
        created=podman["created"],
        big_data=big,
    )
    return rec, podman


def test_image_record_json_has_podmans_keys_in_podmans_order(recording: str) -> None:
    rec, podman = _image_record(recording)
    ours = rec.to_json()
    assert list(ours) == _expected(recording)["image"]["images_json_keys_in_order"]
    assert list(ours) == list(podman)


def test_image_record_equals_podmans_apart_from_signature_metadata(recording: str) -> None:
    rec, podman = _image_record(recording)
    ours = rec.to_json()
    if recording == "podman-5.4.2":
        assert ours == podman
    else:  # podman 4.3 keeps signature sizes in metadata; we write podman 5's "{}"
        assert ours["metadata"] == "{}"
        for key in ("id", "digest", "names", "names-history", "layer", "created"):
            assert ours[key] == podman[key]
        for key in ("big-data-names", "big-data-sizes", "big-data-digests"):
            assert ours[key] == podman[key]
