"""Bad inputs through the command line: a clear message, the documented exit status, no output.

Every case checks: exit status 1 (2 for a usage error such as an unqualified name, as
docs/cli.md documents), a message on stderr naming the image/layer/entry at fault, no traceback,
and nothing at the output reference afterwards. Each is run twice: with a fresh output path (it must
not exist afterwards) and with an existing OCI layout as the output (its index.json unchanged, no
new blobs), both for ``oci:`` and ``oci-archive:`` outputs where it matters.

The inputs are small hand-made OCI layouts (tests/support/ocilayout.py), except for the corrupt
blob and wrong diff_id cases, which also tamper with a copy of the real app1 test image.
"""

from __future__ import annotations

import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import BootcEmbedResult, run_bootc_embed
from support import ocilayout
from support.ocilayout import TarBuilder

GOOD_NAME = "registry.example.com/test/good:1"
BAD_NAME = "registry.example.com/test/bad:1"


# --------------------------------------------------------------------------------------------
# small inputs


def write_base(layout: Path) -> ocilayout.Image:
    layer = (
        TarBuilder()
        .dir("usr/")
        .dir("usr/bin/")
        .file("usr/bin/hello", b"#!/bin/sh\necho hello\n", mode=0o755)
        .dir("etc/")
        .file("etc/os-release", b"ID=test\n")
        .bytes()
    )
    return ocilayout.write_image(layout, [layer], tag="1", labels={"containers.bootc": "1"})


def write_good_app(layout: Path) -> ocilayout.Image:
    layers = [
        TarBuilder().dir("app/").file("app/one", b"one\n").bytes(),
        TarBuilder().dir("app/").file("app/two", b"two\n").whiteout("app/one").bytes(),
    ]
    return ocilayout.write_image(layout, layers, tag="1")


def write_bad_app(layout: Path, bad_layer: bytes) -> ocilayout.Image:
    """An app whose second layer is ``bad_layer`` (the first one is fine)."""
    first = TarBuilder().dir("srv/").file("srv/fine", b"fine\n").bytes()
    return ocilayout.write_image(layout, [first, bad_layer], tag="1")


@dataclass
class Inputs:
    base: ocilayout.Image
    good: ocilayout.Image
    tmp: Path


@pytest.fixture
def inputs(tmp_path) -> Inputs:
    return Inputs(write_base(tmp_path / "base"), write_good_app(tmp_path / "good"), tmp_path)


# --------------------------------------------------------------------------------------------
# checking a failure


def outputs(tmp: Path):
    """(what, output reference, check-after): a fresh dir, an existing layout, an archive."""
    fresh = tmp / "out-fresh"

    def fresh_gone():
        assert not fresh.exists(), f"{fresh} was created by a failed build"
        leftovers = [
            p.name for p in tmp.iterdir() if p.name.startswith(("out-fresh", ".out-fresh"))
        ]
        assert not leftovers, f"temporary output left next to the output: {leftovers}"

    existing = tmp / "out-existing"
    ocilayout.write_image(existing, [TarBuilder().file("x", b"x").bytes()], tag="keep")
    before = ocilayout.layout_snapshot(existing)

    def existing_unchanged():
        after = ocilayout.layout_snapshot(existing)
        assert after.get("index.json") == before.get("index.json"), "index.json was changed"
        added = sorted(set(after) - set(before))
        assert not added, f"a failed build left files in the existing layout: {added[:10]}"
        assert after == before

    archive = tmp / "out-archive.tar"

    def archive_gone():
        assert not archive.exists(), f"{archive} was created by a failed build"

    return [
        ("fresh oci dir", f"oci:{fresh}:1", fresh_gone),
        ("existing oci layout", f"oci:{existing}:new", existing_unchanged),
        ("oci-archive", f"oci-archive:{archive}:1", archive_gone),
    ]


def assert_fails(
    inputs: Inputs,
    image_args: list[str],
    *,
    mentions: list[list[str]],
    status: int = 1,
    base: str | None = None,
    no_cache: bool = True,
) -> None:
    """Run the build for every kind of output; each run must fail cleanly.

    ``mentions``: groups of alternatives; stderr must contain at least one string of each group.
    ``no_cache``: pass ``--no-cache`` (the input must be read; the layer cache is tested below).
    """
    for what, out_ref, check_after in outputs(inputs.tmp):
        res = run_bootc_embed(
            "build",
            "--base",
            base or inputs.base.ref,
            *image_args,
            "--output",
            out_ref,
            *(["--no-cache"] if no_cache else []),
        )
        ctx = f"[output: {what}]\n{res.describe()}"
        print(f"[{what}] exit {res.returncode}: {res.stderr.strip()}")
        assert res.returncode == status, f"expected exit status {status}\n{ctx}"
        assert "Traceback" not in res.stderr, f"traceback on stderr\n{ctx}"
        assert res.stderr.strip(), f"no message on stderr\n{ctx}"
        low = res.stderr.lower()
        for group in mentions:
            assert any(m.lower() in low for m in group), (
                f"stderr should mention one of {group}\n{ctx}"
            )
        check_after()


def good_args(inputs: Inputs) -> list[str]:
    return ["--image", f"{GOOD_NAME}={inputs.good.ref}"]


def short(digest: str) -> str:
    return digest.split(":", 1)[1][:12]


# --------------------------------------------------------------------------------------------
# corrupt blobs


@pytest.mark.parametrize("damage", ["flip-byte", "truncate", "append"])
def test_corrupt_layer_blob_in_app1_copy(inputs, test_images, damage):
    app = inputs.tmp / "app1-copy"
    ocilayout.copy_layout(test_images.layout("app1"), app)
    img = ocilayout.read_image(app, "1")
    # the smallest layer above the base: quick to read, and not the first one
    idx, desc = min(enumerate(img.layers[1:], 1), key=lambda x: x[1]["size"])
    p = ocilayout.detach_blob(app, desc["digest"])
    data = bytearray(p.read_bytes())
    if damage == "flip-byte":
        data[len(data) // 2] ^= 0xFF
    elif damage == "truncate":
        del data[len(data) - 10 :]
    else:
        data += b"\0garbage"
    p.write_bytes(bytes(data))
    assert_fails(
        inputs,
        [*good_args(inputs), "--image", f"{BAD_NAME}={img.ref}"],
        mentions=[[short(desc["digest"]), f"layer {idx}"], [BAD_NAME, str(app)]],
    )


def test_a_cache_hit_does_not_read_the_input_blob_and_without_the_cache_damage_is_found(
    inputs, tmp_path
):
    """Issue 4: a reused layer's work is skipped and its input blob is not even read (as skopeo
    skips a blob the destination already has): a rebuild costs no layer bytes. The output is
    the same, made from digest-checked bytes; without the cache the damaged input is found."""
    layer = TarBuilder().dir("srv/").file("srv/data", os.urandom(2048)).bytes()
    img = write_bad_app(inputs.tmp / "bad", layer)

    def build(out: str) -> BootcEmbedResult:
        return run_bootc_embed(
            "build",
            "--base",
            inputs.base.ref,
            "--image",
            f"{BAD_NAME}={img.ref}",
            "--output",
            f"oci:{tmp_path / out}:1",
        )

    def digest(out: str) -> str:
        return json.loads((tmp_path / out / "index.json").read_text())["manifests"][0]["digest"]

    warm = build("warm")
    assert warm.returncode == 0, warm.describe()
    desc = img.layers[1]
    p = img.blob(desc["digest"])
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0x01
    p.write_bytes(bytes(data))
    cached = build("cached")
    assert cached.returncode == 0, cached.describe()
    assert digest("cached") == digest("warm")
    assert_fails(
        inputs,
        ["--image", f"{BAD_NAME}={img.ref}"],
        mentions=[[short(desc["digest"]), "layer 2"], [BAD_NAME, str(img.layout)]],
        no_cache=True,
    )


def test_corrupt_blob_small_gzip_app(inputs):
    """A hand-made app whose gzip blob is damaged inside the deflate stream."""
    layer = TarBuilder().dir("srv/").file("srv/data", os.urandom(4096)).bytes()
    img = write_bad_app(inputs.tmp / "bad", layer)
    desc = img.layers[1]
    p = img.blob(desc["digest"])
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0x01
    p.write_bytes(bytes(data))
    assert_fails(
        inputs,
        [*good_args(inputs), "--image", f"{BAD_NAME}={img.ref}"],
        mentions=[[short(desc["digest"]), "layer 2", "layer 1"], [BAD_NAME, str(img.layout)]],
    )


def test_corrupt_base_blob(inputs):
    base = inputs.base
    p = base.blob(base.layers[0]["digest"])
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0xFF
    p.write_bytes(bytes(data))
    assert_fails(
        inputs,
        good_args(inputs),
        mentions=[[short(base.layers[0]["digest"])], ["base", str(base.layout)]],
    )


def test_corrupt_config_blob(inputs):
    img = write_bad_app(inputs.tmp / "bad", TarBuilder().file("srv/x", b"x").bytes())
    p = img.blob(img.config_digest)
    p.write_bytes(p.read_bytes().replace(b'"amd64"', b'"AMD64"'))
    assert_fails(
        inputs,
        ["--image", f"{BAD_NAME}={img.ref}"],
        mentions=[[short(img.config_digest), "config"], [BAD_NAME, str(img.layout)]],
    )


# --------------------------------------------------------------------------------------------
# no space left


def test_a_full_filesystem_is_named_and_leaves_nothing(inputs):
    """The output goes to a 64 KiB tmpfs (in a mount namespace of its own): the build fails
    with a message naming the output and what to free or move, exit 1, nothing left behind."""
    import subprocess

    from conftest import BOOTC_EMBED

    small = inputs.tmp / "small"
    small.mkdir()
    big = TarBuilder().dir("srv/").file("srv/data", os.urandom(256 << 10)).bytes()
    img = write_bad_app(inputs.tmp / "big", big)  # a valid app whose layer cannot fit
    script = (
        'mount -t tmpfs -o size=64k tmpfs "$1" && shift && "$@"; rc=$?; '
        'ls -A "$SMALL" > "$SMALL.left"; exit $rc'
    )
    proc = subprocess.run(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "sh",
            str(small),
            str(BOOTC_EMBED),
            "build",
            "--base",
            inputs.base.ref,
            "--image",
            f"{BAD_NAME}={img.ref}",
            "--output",
            f"oci:{small}/out:1",
            "--no-cache",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "SMALL": str(small)},
        timeout=300,
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"oci:{small}/out:1: No space left on device" in proc.stderr, proc.stderr
    assert "nothing was written at the output" in proc.stderr
    assert (inputs.tmp / "small.left").read_text() == ""  # no output, no staging leftovers


# --------------------------------------------------------------------------------------------
# wrong diff_id


def test_wrong_diff_id_in_app1_copy(inputs, test_images):
    app = inputs.tmp / "app1-copy"
    ocilayout.copy_layout(test_images.layout("app1"), app)
    img = ocilayout.read_image(app, "1")
    idx = 2
    cfg = json.loads(json.dumps(img.config))
    wrong = ocilayout.digest_of(b"not this layer")
    right = cfg["rootfs"]["diff_ids"][idx]
    cfg["rootfs"]["diff_ids"][idx] = wrong
    bad = ocilayout.replace_config(img, cfg)
    # only the diff_id is wrong: blobs are untouched and the manifest/config digests are right
    assert bad.layers == img.layers
    assert ocilayout.file_digest(bad.blob(bad.config_digest)) == bad.config_digest
    assert_fails(
        inputs,
        [*good_args(inputs), "--image", f"{BAD_NAME}={bad.ref}"],
        mentions=[
            [short(img.layers[idx]["digest"]), short(wrong), short(right), f"layer {idx + 1}"],
            [BAD_NAME, str(app)],
            ["diff"],
        ],
    )


def test_wrong_diff_id_small_app(inputs):
    img = write_bad_app(inputs.tmp / "bad", TarBuilder().file("srv/x", b"x").bytes())
    cfg = json.loads(json.dumps(img.config))
    cfg["rootfs"]["diff_ids"][0] = ocilayout.digest_of(b"something else")
    bad = ocilayout.replace_config(img, cfg)
    assert_fails(
        inputs,
        ["--image", f"{BAD_NAME}={bad.ref}"],
        mentions=[[short(img.layers[0]["digest"]), "layer 1"], ["diff"]],
    )


# --------------------------------------------------------------------------------------------
# entries that cannot be embedded


ESCAPES = {
    "dotdot-file": (TarBuilder().file("../escape", b"x"), "escape"),
    "dotdot-nested": (TarBuilder().dir("srv/").file("srv/a/../../../escape2", b"x"), "escape2"),
    "dotdot-dir": (TarBuilder().dir("../escapedir/"), "escapedir"),
    "hardlink-target": (
        TarBuilder().dir("srv/").hardlink("srv/shadow", "../../etc/shadow"),
        "shadow",
    ),
    "dotdot-whiteout": (TarBuilder().whiteout("../victim"), "victim"),
}


@pytest.mark.parametrize("case", list(ESCAPES))
def test_entry_escaping_layer_root(inputs, case):
    builder, needle = ESCAPES[case]
    img = write_bad_app(inputs.tmp / "bad", builder.bytes())
    assert_fails(
        inputs,
        [*good_args(inputs), "--image", f"{BAD_NAME}={img.ref}"],
        mentions=[
            [needle],
            [BAD_NAME, str(img.layout)],
            [short(img.layers[1]["digest"]), "layer 2"],
        ],
    )


NON_UTF8 = {
    "file-name": TarBuilder(fmt=tarfile.GNU_FORMAT).dir("srv/").file(b"srv/caf\xe9-latin1", b"x"),
    "dir-name": TarBuilder(fmt=tarfile.GNU_FORMAT).dir(b"srv-caf\xe9-latin1/"),
    "symlink-target": TarBuilder(fmt=tarfile.GNU_FORMAT)
    .dir("srv/")
    .symlink("srv/caf-link-latin1", b"caf\xe9-target"),
    "pax-raw-name": TarBuilder(fmt=tarfile.PAX_FORMAT)
    .dir("srv/")
    .file(b"srv/" + b"long-" * 30 + b"caf\xe9-latin1", b"x"),
}


@pytest.mark.parametrize("case", list(NON_UTF8))
def test_non_utf8_name(inputs, case):
    img = write_bad_app(inputs.tmp / "bad", NON_UTF8[case].bytes())
    assert_fails(
        inputs,
        [*good_args(inputs), "--image", f"{BAD_NAME}={img.ref}"],
        mentions=[
            ["latin1", "caf"],
            ["utf-8", "utf8"],
            [BAD_NAME, str(img.layout)],
        ],
    )


# --------------------------------------------------------------------------------------------
# references and names


def test_missing_tag(inputs):
    assert_fails(
        inputs,
        ["--image", f"{GOOD_NAME}=oci:{inputs.good.layout}:no-such-tag"],
        mentions=[["no-such-tag"]],
    )


def test_missing_layout(inputs):
    missing = inputs.tmp / "no-such-layout"
    assert_fails(
        inputs,
        ["--image", f"{GOOD_NAME}=oci:{missing}:1"],
        mentions=[[str(missing)]],
    )


def test_missing_base_tag(inputs):
    assert_fails(
        inputs,
        good_args(inputs),
        base=f"oci:{inputs.base.layout}:no-such-base-tag",
        mentions=[["no-such-base-tag"]],
    )


def test_oci_layout_without_name(inputs):
    """An OCI layout tag is not a full image name: ask for NAME=REF."""
    assert_fails(
        inputs,
        ["--image", inputs.good.ref],
        mentions=[["NAME="], [str(inputs.good.layout)]],
        status=2,
    )


@pytest.mark.parametrize("name", ["app1:1", "app1", "org/app1:1"])
def test_unqualified_name(inputs, name):
    assert_fails(
        inputs,
        ["--image", f"{name}={inputs.good.ref}"],
        mentions=[[name], ["qualified", "registry"]],
        status=2,
    )


def test_errors_are_one_clean_message(inputs):
    """The message is short and readable: no Python reprs of exceptions, no stack."""
    img = write_bad_app(inputs.tmp / "bad", TarBuilder().file("../escape", b"x").bytes())
    res: BootcEmbedResult = run_bootc_embed(
        "build",
        "--base",
        inputs.base.ref,
        "--image",
        f"{BAD_NAME}={img.ref}",
        "--output",
        f"oci:{inputs.tmp / 'out'}:1",
    )
    assert res.returncode == 1, res.describe()
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert 1 <= len(lines) <= 5, f"expected a short message:\n{res.describe()}"
    assert 'File "' not in res.stderr and "Error(" not in res.stderr, res.describe()
