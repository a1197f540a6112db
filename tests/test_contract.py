"""The output contract (``bootc_embed._contract``): annotation keys, store paths, the
``layers.json`` / ``images.json`` records both ways (against what real podman 4.3.1 and 5.4.2
wrote, tests/data/podman-ref), and the JSON encoder."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from bootc_embed._contract import (
    A_BASE_DIGEST,
    A_FORMAT,
    A_IMAGE,
    A_IMAGES,
    A_LAYER,
    A_LAYER_ID,
    A_LEFT_OUT_COUNT,
    A_SOURCE_DIFF_ID,
    A_STORE,
    A_WHITEOUT_COUNT,
    A_WHITEOUTS,
    FORMAT_VERSION,
    AnnotatedImage,
    BigData,
    ImageRecord,
    LayerKind,
    LayerRecord,
    ReuseKey,
    ReuseOrigin,
    StorePaths,
    WhiteoutForm,
    dumps,
    images_annotation,
    load_images,
    load_layers,
    parse_images_annotation,
)
from bootc_embed.errors import ImageFormatError

REF = Path(__file__).parent / "data" / "podman-ref"
RECORDINGS = {"podman-4.3.1": REF, "podman-5.4.2": REF / "podman5"}
LID = "a" * 64
DIFF = "sha256:" + "b" * 64


# -- annotations -----------------------------------------------------------------------------------


def test_annotation_keys_and_values_are_the_published_ones() -> None:
    """Outputs of every version carry these; a change here breaks reading them back."""
    assert [
        A_LAYER,
        A_LAYER_ID,
        A_SOURCE_DIFF_ID,
        A_STORE,
        A_WHITEOUTS,
        A_FORMAT,
        A_IMAGE,
        A_IMAGES,
        A_WHITEOUT_COUNT,
        A_LEFT_OUT_COUNT,
        A_BASE_DIGEST,
    ] == [
        "io.bootc-embed.layer",
        "io.bootc-embed.layer.id",
        "io.bootc-embed.source.diff-id",
        "io.bootc-embed.store",
        "io.bootc-embed.whiteouts",
        "io.bootc-embed.format",
        "io.bootc-embed.image",
        "io.bootc-embed.images",
        "io.bootc-embed.layer.whiteouts",
        "io.bootc-embed.layer.left-out",
        "org.opencontainers.image.base.digest",
    ]
    assert FORMAT_VERSION == "1"
    assert [k.value for k in LayerKind] == ["app", "metadata", "config"]
    assert [w.value for w in WhiteoutForm] == ["xattr", "chardev", "ostree"]
    assert [o.value for o in ReuseOrigin] == ["previous", "cache", "base"]


def test_reuse_key_round_trips_through_its_annotations_in_written_order() -> None:
    key = ReuseKey(LID, DIFF, "/usr/lib/containers/storage", "xattr", FORMAT_VERSION)
    a = key.annotations()
    assert list(a) == [A_LAYER, A_LAYER_ID, A_SOURCE_DIFF_ID, A_STORE, A_WHITEOUTS, A_FORMAT]
    assert a[A_LAYER] == "app"
    assert dumps(a).startswith(b'{"io.bootc-embed.layer":"app","io.bootc-embed.layer.id":"aaa')
    assert ReuseKey.from_annotations(a) == key
    assert ReuseKey.from_annotations({**a, A_IMAGE: "x"}) == key
    for missing in (A_LAYER_ID, A_SOURCE_DIFF_ID, A_STORE, A_WHITEOUTS, A_FORMAT):
        assert ReuseKey.from_annotations({k: v for k, v in a.items() if k != missing}) is None


def test_images_annotation_round_trips_and_reads_leniently() -> None:
    images = (AnnotatedImage("localhost/a:1", "sha256:" + "1" * 64), AnnotatedImage("b", ""))
    text = images_annotation(images)
    assert text == (
        '[{"name":"localhost/a:1","digest":"sha256:' + "1" * 64 + '"},{"name":"b","digest":""}]'
    )
    assert parse_images_annotation(text) == images
    assert parse_images_annotation(None) == ()
    assert parse_images_annotation("not json") == ()
    assert parse_images_annotation('{"name": "x"}') == ()
    mixed = '[{"name": "x"}, 3, {"digest": "d"}, {"name": 5}, {"name": "y", "digest": 7}]'
    assert parse_images_annotation(mixed) == (AnnotatedImage("x", ""), AnnotatedImage("y", ""))


def test_dumps_is_compact_keeps_order_and_utf8() -> None:
    value = {"z": 1, "a": ["é", "\u2603"], "m": {"y": None, "b": True}}
    assert dumps(value) == '{"z":1,"a":["é","☃"],"m":{"y":null,"b":true}}'.encode()


# -- store paths -----------------------------------------------------------------------------------


def test_store_paths_name_every_path_of_the_store() -> None:
    p = StorePaths.of("/usr/lib/containers/storage/")
    s = "usr/lib/containers/storage"
    assert p == StorePaths.of("usr/lib/containers/storage")
    assert p.root == s and p.absolute == "/" + s and p.prefix == s + "/"
    assert list(p.ancestors()) == ["usr", "usr/lib", "usr/lib/containers", s]
    assert (p.layers_json, p.layers_lock) == (
        f"{s}/overlay-layers/layers.json",
        f"{s}/overlay-layers/layers.lock",
    )
    assert (p.images_json, p.images_lock) == (
        f"{s}/overlay-images/images.json",
        f"{s}/overlay-images/images.lock",
    )
    assert (p.overlay, p.overlay_layers, p.overlay_images, p.link_dir) == (
        f"{s}/overlay",
        f"{s}/overlay-layers",
        f"{s}/overlay-images",
        f"{s}/overlay/l",
    )
    layer = f"{s}/overlay/{LID}"
    assert p.layer_dir(LID) == layer
    assert [p.diff(LID), p.link_file(LID), p.lower(LID), p.empty(LID)] == [
        f"{layer}/diff",
        f"{layer}/link",
        f"{layer}/lower",
        f"{layer}/empty",
    ]
    assert [p.work(LID), p.merged(LID)] == [f"{layer}/work", f"{layer}/merged"]
    assert p.link("ABC") == f"{s}/overlay/l/ABC"
    assert p.link_target(LID) == f"../{LID}/diff"
    assert p.tar_split(LID) == f"{s}/overlay-layers/{LID}.tar-split.gz"
    assert p.image_dir(LID) == f"{s}/overlay-images/{LID}"
    key = "sha256:" + LID
    encoded = "=" + base64.b64encode(key.encode()).decode()
    assert p.big_data(LID, key) == f"{s}/overlay-images/{LID}/{encoded}"
    assert p.big_data(LID, "manifest") == f"{s}/overlay-images/{LID}/manifest"


def test_store_paths_find_the_layer_of_a_diff_path() -> None:
    p = StorePaths.of("/usr/lib/containers/storage")
    assert p.in_diff(p.diff(LID) + "/etc/passwd") == (LID, "etc/passwd")
    assert p.in_diff(p.diff(LID) + "/") == (LID, "")
    assert p.in_diff(p.diff(LID)) is None  # the directory itself
    assert p.in_diff(p.link_file(LID)) is None
    assert p.in_diff("usr/lib/containers/other/overlay/x/diff/y") is None
    assert p.in_diff(p.link("ABC")) is None


# -- records ---------------------------------------------------------------------------------------


@pytest.fixture(params=sorted(RECORDINGS))
def recording(request: pytest.FixtureRequest) -> Path:
    return RECORDINGS[request.param]


def test_podmans_layer_records_read_back_to_the_same_json(recording: Path) -> None:
    raw = (recording / "layers.json").read_bytes()
    records = load_layers(raw, "layers.json")
    podman = json.loads(raw)
    assert [r.id for r in records] == [r["id"] for r in podman]
    for rec, theirs in zip(records, podman, strict=True):
        ours = rec.to_json()
        assert ours == theirs and list(ours) == list(theirs)
        assert LayerRecord.from_json(ours, "again") == rec
    assert dumps([r.to_json() for r in records]) == raw
    assert records[1].parent == records[0].id
    assert records[0].diff_digest is not None and records[0].diff_digest.startswith("sha256:")


def test_podmans_image_records_read_back_to_the_same_json(recording: Path) -> None:
    podman = json.loads((recording / "images.json").read_bytes())
    (rec,) = load_images((recording / "images.json").read_bytes(), "images.json")
    ours = rec.to_json()
    assert ours == podman[0] and list(ours) == list(podman[0])
    assert ImageRecord.from_json(ours, "again") == rec
    for item in rec.big_data:
        content = (recording / "big-data" / item.filename).read_bytes()
        assert item.data is None
        assert item.size == len(content)
        assert item.digest == "sha256:" + hashlib.sha256(content).hexdigest()
    manifest = rec.big_data_item("manifest")
    assert (
        manifest is not None and manifest.recorded_size == podman[0]["big-data-sizes"]["manifest"]
    )
    assert rec.big_data_item("nothing") is None


def test_records_we_write_round_trip() -> None:
    layer = LayerRecord(LID, None, "t", "sha256:c", 10, DIFF, 20, 2, (0, 5), (0,))
    assert LayerRecord.from_json(layer.to_json(), "x") == layer
    assert list(layer.to_json()) == [
        "id",
        "created",
        "compressed-diff-digest",
        "compressed-size",
        "diff-digest",
        "diff-size",
        "compression",
        "uidset",
        "gidset",
    ]
    empty = LayerRecord(LID, "p" * 64, "t", "sha256:c", 10, DIFF, 20, 0, (), ())
    assert empty.to_json()["uidset"] == [] and "compression" not in empty.to_json()
    assert LayerRecord.from_json(empty.to_json(), "x") == empty
    big = (BigData("sha256:" + LID, b"{}"), BigData("manifest", b"m"))
    image = ImageRecord(LID, "sha256:d", ("a", "b"), LID, "t", big)
    written = image.to_json()
    assert written["names-history"] == ["a", "b"] and written["metadata"] == "{}"
    assert written["big-data-sizes"] == {"sha256:" + LID: 2, "manifest": 1}
    back = ImageRecord.from_json(written, "x")
    assert back.to_json() == written and list(back.to_json()) == list(written)
    assert [b.key for b in back.big_data] == [b.key for b in big]
    assert [(b.size, b.digest) for b in back.big_data] == [(b.size, b.digest) for b in big]
    assert big[1].content == b"m"
    with pytest.raises(ValueError, match="without its content"):
        _ = back.big_data[1].content


def test_keys_this_version_does_not_model_are_kept_after_ours() -> None:
    obj = {"id": LID, "names": ["x"], "created": "t", "diff-digest": DIFF, "flags": {"a": 1}}
    rec = LayerRecord.from_json(obj, "x")
    assert rec.extra == {"names": ["x"], "flags": {"a": 1}}
    assert rec.uids is None and rec.compressed_size is None
    assert list(rec.to_json()) == ["id", "created", "diff-digest", "names", "flags"]
    image = ImageRecord.from_json({"id": LID, "names": ["n"], "digests": ["d"]}, "x")
    assert image.to_json()["digests"] == ["d"]
    assert list(image.to_json())[-1] == "digests"


def _layer(**change: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {"id": LID, "created": "t", "diff-digest": DIFF, "diff-size": 3}
    rec.update(change)
    return rec


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (3, "layers.json record 1 is 3, not a JSON object"),
        ({"parent": "x"}, "layers.json record 1 has no string 'id' (missing)"),
        (_layer(id=7), "layers.json record 1 has no string 'id' (7)"),
        (_layer(**{"diff-size": "12"}), f"record 1 ({LID}): 'diff-size' is \"12\", not an int"),
        (_layer(**{"diff-size": True}), "'diff-size' is true, not an integer"),
        (_layer(parent=5), "'parent' is 5, not a string"),
        (_layer(uidset=[0, "1"]), "'uidset' is [0, \"1\"], not a list of integers"),
        (_layer(compression=2.0), "'compression' is 2.0, not an integer"),
    ],
)
def test_a_malformed_layer_record_is_named_in_the_error(record: Any, message: str) -> None:
    with pytest.raises(ImageFormatError) as e:
        load_layers(json.dumps([record]).encode(), "m: layers.json")
    assert str(e.value).startswith("m: layers.json record 1")
    assert message in str(e.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"names": "x"}, "'names' is \"x\", not a list of strings"),
        ({"names": ["x", 3]}, "'names' is [\"x\", 3], not a list of strings"),
        ({"layer": 1}, "'layer' is 1, not a string"),
        ({"big-data-names": [1]}, "'big-data-names' is [1], not a list of strings"),
        ({"big-data-sizes": {"m": "1"}}, '\'big-data-sizes\' is {"m": "1"}, not a map of int'),
        ({"big-data-digests": []}, "'big-data-digests' is [], not a map of str values"),
    ],
)
def test_a_malformed_image_record_is_named_in_the_error(
    change: dict[str, Any], message: str
) -> None:
    with pytest.raises(ImageFormatError) as e:
        load_images(json.dumps([{"id": LID}, {"id": LID, **change}]).encode(), "images.json")
    assert str(e.value).startswith(f"images.json record 2 ({LID}): ")
    assert message in str(e.value)


def test_record_files_that_are_not_arrays_of_json() -> None:
    with pytest.raises(ImageFormatError, match=r"^m: layers.json is not valid JSON: "):
        load_layers(b"[{", "m: layers.json")
    with pytest.raises(ImageFormatError, match=r"^m: images.json is not a JSON array$"):
        load_images(b'{"id": "x"}', "m: images.json")
    assert load_layers(b"[]", "x") == ()
