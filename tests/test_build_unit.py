"""``bootc_embed.build`` in-process on the demo sample images and on crafted layouts.

Everything the output holds is checked by reading it back with the standard library
(tests/unit_support/oci.py), not with bootc_embed's own readers.
"""

from __future__ import annotations

import base64
import io
import json
import os
import posixpath
import shutil
import tarfile
from pathlib import Path
from typing import IO, Any

import pytest
from unit_support.layers import layer_ids, link_id
from unit_support.oci import Layout, blob_files, info, sha256, tar_of, write_layout

from bootc_embed import (
    BuildOptions,
    BuildResult,
    DigestMismatchError,
    LayerContentError,
    UsageError,
    build,
)
from bootc_embed._demo import SampleImages, write_sample_images
from bootc_embed._tarsplit import reassemble

ARCH = "amd64"  # fixed, so that the golden values below do not depend on the machine
STORE = "usr/lib/containers/storage"
A = "io.bootc-embed."

# Recorded from the current code for the demo input (architecture amd64, default options:
# xattr whiteouts, gzip level 2, store /usr/lib/containers/storage). A change here is a change of
# the output format: the uncompressed layers, or the config (history, annotations, diff_ids).
GOLDEN_APP_DIFF_IDS = [
    "sha256:34c8e4bda11edb0e0d8fff169d294b2462431447bbfe5bcac1068f6ed51eb673",
    "sha256:a9e63f82e7f552f8bb1a24962e0b7d5809abab457814e6cf7f1e737e77db5de0",
    "sha256:f180e13be7eb05f3bc9eb678a8871efb76a7b98d08798d4fd833597d80deee62",
    "sha256:3615e3c6a7f86716a0f1bfaab5758285358f8ce91145a45bf646ec3b9d49404c",
]
GOLDEN_METADATA_DIFF_ID = "sha256:93ecc0d7dbbe4e5125b22e42128f54004b2af656ea106c70fdbc6fb8cbdc4b5d"
GOLDEN_CONFIG_DIGEST = "sha256:0ee040f3e3c5d6b2873fea9b3bcc3148bd6bea2beed1bee42ab2f6a9cdfbf5ff"


# -- fixtures and helpers --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> SampleImages:
    return write_sample_images(tmp_path_factory.mktemp("samples"), architecture=ARCH)


def _build(samples: SampleImages, output: str, **kw: Any) -> BuildResult:
    images = kw.pop("images", samples.image_args)
    # the demo base has no storage.conf: its configuration layer is tested in test_host.py
    kw.setdefault("storage_conf", False)
    return build(BuildOptions(base=samples.base, images=images, output=output, **kw))


class Built:
    def __init__(self, root: Path, result: BuildResult, tag: str = "latest") -> None:
        self.root = root
        self.result = result
        self.layout = Layout(root, tag)
        self.layers = self.layout.manifest["layers"]
        self.appended = [d for d in self.layers if A + "layer" in d.get("annotations", {})]
        self.app_layers = [d for d in self.appended if d["annotations"][A + "layer"] == "app"]
        (self.metadata,) = [d for d in self.appended if d["annotations"][A + "layer"] == "metadata"]
        self._members: dict[str, list[tuple[tarfile.TarInfo, bytes | None]]] = {}

    def members(self, desc: dict[str, Any]) -> list[tuple[tarfile.TarInfo, bytes | None]]:
        if desc["digest"] not in self._members:
            self._members[desc["digest"]] = self.layout.members(desc)
        return self._members[desc["digest"]]

    def app_layer(self, layer_id: str) -> dict[str, Any]:
        (desc,) = [d for d in self.app_layers if d["annotations"][A + "layer.id"] == layer_id]
        return desc


@pytest.fixture(scope="module")
def built_forms(
    samples: SampleImages, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Built]:
    out: dict[str, Built] = {}
    for form in ("xattr", "chardev", "ostree"):
        root = tmp_path_factory.mktemp("out") / form
        out[form] = Built(root, _build(samples, f"oci:{root}:latest", whiteouts=form))
    return out


@pytest.fixture(scope="module")
def built(built_forms: dict[str, Built]) -> Built:
    return built_forms["xattr"]


def _source(samples: SampleImages, which: str) -> Layout:
    return Layout(samples.directory / which, "latest" if which == "base" else "1")


def _app_chain(samples: SampleImages, which: str) -> list[str]:
    return layer_ids(_source(samples, which).config["rootfs"]["diff_ids"])


def _all_app_ids(samples: SampleImages) -> list[str]:
    ids: list[str] = []
    for which in ("app1", "app2"):
        ids += [i for i in _app_chain(samples, which) if i not in ids]
    return ids


def _nothing_left(parent: Path, name: str) -> None:
    """No output and no temporary leftovers of a failed build to ``parent/name``."""
    assert not (parent / name).exists()
    leftovers = [p.name for p in parent.iterdir() if "bootc-embed" in p.name]
    assert leftovers == []


# -- reproducibility and golden values -------------------------------------------------------------


def test_two_builds_into_different_dirs_are_byte_identical(
    samples: SampleImages, tmp_path: Path
) -> None:
    a = _build(samples, f"oci:{tmp_path}/a:latest", jobs=1)
    b = _build(samples, f"oci:{tmp_path}/b:latest", jobs=4)
    assert a.manifest_digest == b.manifest_digest
    assert a.config_digest == b.config_digest
    assert blob_files(tmp_path / "a") == blob_files(tmp_path / "b")
    assert (tmp_path / "a" / "index.json").read_bytes() == (
        tmp_path / "b" / "index.json"
    ).read_bytes()


def test_golden_diff_ids_and_config_digest_of_the_demo_build(built: Built) -> None:
    diff_ids = built.layout.config["rootfs"]["diff_ids"]
    assert diff_ids[-5:-1] == GOLDEN_APP_DIFF_IDS
    assert diff_ids[-1] == GOLDEN_METADATA_DIFF_ID
    assert built.result.config_digest == GOLDEN_CONFIG_DIGEST
    assert built.layout.manifest["config"]["digest"] == GOLDEN_CONFIG_DIGEST


def test_appended_diff_ids_are_the_sha256_of_the_uncompressed_layers(built: Built) -> None:
    n = len(built.appended)
    assert built.layout.config["rootfs"]["diff_ids"][-n:] == [
        sha256(built.layout.layer_tar(d)) for d in built.appended
    ]


def test_zstd_output_has_the_same_diff_ids_as_gzip(
    samples: SampleImages, built: Built, tmp_path: Path
) -> None:
    result = _build(samples, f"oci:{tmp_path}/z:latest", compression="zstd")
    z = Built(tmp_path / "z", result)
    assert z.layout.config["rootfs"]["diff_ids"] == built.layout.config["rootfs"]["diff_ids"]
    assert {d["mediaType"] for d in z.appended} == {"application/vnd.oci.image.layer.v1.tar+zstd"}
    for zd, gd in zip(z.appended, built.appended, strict=True):
        assert z.layout.layer_tar(zd) == built.layout.layer_tar(gd)
        assert zd["digest"] != gd["digest"]


# -- transports ------------------------------------------------------------------------------------


def _pack(layout: Path, archive: Path) -> None:
    with tarfile.open(archive, "w", format=tarfile.PAX_FORMAT) as tf:
        for name in ("oci-layout", "index.json", "blobs"):
            tf.add(layout / name, arcname=name)


def test_oci_archive_output_equals_oci_output_and_serves_as_a_base(
    samples: SampleImages, built: Built, tmp_path: Path
) -> None:
    archive = tmp_path / "os.tar"
    result = _build(samples, f"oci-archive:{archive}:latest")
    assert result.manifest_digest == built.result.manifest_digest
    with tarfile.open(archive) as tf:
        names = set(tf.getnames())
    assert {"oci-layout", "index.json"} <= names
    assert f"blobs/sha256/{result.manifest_digest[7:]}" in names

    # the archive as the base of another build: its layers pass through unchanged
    again = build(
        BuildOptions(
            base=f"oci-archive:{archive}:latest",
            images=[f"localhost/demo/again:2={samples.app2}"],
            output=f"oci:{tmp_path}/again:v2",
        )
    )
    second = Layout(tmp_path / "again", "v2")
    first = built.layout.manifest["layers"]
    assert second.manifest["layers"][: len(first)] == first
    assert again.base_layers == len(first)
    assert second.manifest["annotations"]["org.opencontainers.image.base.digest"] == (
        result.manifest_digest
    )


def test_oci_archive_app_inputs_give_the_same_output(
    samples: SampleImages, built: Built, tmp_path: Path
) -> None:
    for which in ("app1", "app2"):
        _pack(samples.directory / which, tmp_path / f"{which}.tar")
    images = [
        f"{samples.app1_name}=oci-archive:{tmp_path}/app1.tar:1",
        f"{samples.app2_name}=oci-archive:{tmp_path}/app2.tar",
    ]
    result = _build(samples, f"oci:{tmp_path}/out:latest", images=images)
    assert result.manifest_digest == built.result.manifest_digest


def test_output_into_an_existing_layout_keeps_its_other_tags(
    samples: SampleImages, built: Built, tmp_path: Path
) -> None:
    out = tmp_path / "layout"
    one = _build(samples, f"oci:{out}:one")
    two = _build(samples, f"oci:{out}:two", whiteouts="chardev")
    tags = {
        m["annotations"]["org.opencontainers.image.ref.name"]: m["digest"]
        for m in json.loads((out / "index.json").read_text())["manifests"]
    }
    assert tags == {"one": one.manifest_digest, "two": two.manifest_digest}
    for tag in ("one", "two"):
        layout = Layout(out, tag)
        for d in layout.manifest["layers"]:
            layout.blob(d["digest"])  # present and intact
    # building the same tag again replaces it, and still keeps the other one
    three = _build(samples, f"oci:{out}:one", whiteouts="ostree")
    manifests = json.loads((out / "index.json").read_text())["manifests"]
    assert sorted(
        (m["annotations"]["org.opencontainers.image.ref.name"], m["digest"]) for m in manifests
    ) == [("one", three.manifest_digest), ("two", two.manifest_digest)]
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("exists", [True, False], ids=["existing-layout", "new-layout"])
def test_builds_writing_other_tags_into_one_layout_at_once_keep_every_tag(
    samples: SampleImages, tmp_path: Path, exists: bool
) -> None:
    # parallel CI jobs, one tag each, into one layout: index.json is read and rewritten by
    # each; without the layout's lock some tags would be lost (or a build would fail)
    import subprocess

    from conftest import BOOTC_EMBED

    out = tmp_path / "layout"
    if exists:
        _build(samples, f"oci:{out}:first")
    images = [arg for a in samples.image_args for arg in ("--image", a)]
    tags = [f"t{i}" for i in range(6)]
    common = [str(BOOTC_EMBED), "build", "--base", samples.base, *images, "--no-cache"]
    procs = [
        subprocess.Popen(
            [
                *common,
                "--no-storage-conf",
                "--whiteouts",
                ("xattr", "chardev", "ostree")[i % 3],
                "--output",
                f"oci:{out}:{tag}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i, tag in enumerate(tags)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    manifests = json.loads((out / "index.json").read_text())["manifests"]
    names = sorted(m["annotations"]["org.opencontainers.image.ref.name"] for m in manifests)
    assert names == sorted(tags + (["first"] if exists else []))
    for name in names:
        layout = Layout(out, name)
        for d in layout.manifest["layers"]:
            layout.blob(d["digest"])  # present and intact
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []
    assert [p.name for p in tmp_path.iterdir()] == ["layout"]


# -- whiteouts -------------------------------------------------------------------------------------

# app1 layer 2 deletes bin/old-tool (bin/ not in the layer), usr/share/app/old-dir and
# usr/share/app/remove-me.txt, makes etc/app.d opaque, and whites out etc/app.d/old.conf inside
# that opaque directory (which hides nothing and is dropped).
DELETED = ["bin/old-tool", "usr/share/app/old-dir", "usr/share/app/remove-me.txt"]
OPAQUE = "etc/app.d"
WHITEOUT_PARENTS = ["bin", "usr/share/app"]


def _diff_entries(b: Built, layer_id: str) -> dict[str, tarfile.TarInfo]:
    prefix = f"{STORE}/overlay/{layer_id}/diff/"
    return {
        m.name[len(prefix) :]: m
        for m, _ in b.members(b.app_layer(layer_id))
        if m.name.startswith(prefix)
    }


def _opaque(m: tarfile.TarInfo) -> str | None:
    return m.pax_headers.get("SCHILY.xattr.trusted.overlay.opaque")


def test_xattr_whiteouts_are_empty_files_with_overlay_xattrs(
    samples: SampleImages, built_forms: dict[str, Built]
) -> None:
    b = built_forms["xattr"]
    entries = _diff_entries(b, _app_chain(samples, "app1")[1])
    for path in DELETED:
        m = entries[path]
        assert m.isreg() and m.size == 0
        assert m.pax_headers.get("SCHILY.xattr.trusted.overlay.whiteout") == "y"
    for parent in WHITEOUT_PARENTS:
        assert entries[parent].isdir() and _opaque(entries[parent]) == "x"
    assert entries[OPAQUE].isdir() and _opaque(entries[OPAQUE]) == "y"
    assert "etc/app.d/old.conf" not in entries  # hidden by nothing: dropped
    whiteouts = sorted(
        p for p, m in entries.items() if "SCHILY.xattr.trusted.overlay.whiteout" in m.pax_headers
    )
    assert whiteouts == sorted(DELETED)


def test_chardev_whiteouts_are_0_0_character_devices(
    samples: SampleImages, built_forms: dict[str, Built]
) -> None:
    b = built_forms["chardev"]
    entries = _diff_entries(b, _app_chain(samples, "app1")[1])
    for path in DELETED:
        m = entries[path]
        assert m.ischr() and (m.devmajor, m.devminor) == (0, 0) and m.mode == 0
    assert sorted(p for p, m in entries.items() if m.ischr()) == sorted(DELETED)
    for parent in WHITEOUT_PARENTS:
        assert _opaque(entries[parent]) is None
    assert _opaque(entries[OPAQUE]) == "y"
    assert "etc/app.d/old.conf" not in entries
    assert not any("trusted.overlay.whiteout" in k for m in entries.values() for k in m.pax_headers)


def test_ostree_whiteouts_are_ostree_wh_files(
    samples: SampleImages, built_forms: dict[str, Built]
) -> None:
    b = built_forms["ostree"]
    entries = _diff_entries(b, _app_chain(samples, "app1")[1])
    expected = sorted(
        posixpath.join(posixpath.dirname(p), ".ostree-wh." + posixpath.basename(p)) for p in DELETED
    )
    assert sorted(p for p in entries if ".ostree-wh." in p) == expected
    for path in expected:
        assert entries[path].isreg() and entries[path].size == 0
    for path in DELETED:
        assert path not in entries
    for parent in WHITEOUT_PARENTS:
        assert _opaque(entries[parent]) is None
    assert _opaque(entries[OPAQUE]) == "y"
    assert not any("trusted.overlay.whiteout" in k for m in entries.values() for k in m.pax_headers)


@pytest.mark.parametrize("form", ["xattr", "chardev", "ostree"])
def test_no_appended_entry_has_a_wh_component(form: str, built_forms: dict[str, Built]) -> None:
    b = built_forms[form]
    for desc in b.appended:
        for m, _ in b.members(desc):
            for name in (m.name, m.linkname):
                assert not any(c.startswith(".wh.") for c in name.split("/")), name


@pytest.mark.parametrize("form", ["xattr", "chardev", "ostree"])
def test_no_device_or_fifo_entries_except_chardev_whiteouts(
    form: str, built_forms: dict[str, Built]
) -> None:
    b = built_forms[form]
    devices = []
    for desc in b.appended:
        for m, _ in b.members(desc):
            if m.isblk() or m.isfifo():
                devices.append(m.name)
            if m.ischr():
                assert form == "chardev", m.name
                assert (m.devmajor, m.devminor) == (0, 0), m.name
    assert devices == []
    assert b.result.entries_left_out == 3  # dev/null, its hardlink, run/app.fifo


# -- the store layout ------------------------------------------------------------------------------


def test_app_layers_are_the_distinct_layers_of_the_apps_in_order(
    samples: SampleImages, built: Built
) -> None:
    ids = _all_app_ids(samples)
    assert len(ids) == 4  # app2 shares its first layer with app1
    assert [d["annotations"][A + "layer.id"] for d in built.app_layers] == ids
    assert built.appended[-1] is built.metadata


def test_every_app_layer_holds_its_overlay_skeleton(samples: SampleImages, built: Built) -> None:
    chains = [_app_chain(samples, "app1"), _app_chain(samples, "app2")]
    for lid in _all_app_ids(samples):
        chain = next(c for c in chains if lid in c)
        ancestors = list(reversed(chain[: chain.index(lid)]))
        members = {m.name: (m, data) for m, data in built.members(built.app_layer(lid))}
        layer_dir = f"{STORE}/overlay/{lid}"
        link = link_id(lid)
        m, data = members[f"{layer_dir}/link"]
        assert m.isreg() and data == link.encode()
        if ancestors:
            m, data = members[f"{layer_dir}/lower"]
            assert data == ":".join(f"l/{link_id(a)}" for a in ancestors).encode()
            assert f"{layer_dir}/empty" not in members
        else:
            assert f"{layer_dir}/lower" not in members
            assert members[f"{layer_dir}/empty"][0].isdir()
        assert members[f"{layer_dir}/work"][0].isdir()
        assert members[f"{layer_dir}/merged"][0].isdir()
        diff = members[f"{layer_dir}/diff"][0]
        assert diff.isdir() and diff.mode == 0o555 and (diff.uid, diff.gid) == (0, 0)
        sym = members[f"{STORE}/overlay/l/{link}"][0]
        assert sym.issym() and sym.linkname == f"../{lid}/diff"
        assert members[f"{STORE}/overlay-layers/{lid}.tar-split.gz"][0].isreg()
        for name, (m, _) in members.items():
            # everything bootc-embed creates outside diff/: root, 0755/0644, mtime 0, no xattrs
            if not name.startswith(f"{layer_dir}/diff/") and not m.issym():
                assert (m.uid, m.gid, m.mtime, m.pax_headers.keys() - {"path"}) == (0, 0, 0, set())
                assert m.mode == (
                    0o555 if name == f"{layer_dir}/diff" else 0o755 if m.isdir() else 0o644
                )
        # nothing else: the layer holds exactly its own store paths
        allowed = (f"{layer_dir}/", f"{STORE}/overlay-layers/{lid}.", f"{STORE}/overlay/l/{link}")
        parents = {
            "usr",
            "usr/lib",
            "usr/lib/containers",
            STORE,
            f"{STORE}/overlay",
            f"{STORE}/overlay/l",
            f"{STORE}/overlay-layers",
            layer_dir,
        }
        for name in members:
            assert name in parents or name.startswith(allowed), name


def test_tarsplit_in_each_app_layer_rebuilds_the_source_layer_from_its_diff(
    samples: SampleImages, built: Built
) -> None:
    sources: dict[str, bytes] = {}
    for which in ("app1", "app2"):
        src = _source(samples, which)
        for desc, lid in zip(src.manifest["layers"], _app_chain(samples, which), strict=True):
            sources[lid] = src.layer_tar(desc)
    for lid, source_tar in sources.items():
        members = built.members(built.app_layer(lid))
        prefix = f"{STORE}/overlay/{lid}/diff/"
        files = {
            m.name[len(prefix) :]: data
            for m, data in members
            if m.name.startswith(prefix) and m.isreg()
        }
        (tarsplit,) = [d for m, d in members if m.name.endswith(".tar-split.gz")]
        assert tarsplit is not None

        def open_file(name: bytes, files: dict[str, bytes | None] = files) -> IO[bytes]:
            path = posixpath.normpath("/" + name.decode()).lstrip("/")
            data = files[path]
            assert data is not None
            return io.BytesIO(data)

        out = io.BytesIO()
        reassemble(io.BytesIO(tarsplit), open_file, out.write)
        assert out.getvalue() == source_tar
        assert built.app_layer(lid)["annotations"][A + "source.diff-id"] == sha256(source_tar)


def _metadata_files(built: Built) -> dict[str, bytes]:
    files = {}
    for m, data in built.members(built.metadata):
        assert m.name.startswith(STORE) or m.name in ("usr", "usr/lib", "usr/lib/containers")
        if m.isreg():
            assert data is not None
            files[m.name[len(STORE) + 1 :]] = data
    return files


def test_metadata_layer_holds_the_records_locks_and_big_data(
    samples: SampleImages, built: Built
) -> None:
    files = _metadata_files(built)
    assert files["overlay-layers/layers.lock"] == b""
    assert files["overlay-images/images.lock"] == b""
    images = json.loads(files["overlay-images/images.json"])
    assert [i["names"] for i in images] == [[samples.app1_name], [samples.app2_name]]
    expected_files = {
        "overlay-layers/layers.json",
        "overlay-layers/layers.lock",
        "overlay-images/images.json",
        "overlay-images/images.lock",
    }
    for image, which in zip(images, ("app1", "app2"), strict=True):
        src = _source(samples, which)
        assert image["id"] == src.manifest["config"]["digest"][7:]
        assert image["digest"] == src.descriptor["digest"]
        assert image["layer"] == _app_chain(samples, which)[-1]
        assert image["created"] == src.config["created"]
        assert image["names-history"] == image["names"]
        assert list(image) == [
            "id",
            "digest",
            "names",
            "names-history",
            "layer",
            "metadata",
            "big-data-names",
            "big-data-sizes",
            "big-data-digests",
            "created",
        ]
        by_key = {
            src.manifest["config"]["digest"]: src.config_raw,
            "manifest-" + src.descriptor["digest"]: src.manifest_raw,
            "manifest": src.manifest_raw,
        }
        assert sorted(image["big-data-names"]) == sorted(by_key)
        for key, data in by_key.items():
            name = key if key == "manifest" else "=" + base64.b64encode(key.encode()).decode()
            path = f"overlay-images/{image['id']}/{name}"
            assert files[path] == data
            assert image["big-data-sizes"][key] == len(data)
            assert image["big-data-digests"][key] == sha256(data)
            expected_files.add(path)
    assert set(files) == expected_files


def test_layers_json_records_every_app_layer(samples: SampleImages, built: Built) -> None:
    records = json.loads(_metadata_files(built)["overlay-layers/layers.json"])
    assert [r["id"] for r in records] == _all_app_ids(samples)
    by_id = {r["id"]: r for r in records}
    for which in ("app1", "app2"):
        src = _source(samples, which)
        chain = _app_chain(samples, which)
        for i, (desc, lid) in enumerate(zip(src.manifest["layers"], chain, strict=True)):
            r = by_id[lid]
            tar = src.layer_tar(desc)
            uids, gids = set(), set()
            with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
                for m in tf:
                    if not posixpath.basename(m.name.rstrip("/")).startswith(".wh."):
                        uids.add(m.uid)
                        gids.add(m.gid)
            expected = {"id": lid}
            if i:
                expected["parent"] = chain[i - 1]
            expected |= {
                "created": src.config["created"],
                "compressed-diff-digest": desc["digest"],
                "compressed-size": desc["size"],
                "diff-digest": sha256(tar),
                "diff-size": len(tar),
                "compression": 2,
                "uidset": sorted(uids),
                "gidset": sorted(gids),
            }
            assert r == expected
            assert list(r) == list(expected)


# -- annotations and config ------------------------------------------------------------------------


def test_manifest_and_layer_annotations_are_as_documented(
    samples: SampleImages, built: Built
) -> None:
    base = _source(samples, "base")
    manifest = built.layout.manifest
    assert manifest["annotations"] == {
        A + "format": "1",
        A + "images": json.dumps(
            [
                {
                    "name": samples.app1_name,
                    "digest": _source(samples, "app1").descriptor["digest"],
                },
                {
                    "name": samples.app2_name,
                    "digest": _source(samples, "app2").descriptor["digest"],
                },
            ],
            separators=(",", ":"),
        ),
        A + "store": "/" + STORE,
        "org.opencontainers.image.base.digest": base.descriptor["digest"],
    }
    n = len(base.manifest["layers"])
    assert manifest["layers"][:n] == base.manifest["layers"]  # base layers untouched
    assert built.appended == manifest["layers"][n:]
    sources = {}
    for which in ("app1", "app2"):
        src = _source(samples, which)
        sources |= dict(
            zip(_app_chain(samples, which), src.config["rootfs"]["diff_ids"], strict=True)
        )
    common = {A + "store": "/" + STORE, A + "whiteouts": "xattr", A + "format": "1"}
    for d in built.app_layers:
        lid = d["annotations"][A + "layer.id"]
        assert set(d["annotations"]) == {
            A + "layer",
            A + "layer.id",
            A + "source.diff-id",
            A + "image",
            A + "layer.whiteouts",
            A + "layer.left-out",
            *common,
        }
        assert {k: d["annotations"][k] for k in (A + "layer", A + "source.diff-id")} == {
            A + "layer": "app",
            A + "source.diff-id": sources[lid],
        }
        assert d["annotations"][A + "image"] in (samples.app1_name, samples.app2_name)
        assert int(d["annotations"][A + "layer.whiteouts"]) >= 0
        assert int(d["annotations"][A + "layer.left-out"]) >= 0
        assert {k: d["annotations"][k] for k in common} == common
    assert built.metadata["annotations"] == {A + "layer": "metadata", **common}


def test_config_is_the_bases_with_diff_ids_and_history_appended(
    samples: SampleImages, built: Built
) -> None:
    base = _source(samples, "base").config
    config = built.layout.config
    n = len(built.appended)
    assert config["rootfs"]["diff_ids"][:-n] == base["rootfs"]["diff_ids"]
    assert config["history"][: len(base["history"])] == base["history"]
    assert len(config["history"]) == len(base["history"]) + n
    assert {k: v for k, v in config.items() if k not in ("rootfs", "history")} == {
        k: v for k, v in base.items() if k not in ("rootfs", "history")
    }


def test_store_path_option_moves_every_appended_entry(
    samples: SampleImages, tmp_path: Path
) -> None:
    result = _build(samples, f"oci:{tmp_path}/o:latest", store_path="/usr/share/containers/storage")
    b = Built(tmp_path / "o", result)
    for desc in b.appended:
        assert desc["annotations"][A + "store"] == "/usr/share/containers/storage"
        for m, _ in b.members(desc):
            assert m.name in ("usr", "usr/share", "usr/share/containers") or m.name.startswith(
                "usr/share/containers/storage"
            ), m.name


# -- errors leave nothing behind -------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"images": ["nginx=IMG1"]},
        {"images": ["IMG1"]},  # an OCI tag is not a name
        {"images": ["library/nginx:1=IMG1"]},
        {"images": []},
        {"store_path": "/var/lib/containers/storage"},
        {"store_path": "usr/lib/containers/storage"},
        {"store_path": "/usr"},
        {"store_path": "/usr/lib/../../var/x"},
        {"store_path": "/usr//lib/x"},
        {"whiteouts": "aufs"},
        {"compression": "bzip2"},
    ],
    ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()),
)
def test_usage_errors_leave_nothing_at_the_output(
    samples: SampleImages, tmp_path: Path, options: dict[str, Any]
) -> None:
    if "images" in options:
        options = {"images": [i.replace("IMG1", samples.app1) for i in options["images"]]}
    for output in (f"oci:{tmp_path}/out:latest", f"oci-archive:{tmp_path}/out.tar:latest"):
        with pytest.raises(UsageError):
            _build(samples, output, **options)
    _nothing_left(tmp_path, "out")
    _nothing_left(tmp_path, "out.tar")


def _crafted_app(tmp_path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> str:
    good = tar_of([(info("etc", tarfile.DIRTYPE), b""), (info("etc/ok"), b"fine")])
    return "localhost/crafted:1=" + write_layout(tmp_path / "crafted", [good, tar_of(members)])


@pytest.mark.parametrize(
    "members",
    [
        [(info("../x"), b"escape")],
        [(info("a/../../x"), b"escape")],
        [(info("etc/shadow-link", tarfile.LNKTYPE, linkname="../../etc/shadow"), b"")],
        [(info("etc/shadow-link", tarfile.LNKTYPE, linkname="/../../etc/shadow"), b"")],
        [(info("etc/x", tarfile.LNKTYPE, linkname="etc/not-in-this-layer"), b"")],
        [(info("x/.wh..wh.y"), b""), (info("x/.wh..wh..wh.z"), b"")],
    ],
    ids=[
        "dotdot-name",
        "dotdot-inside",
        "hardlink-escape",
        "hardlink-abs-escape",
        "hardlink-missing",
        "wh-of-wh",
    ],
)
def test_bad_layer_content_raises_and_leaves_nothing(
    samples: SampleImages, tmp_path: Path, members: list[tuple[tarfile.TarInfo, bytes]]
) -> None:
    app = _crafted_app(tmp_path, members)
    for output in (f"oci:{tmp_path}/out:latest", f"oci-archive:{tmp_path}/out.tar:latest"):
        with pytest.raises(LayerContentError, match="localhost/crafted:1"):
            _build(samples, output, images=[samples.image_args[0], app])
    _nothing_left(tmp_path, "out")
    _nothing_left(tmp_path, "out.tar")


def test_a_crafted_good_layout_builds(samples: SampleImages, tmp_path: Path) -> None:
    # the same helper with harmless content: proves the errors above come from the content
    app = _crafted_app(tmp_path, [(info("etc/a/../b"), b"cleaned"), (info("./c"), b"")])
    result = _build(samples, f"oci:{tmp_path}/out:latest", images=[app])
    lid = result.images[0].layers[1].layer_id
    b = Built(tmp_path / "out", result)
    entries = _diff_entries(b, lid)
    assert {"etc/b", "c"} <= set(entries)


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset % len(data)] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("which", ["app-layer", "app-layer-end", "base-layer", "app-config"])
def test_a_flipped_blob_byte_raises_digest_mismatch_and_leaves_nothing(
    samples: SampleImages, tmp_path: Path, which: str
) -> None:
    inputs = tmp_path / "in"
    shutil.copytree(samples.directory, inputs)
    app1 = Layout(inputs / "app1", "1")
    base = Layout(inputs / "base", "latest")
    target = {
        "app-layer": (app1.blob_path(app1.manifest["layers"][0]["digest"]), 100),
        "app-layer-end": (app1.blob_path(app1.manifest["layers"][1]["digest"]), -3),
        "base-layer": (base.blob_path(base.manifest["layers"][0]["digest"]), 50),
        "app-config": (app1.blob_path(app1.manifest["config"]["digest"]), 10),
    }[which]
    _flip(*target)
    options = BuildOptions(
        base=f"oci:{inputs}/base:latest",
        images=[f"{samples.app1_name}=oci:{inputs}/app1:1"],
        output=f"oci:{tmp_path}/out:latest",
        cache=False,  # a cached layer is not read again: nothing to find corrupt
    )
    with pytest.raises(DigestMismatchError):
        build(options)
    _nothing_left(tmp_path, "out")


def test_a_failed_build_into_an_existing_layout_changes_nothing(
    samples: SampleImages, tmp_path: Path
) -> None:
    out = tmp_path / "layout"
    _build(samples, f"oci:{out}:one")
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    app = _crafted_app(tmp_path, [(info("../x"), b"escape")])
    with pytest.raises(LayerContentError):
        _build(samples, f"oci:{out}:two", images=[app])
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert sorted(os.listdir(out)) == ["blobs", "index.json", "oci-layout"]


@pytest.mark.parametrize(
    ("compression", "level"), [("gzip", 3), ("gzip", 9), ("gzip", -1), ("zstd", 0), ("zstd", 20)]
)
def test_a_bad_compression_level_is_a_usage_error_and_leaves_nothing(
    samples: SampleImages, tmp_path: Path, compression: str, level: int
) -> None:
    # docs/cli.md: a bad option is a usage error (exit status 2), like a bad --whiteouts
    with pytest.raises(UsageError):
        _build(
            samples,
            f"oci:{tmp_path}/out:latest",
            compression=compression,
            compression_level=level,
        )
    _nothing_left(tmp_path, "out")
