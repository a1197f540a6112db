"""``bootc-embed inspect``: the embedded images, from the manifest and the metadata layer only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from verify_support import Layout, copy_layout, storage_conf, write_base

from bootc_embed import BuildOptions, BuildResult, build
from bootc_embed._demo import APP1_NAME, APP2_NAME, SampleImages, write_sample_images
from bootc_embed._inspect import inspect_image
from bootc_embed._verify import verify_image
from bootc_embed.cli import main

STORE = "/usr/lib/containers/storage"


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> SampleImages:
    return write_sample_images(tmp_path_factory.mktemp("samples"))


@pytest.fixture(scope="module")
def built(
    samples: SampleImages, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, BuildResult]:
    d = tmp_path_factory.mktemp("inspect")
    base = write_base(d / "base", conf=storage_conf([STORE]), kernel="6.8.9")
    out = d / "out"
    result = build(
        BuildOptions(
            base=base.ref, images=samples.image_args, output=f"oci:{out}:latest", cache=False
        )
    )
    return out, result


def test_inspect_matches_the_build(built: tuple[Path, BuildResult]) -> None:
    out, result = built
    info = inspect_image(f"oci:{out}:latest")
    assert info.manifest_digest == result.manifest_digest
    assert info.store == STORE
    assert info.format == "1"
    assert info.metadata_layer.digest == result.metadata_layer["digest"]
    assert [i.name for i in info.images] == [APP1_NAME, APP2_NAME]
    for got, want in zip(info.images, result.images, strict=True):
        assert got.manifest_digest == want.manifest_digest
        assert got.image_id == want.image_id
        assert [layer.layer_id for layer in got.layers] == [x.layer_id for x in want.layers]
        for layer, made in zip(got.layers, want.layers, strict=True):
            assert layer.digest == made.digest and layer.size == made.size
            assert layer.diff_digest == made.source_diff_id
            assert layer.whiteouts == made.whiteouts
            assert layer.left_out == made.left_out
    # app2's first layer is app1's: one shared layer, stored (and counted) once
    shared = info.shared_layers
    assert [s.layer_id for s in shared] == [result.images[0].layers[0].layer_id]
    assert shared[0].images == [APP1_NAME, APP2_NAME]
    assert shared[0].brought_by == APP1_NAME
    assert len(info.layers) == 4
    assert info.images[0].whiteouts == 4 and info.images[1].whiteouts == 0
    assert info.bytes_added == sum(
        x.size for img in result.images for x in img.layers if not x.to_json()["shared"]
    ) + int(result.metadata_layer["size"])

    doc = info.to_json()
    assert doc["totals"] == {
        "images": 2,
        "layers": 4,
        "shared_layers": 1,
        "whiteouts": 4,
        "diff_size": sum(layer.diff_size or 0 for layer in info.layers),
        "bytes_added": info.bytes_added,
    }
    assert doc["shared_layers"] == [{"layer_id": shared[0].layer_id, "images": shared[0].images}]
    app1 = doc["images"][0]
    assert app1["name"] == APP1_NAME and len(app1["layers"]) == 3
    assert set(app1["layers"][0]) >= {"layer_id", "size", "diff_size", "shared", "whiteouts"}


def test_inspect_reads_no_app_layer(built: tuple[Path, BuildResult], tmp_path: Path) -> None:
    """With every app layer's blob gone, inspect still works (verify does not)."""
    out, result = built
    copy = copy_layout(out, tmp_path / "copy")
    for img in result.images:
        for layer in img.layers:
            copy.blob_path(layer.digest).unlink(missing_ok=True)
    info = inspect_image(copy.ref)
    assert [i.name for i in info.images] == [APP1_NAME, APP2_NAME]
    broken = verify_image(copy.ref)
    assert broken.exit_code == 1
    assert "image.layer" in {f.check for f in broken.findings}


def test_inspect_cli(built: tuple[Path, BuildResult]) -> None:
    out, result = built
    runner = CliRunner()
    as_json = runner.invoke(main, ["inspect", f"oci:{out}:latest", "--json"])
    assert as_json.exit_code == 0, as_json.output
    doc = json.loads(as_json.output)
    assert [i["manifest_digest"] for i in doc["images"]] == [
        i.manifest_digest for i in result.images
    ]
    table = runner.invoke(main, ["inspect", f"oci:{out}:latest"])
    assert table.exit_code == 0, table.output
    assert APP1_NAME in table.output and APP2_NAME in table.output
    assert result.images[0].layers[0].layer_id[:12] in table.output
    assert "shared with" in table.output and "1 shared" in table.output


def test_inspect_of_an_image_not_made_by_bootc_embed(tmp_path: Path) -> None:
    base = write_base(tmp_path / "base")
    run = CliRunner().invoke(main, ["inspect", base.ref])
    assert run.exit_code == 1
    assert "not made by bootc-embed" in run.output and "Traceback" not in run.output


def test_inspect_two_stages(samples: SampleImages, tmp_path: Path) -> None:
    """A base built with app1, then app2 added: the last metadata layer has both."""
    base = write_base(tmp_path / "base", conf=storage_conf([STORE]), kernel="6.8.9")
    stage1 = tmp_path / "stage1"
    build(
        BuildOptions(
            base=base.ref,
            images=[f"{APP1_NAME}={samples.app1}"],
            output=f"oci:{stage1}:latest",
            cache=False,
        )
    )
    stage2 = tmp_path / "stage2"
    build(
        BuildOptions(
            base=f"oci:{stage1}:latest",
            images=[f"{APP2_NAME}={samples.app2}"],
            output=f"oci:{stage2}:latest",
            cache=False,
        )
    )
    info = inspect_image(f"oci:{stage2}:latest")
    assert sorted(i.name for i in info.images) == [APP1_NAME, APP2_NAME]
    metadata = [
        i
        for i, d in enumerate(Layout(stage2).layers)
        if (d.get("annotations") or {}).get("io.bootc-embed.layer") == "metadata"
    ]
    assert len(metadata) == 2
    assert info.metadata_layer.digest == Layout(stage2).layers[metadata[-1]]["digest"]
    # the shared layer came with stage 1: its blob is still found by its annotation
    shared = info.shared_layers
    assert len(shared) == 1 and shared[0].digest is not None
    result = verify_image(f"oci:{stage2}:latest")
    assert result.exit_code == 0, result.to_json()
