"""``transform_layer``: one hand-built app layer in, one re-rooted store layer out.

Each layer is written into a real OCI layout (tests/support/ocilayout.py), read through the
``oci:`` transport and transformed; the output layer is read back with Python's tarfile and with
bootc_embed's own TarReader (tests/unit_support/layers.py checks that both agree), and once with
GNU tar.
"""

from __future__ import annotations

import gzip
import io
import subprocess
import tarfile
from pathlib import Path

import pytest
from support.ocilayout import TarBuilder, blob_path
from unit_support.layers import STORE, Made, link_id, open_input, run, sha256
from unit_support.oci import info

from bootc_embed._model import Descriptor
from bootc_embed._tarsplit import reassemble
from bootc_embed.errors import (
    CompressionError,
    DigestMismatchError,
    ImageFormatError,
    LayerContentError,
)

S = STORE.strip("/")
WH = "SCHILY.xattr.trusted.overlay.whiteout"
OPQ = "SCHILY.xattr.trusted.overlay.opaque"
MIB = 1 << 20


def _one(tmp_path: Path, tar: bytes, compression: str = "gzip", **job: object) -> Made:
    inp = open_input(tmp_path / "in", [tar], compression)
    return run(inp.job(0, **job), tmp_path / "staging")  # type: ignore[arg-type]


def _fails(tmp_path: Path, tar: bytes, error: type[Exception], *words: str) -> str:
    """The transform of ``tar`` raises ``error`` naming the layer and ``words``; nothing is left
    in the staging directory."""
    inp = open_input(tmp_path / "in", [tar])
    staging = tmp_path / "staging"
    with pytest.raises(error) as exc:
        run(inp.job(0), staging)
    message = str(exc.value)
    assert message.startswith(f"{inp.name}: layer 1/1 ({inp.layers[0].digest})"), message
    for word in words:
        assert word in message, message
    assert list(staging.iterdir()) == []
    return message


# -- re-rooting ------------------------------------------------------------------------------------


def test_the_layer_is_rerooted_under_its_diff_directory_with_the_overlay_skeleton(
    tmp_path: Path,
) -> None:
    tars = [
        TarBuilder().file("base", b"b").bytes(),
        TarBuilder()
        .dir("etc", mode=0o750, uid=3, gid=4, mtime=1000)
        .file("etc/conf", b"key=value\n", mode=0o640, uid=1000, gid=1001, mtime=2000)
        .symlink("etc/link", "conf", uid=5, gid=6)
        .file("usr/bin/tool", b"#!/bin/sh\n", mode=0o4755)  # parents not in the layer
        .bytes(),
    ]
    inp = open_input(tmp_path / "in", tars)
    made = run(inp.job(1), tmp_path / "staging")
    lid, parent = made.job.layer_id, inp.job(0).layer_id
    names = [m.name + ("/" if m.isdir() else "") for m, _ in made.members()]
    layer_dir = f"{S}/overlay/{lid}"
    assert names == [
        "usr/",
        "usr/lib/",
        "usr/lib/containers/",
        f"{S}/",
        f"{S}/overlay/",
        f"{layer_dir}/",
        f"{layer_dir}/link",
        f"{layer_dir}/lower",
        f"{layer_dir}/merged/",
        f"{layer_dir}/work/",
        f"{S}/overlay/l/",
        f"{S}/overlay/l/{link_id(lid)}",
        f"{layer_dir}/diff/",
        f"{layer_dir}/diff/etc/",
        f"{layer_dir}/diff/etc/conf",
        f"{layer_dir}/diff/etc/link",
        f"{layer_dir}/diff/usr/",
        f"{layer_dir}/diff/usr/bin/",
        f"{layer_dir}/diff/usr/bin/tool",
        f"{S}/overlay-layers/",
        f"{S}/overlay-layers/{lid}.tar-split.gz",
    ]
    by_name = made.by_name()
    members = dict((m.name, data) for m, data in made.members())
    assert members[f"{layer_dir}/link"] == link_id(lid).encode()
    assert members[f"{layer_dir}/lower"] == f"l/{link_id(parent)}".encode()
    link = by_name[f"{S}/overlay/l/{link_id(lid)}"]
    assert link.issym() and link.linkname == f"../{lid}/diff"
    # what bootc-embed creates itself: root-owned, mtime 0, 0755 / 0644; diff/ is 0555 as podman
    for name in names:
        if name.startswith(f"{layer_dir}/diff/") and name != f"{layer_dir}/diff/":
            continue
        m = by_name[name.rstrip("/")]
        assert (m.uid, m.gid, m.mtime, m.pax_headers) == (0, 0, 0, {}), name
        expected = 0o555 if name == f"{layer_dir}/diff/" else 0o777 if m.issym() else None
        assert m.mode == (expected or (0o755 if m.isdir() else 0o644)), name
    # the app's own entries keep their metadata
    entries = made.entries()
    etc, conf, sym, tool = (entries[p] for p in ("etc", "etc/conf", "etc/link", "usr/bin/tool"))
    assert (etc.mode, etc.uid, etc.gid, etc.mtime) == (0o750, 3, 4, 1000)
    assert (conf.mode, conf.uid, conf.gid, conf.mtime) == (0o640, 1000, 1001, 2000)
    assert (sym.linkname, sym.uid, sym.gid) == ("conf", 5, 6)
    assert tool.mode == 0o4755
    for parent_dir in ("usr", "usr/bin"):  # missing parents: what podman creates
        m = entries[parent_dir]
        assert (m.mode, m.uid, m.gid, m.mtime) == (0o755, 0, 0, 0)
    assert made.contents() == {"etc/conf": b"key=value\n", "usr/bin/tool": b"#!/bin/sh\n"}
    r = made.result
    assert (r.layer_id, r.uids, r.gids) == (lid, (0, 3, 5, 1000), (0, 4, 6, 1001))
    assert r.media_type == "application/vnd.oci.image.layer.v1.tar+gzip"
    assert (r.input_diff_size, r.left_out, r.whiteouts) == (len(tars[1]), 0, 0)


def test_a_bottom_layer_gets_an_empty_directory_instead_of_a_lower_file(tmp_path: Path) -> None:
    made = _one(tmp_path, TarBuilder().file("a", b"a").bytes())
    names = set(made.by_name())
    assert f"{made.layer_dir}/empty" in names
    assert f"{made.layer_dir}/lower" not in names


def test_another_store_path_moves_every_entry(tmp_path: Path) -> None:
    made = _one(tmp_path, TarBuilder().file("a", b"a").bytes(), store="/usr/share/other/store")
    names = list(made.by_name())
    assert names[:3] == ["usr", "usr/share", "usr/share/other"]
    assert all(n.startswith("usr/share/other/store/") for n in names[4:])
    assert made.contents() == {"a": b"a"}


def test_app_xattrs_are_kept_and_overlay_xattrs_of_the_app_are_dropped(tmp_path: Path) -> None:
    tar = (
        TarBuilder()
        .dir("d", xattrs={"user.dir": "1", "trusted.overlay.opaque": "y"})
        .file(
            "d/f",
            b"x",
            xattrs={"user.mime": "text/plain", "security.capability": "cap", OPQ[13:]: "y"},
        )
        .bytes()
    )
    entries = _one(tmp_path, tar).entries()
    assert {k: v for k, v in entries["d"].pax_headers.items()} == {"SCHILY.xattr.user.dir": "1"}
    assert entries["d/f"].pax_headers == {
        "SCHILY.xattr.security.capability": "cap",
        "SCHILY.xattr.user.mime": "text/plain",
    }


# -- names -----------------------------------------------------------------------------------------


def test_names_are_cleaned_as_podman_cleans_them(tmp_path: Path) -> None:
    tar = (
        TarBuilder()
        .dir("./", mode=0o700, uid=9)  # the layer's root entry: ignored, as podman does
        .file("./a", b"a")
        .file("/b", b"b")
        .file("c/../d", b"d")
        .file("e//f", b"f")
        .dir("g/", mode=0o711)
        .file("././g/./h", b"h")
        .bytes()
    )
    made = _one(tmp_path, tar)
    entries = made.entries()
    assert sorted(entries) == ["", "a", "b", "d", "e", "e/f", "g", "g/h"]
    assert (entries[""].mode, entries[""].uid) == (0o555, 0)  # diff/ itself
    assert entries["g"].mode == 0o711
    assert made.contents() == {"a": b"a", "b": b"b", "d": b"d", "e/f": b"f", "g/h": b"h"}


@pytest.mark.parametrize("name", ["../x", "a/../../x", "./../x", "..", "a/b/../../../x"])
def test_a_name_leaving_the_root_is_an_error_naming_the_layer_and_the_entry(
    tmp_path: Path, name: str
) -> None:
    tar = TarBuilder().file("ok", b"fine").file(name, b"escape").bytes()
    _fails(tmp_path, tar, LayerContentError, f"entry {name!r} leaves the layer root")


@pytest.mark.parametrize(
    ("tar", "what"),
    [
        (TarBuilder().file(b"caf\xe9", b"x").bytes(), "entry name b'caf\\xe9'"),
        (TarBuilder(tarfile.USTAR_FORMAT).file(b"d/\xff", b"x").bytes(), "entry name b'd/\\xff'"),
        (TarBuilder().symlink("s", b"t\xff").bytes(), "symlink target of 's'"),
        (
            TarBuilder().file("f", b"x").hardlink("h", b"f\xff").bytes(),
            "hardlink target of 'h'",
        ),
    ],
    ids=["pax-name", "ustar-name", "symlink-target", "hardlink-target"],
)
def test_a_name_that_is_not_utf8_is_refused_clearly(tmp_path: Path, tar: bytes, what: str) -> None:
    _fails(tmp_path, tar, LayerContentError, what, "is not valid UTF-8")


def test_utf8_names_and_long_names_are_kept(tmp_path: Path) -> None:
    long = "/".join(["d" * 60] * 4) + "/" + "f" * 120
    tar = TarBuilder().file("café/ünï", b"u").file(long, b"l").symlink("s", long).bytes()
    made = _one(tmp_path, tar)
    assert made.contents() == {"café/ünï": b"u", long: b"l"}
    assert made.entries()["s"].linkname == long


# -- whiteouts -------------------------------------------------------------------------------------


def _whiteout_layer() -> bytes:
    return (
        TarBuilder()
        .dir("a")
        .file("a/keep", b"k")
        .add(info("a/.wh.gone", uid=7, gid=8, mtime=1234))
        .whiteout("top")  # at the layer root
        .dir("o")
        .whiteout("o/old")  # inside a directory this layer makes opaque: hides nothing
        .opaque("o")
        .file("o/new", b"n")
        .opaque("p")  # no entry of its own: created, opaque
        .dir(".wh..wh.plnk")  # AUFS metadata: skipped as podman does
        .file(".wh..wh.plnk/123.4", b"aufs")
        .bytes()
    )


@pytest.mark.parametrize("form", ["xattr", "chardev", "ostree"])
def test_each_whiteout_form_and_opaque_directories(tmp_path: Path, form: str) -> None:
    made = _one(tmp_path, _whiteout_layer(), whiteouts=form)
    entries = made.entries()
    assert not [p for p in entries if ".wh." in p]
    assert entries["o"].pax_headers == {OPQ: "y"}  # opaque: the overlay xattr in every form
    assert entries["p"].isdir() and entries["p"].pax_headers == {OPQ: "y"}
    assert "o/old" not in entries and made.contents()["o/new"] == b"n"
    gone = {"xattr": "a/gone", "chardev": "a/gone", "ostree": "a/.ostree-wh.gone"}[form]
    top = {"xattr": "top", "chardev": "top", "ostree": ".ostree-wh.top"}[form]
    marks = [gone, top]
    assert sorted(p for p in entries if p not in ("", "a", "a/keep", "o", "o/new", "p")) == sorted(
        marks
    )
    for p in marks:
        m = entries[p]
        if form == "chardev":  # what podman writes itself: 0:0 character device, mode 0
            assert (m.type, m.devmajor, m.devminor, m.mode) == (tarfile.CHRTYPE, 0, 0, 0)
            assert m.pax_headers == {}
        elif form == "xattr":
            assert m.isreg() and m.size == 0 and m.pax_headers == {WH: "y"}
        else:
            assert m.isreg() and m.size == 0 and m.pax_headers == {}
    # a whiteout keeps its own owner and time
    assert (entries[gone].uid, entries[gone].gid, entries[gone].mtime) == (7, 8, 1234)
    # its directory (diff/ itself for one at the root) is marked for overlay's xattr whiteouts
    for d in ("a", ""):
        assert entries[d].pax_headers == ({OPQ: "x"} if form == "xattr" else {})
    r = made.result
    assert (r.whiteouts, r.whiteouts_dropped) == (4, 1)  # 2 opaque markers, 2 deletions
    assert (r.uids, r.gids) == ((0,), (0,))  # a whiteout's owner is not the app's


@pytest.mark.parametrize(
    ("builder", "words"),
    [
        (TarBuilder().file("x/.wh..wh.y"), ["entry 'x/.wh..wh.y'", "'.wh.' name"]),
        (TarBuilder().file("x/.wh."), ["entry 'x/.wh.'", "'.wh.' name"]),
        (
            TarBuilder().file("d/x", b"x").whiteout("d/x"),
            ["entry 'd/x' is both deleted (whiteout) and created"],
        ),
        (
            TarBuilder().whiteout("d/x").file("d/x", b"x"),
            ["entry 'd/x' is both deleted (whiteout) and created"],
        ),
        (
            TarBuilder().file("f", b"file").whiteout("f/x"),
            ["whiteout inside 'f', which is not a directory"],
        ),
    ],
    ids=[
        "whiteout-of-wh",
        "empty-whiteout",
        "created-then-deleted",
        "deleted-then-created",
        "file",
    ],
)
def test_whiteouts_that_cannot_be_written_are_errors(
    tmp_path: Path, builder: TarBuilder, words: list[str]
) -> None:
    _fails(tmp_path, builder.file("z", b"pad").bytes(), LayerContentError, *words)


def test_a_deletion_inside_a_directory_the_layer_makes_opaque_is_no_contradiction(
    tmp_path: Path,
) -> None:
    tar = TarBuilder().opaque("o").file("o/x", b"x").whiteout("o/x").bytes()
    made = _one(tmp_path, tar)
    assert made.contents() == {"o/x": b"x"}
    assert (made.result.whiteouts, made.result.whiteouts_dropped) == (1, 1)


# -- facts that come late: rewritten in place, or the layer read twice ----------------------------


def _late_facts(big: int) -> bytes:
    """Every kind of fact that changes a header written earlier, ``big`` bytes after it."""
    return (
        TarBuilder()
        .file("late/child", b"c")  # parent written as a missing directory...
        .dir("o")
        .whiteout("o/old")  # ...written, and dropped once o turns out opaque
        .dir("d", mode=0o700)
        .file("g", b"inode", mode=0o644)
        .opaque("q")  # q written, opaque, before its own entry
        .file("big", bytes(big))
        .dir("late", mode=0o750, uid=7, gid=8, mtime=99)  # ...then its own entry
        .opaque("o")
        .whiteout("d/a")  # d turns out to hold a whiteout
        .dir("q", mode=0o701, uid=4)
        .add(info("h", tarfile.LNKTYPE, linkname="g", mode=0o4755, uid=5, gid=6, mtime=77))
        .bytes()
    )


def _facts(made: Made) -> dict[str, tuple[object, ...]]:
    entries = made.entries()
    return {
        p: (
            m.type,
            m.mode,
            m.uid,
            m.gid,
            m.mtime,
            m.linkname.replace(made.diff, "DIFF"),
            {k: v for k, v in m.pax_headers.items() if k != "linkpath"},  # names the layer id
        )
        for p, m in entries.items()
        if p != "big"
    }


def test_metadata_that_shows_up_after_its_entry_is_written_reaches_the_first_header(
    tmp_path: Path,
) -> None:
    small = _one(tmp_path / "small", _late_facts(0))
    big_input = open_input(tmp_path / "big" / "in", [_late_facts(17 * MIB)], compression="none")
    seen: list[str] = []
    copy = io.BytesIO()
    big = run(
        big_input.job(0),
        tmp_path / "big" / "staging",
        observe=lambda e, _reader: seen.append(e.name.decode()),
        copy_to=copy,
    )
    # too far back to rewrite in place: the layer was read a second time
    assert big_input.source.opened[big_input.layers[0].digest] == 2
    assert small.job.source.opened[small.job.descriptor.digest] == 1  # type: ignore[attr-defined]
    # observe and copy_to saw the input once, whole
    assert seen == [
        *("late/child", "o/", "o/.wh.old", "d/", "g", "q/.wh..wh..opq", "big"),
        *("late/", "o/.wh..wh..opq", "d/.wh.a", "q/", "h"),
    ]
    blob = blob_path(tmp_path / "big" / "in", big_input.layers[0].digest)
    assert copy.getvalue() == blob.read_bytes()
    # either way the output says what podman would have on disk
    for made in (small, big):
        facts = _facts(made)
        diff = made.diff
        assert facts["late"][1:5] == (0o750, 7, 8, 99)
        assert facts["o"][6] == {OPQ: "y"} and "o/old" not in facts
        assert facts["d"][1] == 0o700 and facts["d"][6] == {OPQ: "x"}
        assert facts["d/a"][6] == {WH: "y"}
        assert facts["q"][1:4] == (0o701, 4, 0) and facts["q"][6] == {OPQ: "y"}
        assert facts["g"][1:5] == (0o4755, 5, 6, 77)  # the last header naming the inode wins
        assert facts["h"][0] == tarfile.LNKTYPE and facts["h"][5] == "DIFF/g"
        names = [m.name for m, _ in made.members()]
        assert names.index(f"{diff}/late") < names.index(f"{diff}/late/child")
        assert (made.result.whiteouts, made.result.whiteouts_dropped) == (3, 1)
    assert _facts(small) == _facts(big)
    assert big.contents()["big"] == bytes(17 * MIB)


# -- hardlinks and left-out entries ----------------------------------------------------------------


def test_hardlinks_point_into_diff_and_the_last_header_gives_the_inode_its_metadata(
    tmp_path: Path,
) -> None:
    tar = (
        TarBuilder()
        .file("bin/g", b"inode", mode=0o755, xattrs={"user.a": "1"})
        .add(info("bin/h", tarfile.LNKTYPE, linkname="bin/g", mode=0o700, uid=2, mtime=5))
        .add(info("./h2", tarfile.LNKTYPE, linkname="/bin/h", mode=0o711, uid=3, mtime=6))
        .bytes()
    )
    made = _one(tmp_path, tar)
    entries, diff = made.entries(), made.diff
    g, h, h2 = entries["bin/g"], entries["bin/h"], entries["h2"]
    assert (g.mode, g.uid, g.mtime) == (0o711, 3, 6)  # the last header naming it
    assert g.pax_headers == {"SCHILY.xattr.user.a": "1"}
    assert (h.type, h.linkname, h2.type, h2.linkname) == (
        tarfile.LNKTYPE,
        f"{diff}/bin/g",
        tarfile.LNKTYPE,
        f"{diff}/bin/g",  # a link to a link names the file
    )
    assert made.contents() == {"bin/g": b"inode"}


def test_device_nodes_and_fifos_are_left_out_and_counted(tmp_path: Path) -> None:
    tar = (
        TarBuilder()
        .dir("dev")
        .chardev("dev/null", 1, 3)
        .add(info("dev/sda", tarfile.BLKTYPE, devmajor=8, devminor=0))
        .fifo("run/fifo")
        .hardlink("dev/null-again", "dev/null")  # a hardlink to a left-out node: left out too
        .file("kept", b"k")
        .bytes()
    )
    made = _one(tmp_path, tar)
    assert sorted(made.entries()) == ["", "dev", "kept"]
    r = made.result
    assert r.left_out == 4
    assert r.left_out_paths == ["dev/null", "dev/sda", "run/fifo", "dev/null-again"]


@pytest.mark.parametrize(
    ("builder", "words"),
    [
        (TarBuilder().dir("d").hardlink("h", "d"), ["entry 'h'", "not an earlier file"]),
        (TarBuilder().hardlink("h", "later").file("later"), ["entry 'h'", "not an earlier"]),
        (TarBuilder().hardlink("h", "../x"), ["entry 'h'", "'../x' leaves the layer root"]),
        (TarBuilder().hardlink("h", "/../x"), ["entry 'h'", "'/../x' leaves the layer root"]),
        (TarBuilder().file("f").file("./f"), ["entry './f' appears twice"]),
    ],
    ids=["to-dir", "to-later", "escape", "abs-escape", "duplicate"],
)
def test_bad_hardlinks_and_duplicates_are_errors(
    tmp_path: Path, builder: TarBuilder, words: list[str]
) -> None:
    _fails(tmp_path, builder.bytes(), LayerContentError, *words)


# -- inputs: compression, digests ------------------------------------------------------------------


def _sample() -> bytes:
    return (
        TarBuilder()
        .dir("etc")
        .file("etc/a", b"a" * 1000)
        .whiteout("etc/b")
        .file("usr/share/doc/x", bytes(range(256)) * 40)
        .bytes()
    )


def test_gzip_zstd_and_uncompressed_inputs_give_the_same_output(tmp_path: Path) -> None:
    made = {c: _one(tmp_path / c, _sample(), compression=c) for c in ("gzip", "zstd", "none")}
    assert {m.result.digest for m in made.values()} == {made["gzip"].result.digest}
    assert {c: m.result.input_compression for c, m in made.items()} == {
        "gzip": 2,  # containers-storage's compression numbers, as layers.json records them
        "zstd": 4,
        "none": 0,
    }
    assert {m.result.input_diff_size for m in made.values()} == {len(_sample())}


def test_the_same_input_twice_gives_the_same_bytes_and_zstd_output_the_same_tar(
    tmp_path: Path,
) -> None:
    inp = open_input(tmp_path / "in", [_sample()])
    one = run(inp.job(0), tmp_path / "s1")
    two = run(inp.job(0), tmp_path / "s2")
    assert one.blob == two.blob and one.result.digest == two.result.digest
    zstd = run(inp.job(0, compression="zstd", level=3), tmp_path / "s3")
    assert zstd.tar == one.tar and zstd.result.diff_id == one.result.diff_id
    assert zstd.blob[:4] == b"\x28\xb5\x2f\xfd" and one.blob[:2] == b"\x1f\x8b"
    assert zstd.result.media_type == "application/vnd.oci.image.layer.v1.tar+zstd"


def test_a_changed_blob_byte_is_a_digest_error_naming_the_layer(tmp_path: Path) -> None:
    inp = open_input(tmp_path / "in", [_sample()], compression="none")
    path = blob_path(tmp_path / "in", inp.layers[0].digest)
    data = bytearray(path.read_bytes())
    data[600] ^= 1  # in the content of etc/a: the tar still reads
    path.write_bytes(bytes(data))
    staging = tmp_path / "staging"
    with pytest.raises(DigestMismatchError) as exc:
        run(inp.job(0), staging)
    message = str(exc.value)
    assert message.startswith(f"{inp.name}: layer 1/1 ({inp.layers[0].digest})")
    assert "does not match its digest" in message
    assert list(staging.iterdir()) == []


def test_a_corrupt_compressed_blob_is_reported_as_a_digest_error(tmp_path: Path) -> None:
    inp = open_input(tmp_path / "in", [_sample()])
    path = blob_path(tmp_path / "in", inp.layers[0].digest)
    data = bytearray(path.read_bytes())
    data[40] ^= 0xFF  # inside the deflate stream: inflating fails before the end
    path.write_bytes(bytes(data))
    with pytest.raises(DigestMismatchError, match=inp.layers[0].digest):
        run(inp.job(0), tmp_path / "staging")


def test_content_that_does_not_match_the_configs_diff_id_is_an_error_naming_the_layer(
    tmp_path: Path,
) -> None:
    inp = open_input(tmp_path / "in", [_sample()])
    wrong = sha256(b"something else")
    staging = tmp_path / "staging"
    with pytest.raises(DigestMismatchError) as exc:
        run(inp.job(0, diff_id=wrong), staging)
    assert str(exc.value) == (
        f"{inp.name}: layer 1/1 ({inp.layers[0].digest}): uncompressed content does not match "
        f"the config's diff_id: expected {wrong}, got {sha256(_sample())}"
    )
    assert list(staging.iterdir()) == []


@pytest.mark.parametrize(
    ("payload", "error", "words"),
    [
        (gzip.compress(b"not a tar archive at all" * 40, mtime=0), ImageFormatError, ["tar"]),
        (b"\x1f\x8b\x08\x00" + bytes(30), CompressionError, []),
    ],
    ids=["gzip-of-garbage", "broken-gzip"],
)
def test_a_blob_that_is_not_a_layer_is_an_error_naming_the_layer(
    tmp_path: Path, payload: bytes, error: type[Exception], words: list[str]
) -> None:
    # the digests match: the blob is what the manifest says, but not a tar
    inp = open_input(tmp_path / "in", [_sample()], compression="none")
    path = blob_path(tmp_path / "in", inp.layers[0].digest)
    (path.parent / sha256(payload)[7:]).write_bytes(payload)
    desc = Descriptor(inp.layers[0].media_type, sha256(payload), len(payload))
    staging = tmp_path / "staging"
    with pytest.raises(error) as exc:
        run(inp.job(0, descriptor=desc), staging)
    assert str(exc.value).startswith(f"{inp.name}: layer 1/1 ({desc.digest})")
    for word in words:
        assert word in str(exc.value)
    assert list(staging.iterdir()) == []


@pytest.mark.parametrize(
    ("media_type", "urls", "words"),
    [
        ("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", (), "foreign"),
        ("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", (), "foreign"),
        ("application/vnd.oci.image.layer.v1.tar+gzip", ("https://example.com/l",), "foreign"),
        ("application/vnd.example.thing", (), "unsupported layer media type"),
    ],
)
def test_layers_that_are_not_in_the_image_are_refused_before_reading(
    tmp_path: Path, media_type: str, urls: tuple[str, ...], words: str
) -> None:
    inp = open_input(tmp_path / "in", [_sample()])
    d = inp.layers[0]
    desc = Descriptor(media_type, d.digest, d.size, urls=urls)
    with pytest.raises(ImageFormatError, match=words):
        run(inp.job(0, descriptor=desc), tmp_path / "staging")
    assert d.digest not in inp.source.opened


# -- the tar-split: the input, exactly ------------------------------------------------------------


def _odd_layer() -> bytes:
    """A layer in GNU format (long names as 'L' records) with what podman's tar-split must keep:
    ./ names, devices, hardlinks, whiteouts, empty files, a 512-byte file, non-ASCII names,
    trailing zero blocks and junk after the end of the archive."""
    long = "./deep/" + "n" * 150
    tar = (
        TarBuilder(tarfile.GNU_FORMAT)
        .dir("./")
        .dir("./deep")
        .file(long, b"long name")
        .file("./empty")
        .file("./block", b"b" * 512)
        .file("./ünï", b"utf-8")
        .chardev("./dev/null", 1, 3)
        .hardlink("./hl", "./block")
        .whiteout("deep/gone")
        .opaque("deep")
        .symlink("./sym", long)
        .bytes()
    )
    return tar + b"trailing junk after the archive"


@pytest.mark.parametrize("form", ["xattr", "chardev", "ostree"])
def test_the_tarsplit_reassembles_the_input_exactly_from_diff(tmp_path: Path, form: str) -> None:
    tar = _odd_layer()
    made = _one(tmp_path, tar, whiteouts=form)
    contents = made.contents()

    def open_file(name: bytes) -> io.BytesIO:
        path = name.decode().removeprefix("./")
        return io.BytesIO(contents[path])

    out = io.BytesIO()
    reassemble(io.BytesIO(made.tarsplit()), open_file, out.write)
    assert out.getvalue() == tar
    assert made.result.input_diff_size == len(tar)


# -- read back by GNU tar --------------------------------------------------------------------------


def test_gnu_tar_lists_the_same_entries(tmp_path: Path) -> None:
    made = _one(tmp_path, _whiteout_layer(), whiteouts="chardev")
    listed = subprocess.run(
        ["tar", "-tf", "-"], input=made.tar, capture_output=True, check=True
    ).stdout.decode()
    ours = [m.name + ("/" if m.isdir() else "") for m, _ in made.members()]
    assert listed.splitlines() == ours
    verbose = subprocess.run(
        ["tar", "--numeric-owner", "-tvf", "-"], input=made.tar, capture_output=True, check=True
    ).stdout.decode()
    gone = next(line for line in verbose.splitlines() if line.endswith("/diff/a/gone"))
    assert gone.startswith("c--------- 7/8") and " 0,0 " in gone
