"""The tar reader (Go ``archive/tar`` semantics, raw bytes kept) and the deterministic tar writer
of ``bootc_embed._tar``, checked against Python's tarfile and GNU tar."""

from __future__ import annotations

import io
import os
import random
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

import pytest
from unit_support.oci import info, tar_of

from bootc_embed._tar import (
    BLOCK,
    CHAR,
    DIR,
    END_OF_ARCHIVE,
    LINK,
    REG,
    REGA,
    SYMLINK,
    XGLOBAL,
    TarEntry,
    TarFormatError,
    TarReader,
    padding,
    tar_header,
)
from bootc_embed._tarsplit import crc64

GNU_TAR = shutil.which("tar")


def read_all(
    data: bytes, chunk_size: int = 1 << 20
) -> tuple[list[tuple[TarEntry, bytes]], TarReader, bytes]:
    """Every entry with its content, the reader, and every byte ``on_chunk`` saw."""
    seen: list[bytes] = []
    reader = TarReader(
        io.BytesIO(data), on_chunk=seen.append, chunk_size=chunk_size, crc=crc64, capture=True
    )
    out = []
    for e in reader:
        pieces: list[bytes] = []
        reader.read_content(lambda p, pieces=pieces: pieces.append(bytes(p)))
        out.append((e, b"".join(pieces)))
    return out, reader, b"".join(seen)


def names(data: bytes) -> list[bytes]:
    return [e.name for e, _ in read_all(data)[0]]


def fix_checksum(block: bytearray) -> bytearray:
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\x00 " % sum(block)
    return block


def patch_header(data: bytes, offset: int, field: slice, value: bytes) -> bytes:
    """``data`` with one header field replaced and the header's checksum fixed."""
    out = bytearray(data)
    block = bytearray(out[offset : offset + BLOCK])
    block[field] = value
    out[offset : offset + BLOCK] = fix_checksum(block)
    return bytes(out)


def without_end(data: bytes) -> bytes:
    """A tar with its end-of-archive blocks (and record padding) cut off."""
    last, _ = read_all(data)[0][-1]
    end = last.data_offset + last.data_size
    return data[: end + len(padding(last.data_size))]


# -- reading, format by format ---------------------------------------------------------------------

LONG_NAME = "usr/share/" + "/".join(["component-" + "x" * 40] * 6) + "/file.txt"  # > 255
LONG_LINK = "/opt/" + "t" * 200


def test_reader_agrees_with_python_tarfile_in_every_format() -> None:
    for fmt in (tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT):
        members = [
            (info("etc", tarfile.DIRTYPE, mode=0o755), b""),
            (info("etc/hosts", mode=0o644, uid=1000, gid=50), b"127.0.0.1 localhost\n"),
            (info("bin/suid", mode=0o4755), b"#!/bin/sh\n"),
            (info("etc/hard", tarfile.LNKTYPE, linkname="etc/hosts"), b""),
            (info("etc/sym", tarfile.SYMTYPE, linkname="../x", mode=0o777), b""),
            (info("dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3, mode=0o666), b""),
            (info("empty"), b""),
        ]
        data = tar_of(members, fmt=fmt)
        ours = read_all(data)[0]
        with tarfile.open(fileobj=io.BytesIO(data)) as tf:
            theirs = tf.getmembers()
            assert len(ours) == len(theirs)
            for (e, content), t in zip(ours, theirs, strict=True):
                assert e.name.decode().rstrip("/") == t.name
                assert e.typeflag == t.type
                assert (e.mode, e.uid, e.gid, e.mtime) == (t.mode, t.uid, t.gid, t.mtime)
                assert e.linkname.decode() == t.linkname
                assert (e.devmajor, e.devminor) == (t.devmajor, t.devminor)
                f = tf.extractfile(t) if t.isreg() else None
                assert content == (f.read() if f else b"")
                assert e.size == t.size


def test_gnu_long_name_and_long_link_records_give_the_full_names() -> None:
    data = tar_of(
        [
            (info(LONG_NAME), b"content"),
            (info("link", tarfile.SYMTYPE, linkname=LONG_LINK), b""),
        ],
        fmt=tarfile.GNU_FORMAT,
    )
    (f, _), (link, _) = read_all(data)[0]
    assert f.name == LONG_NAME.encode()
    assert link.linkname == LONG_LINK.encode()
    # the raw bytes before each entry hold the GNU extension header ('L' / 'K') first
    assert f.raw[:13] == b"././@LongLink" and f.raw[156:157] == b"L"
    pad = len(padding(len(b"content")))  # the previous entry's padding comes first
    assert link.raw[:pad] == bytes(pad)
    assert link.raw[pad + 156 : pad + 157] == b"K"


def test_pax_path_and_linkpath_records_give_the_full_names() -> None:
    data = tar_of(
        [
            (info(LONG_NAME), b"content"),
            (info("link", tarfile.SYMTYPE, linkname=LONG_LINK), b""),
            (info("usr/share/café/naïve.txt"), b"utf-8"),
        ],
        fmt=tarfile.PAX_FORMAT,
    )
    (f, _), (link, _), (utf8, content) = read_all(data)[0]
    assert f.name == LONG_NAME.encode()
    assert link.linkname == LONG_LINK.encode()
    assert utf8.name == "usr/share/café/naïve.txt".encode()
    assert content == b"utf-8"
    assert f.raw[156:157] == b"x"


def test_ustar_prefix_field_is_joined_to_the_name() -> None:
    name = "p" * 120 + "/" + "n" * 60
    data = tar_of([(info(name), b"x")], fmt=tarfile.USTAR_FORMAT)
    assert data[345:465] == b"p" * 120  # tarfile did use the prefix field
    assert data[:61] == b"n" * 60 + b"\x00"
    assert names(data) == [name.encode()]


def test_big_uid_and_gid_from_pax_records() -> None:
    data = tar_of([(info("f", uid=3_000_000, gid=2**33), b"")], fmt=tarfile.PAX_FORMAT)
    ((e, _),) = read_all(data)[0]
    assert (e.uid, e.gid) == (3_000_000, 2**33)


def test_big_uid_and_negative_mtime_in_base256_fields() -> None:
    data = tar_of([(info("f", uid=3_000_000, gid=2**40, mtime=-1), b"")], fmt=tarfile.GNU_FORMAT)
    assert data[156:157] == b"0"  # no extension header: the numbers are in the ustar block
    assert data[108] & 0x80 and data[116] & 0x80 and data[136] & 0x80
    ((e, _),) = read_all(data)[0]
    assert (e.uid, e.gid, e.mtime) == (3_000_000, 2**40, -1)


def test_xattrs_come_from_schily_xattr_records() -> None:
    ti = info("f")
    ti.pax_headers = {
        "SCHILY.xattr.user.comment": "hello",
        "SCHILY.xattr.security.selinux": "system_u:object_r:bin_t:s0",
        "comment": "not an xattr",
    }
    data = tar_of([(ti, b"x")], fmt=tarfile.PAX_FORMAT)
    ((e, _),) = read_all(data)[0]
    assert e.xattrs == {
        "user.comment": b"hello",
        "security.selinux": b"system_u:object_r:bin_t:s0",
    }


def test_binary_xattr_values_are_kept_byte_for_byte() -> None:
    value = bytes(range(256))
    data = tar_header("f", REG, xattrs={"user.bin": value}) + END_OF_ARCHIVE
    ((e, _),) = read_all(data)[0]
    assert e.xattrs == {"user.bin": value}


def test_pax_mtime_with_fraction_is_kept_as_text() -> None:
    ti = info("f")
    ti.mtime = 1700000000.25  # type: ignore[assignment]
    data = tar_of([(ti, b"")], fmt=tarfile.PAX_FORMAT)
    ((e, _),) = read_all(data)[0]
    assert e.mtime == 1700000000
    assert e.pax_mtime == "1700000000.25"


def test_typeflag_nul_with_trailing_slash_is_a_directory() -> None:
    data = tar_of(
        [(info("d", tarfile.DIRTYPE), b""), (info("f"), b"content")], fmt=tarfile.USTAR_FORMAT
    )
    assert data[:2] == b"d/"
    data = patch_header(data, 0, slice(156, 157), b"\x00")
    data = patch_header(data, BLOCK, slice(156, 157), b"\x00")
    (d, _), (f, content) = read_all(data)[0]
    assert (d.name, d.typeflag) == (b"d/", DIR)
    assert (f.name, f.typeflag) == (b"f", REG)
    assert content == b"content"
    assert REGA == b"\x00"


def test_global_pax_header_is_an_entry_of_its_own_without_content() -> None:
    out = io.BytesIO()
    with tarfile.open(
        fileobj=out, mode="w", format=tarfile.PAX_FORMAT, pax_headers={"comment": "global"}
    ) as tf:
        ti = info("f")
        ti.size = 3
        tf.addfile(ti, io.BytesIO(b"abc"))
    entries = read_all(out.getvalue())[0]
    assert [e.typeflag for e, _ in entries] == [XGLOBAL, REG]
    assert entries[0][1] == b""
    assert entries[1][1] == b"abc"


def test_header_only_types_have_no_content_whatever_their_size_field() -> None:
    data = tar_of(
        [(info("f"), b"abc"), (info("h", tarfile.LNKTYPE, linkname="f"), b""), (info("g"), b"z")],
        fmt=tarfile.USTAR_FORMAT,
    )
    # give the hardlink a size of 5: Go's reader still reads no content for it
    data = patch_header(data, 2 * BLOCK, slice(124, 136), b"%011o\x00" % 5)
    _, (h, hc), (g, gc) = read_all(data)[0]
    assert (h.typeflag, h.size, h.data_size, hc) == (LINK, 5, 0, b"")
    assert (g.name, gc) == (b"g", b"z")


# -- ends of archives ------------------------------------------------------------------------------


def _sample(fmt: int = tarfile.PAX_FORMAT) -> bytes:
    ustar = fmt == tarfile.USTAR_FORMAT
    return tar_of(
        [
            (info("a", tarfile.DIRTYPE), b""),
            (info("a/file"), b"x" * 1000),
            (info("a/" + "m" * 120 + "/" + "n" * (50 if ustar else 200)), b"long"),
            (info("a/big-uid", uid=2_000_000 if ustar else 5_000_000), b"y" * 513),
            (info("a/empty"), b""),
        ],
        fmt=fmt,
    )


def test_a_tar_without_end_of_archive_blocks_is_read_to_its_end() -> None:
    full = _sample()
    cut = without_end(full)
    assert len(cut) < len(full) and len(cut) % BLOCK == 0
    entries, reader, seen = read_all(cut)
    assert [e.name for e, _ in entries] == [e.name for e, _ in read_all(full)[0]]
    assert reader.end_offset == reader.total_size == len(cut)
    assert seen == cut


def test_a_single_zero_block_at_the_end_is_a_clean_end() -> None:
    data = without_end(_sample()) + bytes(BLOCK)
    entries, reader, _ = read_all(data)
    assert len(entries) == 5
    assert reader.total_size == len(data)


def test_trailing_bytes_after_the_end_of_archive_are_kept_in_the_trailer() -> None:
    base = without_end(_sample())
    data = base + END_OF_ARCHIVE + bytes(10240) + b"trailing junk" + bytes(3)
    entries, reader, _ = read_all(data)
    assert len(entries) == 5
    assert reader.end_offset == len(base) + 2 * BLOCK
    assert reader.total_size == len(data)
    last, _ = entries[-1]
    assert b"".join(reader.trailer) == data[last.data_offset + last.data_size :]


def test_zero_block_followed_by_a_header_is_an_error() -> None:
    base = without_end(_sample())
    data = base + bytes(BLOCK) + tar_header("late", REG) + END_OF_ARCHIVE
    with pytest.raises(TarFormatError):
        read_all(data)


@pytest.mark.parametrize("cut", [1, 100, 511])
def test_a_truncated_header_is_an_error(cut: int) -> None:
    base = without_end(_sample())
    with pytest.raises(TarFormatError, match="truncated"):
        read_all(base + tar_header("next", REG, size=10)[:cut])


def test_truncated_content_is_an_error() -> None:
    data = _sample()
    entries = read_all(data)[0]
    e = next(e for e, _ in entries if e.name == b"a/file")
    for cut in (e.data_offset + 1, e.data_offset + 999):
        with pytest.raises(TarFormatError):
            read_all(data[:cut])


def test_truncated_pax_extended_header_is_an_error() -> None:
    data = tar_header("x" * 300, REG)  # PAX header, its records, the ustar block
    with pytest.raises(TarFormatError):
        read_all(data[: BLOCK + 10])


def test_truncated_content_is_an_error_even_when_the_content_is_not_read() -> None:
    data = _sample()
    entries = read_all(data)[0]
    e = next(e for e, _ in entries if e.name == b"a/file")
    reader = TarReader(io.BytesIO(data[: e.data_offset + 10]))
    with pytest.raises(TarFormatError):
        list(reader)


def test_a_header_checksum_error_is_an_error() -> None:
    data = bytearray(_sample(tarfile.USTAR_FORMAT))
    data[BLOCK + 3] ^= 0x20  # in the name of the second header
    with pytest.raises(TarFormatError, match="checksum"):
        read_all(bytes(data))


def test_a_garbage_checksum_field_is_an_error() -> None:
    data = bytearray(_sample(tarfile.USTAR_FORMAT))
    data[148:156] = b"zzzzzz\x00 "
    with pytest.raises(TarFormatError):
        read_all(bytes(data))


def test_a_signed_checksum_is_accepted_like_go_does() -> None:
    block = bytearray(tar_header("cafe", REG))
    block[3] = 0xE9
    block[148:156] = b" " * 8
    signed = sum(c - 256 if c > 127 else c for c in block)
    block[148:156] = b"%06o\x00 " % signed
    assert names(bytes(block) + END_OF_ARCHIVE) == [b"caf\xe9"]


# -- offsets and raw bytes -------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
@pytest.mark.parametrize("chunk_size", [1, 7, 512, 1 << 20])
def test_raw_segments_and_contents_concatenate_back_to_the_input(fmt: int, chunk_size: int) -> None:
    data = _sample(fmt) + b"\x00" * 77 + b"tail"
    entries, reader, seen = read_all(data, chunk_size=chunk_size)
    assert seen == data  # on_chunk saw every byte exactly once, in order
    rebuilt = bytearray()
    for e, content in entries:
        rebuilt += e.raw
        assert len(rebuilt) == e.data_offset
        assert data[e.data_offset : e.data_offset + e.data_size] == content
        assert len(content) == e.data_size
        assert e.crc == crc64(content)
        rebuilt += content
    rebuilt += b"".join(reader.trailer)
    assert bytes(rebuilt) == data
    assert reader.total_size == len(data)
    last, _ = entries[-1]
    assert reader.end_offset == (
        last.data_offset + last.data_size + len(padding(last.data_size)) + 2 * BLOCK
    )


def test_unread_content_is_skipped_and_still_hashed() -> None:
    data = _sample()
    seen: list[bytes] = []
    reader = TarReader(io.BytesIO(data), on_chunk=seen.append, chunk_size=100)
    assert len(list(reader)) == 5
    assert b"".join(seen) == data
    assert reader.total_size == len(data)


# -- the writer ------------------------------------------------------------------------------------

NAME_CASES = {
    "99": "a" * 99,
    "100": "a" * 100,
    "101-no-slash": "a" * 101,
    "101-splittable": "d" * 50 + "/" + "f" * 50,
    "155-prefix": "p" * 155 + "/" + "n" * 10,
    "156-prefix": "p" * 156 + "/" + "n" * 10,
    "256-split": "p" * 155 + "/" + "n" * 100,
    "300": "/".join(["c" * 50] * 6),
    "4000": "/".join(["deep" * 20] * 49),
    "dir-101": "d" * 50 + "/" + "e" * 50 + "/",
    "utf8": "usr/share/café/naïve-日本語.txt",
    "utf8-long": "é" * 60 + "/" + "ü" * 60,
}
# names that fit ustar fields: exactly one 512-byte header, no PAX
USTAR_ONLY = {"99", "100", "101-splittable", "155-prefix", "256-split", "dir-101"}


def _write(entries: list[tuple[str, bytes, dict[str, object]]]) -> bytes:
    out = []
    for name, data, kw in entries:
        typeflag = kw.pop("typeflag", DIR if name.endswith("/") else REG)
        out.append(tar_header(name, typeflag, size=len(data), **kw))  # type: ignore[arg-type]
        out.append(data)
        out.append(padding(len(data)))
    out.append(END_OF_ARCHIVE)
    return b"".join(out)


@pytest.mark.parametrize("case", sorted(NAME_CASES))
def test_written_names_round_trip_through_python_tarfile_and_our_reader(case: str) -> None:
    name = NAME_CASES[case]
    header = tar_header(name, DIR if name.endswith("/") else REG)
    if case in USTAR_ONLY:
        assert len(header) == BLOCK
    else:
        assert len(header) > BLOCK and header[156:157] == b"x"
    data = _write([(name, b"" if name.endswith("/") else b"data", {})])
    assert names(data) == [name.encode()]
    with tarfile.open(fileobj=io.BytesIO(data), encoding="utf-8") as tf:
        (m,) = tf.getmembers()
        assert m.name == name.rstrip("/")


def _gnu_tar(*args: str) -> str:
    assert GNU_TAR is not None, "GNU tar is needed by these tests"
    env = {**os.environ, "LC_ALL": "C.UTF-8"}
    done = subprocess.run(
        [GNU_TAR, *args], capture_output=True, text=True, env=env, check=False, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_written_names_and_links_round_trip_through_gnu_tar(tmp_path: Path) -> None:
    entries: list[tuple[str, bytes, dict[str, object]]] = []
    for case, name in sorted(NAME_CASES.items()):
        if case == "4000":
            continue  # PATH_MAX is 4096 on extraction; listed below instead
        entries.append((name, b"" if name.endswith("/") else case.encode(), {}))
    entries.append(("links/long", b"", {"typeflag": SYMLINK, "linkname": LONG_LINK}))
    entries.append(("links/utf8", b"", {"typeflag": SYMLINK, "linkname": "../café"}))
    entries.append(("links/hard", b"", {"typeflag": LINK, "linkname": NAME_CASES["300"]}))
    data = _write(entries)
    archive = tmp_path / "t.tar"
    archive.write_bytes(data)
    listed = _gnu_tar("--quoting-style=literal", "-tf", str(archive)).splitlines()
    assert listed == [name for name, _, _ in entries]
    out = tmp_path / "x"
    out.mkdir()
    _gnu_tar("--no-same-owner", "-xf", str(archive), "-C", str(out))
    for case, name in NAME_CASES.items():
        if case == "4000":
            continue
        path = out / name
        if name.endswith("/"):
            assert path.is_dir()
        else:
            assert path.read_bytes() == case.encode()
    assert os.readlink(out / "links" / "long") == LONG_LINK
    assert os.readlink(out / "links" / "utf8") == "../café"
    assert (out / "links" / "hard").read_bytes() == b"300"
    assert os.stat(out / "links" / "hard").st_ino == os.stat(out / NAME_CASES["300"]).st_ino

    deep = tmp_path / "deep.tar"
    deep.write_bytes(_write([(NAME_CASES["4000"], b"x", {})]))
    assert _gnu_tar("--quoting-style=literal", "-tf", str(deep)).splitlines() == [
        NAME_CASES["4000"]
    ]


@pytest.mark.parametrize(
    ("uid", "gid", "pax"),
    [(0, 0, False), (2_097_151, 2_097_151, False), (2_097_152, 7, True), (3_000_000, 2**32, True)],
)
def test_big_uids_round_trip_and_use_pax_only_beyond_octal(uid: int, gid: int, pax: bool) -> None:
    header = tar_header("f", REG, uid=uid, gid=gid, mode=0o4755)
    assert (header[156:157] == b"x") == pax
    data = header + END_OF_ARCHIVE
    ((e, _),) = read_all(data)[0]
    assert (e.uid, e.gid, e.mode) == (uid, gid, 0o4755)
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        (m,) = tf.getmembers()
        assert (m.uid, m.gid, m.mode) == (uid, gid, 0o4755)


def test_big_uids_round_trip_through_gnu_tar(tmp_path: Path) -> None:
    archive = tmp_path / "t.tar"
    archive.write_bytes(
        _write([("big", b"x", {"uid": 3_000_000, "gid": 4_000_000, "mtime": 1700000000})])
    )
    (line,) = _gnu_tar("--numeric-owner", "-tvf", str(archive)).splitlines()
    assert line.split()[1] == "3000000/4000000"


def test_xattrs_round_trip_through_python_tarfile_and_gnu_tar(tmp_path: Path) -> None:
    xattrs = {"user.comment": "café".encode(), "user.bin": b"\x01\xff\x7f=\n", "user.empty": b""}
    data = _write([("file.txt", b"with xattrs", {"xattrs": xattrs})])
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        (m,) = tf.getmembers()
        assert m.pax_headers["SCHILY.xattr.user.comment"] == "café"
    ((e, content),) = read_all(data)[0]
    assert e.xattrs == xattrs and content == b"with xattrs"
    archive = tmp_path / "t.tar"
    archive.write_bytes(data)
    out = tmp_path / "x"
    out.mkdir()
    _gnu_tar(
        "--xattrs", "--xattrs-include=*", "--no-same-owner", "-xf", str(archive), "-C", str(out)
    )
    path = out / "file.txt"
    got = {k: os.getxattr(path, k) for k in os.listxattr(path) if k.startswith("user.")}
    assert got == xattrs


def test_other_fields_round_trip_through_python_tarfile() -> None:
    data = b"".join(
        [
            tar_header("dev/null", CHAR, mode=0o666, devmajor=1, devminor=3, mtime=1700000000),
            tar_header("old", REG, mtime=-5),
            tar_header("future", REG, mtime=8**11),
            tar_header("frac", REG, mtime=1, pax_mtime="1.5"),
            END_OF_ARCHIVE,
        ]
    )
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        dev, old, future, frac = tf.getmembers()
    assert (dev.type, dev.devmajor, dev.devminor, dev.mode, dev.mtime) == (
        CHAR,
        1,
        3,
        0o666,
        1700000000,
    )
    assert old.mtime == -5
    assert future.mtime == 8**11
    assert frac.mtime == 1.5
    assert [e.mtime for e, _ in read_all(data)[0]] == [1700000000, -5, 8**11, 1]


def test_a_size_beyond_the_octal_field_gets_a_pax_size_record() -> None:
    header = tar_header("huge", REG, size=8**11)
    assert b" size=8589934592\n" in header
    assert header[-BLOCK + 124 : -BLOCK + 136] == b"%011o\x00" % 0


def test_the_writer_is_deterministic() -> None:
    kw: dict[str, object] = {
        "mode": 0o755,
        "uid": 3_000_000,
        "gid": 1,
        "mtime": 1700000000,
        "linkname": LONG_LINK,
    }
    a = tar_header(LONG_NAME, SYMLINK, xattrs={"user.a": b"1", "user.b": b"2"}, **kw)  # type: ignore[arg-type]
    b = tar_header(LONG_NAME, SYMLINK, xattrs={"user.b": b"2", "user.a": b"1"}, **kw)  # type: ignore[arg-type]
    assert a == b
    assert tar_header("x", REG) == tar_header("x", REG)
    # owner names are empty, so extractors use the numeric ids
    assert tar_header("x", REG)[265:329] == bytes(64)
    assert tar_header("x", REG)[257:265] == b"ustar\x0000"


def test_every_written_header_has_a_valid_checksum() -> None:
    for name in NAME_CASES.values():
        for block_start in range(0, len(tar_header(name, REG)), BLOCK):
            block = tar_header(name, REG)[block_start : block_start + BLOCK]
            if block[257:262] != b"ustar":
                continue  # PAX records
            stored = int(block[148:154], 8)
            assert stored == sum(block[:148]) + 8 * 32 + sum(block[156:])


# -- fuzzing ---------------------------------------------------------------------------------------


def _fuzz_seeds() -> list[bytes]:
    pax_xattr = info("d/x")
    pax_xattr.pax_headers = {"SCHILY.xattr.user.a": "v", "mtime": "1.5"}
    members = [
        (info("d", tarfile.DIRTYPE), b""),
        (info("d/" + "x" * 150, uid=3_000_000), b"hello" * 50),
        (info("d/l", tarfile.SYMTYPE, linkname="t" * 120), b""),
        (info("d/h", tarfile.LNKTYPE, linkname="d/" + "x" * 150), b""),
        (info("d/e"), b""),
    ]
    seeds = [
        tar_of(members, fmt=tarfile.GNU_FORMAT),
        tar_of([*members, (pax_xattr, b"abc")], fmt=tarfile.PAX_FORMAT),
        tar_of([(info("a"), b"1"), (info("p" * 120 + "/b"), b"2")], fmt=tarfile.USTAR_FORMAT),
        _write([(NAME_CASES["utf8"], b"u", {"xattrs": {"user.x": b"\xff"}, "uid": 2**40})]),
    ]
    return seeds


def test_random_mutations_raise_only_tar_format_error() -> None:
    """Random byte edits, deletions and truncations of valid tars: the reader either reads
    them or raises TarFormatError, never anything else. Deterministic, a few seconds at most."""
    rng = random.Random(20240101)
    seeds = _fuzz_seeds()
    deadline = time.monotonic() + 3.0
    outcomes = {"ok": 0, "error": 0}
    for i in range(20_000):
        if i >= 500 and time.monotonic() > deadline:
            break
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 6)):
            pos = rng.randrange(len(data))
            r = rng.random()
            if r < 0.5:
                data[pos] = rng.randrange(256)
            elif r < 0.85:
                data[pos] = rng.choice(b"0123456789 \x00\x80\xff-x=\n/L")
            else:
                del data[pos : pos + rng.randint(1, 700)]
        if rng.random() < 0.2:
            del data[rng.randrange(len(data) + 1) :]
        try:
            reader = TarReader(
                io.BytesIO(bytes(data)),
                crc=crc64,
                capture=bool(i % 2),
                chunk_size=rng.choice([7, 512, 1 << 20]),
            )
            for _ in reader:
                if rng.random() < 0.5:
                    reader.read_content(lambda p: None)
            outcomes["ok"] += 1
        except TarFormatError:
            outcomes["error"] += 1
    assert outcomes["ok"] > 0 and outcomes["error"] > 0


# -- numbers Go's reader refuses ------------------------------------------------------------------
# The reader promises Go archive/tar semantics: Go rejects a negative size (ErrHeader, in
# handleRegularFile) and parses numbers with strconv (no '_', no spaces, no '+' in octal).


def _record(key: str, value: str) -> bytes:
    body = f" {key}={value}\n".encode()
    n = len(body) + 2  # every record here is 10 to 99 bytes long
    assert len(str(n)) == 2
    return str(n).encode() + body


def _pax(records: bytes) -> bytes:
    return tar_header("././@PaxHeader", b"x", size=len(records)) + records + padding(len(records))


def test_a_negative_pax_size_is_an_error() -> None:
    # "a" claims -512 bytes of content; its 512 "content" bytes are a valid header, so a reader
    # that accepts the negative size goes on with an entry that is not there
    data = (
        _pax(_record("size", "-512"))
        + tar_header("a", REG, size=512)
        + tar_header("smuggled", REG)
        + END_OF_ARCHIVE
    )
    with pytest.raises(TarFormatError):
        read_all(data)


@pytest.mark.parametrize(
    ("records", "size_field", "content"),
    [
        (_record("size", "1_0"), 10, b"0123456789"),
        (_record("uid", "1_000"), 0, b""),
        (_record("size", " 3"), 3, b"abc"),
        (b"", b"0000000_003\x00", b"abc"),
        (b"", b"+0000000003\x00", b"abc"),
    ],
    ids=[
        "pax-size-underscore",
        "pax-uid-underscore",
        "pax-size-space",
        "octal-underscore",
        "octal-plus",
    ],
)
def test_numbers_that_go_rejects_are_errors(
    records: bytes, size_field: int | bytes, content: bytes
) -> None:
    header = tar_header("f", REG, size=len(content))
    if isinstance(size_field, bytes):
        header = patch_header(header, 0, slice(124, 136), size_field)
    data = (_pax(records) if records else b"") + header + content + padding(len(content))
    with pytest.raises(TarFormatError):
        read_all(data + END_OF_ARCHIVE)
