"""The demo's sample images (``bootc_embed._demo``): valid OCI layouts, complete, byte-stable."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import tarfile
import zlib
from pathlib import Path
from typing import Any

import pytest

from bootc_embed._demo import (
    APP1_NAME,
    APP2_NAME,
    SampleImages,
    host_architecture,
    write_sample_images,
)

TAGS = {"base": "latest", "app1": "1", "app2": "1"}

# diff_ids do not depend on the machine: a change here changes every golden value downstream.
GOLDEN_DIFF_IDS = {
    "base": [
        "sha256:26ac5d7dc72d2a5b5fcb62874c3c5a995d6e3971637d774a267b5fa42f9fd05c",
        "sha256:3907aac891d7c4bcb56ddb49f612ec46ac52050de0af2d8defe71f478c7a11a6",
    ],
    "app1": [
        "sha256:c3b3fc4a6e8534e9055dca50c321b5b8263db6e01743c49effeb8a997c70754e",
        "sha256:c89c120b201dec51b3386eda1325ecfdde1626a3e2efa6b1ddcc0b788c5be302",
        "sha256:5ed7786874d9e28a729344b47e74697b50d93340a7c65b11577a3323185ecc70",
    ],
    "app2": [
        "sha256:c3b3fc4a6e8534e9055dca50c321b5b8263db6e01743c49effeb8a997c70754e",
        "sha256:687249e3b9f43f3ac1f5a18c741dde5a599a7de24980053c0a7342b33501a71e",
    ],
}


class Image:
    """One image of an OCI layout, read with nothing but the standard library."""

    def __init__(self, layout: Path, tag: str) -> None:
        self.layout = layout
        self.index = json.loads((layout / "index.json").read_bytes())
        matches = [
            d
            for d in self.index["manifests"]
            if d.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag
        ]
        assert len(matches) == 1, f"tag {tag} in {layout}"
        self.descriptor: dict[str, Any] = matches[0]
        self.manifest: dict[str, Any] = json.loads(self.blob(self.descriptor))
        self.config: dict[str, Any] = json.loads(self.blob(self.manifest["config"]))

    def blob(self, descriptor: dict[str, Any]) -> bytes:
        algorithm, hex_digest = descriptor["digest"].split(":", 1)
        assert algorithm == "sha256"
        return (self.layout / "blobs" / "sha256" / hex_digest).read_bytes()

    def layer_tar(self, i: int) -> bytes:
        descriptor = self.manifest["layers"][i]
        data = self.blob(descriptor)
        if descriptor["mediaType"].endswith("+gzip"):
            return zlib.decompress(data, wbits=31)  # reading only: any zlib inflates the same
        assert descriptor["mediaType"] == "application/vnd.oci.image.layer.v1.tar"
        return data

    def members(self, i: int) -> list[tarfile.TarInfo]:
        with tarfile.open(fileobj=io.BytesIO(self.layer_tar(i)), mode="r:") as archive:
            return archive.getmembers()


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> SampleImages:
    return write_sample_images(tmp_path_factory.mktemp("samples"))


def images(samples: SampleImages) -> dict[str, Image]:
    return {name: Image(samples.directory / name, tag) for name, tag in TAGS.items()}


def by_name(members: list[tarfile.TarInfo]) -> dict[str, tarfile.TarInfo]:
    return {m.name: m for m in members}


def test_references_point_at_absolute_layouts_and_names_are_qualified(
    samples: SampleImages,
) -> None:
    root = samples.directory
    assert root.is_absolute()
    assert samples.base == f"oci:{root}/base:latest"
    assert samples.app1 == f"oci:{root}/app1:1"
    assert samples.app2 == f"oci:{root}/app2:1"
    assert (samples.app1_name, samples.app2_name) == (APP1_NAME, APP2_NAME)
    assert APP1_NAME == "localhost/demo/app1:1"
    assert samples.image_args == [f"{APP1_NAME}={samples.app1}", f"{APP2_NAME}={samples.app2}"]


def test_layouts_are_oci_image_layouts_with_tagged_index(samples: SampleImages) -> None:
    for name, tag in TAGS.items():
        layout = samples.directory / name
        assert json.loads((layout / "oci-layout").read_bytes()) == {"imageLayoutVersion": "1.0.0"}
        index = json.loads((layout / "index.json").read_bytes())
        assert index["schemaVersion"] == 2
        assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
        [descriptor] = index["manifests"]
        assert descriptor["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
        assert descriptor["annotations"] == {"org.opencontainers.image.ref.name": tag}


def test_every_blob_matches_its_digest_and_size(samples: SampleImages) -> None:
    for image in images(samples).values():
        descriptors = [image.descriptor, image.manifest["config"], *image.manifest["layers"]]
        for descriptor in descriptors:
            data = image.blob(descriptor)
            assert "sha256:" + hashlib.sha256(data).hexdigest() == descriptor["digest"]
            assert len(data) == descriptor["size"]
        # and nothing else is stored
        stored = {p.name for p in (image.layout / "blobs" / "sha256").iterdir()}
        assert stored == {d["digest"].split(":", 1)[1] for d in descriptors}


def test_manifest_and_config_are_well_formed(samples: SampleImages) -> None:
    for name, image in images(samples).items():
        manifest, config = image.manifest, image.config
        assert manifest["schemaVersion"] == 2
        assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
        assert manifest["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
        for layer in manifest["layers"]:
            assert layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
        assert config["architecture"] == host_architecture()
        assert config["os"] == "linux"
        assert config["created"] == "2024-01-01T00:00:00Z"
        assert config["rootfs"]["type"] == "layers"
        assert len(config["rootfs"]["diff_ids"]) == len(manifest["layers"])
        real = [h for h in config["history"] if not h.get("empty_layer")]
        assert len(real) == len(manifest["layers"]), name
        assert all(h["created"] == "2024-01-01T00:00:00Z" for h in config["history"])
        assert isinstance(config["config"]["Labels"], dict)
    assert images(samples)["base"].config["config"]["Labels"]["containers.bootc"] == "1"


def test_host_architecture_uses_oci_names(monkeypatch: pytest.MonkeyPatch) -> None:
    import platform

    for machine, arch in [("x86_64", "amd64"), ("aarch64", "arm64"), ("s390x", "s390x")]:
        monkeypatch.setattr(platform, "machine", lambda m=machine: m)
        assert host_architecture() == arch


def test_architecture_can_be_chosen(tmp_path: Path) -> None:
    samples = write_sample_images(tmp_path, architecture="arm64")
    assert Image(tmp_path / "app1", "1").config["architecture"] == "arm64"
    assert samples.app1.endswith("/app1:1")


def test_diff_ids_match_the_uncompressed_layers(samples: SampleImages) -> None:
    for image in images(samples).values():
        for i, diff_id in enumerate(image.config["rootfs"]["diff_ids"]):
            assert "sha256:" + hashlib.sha256(image.layer_tar(i)).hexdigest() == diff_id


def test_diff_ids_match_the_golden_values(samples: SampleImages) -> None:
    for name, image in images(samples).items():
        assert image.config["rootfs"]["diff_ids"] == GOLDEN_DIFF_IDS[name], name


def test_layers_are_gzip_written_by_the_pinned_compressor(samples: SampleImages) -> None:
    # our own header: no name, mtime 0, OS 255 (never the stdlib gzip module's)
    for image in images(samples).values():
        for descriptor in image.manifest["layers"]:
            assert image.blob(descriptor)[:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"


def test_layer_tars_are_block_aligned_with_fixed_metadata(samples: SampleImages) -> None:
    for image in images(samples).values():
        for i in range(len(image.manifest["layers"])):
            tar = image.layer_tar(i)
            assert len(tar) % 512 == 0
            assert tar.endswith(bytes(1024))
            for member in image.members(i):
                assert member.mtime == 1704067200
                assert member.uname == member.gname == ""


def test_base_is_a_small_bootc_like_image(samples: SampleImages) -> None:
    base = images(samples)["base"]
    assert 1 <= len(base.manifest["layers"]) <= 2
    names = {m.name for i in range(len(base.manifest["layers"])) for m in base.members(i)}
    assert {"usr/lib/os-release", "usr/bin/hello"} <= names
    assert any(n.startswith("etc/") for n in names)


def test_app1_first_layer_has_every_entry_kind(samples: SampleImages) -> None:
    app1 = images(samples)["app1"]
    assert len(app1.manifest["layers"]) == 3
    members = app1.members(0)
    entries = by_name(members)

    assert entries["."].isdir()  # the "./" root entry
    assert any(m.issym() for m in members)
    hardlinks = [m for m in members if m.islnk()]
    assert any(entries[h.linkname].isfile() for h in hardlinks)
    assert any(m.isfile() and m.mode & 0o4000 and m.mode & 0o7777 == 0o4755 for m in members)
    assert any(m.isfile() and m.uid == 1000 and m.gid == 1000 for m in members)
    assert any(m.isfile() and m.size == 0 for m in members)  # an empty file (no whiteouts here)
    dirs = [m.name for m in members if m.isdir() and m.name != "."]
    assert any(not any(n.startswith(d + "/") for n in entries) for d in dirs)  # an empty dir
    null = entries["dev/null"]
    assert null.ischr() and (null.devmajor, null.devminor) == (1, 3)
    assert any(m.isfifo() for m in members)
    assert any(h.linkname == "dev/null" for h in hardlinks)  # a hardlink to a device node
    # long names: one in the ustar prefix field (<= 255 bytes), one needing a PAX record
    lengths = [len(m.name.encode()) for m in members]
    assert any(100 < n <= 255 for n in lengths)
    assert any(n > 255 for n in lengths)
    raw = app1.layer_tar(0)
    assert b" path=usr/share/app/" in raw  # PAX path record
    assert any(len(m.linkname) > 100 for m in members)  # PAX linkpath


def test_app1_second_layer_deletes_and_makes_opaque(samples: SampleImages) -> None:
    app1 = images(samples)["app1"]
    lower = by_name(app1.members(0))
    members = app1.members(1)
    entries = by_name(members)
    whiteouts = [m.name for m in members if m.name.split("/")[-1].startswith(".wh.")]
    deleted = {
        w.rsplit("/", 1)[0] + "/" + w.rsplit("/", 1)[1].removeprefix(".wh.")
        for w in whiteouts
        if not w.endswith(".wh..wh..opq")
    }
    assert any(lower[d].isfile() for d in deleted if d in lower)  # a file deleted
    assert any(lower[d].isdir() for d in deleted if d in lower)  # a directory deleted
    # a whiteout whose directory has no entry of its own in this layer
    assert any(w.rsplit("/", 1)[0] not in entries for w in whiteouts)
    [opaque] = [w for w in whiteouts if w.endswith("/.wh..wh..opq")]
    opaque_dir = opaque.rsplit("/", 1)[0]
    assert lower[opaque_dir].isdir()
    assert any(
        m.isfile() and m.name.startswith(opaque_dir + "/") and ".wh." not in m.name for m in members
    )
    added = [m for m in members if m.isfile() and m.name not in lower and ".wh." not in m.name]
    assert added


def test_app1_third_layer_is_the_version_file(samples: SampleImages) -> None:
    app1 = images(samples)["app1"]
    with tarfile.open(fileobj=io.BytesIO(app1.layer_tar(2))) as archive:
        [member] = archive.getmembers()
        assert member.name == "etc/app-version"
        handle = archive.extractfile(member)
        assert handle is not None
        assert handle.read() == b"1\n"


def test_app2_shares_app1_first_layer_blob(samples: SampleImages) -> None:
    app1, app2 = images(samples)["app1"], images(samples)["app2"]
    assert app2.manifest["layers"][0] == app1.manifest["layers"][0]
    assert app2.blob(app2.manifest["layers"][0]) == app1.blob(app1.manifest["layers"][0])
    assert app2.config["rootfs"]["diff_ids"][0] == app1.config["rootfs"]["diff_ids"][0]
    assert len(app2.manifest["layers"]) == 2
    assert app2.manifest["layers"][1] not in app1.manifest["layers"]


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_sample_images_are_byte_deterministic(tmp_path: Path) -> None:
    first = write_sample_images(tmp_path / "one" / "a")
    second = write_sample_images(tmp_path / "two")
    assert first.directory != second.directory
    one, two = tree(first.directory), tree(second.directory)
    assert one == two
    assert {"base/index.json", "app1/index.json", "app2/index.json"} <= one.keys()
    # and rewriting in place changes nothing
    write_sample_images(tmp_path / "two")
    assert tree(second.directory) == two


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed")
def test_skopeo_accepts_each_layout(samples: SampleImages) -> None:
    for name, ref in [("base", samples.base), ("app1", samples.app1), ("app2", samples.app2)]:
        done = subprocess.run(
            ["skopeo", "inspect", ref], capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, done.stderr
        info = json.loads(done.stdout)
        image = images(samples)[name]
        assert info["Digest"] == image.descriptor["digest"]
        assert info["Layers"] == [d["digest"] for d in image.manifest["layers"]]
        assert info["Architecture"] == host_architecture()


def test_run_demo_embeds_both_apps(tmp_path: Path) -> None:
    from rich.console import Console

    from bootc_embed._demo import run_demo

    out = io.StringIO()
    console = Console(file=out, width=200, color_system=None)
    assert run_demo(tmp_path, console) == 0
    text = out.getvalue()
    assert APP1_NAME in text and APP2_NAME in text
    output = Image(tmp_path / "output", "latest")
    embedded = json.loads(output.manifest["annotations"]["io.bootc-embed.images"])
    assert [e["name"] for e in embedded] == [APP1_NAME, APP2_NAME]
    base = Image(tmp_path / "samples" / "base", "latest")
    assert output.manifest["layers"][:2] == base.manifest["layers"]
    assert "skopeo copy oci:" in text
    # the base has no storage.conf: the demo says the one written lists the store
    assert "/etc/containers/storage.conf written with podman's defaults" in text
    assert "+ 1 configuration layer" in text
    # running it again into the same directory gives the same image
    digest = output.descriptor["digest"]
    assert run_demo(tmp_path, Console(file=io.StringIO())) == 0
    assert Image(tmp_path / "output", "latest").descriptor["digest"] == digest
