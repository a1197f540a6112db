"""The ``oci:`` and ``oci-archive:`` transports through ``open_source`` / ``open_destination``.

Layouts are written and read back with tests/support/ocilayout.py (the standard library only).
Builds of several tags into one layout by concurrent processes are tested end to end in
test_build_unit.py; here the two commits are interleaved by hand, deterministically.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import pytest
from support.ocilayout import (
    MT_INDEX,
    MT_LAYER_GZIP,
    MT_MANIFEST,
    REF_NAME,
    TarBuilder,
    blob_path,
    canonical_json,
    digest_of,
    gzip_bytes,
    layout_snapshot,
    read_image,
    write_blob,
    write_image,
)
from unit_support.layers import refuses_non_archives

from bootc_embed._model import Descriptor, Platform
from bootc_embed._reference import parse_reference
from bootc_embed._transports import (
    ImageDestination,
    ImageSource,
    open_blob,
    open_destination,
    open_source,
    read_blob,
    resolve,
)
from bootc_embed.errors import DigestMismatchError, ImageFormatError, ImageReferenceError

MT_CONFIG = "application/vnd.oci.image.config.v1+json"


def _source(ref: str) -> ImageSource:
    return open_source(parse_reference(ref))


def _dest(ref: str) -> ImageDestination:
    return open_destination(parse_reference(ref))


def _layout(root: Path, *tags: str) -> dict[str, str]:
    """A layout with one small image per tag (each different); tag -> manifest digest."""
    out = {}
    for tag in tags:
        layer = TarBuilder().file(f"tag-{tag}", tag.encode()).bytes()
        out[tag] = write_image(root, [layer], tag=tag).manifest_digest
    return out


def _pack(layout: Path, archive: Path, prefix: str = "") -> None:
    """An oci-archive of a layout, as ``tar -C layout -cf archive .`` would write it."""
    with tarfile.open(archive, "w") as tf:
        for name in ("oci-layout", "index.json", "blobs"):
            tf.add(layout / name, arcname=prefix + name)


def _push(dest: ImageDestination, content: bytes, **annotations: str) -> tuple[str, bytes]:
    """Stage one small image (a layer file, config bytes, manifest) and commit it; returns the
    manifest's digest and bytes."""
    tar = TarBuilder().file("f", content).bytes()
    layer = gzip_bytes(tar)
    staged = dest.staging_dir() / "layer"
    staged.write_bytes(layer)
    dest.add_blob_file(staged, digest_of(layer))
    assert not staged.exists()  # moved, not copied
    config = canonical_json({"rootfs": {"type": "layers", "diff_ids": [digest_of(tar)]}})
    assert dest.add_blob_bytes(config) == digest_of(config)
    manifest_obj: dict[str, object] = {
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": {"mediaType": MT_CONFIG, "digest": digest_of(config), "size": len(config)},
        "layers": [{"mediaType": MT_LAYER_GZIP, "digest": digest_of(layer), "size": len(layer)}],
    }
    if annotations:
        manifest_obj["annotations"] = annotations
    manifest = canonical_json(manifest_obj)
    dest.commit(manifest, MT_MANIFEST)
    return digest_of(manifest), manifest


def _tags(root: Path) -> dict[str | None, str]:
    index = json.loads((root / "index.json").read_bytes())
    return {(m.get("annotations") or {}).get(REF_NAME): m["digest"] for m in index["manifests"]}


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


# -- oci: source -----------------------------------------------------------------------------------


def test_a_tag_names_its_image_and_a_missing_tag_lists_the_tags_there(tmp_path: Path) -> None:
    tags = _layout(tmp_path / "l", "1", "beta", "2")
    for tag, digest in tags.items():
        assert _source(f"oci:{tmp_path}/l:{tag}").top_descriptor().digest == digest
    ref = f"oci:{tmp_path}/l:3"
    with pytest.raises(ImageReferenceError) as exc:
        _source(ref).top_descriptor()
    assert str(exc.value) == f"{ref}: no image tagged '3' (tags: 1, 2, beta)"


def test_without_a_tag_the_only_image_is_taken_and_several_are_listed(tmp_path: Path) -> None:
    one = _layout(tmp_path / "one", "only")
    assert _source(f"oci:{tmp_path}/one").top_descriptor().digest == one["only"]
    _layout(tmp_path / "two", "a", "b")
    index = json.loads((tmp_path / "two" / "index.json").read_bytes())
    untagged = dict(index["manifests"][0])
    del untagged["annotations"]
    index["manifests"].append(untagged)
    (tmp_path / "two" / "index.json").write_bytes(canonical_json(index))
    with pytest.raises(ImageReferenceError) as exc:
        _source(f"oci:{tmp_path}/two").top_descriptor()
    assert "holds 3 images; name one with :TAG (tags: (untagged), a, b)" in str(exc.value)
    (tmp_path / "empty" / "blobs").mkdir(parents=True)
    (tmp_path / "empty" / "index.json").write_bytes(canonical_json({"manifests": []}))
    with pytest.raises(ImageReferenceError, match="the layout holds no image"):
        _source(f"oci:{tmp_path}/empty").top_descriptor()


@pytest.mark.parametrize(
    ("setup", "error", "words"),
    [
        (lambda p: None, ImageReferenceError, "no OCI layout directory at"),
        (lambda p: p.mkdir(), ImageReferenceError, "is not an OCI layout (no index.json)"),
        (lambda p: p.write_bytes(b"a file"), ImageReferenceError, "no OCI layout directory"),
    ],
    ids=["missing", "no-index", "a-file"],
)
def test_a_path_that_is_not_a_layout_is_named(
    tmp_path: Path, setup: object, error: type[Exception], words: str
) -> None:
    path = tmp_path / "x"
    setup(path)  # type: ignore[operator]
    with pytest.raises(error) as exc:
        _source(f"oci:{path}:1")
    assert str(exc.value).startswith(f"oci:{path}:1: ") and words in str(exc.value)
    assert str(path) in str(exc.value)


@pytest.mark.parametrize(
    ("index", "words"),
    [(b"{not json", "index.json is not valid JSON"), (b'{"manifests": {}}', "not a list")],
)
def test_a_broken_index_json_is_named(tmp_path: Path, index: bytes, words: str) -> None:
    _layout(tmp_path / "l", "1")
    (tmp_path / "l" / "index.json").write_bytes(index)
    with pytest.raises(ImageFormatError) as exc:
        _source(f"oci:{tmp_path}/l:1").top_descriptor()
    assert str(exc.value).startswith(f"oci:{tmp_path}/l:1: index.json")
    assert words in str(exc.value)


def test_blobs_are_verified_and_a_wrong_one_is_refused_naming_it(tmp_path: Path) -> None:
    image = write_image(tmp_path / "l", [TarBuilder().file("f", b"content").bytes()])
    source = _source(image.ref)
    resolved = resolve(source, None)
    assert resolved.manifest.digest == image.manifest_digest
    assert resolved.diff_ids == image.diff_ids
    layer = resolved.manifest.layers[0]
    assert source.blob_path(layer) == (blob_path(image.layout, layer.digest), 0)
    with open_blob(source, layer, "the layer") as r:
        assert r.read(layer.size + 1) == blob_path(image.layout, layer.digest).read_bytes()
        r.verify()
    # the config blob replaced by other bytes: the read that uses it fails, naming it
    cfg = blob_path(image.layout, image.config_digest)
    cfg.write_bytes(cfg.read_bytes().replace(b"amd64", b"arm64"))
    with pytest.raises(DigestMismatchError) as exc:
        resolve(_source(image.ref), None)
    assert str(exc.value) == (
        f"{image.ref}: config: blob content does not match its digest: expected "
        f"{image.config_digest}, got {digest_of(cfg.read_bytes())}"
    )
    cfg.write_bytes(cfg.read_bytes() + b" ")  # longer than its descriptor says
    with pytest.raises(DigestMismatchError, match=f"blob {image.config_digest} is larger"):
        resolve(_source(image.ref), None)
    cfg.unlink()
    with pytest.raises(ImageFormatError) as exc2:
        resolve(_source(image.ref), None)
    assert str(exc2.value) == f"{image.ref}: blob {image.config_digest} is missing from the layout"


@pytest.mark.parametrize(
    "digest",
    ["sha256:../../../../etc/passwd", "sha512:" + "0" * 128, "sha256:" + "A" * 64, "nodigest"],
)
def test_a_malformed_digest_never_becomes_a_path(tmp_path: Path, digest: str) -> None:
    image = write_image(tmp_path / "l", [TarBuilder().file("f").bytes()])
    source = _source(image.ref)
    with pytest.raises(DigestMismatchError, match="unsupported or malformed digest"):
        source.open_raw(Descriptor(MT_LAYER_GZIP, digest, 10))


def test_an_index_gives_the_image_of_the_asked_platform(tmp_path: Path) -> None:
    root = tmp_path / "l"
    images = {
        arch: write_image(root, [TarBuilder().file(arch).bytes()], tag=arch)
        for arch in ("amd64", "arm64")
    }
    entries = []
    for arch, image in images.items():
        raw = blob_path(root, image.manifest_digest).read_bytes()
        entries.append(
            {
                "mediaType": MT_MANIFEST,
                "digest": image.manifest_digest,
                "size": len(raw),
                "platform": {"architecture": arch, "os": "linux"},
            }
        )
    index = canonical_json({"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": entries})
    top = {"mediaType": MT_INDEX, "digest": write_blob(root, index), "size": len(index)}
    (root / "index.json").write_bytes(
        canonical_json({"schemaVersion": 2, "manifests": [{**top, "annotations": {REF_NAME: "x"}}]})
    )
    ref = f"oci:{root}:x"
    for arch, image in images.items():
        resolved = resolve(_source(ref), Platform("linux", arch))
        assert resolved.manifest.digest == image.manifest_digest
        assert resolved.index_digest == top["digest"] and resolved.index_raw == index
    with pytest.raises(ImageReferenceError) as exc:
        resolve(_source(ref), Platform("linux", "s390x"))
    assert "no image for platform linux/s390x (it has: linux/amd64, linux/arm64)" in str(exc.value)


# -- oci-archive: source ---------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["", "./"])
def test_an_archive_is_read_in_place_like_the_layout_it_holds(tmp_path: Path, prefix: str) -> None:
    tags = _layout(tmp_path / "l", "1", "2")
    archive = tmp_path / "a.tar"
    _pack(tmp_path / "l", archive, prefix)
    for tag, digest in tags.items():
        source = _source(f"oci-archive:{archive}:{tag}")
        resolved = resolve(source, None)
        assert resolved.manifest.digest == digest
        layer = resolved.manifest.layers[0]
        assert source.blob_path(layer) is None
        assert (
            read_blob(source, layer, "layer")
            == blob_path(tmp_path / "l", layer.digest).read_bytes()
        )
        source.close()
    with pytest.raises(ImageReferenceError, match=r"no image tagged '3' \(tags: 1, 2\)"):
        _source(f"oci-archive:{archive}:3").top_descriptor()


def test_a_wrong_blob_in_an_archive_is_refused_naming_it(tmp_path: Path) -> None:
    image = write_image(tmp_path / "l", [TarBuilder().file("f", b"content").bytes()])
    cfg = blob_path(image.layout, image.config_digest)
    cfg.write_bytes(cfg.read_bytes().replace(b"amd64", b"arm64"))
    _pack(image.layout, tmp_path / "a.tar")
    with pytest.raises(DigestMismatchError, match=f"expected {image.config_digest}"):
        resolve(_source(f"oci-archive:{tmp_path}/a.tar:1"), None)
    cfg.unlink()
    _pack(image.layout, tmp_path / "b.tar")
    with pytest.raises(ImageFormatError) as exc:
        resolve(_source(f"oci-archive:{tmp_path}/b.tar:1"), None)
    assert f"blob {image.config_digest} is missing from the archive" in str(exc.value)


def test_a_file_that_is_not_an_oci_archive_is_named(tmp_path: Path) -> None:
    refuses_non_archives(
        "oci-archive",
        tmp_path,
        "manifest.json",
        [
            "no such archive",
            "not a readable OCI archive",
            "the archive holds no OCI layout (no index.json)",
        ],
    )


# -- oci: destination ------------------------------------------------------------------------------


def test_a_new_layout_holds_the_image_and_nothing_else(tmp_path: Path) -> None:
    out = tmp_path / "out"
    dest = _dest(f"oci:{out}:v1")
    assert not out.exists()  # staged beside it until the commit
    digest, manifest = _push(dest, b"one")
    assert (out / "oci-layout").read_bytes() == b'{"imageLayoutVersion":"1.0.0"}'
    assert (out / "index.json").read_bytes() == json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MT_INDEX,
            "manifests": [
                {
                    "mediaType": MT_MANIFEST,
                    "digest": digest,
                    "size": len(manifest),
                    "annotations": {REF_NAME: "v1"},
                }
            ],
        },
        separators=(",", ":"),
    ).encode()
    image = read_image(out, "v1")
    blobs = {digest[7:], image.config_digest[7:], image.layers[0]["digest"][7:]}
    assert _files(out) == sorted(
        ["blobs", "blobs/sha256", "index.json", "oci-layout", *(f"blobs/sha256/{b}" for b in blobs)]
    )
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    # and it reads back through the source
    assert resolve(_source(f"oci:{out}:v1"), None).manifest.raw == manifest


def test_tags_are_added_and_replaced_keeping_the_others_and_what_index_json_holds(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    tags = _layout(out, "a", "b")
    index = json.loads((out / "index.json").read_bytes())
    index["annotations"] = {"kept": "yes"}  # what we do not know is kept
    index["manifests"][0]["annotations"]["org.example.note"] = "kept too"
    (out / "index.json").write_bytes(canonical_json(index))
    c, _ = _push(_dest(f"oci:{out}:c"), b"c")
    assert _tags(out) == {**tags, "c": c}
    a2, _ = _push(_dest(f"oci:{out}:a"), b"a2")
    after = json.loads((out / "index.json").read_bytes())
    assert [m["annotations"][REF_NAME] for m in after["manifests"]] == ["b", "c", "a"]
    assert _tags(out) == {"a": a2, "b": tags["b"], "c": c}
    assert after["annotations"] == {"kept": "yes"}
    for tag in ("a", "b", "c"):
        image = read_image(out, tag)
        for d in [image.config_digest] + [x["digest"] for x in image.layers]:
            assert digest_of(blob_path(out, d).read_bytes()) == d
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []


def test_an_untagged_destination_adds_one_untagged_entry(tmp_path: Path) -> None:
    out = tmp_path / "out"
    tags = _layout(out, "a")
    first, _ = _push(_dest(f"oci:{out}"), b"x")
    again, _ = _push(_dest(f"oci:{out}"), b"x")  # the same image: not listed twice
    assert first == again
    index = json.loads((out / "index.json").read_bytes())
    assert len(index["manifests"]) == 2
    assert _tags(out) == {"a": tags["a"], None: first}


def test_blobs_the_layout_holds_are_not_staged_again(tmp_path: Path) -> None:
    out = tmp_path / "out"
    image = write_image(out, [TarBuilder().file("f", b"x").bytes()], tag="a")
    dest = _dest(f"oci:{out}:b")
    layer = image.layers[0]["digest"]
    assert dest.has_blob(layer) and not dest.has_blob(digest_of(b"absent"))
    copy = dest.staging_dir() / "copy"
    copy.write_bytes(blob_path(out, layer).read_bytes())
    inode = blob_path(out, layer).stat().st_ino
    dest.add_blob_file(copy, layer)
    assert not copy.exists()
    dest.abort()
    assert blob_path(out, layer).stat().st_ino == inode


@pytest.mark.parametrize("existing", [False, True], ids=["new-layout", "existing-layout"])
def test_an_aborted_destination_leaves_nothing(tmp_path: Path, existing: bool) -> None:
    out = tmp_path / "out"
    if existing:
        _layout(out, "keep")
    before = layout_snapshot(out) if existing else None
    dest = _dest(f"oci:{out}:new")
    layer = dest.staging_dir() / "blob"
    layer.write_bytes(b"staged")
    dest.add_blob_file(layer, digest_of(b"staged"))
    dest.add_blob_bytes(b"config")
    dest.abort()
    assert [p.name for p in tmp_path.iterdir()] == (["out"] if existing else [])
    if existing:
        assert layout_snapshot(out) == before


@pytest.mark.parametrize(
    ("setup", "words"),
    [
        (lambda p: p.write_bytes(b"x"), "exists and is not a directory"),
        (lambda p: (p.mkdir(), (p / "junk").write_bytes(b"")), "non-empty directory that is not"),
        (lambda p: None, "does not exist"),
    ],
    ids=["a-file", "not-a-layout", "no-parent"],
)
def test_a_destination_that_cannot_be_a_layout_is_refused(
    tmp_path: Path, setup: object, words: str
) -> None:
    path = tmp_path / "x"
    setup(path)  # type: ignore[operator]
    target = path if words != "does not exist" else path / "sub" / "out"
    before = _files(tmp_path)
    with pytest.raises(ImageReferenceError, match=words):
        _dest(f"oci:{target}:1")
    assert _files(tmp_path) == before


def test_an_empty_directory_becomes_a_layout(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    digest, _ = _push(_dest(f"oci:{out}:1"), b"x")
    assert _tags(out) == {"1": digest}


@pytest.mark.parametrize("existing", [False, True], ids=["new-layout", "existing-layout"])
def test_two_destinations_opened_on_one_layout_both_keep_their_tag(
    tmp_path: Path, existing: bool
) -> None:
    out = tmp_path / "out"
    tags = _layout(out, "first") if existing else {}
    one, two = _dest(f"oci:{out}:one"), _dest(f"oci:{out}:two")
    d1, _ = _push(one, b"1")  # creates the layout (when new) while two is still staging
    d2, _ = _push(two, b"2")  # merges into the layout one created
    assert _tags(out) == {**tags, "one": d1, "two": d2}
    for tag in ("one", "two"):
        read_image(out, tag)
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []


# -- oci-archive: destination ----------------------------------------------------------------------


def test_an_archive_is_a_deterministic_tar_of_the_layout(tmp_path: Path) -> None:
    paths = [tmp_path / "a.tar", tmp_path / "b.tar"]
    for path in paths:
        dest = _dest(f"oci-archive:{path}:v1")
        assert not path.exists()
        digest, manifest = _push(dest, b"content")
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert [p.name for p in tmp_path.iterdir()] == ["a.tar", "b.tar"]
    with tarfile.open(paths[0]) as tf:
        members = tf.getmembers()
    names = [m.name for m in members]
    assert names[:4] == ["oci-layout", "index.json", "blobs", "blobs/sha256"]
    assert names[4:] == sorted(names[4:]) and f"blobs/sha256/{digest[7:]}" in names
    assert {(m.uid, m.gid, m.mtime, m.uname) for m in members} == {(0, 0, 0, "")}
    assert resolve(_source(f"oci-archive:{paths[0]}:v1"), None).manifest.raw == manifest


def test_an_existing_archive_keeps_its_other_tags_and_only_layout_files(tmp_path: Path) -> None:
    archive = tmp_path / "a.tar"
    tags = _layout(tmp_path / "l", "a", "b")
    _pack(tmp_path / "l", archive)
    with tarfile.open(archive, "a") as tf:  # what is not part of a layout is not carried over
        for name in ("README", "../escape", "blobs/../../escape2"):
            tf.addfile(tarfile.TarInfo(name), io.BytesIO(b""))
    a2, _ = _push(_dest(f"oci-archive:{archive}:a"), b"new a")
    c, _ = _push(_dest(f"oci-archive:{archive}:c"), b"c")
    with tarfile.open(archive) as tf:
        names = tf.getnames()
        index = json.loads(tf.extractfile("index.json").read())  # type: ignore[union-attr]
    assert "README" not in names and not [n for n in names if "escape" in n]
    assert {m["annotations"][REF_NAME]: m["digest"] for m in index["manifests"]} == {
        "a": a2,
        "b": tags["b"],
        "c": c,
    }
    assert not (tmp_path / "escape").exists() and not (tmp_path.parent / "escape").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar", "l"]


def test_an_aborted_archive_destination_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    archive = tmp_path / "a.tar"
    dest = _dest(f"oci-archive:{archive}:1")
    dest.add_blob_bytes(b"config")
    dest.abort()
    assert list(tmp_path.iterdir()) == []
    _push(_dest(f"oci-archive:{archive}:1"), b"x")
    before = archive.read_bytes()
    dest = _dest(f"oci-archive:{archive}:2")
    dest.add_blob_bytes(b"config")
    dest.abort()
    assert archive.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["a.tar"]


@pytest.mark.parametrize(
    ("setup", "words"),
    [
        (lambda p: p.mkdir(), "exists and is not a file"),
        (lambda p: p.write_bytes(b"\x01" * 2048), "existing file is not a readable OCI archive"),
    ],
    ids=["a-directory", "not-a-tar"],
)
def test_an_archive_destination_that_cannot_be_written_is_refused(
    tmp_path: Path, setup: object, words: str
) -> None:
    path = tmp_path / "a.tar"
    setup(path)  # type: ignore[operator]
    with pytest.raises(ImageReferenceError, match=words):
        _dest(f"oci-archive:{path}:1")
    assert [p.name for p in tmp_path.iterdir()] == ["a.tar"]
    with pytest.raises(ImageReferenceError, match="does not exist"):
        _dest(f"oci-archive:{tmp_path}/no/a.tar:1")
    assert os.listdir(tmp_path) == ["a.tar"]
