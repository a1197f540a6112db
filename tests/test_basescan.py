"""The base scan: what a base image's layers hold that the build must respect, merged top-down
as overlay would show it, and cached per layer.

Base images are hand-built OCI layouts (tests/support/ocilayout.py) read through ``oci:``.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from support.ocilayout import TarBuilder, blob_path, write_image
from unit_support.layers import STORE, CountingSource, open_input, run

from bootc_embed import _basescan
from bootc_embed._basescan import BaseScanner, BaseView, LayerScan, Node, merge
from bootc_embed._reference import parse_reference
from bootc_embed._transports import open_source, resolve
from bootc_embed.errors import DigestMismatchError, ImageFormatError

S = STORE.strip("/")
CONF = b'[storage]\ndriver = "overlay"\n'
MODULES = "usr/lib/modules"
BOUND = "usr/lib/bootc/bound-images.d"


class Base:
    """A base image in an OCI layout, and the source reading it."""

    def __init__(self, root: Path, tars: list[bytes]) -> None:
        self.root = root
        image = write_image(root, tars)
        self.source = CountingSource(open_source(parse_reference(image.ref)))
        self.layers = resolve(self.source, None).manifest.layers  # type: ignore[arg-type]

    def scan(self, cache: Path | None = None, store: str = STORE) -> BaseView:
        return BaseScanner(cache).scan(self.source, self.layers, store)  # type: ignore[arg-type]

    def reads(self) -> int:
        """How many times layer blobs were opened."""
        return sum(self.source.opened.get(d.digest, 0) for d in self.layers)


def _view(tmp_path: Path, *tars: bytes, store: str = STORE) -> BaseView:
    return Base(tmp_path / "base", list(tars)).scan(store=store)


def _summary(view: BaseView) -> dict[str, dict[str, object]]:
    return {p: n.to_json() for p, n in sorted(view.nodes.items())}


# -- what is recorded ------------------------------------------------------------------------------


def _os_layer() -> bytes:
    return (
        TarBuilder()
        .dir("etc")
        .file("etc/passwd", b"root:x:0:0::/root:/bin/sh\n")  # not wanted
        .dir("etc/containers")
        .file("etc/containers/storage.conf", CONF, mode=0o600, uid=1, gid=2)
        .file("usr/share/containers/storage.conf", b"# defaults\n")
        .file("usr/bin/podman", b"\x7fELF")  # not wanted
        .dir(f"{MODULES}/6.1.0-1")
        .file(f"{MODULES}/6.1.0-1/vmlinuz", b"kernel")  # below a kernel: not wanted
        .dir(f"{MODULES}/6.2.0-1")
        .file("usr/share/containers/systemd/web.container", b"[Container]\nImage=quay.io/a/web:1\n")
        .file("etc/containers/systemd/db.image", b"[Image]\nImage=quay.io/a/db:2\n")
        .file("etc/containers/systemd/sub/deep.container", b"[Container]\n")  # too deep
        .symlink(f"{BOUND}/web.container", "/usr/share/containers/systemd/web.container")
        .symlink(f"{BOUND}/db.image", "../../../../etc/containers/systemd/db.image")
        .bytes()
    )


def _store_layer(store: str = S) -> bytes:
    return (
        TarBuilder()
        .file(f"{store}/overlay-layers/layers.json", b'[{"id":"aaa"}]')
        .file(f"{store}/overlay-images/images.json", b'[{"id":"iii","names":["x"]}]')
        .file(f"{store}/overlay-layers/aaa.tar-split.gz", b"not wanted")
        .dir(f"{store}/overlay/aaa")
        .file(f"{store}/overlay/aaa/diff/app/file", b"not wanted")
        .symlink(f"{store}/overlay/l/ABC", "../aaa/diff")
        .bytes()
    )


def test_the_scan_records_only_what_the_build_needs(tmp_path: Path) -> None:
    view = _view(tmp_path, _os_layer(), _store_layer())
    assert sorted(view.nodes) == sorted(
        [
            "etc",
            "etc/containers",
            "etc/containers/storage.conf",
            "usr/share/containers/storage.conf",
            "etc/containers/systemd/db.image",
            "usr/share/containers/systemd/web.container",
            f"{BOUND}/web.container",
            f"{BOUND}/db.image",
            f"{MODULES}/6.1.0-1",
            f"{MODULES}/6.2.0-1",
            f"{S}/overlay-layers/layers.json",
            f"{S}/overlay-images/images.json",
            f"{S}/overlay/aaa",
        ]
    )
    conf = view.get("etc/containers/storage.conf")
    assert conf == Node("file", 0o600, 1, 2, CONF)
    assert view.storage_conf() == ("etc/containers/storage.conf", CONF, conf)
    assert view.kernels() == ["6.1.0-1", "6.2.0-1"]
    assert view.children(BOUND) == [f"{BOUND}/db.image", f"{BOUND}/web.container"]
    link = view.get(f"{BOUND}/web.container")
    assert link is not None and (link.kind, link.target, link.data) == (
        "symlink",
        "/usr/share/containers/systemd/web.container",
        None,
    )
    assert view.file("usr/share/containers/systemd/web.container") == (
        b"[Container]\nImage=quay.io/a/web:1\n"
    )
    assert view.file("etc/containers/systemd/db.image") == b"[Image]\nImage=quay.io/a/db:2\n"
    # the records of a store already in the base, read whole
    assert view.file(f"{S}/overlay-layers/layers.json") == b'[{"id":"aaa"}]'
    assert view.file(f"{S}/overlay-images/images.json") == b'[{"id":"iii","names":["x"]}]'
    assert view.get(f"{S}/overlay/aaa") == Node("dir", 0o755)
    assert view.file("etc") is None and view.get("usr/bin/podman") is None


def test_the_store_path_decides_which_records_are_read(tmp_path: Path) -> None:
    other = "usr/share/other"
    view = _view(tmp_path, _store_layer(S), _store_layer(other), store="/" + other)
    assert view.file(f"{other}/overlay-layers/layers.json") == b'[{"id":"aaa"}]'
    assert view.get(f"{S}/overlay-layers/layers.json") is None


def test_names_are_cleaned_and_names_that_are_not_utf8_are_ignored(tmp_path: Path) -> None:
    tar = (
        TarBuilder()
        .file("./etc/containers/storage.conf", CONF)
        .file("/usr/share/containers/storage.conf", b"usr")
        .file(b"usr/lib/modules/\xff", b"")
        .dir("./usr/lib/modules/6.0/")
        .bytes()
    )
    view = _view(tmp_path, tar)
    assert view.file("etc/containers/storage.conf") == CONF
    assert view.file("usr/share/containers/storage.conf") == b"usr"
    assert view.kernels() == ["6.0"]


def test_usr_share_storage_conf_counts_when_etc_has_none(tmp_path: Path) -> None:
    tar = TarBuilder().file("usr/share/containers/storage.conf", b"usr").bytes()
    view = _view(tmp_path, tar)
    assert view.storage_conf() == (
        "usr/share/containers/storage.conf",
        b"usr",
        Node("file", 0o644, data=b"usr"),
    )
    assert _view(tmp_path / "empty", TarBuilder().file("x").bytes()).storage_conf() is None


# -- merging the layers ----------------------------------------------------------------------------


def test_the_topmost_layer_that_names_a_path_decides(tmp_path: Path) -> None:
    lower = TarBuilder().file("etc/containers/storage.conf", b"old", mode=0o600).bytes()
    upper = TarBuilder().file("etc/containers/storage.conf", b"new").bytes()
    view = _view(tmp_path, lower, upper)
    assert view.get("etc/containers/storage.conf") == Node("file", 0o644, data=b"new")


def _kernels(*versions: str) -> TarBuilder:
    b = TarBuilder()
    for v in versions:
        b.dir(f"{MODULES}/{v}")
    return b


@pytest.mark.parametrize(
    ("upper", "kernels"),
    [
        (TarBuilder().whiteout(f"{MODULES}/5.0"), ["6.0"]),
        (_kernels("7.0").opaque(MODULES), ["7.0"]),  # marker after the directory's entry
        (TarBuilder().opaque(MODULES).dir(MODULES).dir(f"{MODULES}/7.0"), ["7.0"]),  # before
        (TarBuilder().opaque("usr/lib"), []),  # an ancestor made opaque
        (TarBuilder().whiteout("usr"), []),  # an ancestor deleted
        (TarBuilder().symlink(MODULES, "/lib/modules"), []),  # a symlink in place of the dir
        (TarBuilder().file(MODULES, b"a file"), []),  # a file in place of the dir
        (TarBuilder().dir(MODULES, mode=0o700), ["5.0", "6.0"]),  # a directory is merged
        (_kernels("4.0"), ["4.0", "5.0", "6.0"]),
    ],
    ids=[
        "whiteout",
        "opaque-after",
        "opaque-before",
        "opaque-ancestor",
        "deleted-ancestor",
        "symlink",
        "file",
        "dir",
        "added",
    ],
)
def test_whiteouts_and_opaque_directories_of_upper_layers_hide_lower_content(
    tmp_path: Path, upper: TarBuilder, kernels: list[str]
) -> None:
    view = _view(tmp_path, _kernels("5.0", "6.0").bytes(), upper.bytes())
    assert view.kernels() == kernels


def test_a_path_deleted_in_one_layer_and_created_again_above_it_is_there(tmp_path: Path) -> None:
    view = _view(
        tmp_path,
        _kernels("5.0").file("etc/containers/storage.conf", b"1").bytes(),
        TarBuilder().whiteout(MODULES).whiteout("etc").bytes(),
        _kernels("6.0").file("usr/share/containers/storage.conf", b"3").bytes(),
        TarBuilder().file("etc/containers/storage.conf", b"4").bytes(),
    )
    assert view.kernels() == ["6.0"]
    assert view.storage_conf() == (
        "etc/containers/storage.conf",
        b"4",
        Node("file", 0o644, data=b"4"),
    )
    assert "etc" not in view.nodes  # deleted, and not named by the layer above


def test_deleting_etcs_storage_conf_falls_back_to_usr_share(tmp_path: Path) -> None:
    view = _view(
        tmp_path,
        TarBuilder()
        .file("etc/containers/storage.conf", b"etc")
        .file("usr/share/containers/storage.conf", b"usr")
        .bytes(),
        TarBuilder().whiteout("etc/containers/storage.conf").bytes(),
    )
    assert view.storage_conf() is not None
    assert view.storage_conf()[:2] == ("usr/share/containers/storage.conf", b"usr")  # type: ignore[index]


def test_an_opaque_store_directory_hides_the_records_below(tmp_path: Path) -> None:
    view = _view(
        tmp_path,
        _store_layer(),
        TarBuilder()
        .opaque(f"{S}/overlay-images")
        .file(f"{S}/overlay-images/images.json", b"[]")
        .bytes(),
    )
    assert view.file(f"{S}/overlay-images/images.json") == b"[]"
    assert view.file(f"{S}/overlay-layers/layers.json") == b'[{"id":"aaa"}]'
    assert view.get(f"{S}/overlay-images") == Node("dir", opaque=True)


def test_merge_takes_layers_top_down_and_drops_deletions() -> None:
    file = Node("file", 0o644, data=b"x")
    view = merge(
        [
            {"a": Node("deleted"), "d": Node("dir", opaque=True), "d/new": file},
            {"a": file, "a/b": file, "d/old": file, "c": file},
        ]
    )
    assert view.nodes == {"d": Node("dir", opaque=True), "d/new": file, "c": file}


# -- one read, two consumers -----------------------------------------------------------------------


def test_a_layer_scan_observes_a_layer_the_transform_is_reading(tmp_path: Path) -> None:
    # a layer the base shares with an app is read once: the scan watches the transform's read
    big = bytes(range(256)) * 4096  # content the transform and the scan both take
    tar = (
        TarBuilder()
        .file("etc/containers/storage.conf", big)
        .file("etc/containers/systemd/a.container", b"[Container]\nImage=x\n")
        .file("usr/bin/tool", b"tool")
        .whiteout(f"{MODULES}/old")
        .bytes()
    )
    inp = open_input(tmp_path / "in", [tar])
    scan = LayerScan(STORE)
    made = run(inp.job(0), tmp_path / "staging", observe=scan.observe)
    found = scan.finish()
    assert found["etc/containers/storage.conf"].data == big
    assert found["etc/containers/systemd/a.container"].data == b"[Container]\nImage=x\n"
    assert found[f"{MODULES}/old"] == Node("deleted")
    assert "usr/bin/tool" not in found
    assert made.contents()["etc/containers/storage.conf"] == big
    # the same findings as a scan of the layer on its own
    base = Base(tmp_path / "base", [tar])
    assert BaseScanner(None).scan_blob(base.source, base.layers[0], STORE) == found  # type: ignore[arg-type]


def test_scan_blob_copies_the_blob_it_reads(tmp_path: Path) -> None:
    base = Base(tmp_path / "base", [_os_layer()])
    copy = io.BytesIO()
    BaseScanner(None).scan_blob(base.source, base.layers[0], STORE, copy_to=copy)  # type: ignore[arg-type]
    assert copy.getvalue() == blob_path(base.root, base.layers[0].digest).read_bytes()


# -- the cache -------------------------------------------------------------------------------------


def test_a_cached_scan_reads_nothing_and_gives_the_same_view(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    base = Base(tmp_path / "base", [_os_layer(), _store_layer()])
    first = base.scan(cache)
    assert base.reads() == 2
    again = Base(tmp_path / "base", [_os_layer(), _store_layer()])  # a new process, same cache
    assert _summary(again.scan(cache)) == _summary(first)
    assert again.reads() == 0
    assert len(list((cache / "base-scan").iterdir())) == 2


def test_a_new_scan_version_or_another_store_path_misses_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    base = Base(tmp_path / "base", [_os_layer(), _store_layer()])
    base.scan(cache)
    base.scan(cache, store="/usr/share/other")
    assert base.reads() == 4
    base.scan(cache, store="/usr/share/other/")  # the same store path
    assert base.reads() == 4
    monkeypatch.setattr(_basescan, "SCAN_VERSION", str(int(_basescan.SCAN_VERSION) + 1))
    view = base.scan(cache)
    assert base.reads() == 6
    assert view.storage_conf() is not None


def test_a_damaged_cache_entry_is_scanned_again(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    base = Base(tmp_path / "base", [_os_layer()])
    expected = _summary(base.scan(cache))
    (entry,) = (cache / "base-scan").iterdir()
    for damage in (b"{not json", b'{"etc": {"mode": 1}}', b"[]"):
        entry.write_bytes(damage)
        assert _summary(base.scan(cache)) == expected
    assert base.reads() == 4
    assert json.loads(entry.read_bytes())  # written again


def test_without_a_cache_or_with_one_that_cannot_be_written_every_scan_reads(
    tmp_path: Path,
) -> None:
    base = Base(tmp_path / "base", [_os_layer()])
    not_a_dir = tmp_path / "file"
    not_a_dir.write_bytes(b"")
    expected = _summary(base.scan(None))
    for cache in (None, not_a_dir, None):
        assert _summary(base.scan(cache)) == expected
    assert base.reads() == 4


# -- bad blobs -------------------------------------------------------------------------------------


def test_a_damaged_base_blob_is_a_digest_error_naming_the_base_layer(tmp_path: Path) -> None:
    base = Base(tmp_path / "base", [_os_layer()])
    path = blob_path(base.root, base.layers[0].digest)
    data = bytearray(path.read_bytes())
    data[-12] ^= 1  # in the gzip trailer: the tar reads, the bytes do not match
    path.write_bytes(bytes(data))
    with pytest.raises(DigestMismatchError) as exc:
        base.scan(tmp_path / "cache")
    assert str(exc.value).startswith(f"{base.source.reference}: base layer {base.layers[0].digest}")
    assert not (tmp_path / "cache" / "base-scan").exists()  # nothing cached


def test_a_base_blob_that_is_not_a_tar_is_an_error_naming_the_base_layer(tmp_path: Path) -> None:
    base = Base(tmp_path / "base", [b"this is not a tar archive" * 40])
    with pytest.raises(ImageFormatError) as exc:
        base.scan()
    message = str(exc.value)
    assert message.startswith(f"{base.source.reference}: base layer {base.layers[0].digest}")
    assert "cannot be read" in message
