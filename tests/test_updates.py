"""Incremental updates: reuse of published layers, the local cache, and ``bootc-embed diff``."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
from unit_support.oci import Layout, info, sha256, tar_of, write_layout

from bootc_embed import BuildOptions, BuildResult, build
from bootc_embed._diff import diff_images

NAME = "localhost/upd/app:1"
A = "io.bootc-embed."


def _base_layers(extra: bool) -> list[bytes]:
    layers = [
        tar_of(
            [
                (info("usr/", tarfile.DIRTYPE), b""),
                (info("usr/lib/", tarfile.DIRTYPE), b""),
                (info("usr/lib/os-release"), b"ID=test\n"),
            ]
        )
    ]
    if extra:
        layers.append(tar_of([(info("usr/lib/extra"), b"a base update\n")]))
    return layers


def _app_layers(version: str) -> list[bytes]:
    return [
        tar_of(
            [
                (info("etc/", tarfile.DIRTYPE), b""),
                (info("etc/app.conf"), b"x = 1\n" * 1000),
                (info("usr/", tarfile.DIRTYPE), b""),
                (info("usr/share/", tarfile.DIRTYPE), b""),
                (info("usr/share/data"), bytes(range(256)) * 400),
            ]
        ),
        tar_of(
            [
                (info("etc/", tarfile.DIRTYPE), b""),
                (info("etc/.wh.app.conf"), b""),
                (info("etc/new.conf"), b"y = 2\n"),
            ]
        ),
        tar_of([(info("etc/version"), version.encode() + b"\n")]),
    ]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("inputs")
    return {
        "base1": write_layout(root / "base1", _base_layers(False)),
        "base2": write_layout(root / "base2", _base_layers(True)),
        "app1": write_layout(root / "app1", _app_layers("1")),
        "app2": write_layout(root / "app2", _app_layers("2")),
    }


def _build(
    inputs: dict[str, str], out: Path, base: str = "base1", app: str = "app1", **kw: Any
) -> BuildResult:
    kw.setdefault("cache", False)
    return build(
        BuildOptions(
            base=inputs[base], images=[f"{NAME}={inputs[app]}"], output=f"oci:{out}:1", **kw
        )
    )


def _layers(out: Path) -> list[dict[str, Any]]:
    return Layout(out, "1").manifest["layers"]


def _appended(out: Path) -> list[dict[str, Any]]:
    return [d for d in _layers(out) if A + "layer" in d.get("annotations", {})]


def _digests(descs: list[dict[str, Any]]) -> list[str]:
    return [d["digest"] for d in descs]


def test_a_rebuild_with_nothing_changed_is_byte_identical_with_and_without_the_cache(
    inputs: dict[str, str], tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    plain = _build(inputs, tmp_path / "plain")
    filled = _build(inputs, tmp_path / "fill", cache=True, cache_dir=str(cache))
    hit = _build(inputs, tmp_path / "hit", cache=True, cache_dir=str(cache))
    assert plain.manifest_digest == filled.manifest_digest == hit.manifest_digest
    assert all(layer.reused_from == "cache" for i in hit.images for layer in i.layers)
    assert all(layer.reused_from is None for i in filled.images for layer in i.layers)


def test_previous_reuse_wins_over_a_compressor_change(
    inputs: dict[str, str], tmp_path: Path
) -> None:
    first = _build(inputs, tmp_path / "gzip")
    again = _build(
        inputs, tmp_path / "zstd", compression="zstd", previous=f"oci:{tmp_path / 'gzip'}:1"
    )
    assert again.manifest_digest == first.manifest_digest
    assert (
        diff_images(f"oci:{tmp_path / 'gzip'}:1", f"oci:{tmp_path / 'zstd'}:1").download_bytes == 0
    )


def test_reuse_does_no_layer_work(
    inputs: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    _build(inputs, tmp_path / "one", cache=True, cache_dir=str(cache))

    def refuse(*args: object, **kw: object) -> None:
        raise AssertionError("an unchanged layer was transformed again")

    monkeypatch.setattr("bootc_embed._build.transform_layer", refuse)
    _build(inputs, tmp_path / "two", cache=True, cache_dir=str(cache))
    _build(inputs, tmp_path / "three", previous=f"oci:{tmp_path / 'one'}:1")


def test_a_base_change_keeps_every_app_layer_and_the_metadata_layer(
    inputs: dict[str, str], tmp_path: Path
) -> None:
    _build(inputs, tmp_path / "old")
    _build(inputs, tmp_path / "new", base="base2")  # no --previous: determinism alone
    assert _digests(_appended(tmp_path / "old")) == _digests(_appended(tmp_path / "new"))
    d = diff_images(f"oci:{tmp_path / 'old'}:1", f"oci:{tmp_path / 'new'}:1")
    groups = {g.name: g for g in d.groups}
    assert [len(g.new) for g in d.groups if g.name != "base"] == [0] * (len(d.groups) - 1)
    assert len(groups["base"].new) == 1
    assert d.download_bytes == groups["base"].new[0].size


def test_an_app_top_layer_change_changes_exactly_one_app_layer_and_the_metadata(
    inputs: dict[str, str], tmp_path: Path
) -> None:
    _build(inputs, tmp_path / "old")
    _build(inputs, tmp_path / "new", app="app2", previous=f"oci:{tmp_path / 'old'}:1")
    old, new = _appended(tmp_path / "old"), _appended(tmp_path / "new")
    changed = [n["annotations"][A + "layer"] for o, n in zip(old, new, strict=True) if o != n]
    assert changed == ["app", "metadata"]
    d = diff_images(f"oci:{tmp_path / 'old'}:1", f"oci:{tmp_path / 'new'}:1")
    groups = {g.name: g for g in d.groups}
    assert (len(groups[NAME].new), len(groups["metadata"].new), len(groups["base"].new)) == (
        1,
        1,
        0,
    )


def test_source_date_epoch_changes_only_the_config(
    inputs: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _build(inputs, tmp_path / "plain")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    _build(inputs, tmp_path / "dated")
    assert _digests(_appended(tmp_path / "plain")) == _digests(_appended(tmp_path / "dated"))
    config = Layout(tmp_path / "dated", "1").config
    assert config["created"] == "2023-11-14T22:13:20Z"
    assert config["history"][-1]["created"] == "2023-11-14T22:13:20Z"


def test_a_truncated_cache_entry_is_dropped_and_rebuilt(
    inputs: dict[str, str], tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    good = _build(inputs, tmp_path / "one", cache=True, cache_dir=str(cache))
    blobs = sorted((cache / "v1" / "layers").glob("*/blob"))
    assert len(blobs) == 3
    for blob in blobs:
        blob.write_bytes(blob.read_bytes()[:-7])
    again = _build(inputs, tmp_path / "two", cache=True, cache_dir=str(cache))
    assert again.manifest_digest == good.manifest_digest
    assert all(layer.reused_from is None for i in again.images for layer in i.layers)
    third = _build(inputs, tmp_path / "three", cache=True, cache_dir=str(cache))
    assert third.manifest_digest == good.manifest_digest
    assert all(layer.reused_from == "cache" for i in third.images for layer in i.layers)


def test_the_cache_is_bounded_in_size(inputs: dict[str, str], tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    _build(inputs, tmp_path / "one", cache=True, cache_dir=str(cache), cache_max_size=1)
    assert len(list((cache / "v1" / "layers").iterdir())) <= 1


def test_two_builds_in_parallel_share_one_cache(inputs: dict[str, str], tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    exe = Path(sys.executable).parent / "bootc-embed"
    procs = [
        subprocess.Popen(
            [
                str(exe),
                "build",
                "--base",
                inputs["base1"],
                "--image",
                f"{NAME}={inputs[app]}",
                "--output",
                f"oci:{tmp_path / f'out{n}'}:1",
                "--cache-dir",
                str(cache),
                "--json",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for n, app in enumerate(["app1", "app1", "app2", "app2"])
    ]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
        results.append(json.loads(out)["manifest_digest"])
    assert results[0] == results[1] and results[2] == results[3]
    assert results[0] == _build(inputs, tmp_path / "check").manifest_digest
    assert results[2] == _build(inputs, tmp_path / "check2", app="app2").manifest_digest
    # every cache entry is whole: its blob matches its recorded digest
    for meta in (cache / "v1" / "layers").glob("*/meta.json"):
        recorded = json.loads(meta.read_bytes())
        assert sha256((meta.parent / "blob").read_bytes()) == recorded["digest"]


def test_a_previous_image_without_annotations_is_reused_by_diff_id(
    inputs: dict[str, str], tmp_path: Path
) -> None:
    _build(inputs, tmp_path / "old")
    stripped = tmp_path / "stripped"
    _strip_annotations(tmp_path / "old", stripped)
    new = _build(inputs, tmp_path / "new", compression="zstd", previous=f"oci:{stripped}:1")
    assert _digests(_appended(tmp_path / "new")) == _digests(_appended(tmp_path / "old"))
    assert all(layer.reused_from == "previous" for i in new.images for layer in i.layers)


def _strip_annotations(src: Path, dst: Path) -> None:
    """A copy of a layout whose manifest has no bootc-embed annotations (an older output)."""
    import shutil

    shutil.copytree(src, dst)
    layout = Layout(dst, "1")
    manifest = layout.manifest
    for d in manifest["layers"]:
        d.pop("annotations", None)
    raw = json.dumps(manifest).encode()
    digest = sha256(raw)
    (dst / "blobs" / "sha256" / digest[7:]).write_bytes(raw)
    index = json.loads((dst / "index.json").read_bytes())
    index["manifests"][0].update(digest=digest, size=len(raw))
    (dst / "index.json").write_bytes(json.dumps(index).encode())


def test_diff_cli_reports_json_and_enforces_a_budget(
    inputs: dict[str, str], tmp_path: Path
) -> None:
    _build(inputs, tmp_path / "old")
    _build(inputs, tmp_path / "new", app="app2")
    exe = Path(sys.executable).parent / "bootc-embed"
    args = [str(exe), "diff", f"oci:{tmp_path / 'old'}:1", f"oci:{tmp_path / 'new'}:1", "--json"]
    ok = subprocess.run(args, capture_output=True, check=True)
    total = json.loads(ok.stdout)["total"]
    assert total["new_layers"] == 2 and total["download_bytes"] > 0
    over = subprocess.run([*args, "--max-bytes", "10"], capture_output=True)
    assert over.returncode == 3
    assert b"over the budget" in over.stderr
    within = subprocess.run(
        [*args, "--max-bytes", str(total["download_bytes"])], capture_output=True
    )
    assert within.returncode == 0
