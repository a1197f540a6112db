"""``docker-archive:FILE[:NAME|:@INDEX]``: archives as ``podman save`` and ``docker save`` write
them, built here in Python, read through ``open_source``.

Layouts written (checked against podman 4.3's ``podman save`` output on this machine):

- podman: ``<diff_id hex>.tar`` layers, ``<config hex>.json``, legacy ``<id>/layer.tar``
  symlinks to the layer files with ``<id>/json`` and ``<id>/VERSION``, ``manifest.json`` naming
  the ``.tar`` files, ``repositories``;
- docker before 25: the layers are ``<id>/layer.tar`` files that manifest.json names;
- docker 25 and later: an OCI layout inside (``blobs/sha256/...``, ``index.json``,
  ``oci-layout``) that manifest.json names; layers may be stored compressed there.

The end-to-end test with a real ``podman save`` archive is in test_registry.py.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest
from support.ocilayout import TarBuilder, gzip_bytes
from unit_support.layers import CountingSource, Input, open_input, refuses_non_archives, run

from bootc_embed._model import DOCKER_CONFIG, DOCKER_LAYER, DOCKER_MANIFEST, Descriptor
from bootc_embed._reference import parse_reference
from bootc_embed._transports import (
    ImageSource,
    open_blob,
    open_destination,
    open_source,
    resolve,
)
from bootc_embed.errors import (
    DigestMismatchError,
    ImageFormatError,
    ImageReferenceError,
    UsageError,
)

STYLES = ("podman", "docker", "docker-oci", "docker-oci-gzip")


def _hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _config(tars: list[bytes], arch: str = "amd64") -> bytes:
    return json.dumps(
        {
            "architecture": arch,
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{_hex(t)}" for t in tars]},
        },
        separators=(",", ":"),
    ).encode()


class Archive:
    """A docker-archive tar written member by member."""

    def __init__(self) -> None:
        self._buf = io.BytesIO()
        self._tar = tarfile.open(fileobj=self._buf, mode="w", format=tarfile.PAX_FORMAT)  # noqa: SIM115
        self._names: set[str] = set()
        self.entries: list[dict[str, object]] = []

    def file(self, name: str, data: bytes) -> None:
        if name in self._names:
            return  # a layer two images share is stored once
        self._names.add(name)
        info = tarfile.TarInfo(name)
        info.size, info.mode = len(data), 0o444
        self._tar.addfile(info, io.BytesIO(data))

    def link(self, name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> None:
        if name in self._names:
            return
        self._names.add(name)
        info = tarfile.TarInfo(name)
        info.type, info.linkname = kind, target
        self._tar.addfile(info)

    def image(
        self, tags: list[str] | None, tars: list[bytes], style: str = "podman", arch: str = "amd64"
    ) -> bytes:
        """Add one image; returns its config."""
        config = _config(tars, arch)
        layers = []
        if style == "podman":
            for i, tar in enumerate(tars):
                self.file(f"{_hex(tar)}.tar", tar)
                legacy = _hex(f"{i}{_hex(tar)}".encode())
                self.link(f"{legacy}/layer.tar", f"../{_hex(tar)}.tar")
                self.file(f"{legacy}/VERSION", b"1.0")
                self.file(f"{legacy}/json", b'{"id":"%s"}' % legacy.encode())
                layers.append(f"{_hex(tar)}.tar")
            config_name = f"{_hex(config)}.json"
        elif style == "docker":
            for tar in tars:
                self.file(f"{_hex(tar + b'id')}/layer.tar", tar)
                layers.append(f"{_hex(tar + b'id')}/layer.tar")
            config_name = f"{_hex(config)}.json"
        else:
            for tar in tars:
                blob = gzip_bytes(tar) if style == "docker-oci-gzip" else tar
                self.file(f"blobs/sha256/{_hex(blob)}", blob)
                layers.append(f"blobs/sha256/{_hex(blob)}")
            config_name = f"blobs/sha256/{_hex(config)}"
            self.file("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        self.file(config_name, config)
        self.entries.append({"Config": config_name, "RepoTags": tags, "Layers": layers})
        return config

    def write(self, path: Path, manifest: bytes | None = None) -> Path:
        if manifest is None:
            manifest = json.dumps(self.entries, separators=(",", ":")).encode()
        self.file("manifest.json", manifest)
        self.file("repositories", b"{}")
        self._tar.close()
        path.write_bytes(self._buf.getvalue())
        return path


def _layers() -> list[bytes]:
    return [
        TarBuilder().dir("etc").file("etc/app.conf", b"conf\n").bytes(),
        TarBuilder()
        .file("usr/bin/app", b"#!/bin/sh\n" * 100, mode=0o755)
        .whiteout("etc/old")
        .bytes(),
    ]


def _source(ref: str) -> ImageSource:
    return open_source(parse_reference(ref))


def _read(source: ImageSource, desc: Descriptor) -> bytes:
    """A blob's bytes, checked against its descriptor."""
    with open_blob(source, desc, "layer") as r:
        data = r.read(desc.size + 1)
        r.verify()
    return data


# -- one image, each layout ------------------------------------------------------------------------


@pytest.mark.parametrize("style", STYLES)
def test_an_image_reads_as_a_docker_manifest_of_its_uncompressed_layers(
    tmp_path: Path, style: str
) -> None:
    tars = _layers()
    archive = Archive()
    config = archive.image(["localhost/demo/app:1"], tars, style)
    path = archive.write(tmp_path / "a.tar")
    source = _source(f"docker-archive:{path}")
    assert source.default_name() == "localhost/demo/app:1"
    resolved = resolve(source, None)
    assert resolved.config_raw == config
    expected = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {
            "mediaType": DOCKER_CONFIG,
            "size": len(config),
            "digest": f"sha256:{_hex(config)}",
        },
        "layers": [
            {"mediaType": DOCKER_LAYER, "size": len(t), "digest": f"sha256:{_hex(t)}"} for t in tars
        ],
    }
    assert resolved.manifest.raw == json.dumps(expected, separators=(",", ":")).encode()
    assert resolved.manifest.media_type == DOCKER_MANIFEST
    data = path.read_bytes()
    for desc, tar in zip(resolved.manifest.layers, tars, strict=True):
        assert _read(source, desc) == tar
        place = source.blob_path(desc)
        if style == "docker-oci-gzip":
            assert place is None  # stored compressed: not a region of plain tar bytes
        else:
            assert place is not None and place[0] == path.absolute()
            assert data[place[1] : place[1] + desc.size] == tar
    source.close()


@pytest.mark.parametrize("style", STYLES)
def test_a_layer_from_an_archive_transforms_like_the_same_layer_from_a_layout(
    tmp_path: Path, style: str
) -> None:
    tars = _layers()
    archive = Archive()
    archive.image(["localhost/demo/app:1"], tars, style)
    path = archive.write(tmp_path / "a.tar")
    source = CountingSource(_source(f"docker-archive:{path}"))
    resolved = resolve(source, None)  # type: ignore[arg-type]
    inp = Input(source, resolved.manifest.layers, resolved.diff_ids, "localhost/demo/app:1")
    layout = open_input(tmp_path / "layout", tars, name="localhost/demo/app:1")
    for i in range(len(tars)):
        from_archive = run(inp.job(i), tmp_path / "s1")
        from_layout = run(layout.job(i), tmp_path / "s2")
        assert from_archive.blob == from_layout.blob
        assert from_archive.result.input_compression == 0  # what the store is given: plain tar


def test_layer_files_reached_through_symlinks_and_hardlinks_are_read(tmp_path: Path) -> None:
    tars = _layers()
    archive = Archive()
    archive.file("real/one.tar", tars[0])
    archive.file("real/two.tar", tars[1])
    archive.link("alias/one.tar", "../real/one.tar")  # relative symlink
    archive.link("alias/chain.tar", "../alias/one.tar")  # a symlink to a symlink
    archive.link("hard/two.tar", "real/two.tar", tarfile.LNKTYPE)
    config = _config([tars[0], tars[0], tars[1]])
    archive.file("c.json", config)
    archive.entries.append(
        {
            "Config": "c.json",
            "RepoTags": None,
            "Layers": ["alias/one.tar", "alias/chain.tar", "hard/two.tar"],
        }
    )
    source = _source(f"docker-archive:{archive.write(tmp_path / 'a.tar')}")
    resolved = resolve(source, None)
    assert [d.size for d in resolved.manifest.layers] == [len(tars[0]), len(tars[0]), len(tars[1])]
    for desc, tar in zip(resolved.manifest.layers, [tars[0], tars[0], tars[1]], strict=True):
        assert _read(source, desc) == tar
    assert source.default_name() is None  # untagged


# -- choosing an image by name ---------------------------------------------------------------------


@pytest.fixture
def multi(tmp_path: Path) -> Path:
    """``podman save -m``: two images, the first with two names, the second named by a short
    Docker Hub name; they share a layer."""
    tars = _layers()
    archive = Archive()
    archive.image(["localhost/x/y:1", "localhost/x/z:2"], tars, arch="amd64")
    archive.image(["busybox"], tars[:1], arch="arm64")
    archive.image(None, tars[1:], arch="s390x")
    return archive.write(tmp_path / "multi.tar")


@pytest.mark.parametrize(
    ("name", "arch", "default_name"),
    [
        ("localhost/x/z:2", "amd64", "localhost/x/z:2"),
        ("localhost/x/y:1", "amd64", "localhost/x/y:1"),
        ("busybox", "arm64", "docker.io/library/busybox:latest"),
        ("docker.io/library/busybox:latest", "arm64", "docker.io/library/busybox:latest"),
        ("@0", "amd64", None),  # two names: none is the image's name
        ("@1", "arm64", "docker.io/library/busybox:latest"),
        ("@2", "s390x", None),
    ],
)
def test_an_image_is_chosen_by_name_or_index(
    multi: Path, name: str, arch: str, default_name: str | None
) -> None:
    source = _source(f"docker-archive:{multi}:{name}")
    assert resolve(source, None).config["architecture"] == arch
    assert source.default_name() == default_name


@pytest.mark.parametrize(
    ("suffix", "message"),
    [
        (
            "",
            "the archive holds 3 images; name one with :NAME or :@INDEX (localhost/x/y:1, "
            "localhost/x/z:2; docker.io/library/busybox:latest; @2 (untagged))",
        ),
        (
            ":quay.io/not/there:1",
            "no image named quay.io/not/there:1 (names: localhost/x/y:1, localhost/x/z:2, "
            "docker.io/library/busybox:latest)",
        ),
        (":@3", "the archive holds 3 image(s); there is no @3"),
    ],
    ids=["no-name", "unknown-name", "index-out-of-range"],
)
def test_a_name_that_is_not_there_lists_the_names_that_are(
    multi: Path, suffix: str, message: str
) -> None:
    ref = f"docker-archive:{multi}{suffix}"
    with pytest.raises(ImageReferenceError) as exc:
        _source(ref)
    assert str(exc.value) == f"{parse_reference(ref)}: {message}"


def test_a_docker_archive_is_not_an_output(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="docker-archive: is an input only; write oci-archive:"):
        open_destination(parse_reference(f"docker-archive:{tmp_path}/out.tar"))
    assert list(tmp_path.iterdir()) == []


# -- errors ----------------------------------------------------------------------------------------


def _archive_with(manifest: bytes | None, *, drop: str | None = None) -> Archive:
    archive = Archive()
    tars = _layers()
    config = _config(tars)
    if drop != "config":
        archive.file("c.json", config)
    for i, tar in enumerate(tars):
        if drop != f"layer{i}":
            archive.file(f"l{i}.tar", tar)
    archive.entries.append(
        {"Config": "c.json", "RepoTags": ["localhost/a:1"], "Layers": ["l0.tar", "l1.tar"]}
    )
    return archive


@pytest.mark.parametrize(
    ("manifest", "drop", "error", "message"),
    [
        (b"[{", None, ImageFormatError, "manifest.json is not valid JSON"),
        (b'{"Config": "c.json"}', None, ImageFormatError, "manifest.json is not a list of images"),
        (
            b'[{"Config": "c.json"}]',
            None,
            ImageFormatError,
            "manifest.json entry lacks Config or Layers",
        ),
        (
            b'[{"Config": "c.json", "Layers": ["l0.tar"]}]',
            None,
            ImageFormatError,
            "manifest.json lists 1 layers but the config has 2 diff_ids",
        ),
        (None, "config", ImageFormatError, "config 'c.json' is missing from the archive"),
        (None, "layer1", ImageFormatError, "layer 2 'l1.tar' is missing from the archive"),
        (
            b'[{"Config": "c.json", "Layers": ["../l0.tar", "l1.tar"]}]',
            None,
            ImageFormatError,
            "layer 1 '../l0.tar' is missing from the archive",
        ),
    ],
    ids=["not-json", "not-a-list", "no-layers", "count", "no-config", "no-layer", "outside"],
)
def test_a_bad_manifest_json_or_a_missing_member_is_named(
    tmp_path: Path, manifest: bytes | None, drop: str | None, error: type[Exception], message: str
) -> None:
    path = _archive_with(manifest, drop=drop).write(tmp_path / "a.tar", manifest)
    with pytest.raises(error) as exc:
        _source(f"docker-archive:{path}")
    assert str(exc.value).startswith(f"docker-archive:{path}: ")
    assert message in str(exc.value)


def test_a_file_that_is_not_a_docker_archive_is_named(tmp_path: Path) -> None:
    refuses_non_archives(
        "docker-archive",
        tmp_path,
        "index.json",
        ["no such archive", "not a readable docker archive", "the archive has no manifest.json"],
    )


def test_a_layer_that_does_not_match_its_diff_id_is_refused_when_read(tmp_path: Path) -> None:
    tars = _layers()
    archive = Archive()
    archive.file("c.json", _config(tars))
    archive.file("l0.tar", tars[0])
    archive.file("l1.tar", tars[1].replace(b"#!/bin/sh", b"#!/bin/xx"))
    archive.entries.append({"Config": "c.json", "RepoTags": None, "Layers": ["l0.tar", "l1.tar"]})
    source = _source(f"docker-archive:{archive.write(tmp_path / 'a.tar')}")
    desc = resolve(source, None).manifest.layers[1]
    with pytest.raises(DigestMismatchError) as exc, open_blob(source, desc, "layer 2") as r:
        r.verify()
    assert str(exc.value).startswith(
        f"layer 2: blob content does not match its digest: expected {desc.digest}"
    )
