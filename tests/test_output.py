"""``bootc_embed._output``, the one reader of a bootc-embed output, on real builds of the demo
images: what it says is checked against the output read with the standard library
(tests/verify_support.py), and broken or older-style copies are made by editing that output
there (every digest that depends on an edit fixed)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from verify_support import (
    STORE,
    Layout,
    Member,
    copy_layout,
    edit_json,
    edit_layer,
    find,
    members,
)

from bootc_embed import BuildOptions, BuildResult, build
from bootc_embed._contract import AnnotatedImage, LayerKind, ReuseKey
from bootc_embed._demo import APP1_NAME, APP2_NAME, SampleImages, write_sample_images
from bootc_embed._inspect import inspect_image
from bootc_embed._output import OutputImage, open_output
from bootc_embed._reference import parse_reference
from bootc_embed._reuse import Previous
from bootc_embed.errors import ImageFormatError

A = "io.bootc-embed."
STORE_ABS = "/" + STORE
LAYERS_JSON = f"{STORE}/overlay-layers/layers.json"
IMAGES_JSON = f"{STORE}/overlay-images/images.json"
REF_NAME = "org.opencontainers.image.ref.name"


def _build(base: str, images: list[str], out: Path, **options: Any) -> BuildResult:
    return build(BuildOptions(base=base, images=images, output=f"oci:{out}:latest", **options))


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> SampleImages:
    return write_sample_images(tmp_path_factory.mktemp("samples"))


@pytest.fixture(scope="module")
def built(
    samples: SampleImages, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, BuildResult]:
    out = tmp_path_factory.mktemp("out") / "layout"
    return out, _build(samples.base, samples.image_args, out, cache=False)


@pytest.fixture(scope="module")
def without_config(
    samples: SampleImages, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, BuildResult]:
    """An output whose last layer is the metadata layer, as every output was before the
    configuration layer."""
    out = tmp_path_factory.mktemp("noconf") / "layout"
    return out, _build(samples.base, samples.image_args, out, cache=False, storage_conf=False)


def _base_digest(ref: str) -> str:
    _, path, tag = ref.split(":")
    index = json.loads((Path(path) / "index.json").read_bytes())
    (entry,) = [m for m in index["manifests"] if m["annotations"][REF_NAME] == tag]
    return str(entry["digest"])


def _records_of(layout: Layout, i: int) -> dict[str, Any]:
    """images.json and layers.json of layer ``i``, read with the standard library."""
    found = {info.name: data for info, data in members(layout.layer_tar(i))}
    return {
        "images": json.loads(found[IMAGES_JSON]),
        "layers": json.loads(found[LAYERS_JSON]),
    }


def _set_annotations(layout: Layout, change: Callable[[dict[str, Any]], None]) -> None:
    """Edit the manifest (its annotations and its layers'), then rewrite what depends on it."""
    change(layout.manifest)
    layout._commit()  # writes the manifest and index.json again


# -- a current output ------------------------------------------------------------------------------


def test_the_manifest_and_every_layer_are_read_as_written(
    built: tuple[Path, BuildResult], samples: SampleImages
) -> None:
    path, result = built
    raw = Layout(path)
    with open_output(raw.ref) as out:
        assert out.manifest.digest == result.manifest_digest
        assert out.format == "1"
        assert out.store_path() == STORE_ABS
        assert out.images == tuple(AnnotatedImage(i.name, i.manifest_digest) for i in result.images)
        assert out.base_digest == _base_digest(samples.base)
        kinds = [(d.get("annotations") or {}).get(A + "layer") for d in raw.layers]
        assert [layer.kind_text for layer in out.layers] == kinds
        assert kinds[-2:] == ["metadata", "config"]
        assert len(out.base_layers) == result.base_layers == kinds.count(None)
        assert out.metadata_layer is out.layers[-2] is out.records_layer()
        assert out.metadata_layer.kind is LayerKind.METADATA
        assert out.layers[-1].kind is LayerKind.CONFIG
        assert [d["digest"] for d in raw.layers] == [
            layer.descriptor.digest for layer in out.layers
        ]
        assert [layer.diff_id for layer in out.layers] == raw.config["rootfs"]["diff_ids"]
        emitted = [(i.name, e) for i in result.images for e in i.layers if e.emitted]
        assert [layer.store_layer_id for layer in out.app_layers] == [
            e.layer_id for _, e in emitted
        ]
        for layer, (name, e) in zip(out.app_layers, emitted, strict=True):
            assert layer.image == name
            assert (layer.whiteouts, layer.left_out) == (e.whiteouts, e.left_out)
            assert layer.reuse_key == ReuseKey(
                e.layer_id, e.source_diff_id, STORE_ABS, "xattr", "1"
            )
            assert layer.store_layer_ids == (e.layer_id,)
            assert out.layer_holding(e.layer_id) is layer
            assert layer.descriptor.digest == e.digest
        assert out.layer_holding("f" * 64) is None
        assert out.metadata_layer.reuse_key is None and out.metadata_layer.image is None


def test_the_store_records_are_read_typed_from_the_metadata_layer(
    built: tuple[Path, BuildResult],
) -> None:
    path, result = built
    raw = Layout(path)
    expected = _records_of(raw, raw.layer_index("metadata"))
    with open_output(raw.ref) as out:
        assert out.metadata_layer is not None
        records = out.read_records(out.metadata_layer, out.store_path(), "metadata")
        only_layers = out.read_records(out.metadata_layer, STORE, "m", images=False)
    assert [r.to_json() for r in records.images] == expected["images"]
    assert [r.to_json() for r in records.layers] == expected["layers"]
    assert only_layers.images == () and only_layers.layers == records.layers
    by_name = {r.names[0]: r for r in records.images}
    assert sorted(by_name) == sorted([APP1_NAME, APP2_NAME])
    for image in result.images:
        rec = by_name[image.name]
        assert rec.id == image.image_id and rec.digest == image.manifest_digest
        assert records.chain(rec.top_layer) == [e.layer_id for e in image.layers]
        for e in image.layers:
            layer = records.layer(e.layer_id)
            assert layer is not None and layer.diff_digest == e.source_diff_id
    assert records.chain(None) == [] and records.layer("f" * 64) is None


def test_an_image_embedded_in_stages_reads_the_newest_records(
    samples: SampleImages, tmp_path: Path
) -> None:
    first = tmp_path / "first"
    _build(samples.base, [samples.image_args[0]], first, cache=False)
    _build(f"oci:{first}:latest", [samples.image_args[1]], tmp_path / "second", cache=False)
    with open_output(f"oci:{tmp_path / 'second'}:latest") as out:
        metadata = [layer for layer in out.layers if layer.kind is LayerKind.METADATA]
        assert len(metadata) == 2 and out.metadata_layer is metadata[-1]
        assert {layer.image for layer in out.app_layers} == {APP1_NAME, APP2_NAME}
        assert [i.name for i in out.images] == [APP2_NAME]  # this build's images
        records = out.read_records(metadata[-1], out.store_path(), "m")
        older = out.read_records(metadata[0], out.store_path(), "m")
    assert sorted(n for r in records.images for n in r.names) == [APP1_NAME, APP2_NAME]
    assert [n for r in older.images for n in r.names] == [APP1_NAME]
    assert [i.name for i in inspect_image(f"oci:{tmp_path / 'second'}:latest").images] == [
        APP2_NAME,
        APP1_NAME,
    ]


# -- outputs of earlier versions -------------------------------------------------------------------


def test_an_output_without_the_metadata_annotation_reads_its_last_layer(
    without_config: tuple[Path, BuildResult], samples: SampleImages, tmp_path: Path
) -> None:
    path, result = without_config
    old = copy_layout(path, tmp_path / "old")
    last = len(old.layers) - 1
    assert old.layers[last]["annotations"][A + "layer"] == "metadata"

    def strip(manifest: dict[str, Any]) -> None:
        del manifest["layers"][last]["annotations"][A + "layer"]

    _set_annotations(old, strip)
    with open_output(old.ref) as out:
        assert out.metadata_layer is None
        layer = out.records_layer()
        assert layer is not None and layer.index == last and not layer.appended
        records = out.read_records(layer, out.store_path(), "m")
        assert [r.to_json() for r in records.layers] == _records_of(old, last)["layers"]
    with pytest.raises(
        ImageFormatError, match=r"no layer annotated io\.bootc-embed\.layer=metadata"
    ):
        inspect_image(old.ref)  # inspect never guessed
    previous = Previous(parse_reference(old.ref), None)
    try:
        e = result.images[0].layers[0]
        found = previous.lookup(ReuseKey(e.layer_id, e.source_diff_id, STORE_ABS, "xattr", "1"))
        assert found is not None and found.digest == e.digest
        assert found.input_compression == 2 and found.input_diff_size > 0
    finally:
        previous.close()
    options = {"cache": False, "storage_conf": False, "previous": old.ref}
    again = _build(samples.base, samples.image_args, tmp_path / "new", **options)
    assert {e.reused_from for i in again.images for e in i.layers} == {"previous"}


def test_the_store_path_comes_from_the_manifest_then_the_layers(
    built: tuple[Path, BuildResult], tmp_path: Path
) -> None:
    layout = copy_layout(built[0], tmp_path / "copy")

    def move(manifest: dict[str, Any]) -> None:
        del manifest["annotations"][A + "store"]
        for d in manifest["layers"]:
            if A + "store" in d.get("annotations", {}):
                d["annotations"][A + "store"] = "/usr/share/containers/storage"
        del manifest["layers"][-2]["annotations"][A + "store"]  # the metadata layer's

    _set_annotations(layout, move)
    with open_output(layout.ref) as out:
        assert out.store_path() == "/usr/share/containers/storage"  # the last layer naming one
        assert out.store_path(out.metadata_layer) == STORE_ABS  # inspect's rule: the default


# -- malformed records -----------------------------------------------------------------------------


def _broken(built: tuple[Path, BuildResult], tmp_path: Path, edit: Any) -> Layout:
    layout = copy_layout(built[0], tmp_path / "broken")
    edit_layer(layout, layout.layer_index("metadata"), edit)
    return layout


def test_a_malformed_layer_record_is_a_clear_error(
    built: tuple[Path, BuildResult], tmp_path: Path
) -> None:
    result = built[1]
    lid = result.images[0].layers[0].layer_id

    def change(layers: list[dict[str, Any]]) -> None:
        layers[0]["diff-size"] = "12"

    layout = _broken(built, tmp_path, edit_json(LAYERS_JSON, change))
    message = f"layers.json record 1 ({lid}): 'diff-size' is \"12\", not an integer"
    with open_output(layout.ref) as out:
        assert out.metadata_layer is not None
        with pytest.raises(ImageFormatError) as e:
            out.read_records(out.metadata_layer, out.store_path(), "the metadata layer")
        assert str(e.value) == f"the metadata layer: {message}"
    with pytest.raises(ImageFormatError, match=re.escape(message)):
        inspect_image(layout.ref)
    previous = Previous(parse_reference(layout.ref), None)  # unreadable records: no reuse
    try:
        e0 = result.images[0].layers[0]
        key = ReuseKey(e0.layer_id, e0.source_diff_id, STORE_ABS, "xattr", "1")
        assert previous.lookup(key) is None
        assert previous.by_diff_id(e0.diff_id) is not None
    finally:
        previous.close()


def test_a_missing_or_unreadable_records_file_is_a_clear_error(
    built: tuple[Path, BuildResult], tmp_path: Path
) -> None:
    def drop(items: list[Member]) -> list[Member]:
        return [m for m in items if m[0].name != IMAGES_JSON]

    layout = _broken(built, tmp_path, drop)
    with open_output(layout.ref) as out:
        meta = out.metadata_layer
        assert meta is not None
        with pytest.raises(ImageFormatError, match=f"m: no /{IMAGES_JSON} \\(the store path is"):
            out.read_records(meta, out.store_path(), "m")
        assert out.read_records(meta, out.store_path(), "m", images=False).layers

    def garble(items: list[Member]) -> None:
        k = find(items, lambda n: n == LAYERS_JSON)
        items[k] = (items[k][0], b"[{")

    layout = copy_layout(built[0], tmp_path / "garbled")
    edit_layer(layout, layout.layer_index("metadata"), garble)
    with open_output(layout.ref) as out, pytest.raises(ImageFormatError) as e:
        assert out.metadata_layer is not None
        out.read_records(out.metadata_layer, out.store_path(), "m")
    assert str(e.value).startswith("m: layers.json is not valid JSON: ")


def test_an_output_layer_value_needs_no_reading(built: tuple[Path, BuildResult]) -> None:
    """OutputImage is made from the resolved manifest and config alone."""
    from bootc_embed._transports import open_source, resolve

    source = open_source(parse_reference(Layout(built[0]).ref))
    image = resolve(source, None)
    source.close()  # closed: nothing below reads a blob
    out = OutputImage(image)
    assert len(out.layers) == len(image.manifest.layers)
    assert out.metadata_layer is not None and out.store_path() == STORE_ABS
