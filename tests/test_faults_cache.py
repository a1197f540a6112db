"""Damaged layer-cache entries and shared inodes (issue 14 items 1, 2).

A warm cache (one build of the fault images) is copied for each case; one of its entries is
damaged (the blob's bytes, the file itself, or one field of ``meta.json``; a base-scan entry)
and the same build runs again. What must hold: exit 0 and exactly the image a clean build
makes; a bad entry is dropped, rebuilt and reported on stderr, never used. Today only the
cached blob is checked (against the digest meta.json names): the other fields are trusted,
which gives another image with exit 0 (strict xfails, item 1). Cache blobs are hard links of
output blobs (item 2).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support.faultimages import FaultImages
from support.faultrun import Build, Outcome, Sandbox
from support.leftovers import layout_problems, tags

ITEM_1 = (
    "issue 14 item 1: a cache entry's metadata is trusted as read (only the cached blob is "
    "checked); a bad entry must be discarded, rebuilt and reported on stderr, never used"
)


@pytest.fixture(scope="module")
def warm(tmp_path_factory: pytest.TempPathFactory, fault_images: FaultImages) -> Path:
    """A cache filled by one build of the fault images ($XDG_CACHE_HOME of that build)."""
    box = Sandbox(tmp_path_factory.mktemp("warm"))
    r = Build(box, ["build", *fault_images.build_args(), "--output", f"oci:{box.out}/o:1"]).run()
    assert r.returncode == 0, r.describe()
    return box.cache


def cache_root(box: Sandbox) -> Path:
    return box.cache / "bootc-embed"


def entries(box: Sandbox) -> dict[str, Path]:
    """Layer cache entries by the input blob digest they were made from."""
    out = {}
    for d in (cache_root(box) / "v1/layers").iterdir():
        meta = json.loads((d / "meta.json").read_bytes())
        out[meta["input_digest"]] = d
    return out


def rebuild(box: Sandbox, images: FaultImages, name: str = "out") -> Outcome:
    args = ["build", *images.build_args(), "--output", f"oci:{box.out / name}:1", "--json"]
    return Build(box, args).run()


def with_warm_cache(box: Sandbox, warm: Path) -> None:
    shutil.copytree(warm, box.cache, dirs_exist_ok=True)  # copies: no inode shared with warm


def same_image(r: Outcome, box: Sandbox, reference: str, name: str = "out") -> None:
    assert r.returncode == 0, r.describe()
    out = box.out / name
    assert not layout_problems(out), layout_problems(out)
    assert tags(out) == {"1": reference}, f"another image than a clean build's\n{r.describe()}"


def reported(r: Outcome) -> None:
    assert "cache" in r.stderr.lower(), f"the bad cache entry was not reported\n{r.describe()}"


def replace_file(path: Path, data: bytes) -> None:
    """Give ``path`` new content as a new file (never writing through a shared inode)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def flip_middle(data: bytes) -> bytes:
    b = bytearray(data)
    b[len(b) // 2] ^= 0xFF
    return bytes(b)


# --------------------------------------------------------------------------------------------
# the cached blob: checked today


@pytest.mark.parametrize(
    "damage",
    [
        "flipped byte",
        "truncated",
        pytest.param(
            "missing",
            marks=pytest.mark.xfail(
                strict=True,
                reason=ITEM_1 + " (an entry whose blob file is gone fails the build with 'No "
                "such file or directory' instead)",
            ),
        ),
        "meta.json not JSON",
        "meta.json missing",
    ],
)
def test_a_damaged_cache_entry_found_today_gives_the_clean_image(
    damage: str, box: Sandbox, fault_images: FaultImages, warm: Path, fault_reference: str
) -> None:
    with_warm_cache(box, warm)
    entry = entries(box)[fault_images.layers("app1")[1]]
    blob, meta = entry / "blob", entry / "meta.json"
    if damage == "flipped byte":
        replace_file(blob, flip_middle(blob.read_bytes()))
    elif damage == "truncated":
        replace_file(blob, blob.read_bytes()[:-100])
    elif damage == "missing":
        blob.unlink()
    elif damage == "meta.json not JSON":
        replace_file(meta, meta.read_bytes()[:-10])
    else:
        meta.unlink()
    same_image(rebuild(box, fault_images), box, fault_reference)


@pytest.mark.xfail(strict=True, reason=ITEM_1 + " (a damaged blob is rebuilt silently)")
def test_a_damaged_cached_blob_is_reported(
    box: Sandbox, fault_images: FaultImages, warm: Path, fault_reference: str
) -> None:
    with_warm_cache(box, warm)
    blob = entries(box)[fault_images.layers("app1")[1]] / "blob"
    replace_file(blob, flip_middle(blob.read_bytes()))
    r = rebuild(box, fault_images)
    same_image(r, box, fault_reference)
    reported(r)


# --------------------------------------------------------------------------------------------
# meta.json fields: trusted today


def _other_digest(value: Any) -> str:
    return "sha256:" + hashlib.sha256(str(value).encode()).hexdigest()


META_DAMAGE: dict[str, Callable[[Any], Any]] = {
    "media_type": lambda v: v.replace("+gzip", "+zstd") if "+gzip" in v else v + "+gzip",
    "digest": _other_digest,
    "size": lambda v: v + 1,
    "diff_id": _other_digest,
    "uids": lambda v: [*v, 4242],
    "gids": lambda v: [*v, 4343],
    "input_diff_size": lambda v: v + 512,
    "input_compression": lambda v: 0 if v else 2,
    "input_digest": _other_digest,
    "whiteouts": lambda v: v + 1,
    "left_out": lambda v: v + 1,
    "left_out_paths": lambda v: [*v, "dev/null"],
}


@pytest.mark.xfail(strict=True, reason=ITEM_1)
@pytest.mark.parametrize("field", list(META_DAMAGE))
def test_a_cache_entry_with_a_wrong_field_is_discarded_rebuilt_and_reported(
    field: str, box: Sandbox, fault_images: FaultImages, warm: Path, fault_reference: str
) -> None:
    with_warm_cache(box, warm)
    input_digest = fault_images.layers("app1")[1]  # a layer with a whiteout
    meta_path = entries(box)[input_digest] / "meta.json"
    meta = json.loads(meta_path.read_bytes())
    meta[field] = META_DAMAGE[field](meta[field])
    replace_file(meta_path, json.dumps(meta, sort_keys=True).encode())
    r = rebuild(box, fault_images)
    same_image(r, box, fault_reference)
    layers = [x for i in r_json(r)["images"] for x in i["layers"]]
    made = next(x for x in layers if x["source_digest"] == input_digest)
    assert made["reused_from"] is None, "the damaged entry was used"
    assert made["whiteouts"] == 1 and made["left_out"] == 0
    assert not any(x.get("left_out") for x in layers)
    reported(r)


def r_json(r: Outcome) -> dict[str, Any]:
    return json.loads(r.stdout)


# --------------------------------------------------------------------------------------------
# base-scan entries: trusted today


def base_scans(box: Sandbox) -> list[Path]:
    return sorted((cache_root(box) / "base-scan").iterdir())


def _scan_of_storage_conf(box: Sandbox) -> Path:
    for p in base_scans(box):
        if "etc/containers/storage.conf" in json.loads(p.read_bytes()):
            return p
    raise AssertionError("no base-scan entry holds etc/containers/storage.conf")


@pytest.mark.parametrize("damage", ["not JSON", "missing"])
def test_an_unreadable_base_scan_is_scanned_again(
    damage: str, box: Sandbox, fault_images: FaultImages, warm: Path, fault_reference: str
) -> None:
    with_warm_cache(box, warm)
    scan = _scan_of_storage_conf(box)
    if damage == "missing":
        scan.unlink()
    else:
        replace_file(scan, scan.read_bytes()[:-5])
    same_image(rebuild(box, fault_images), box, fault_reference)


@pytest.mark.xfail(strict=True, reason=ITEM_1 + " (base-scan entries too)")
@pytest.mark.parametrize("damage", ["emptied", "storage.conf mode", "storage.conf content"])
def test_a_wrong_base_scan_is_discarded_rebuilt_and_reported(
    damage: str, box: Sandbox, fault_images: FaultImages, warm: Path, fault_reference: str
) -> None:
    with_warm_cache(box, warm)
    scan = _scan_of_storage_conf(box)
    nodes = json.loads(scan.read_bytes())
    conf = nodes["etc/containers/storage.conf"]
    if damage == "emptied":
        nodes = {}
    elif damage == "storage.conf mode":
        conf["mode"] = 0o600
    else:
        conf["data"] = "W3N0b3JhZ2VdCg=="  # "[storage]\n"
    replace_file(scan, json.dumps(nodes).encode())
    r = rebuild(box, fault_images)
    same_image(r, box, fault_reference)
    reported(r)


# --------------------------------------------------------------------------------------------
# inodes shared between the cache and outputs


def inodes(paths: list[Path]) -> dict[tuple[int, int], Path]:
    out = {}
    for p in paths:
        st = p.stat()
        out[(st.st_dev, st.st_ino)] = p
    return out


def output_blobs(layout: Path) -> list[Path]:
    return sorted((layout / "blobs/sha256").iterdir())


def cached_blobs(box: Sandbox) -> list[Path]:
    return [d / "blob" for d in (cache_root(box) / "v1/layers").iterdir()]


ITEM_2 = (
    "issue 14 item 2: cache blobs are hard links of output blobs (same inode): damaging or "
    "repairing one changes the other"
)


@pytest.mark.xfail(strict=True, reason=ITEM_2)
def test_the_cache_and_the_outputs_share_no_inode(
    box: Sandbox, fault_images: FaultImages, fault_reference: str
) -> None:
    first = rebuild(box, fault_images, "first")  # fills the cache
    second = rebuild(box, fault_images, "second")  # from the cache
    same_image(first, box, fault_reference, "first")
    same_image(second, box, fault_reference, "second")
    cache = inodes(cached_blobs(box))
    for name in ("first", "second"):
        shared = [str(p) for key, p in inodes(output_blobs(box.out / name)).items() if key in cache]
        assert not shared, f"output {name} shares inodes with the cache: {shared}"


@pytest.mark.xfail(strict=True, reason=ITEM_2)
def test_damaging_the_cache_in_place_leaves_earlier_outputs_whole(
    box: Sandbox, fault_images: FaultImages, fault_reference: str
) -> None:
    same_image(rebuild(box, fault_images, "first"), box, fault_reference, "first")
    for blob in cached_blobs(box):
        with open(blob, "r+b") as f:  # as a disk error, or a tool repairing in place, would
            f.seek(blob.stat().st_size // 2)
            byte = f.read(1)
            f.seek(-1, os.SEEK_CUR)
            f.write(bytes([byte[0] ^ 0xFF]))
    assert not layout_problems(box.out / "first"), layout_problems(box.out / "first")


def test_an_output_does_not_depend_on_the_input_layout_it_was_linked_from(
    box: Sandbox, fault_images: FaultImages, fault_reference: str, tmp_path: Path
) -> None:
    """Base blobs may be hard links of the input layout's files (content-addressed, never
    rewritten in place): deleting the input leaves the output whole."""
    copy = tmp_path / "images"
    shutil.copytree(fault_images.dir, copy)
    args = FaultImages(
        copy,
        *(
            r.replace(str(fault_images.dir), str(copy))
            for r in (fault_images.base, fault_images.app1, fault_images.app2)
        ),
    ).build_args()
    r = Build(box, ["build", *args, "--output", f"oci:{box.out}/out:1", "--no-cache"]).run()
    same_image(r, box, fault_reference)
    linked = inodes(output_blobs(box.out / "out")).keys() & inodes(list(copy.rglob("*"))).keys()
    assert linked, "no output blob is a hard link of the input's: the case tests nothing"
    shutil.rmtree(copy)
    assert not layout_problems(box.out / "out")


# --------------------------------------------------------------------------------------------
# builds at once on one cache


def test_concurrent_builds_on_one_cache_all_give_the_clean_image(
    box: Sandbox, fault_images: FaultImages, fault_reference: str
) -> None:
    builds = [
        Build(box, ["build", *fault_images.build_args(), "--output", f"oci:{box.out}/o{i}:1"])
        for i in range(3)
    ]
    for b in builds:
        b.start()
    for i, b in enumerate(builds):
        same_image(b.finish(), box, fault_reference, f"o{i}")
    for d in (cache_root(box) / "v1/layers").iterdir():
        meta = json.loads((d / "meta.json").read_bytes())
        data = (d / "blob").read_bytes()
        assert "sha256:" + hashlib.sha256(data).hexdigest() == meta["digest"], d
