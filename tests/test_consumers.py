"""The consumer test (issue 2): real podman and skopeo read what ``bootc-embed build`` wrote.

For each whiteout form (``xattr``, the default, and ``chardev``): embed app1, app2 (zstd input) and
app3 (hand-made tar quirks, uncompressed input) into the base; unpack the appended layers with GNU
tar into a directory, bind-mount it read-only, and point podman (a private ``--root``) at the store
as an additional image store. Each embedded image must be listed, run, and have exactly the file
tree of the same image pulled from the loopback registry into a separate podman root. skopeo must
copy each image back out with every layer equal to the app's original diff_id.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import BootcEmbedResult, run_bootc_embed
from support import images, ocilayout, trees
from support.containers import Podman, read_only_bind, remove_tree, unpack_layers

APPS = images.APP_IMAGES
LAYER_ANNOTATION = "io.bootc-embed.layer"
DEFAULT_STORE = "/usr/lib/containers/storage"

MODES = {
    "xattr": {"args": [], "store": DEFAULT_STORE},
    # the 0:0 form, and a store path other than the default
    "chardev": {
        "args": ["--whiteouts", "chardev", "--store-path", "/usr/share/containers/test-store"],
        "store": "/usr/share/containers/test-store",
    },
}


def build_args(test_images, registry, output: str, *extra: str) -> list[str]:
    """Build arguments; pass ``--no-cache`` in ``extra`` to make every layer from its input."""
    args = ["build", "--base", test_images.ref("base")]
    for short in APPS:
        args += ["--image", f"{registry[short]}={test_images.ref(short)}"]
    return [*args, "--output", output, "--json", *extra]


def expect_ok(res: BootcEmbedResult) -> dict:
    assert res.returncode == 0, f"bootc-embed build failed:\n{res.describe()}"
    return res.json()


@dataclass
class Embedded:
    mode: str
    output: ocilayout.Image
    summary: dict
    base_layers: int
    unpacked: Path
    store: Path  # absolute path of the store inside the unpacked tree
    layer_diff_ids: list[str]  # sha256 of each appended layer, as unpacked
    podman: Podman


@pytest.fixture(scope="module", params=list(MODES))
def embedded(request, session_dir, container_env, test_images, registry):
    mode = request.param
    spec = MODES[mode]
    out_dir = session_dir / f"out-{mode}"
    res = run_bootc_embed(
        *build_args(test_images, registry, f"oci:{out_dir}:1", "--no-cache", *spec["args"])
    )
    summary = expect_ok(res)
    out = ocilayout.read_image(out_dir, "1")
    base = test_images.image("base")
    n_base = len(base.layers)
    appended = out.layers[n_base:]
    assert appended, f"no layers appended: {out.layers}"

    unpacked = session_dir / f"unpacked-{mode}"
    unpacked.mkdir()
    try:
        diff_ids = unpack_layers([out.blob(d["digest"]) for d in appended], unpacked)
        store = unpacked / spec["store"].lstrip("/")
        assert store.is_dir(), f"store {spec['store']} not found in the unpacked layers"
        with read_only_bind(unpacked):
            podman = Podman(session_dir / f"consumer-{mode}", container_env, additional_store=store)
            try:
                yield Embedded(mode, out, summary, n_base, unpacked, store, diff_ids, podman)
            finally:
                podman.destroy()  # before the store goes away
    finally:
        remove_tree(unpacked)
        remove_tree(out_dir)


# --------------------------------------------------------------------------------------------
# the inputs really cover what the issue lists


@pytest.fixture(scope="module")
def input_layers(test_images) -> dict[str, list[tarfile.TarInfo]]:
    """Headers of every unique app layer (by diff_id), read once."""
    out: dict[str, list[tarfile.TarInfo]] = {}
    for short in APPS:
        img = test_images.image(short)
        for desc, diff_id in zip(img.layers, img.diff_ids, strict=True):
            if diff_id in out:
                continue
            stream = _ChunkReader(ocilayout.decompressed_stream(img.blob(desc["digest"])))
            with tarfile.open(fileobj=stream, mode="r|", errors="surrogateescape") as t:
                out[diff_id] = list(t)
    return out


class _ChunkReader(io.RawIOBase):
    def __init__(self, chunks) -> None:
        self._chunks = iter(chunks)
        self._buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while not self._buf:
            try:
                self._buf = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


def test_inputs_cover_every_required_case(input_layers):
    entries = [ti for layer in input_layers.values() for ti in layer]
    base = os.path.basename
    checks = {
        "opaque directory (.wh..wh..opq)": any(base(t.name) == ".wh..wh..opq" for t in entries),
        "whiteout of a file or directory": any(
            base(t.name).startswith(".wh.") and base(t.name) != ".wh..wh..opq" for t in entries
        ),
        "hardlink": any(t.islnk() for t in entries),
        "symlink": any(t.issym() for t in entries),
        "setuid file": any(t.isfile() and t.mode & stat.S_ISUID for t in entries),
        "non-root owner": any(t.uid not in (0,) for t in entries),
        "path > 100 chars": any(
            len(t.name.encode(errors="surrogateescape")) > 100 for t in entries
        ),
        "path > 255 chars": any(
            len(t.name.encode(errors="surrogateescape")) > 255 for t in entries
        ),
        "empty file": any(t.isfile() and t.size == 0 and ".wh." not in t.name for t in entries),
        "empty directory": any(t.name.rstrip("/").endswith("empty-dir") for t in entries),
        "20 MB file": any(t.isfile() and t.size >= 20 * 1024 * 1024 for t in entries),
        "char device": any(t.ischr() for t in entries),
        "block device": any(t.isblk() for t in entries),
        "fifo": any(t.isfifo() for t in entries),
        "xattr": any(k.startswith("SCHILY.xattr.") for t in entries for k in t.pax_headers),
    }
    missing = [k for k, ok in checks.items() if not ok]
    assert not missing, f"the test images no longer contain: {missing}"


def special_entry_count(layer: list[tarfile.TarInfo]) -> int:
    """Device nodes and fifos, and hardlinks to them: what the store leaves out of diff/."""
    special = {ti.name for ti in layer if ti.ischr() or ti.isblk() or ti.isfifo()}
    return len(special) + sum(1 for ti in layer if ti.islnk() and ti.linkname in special)


def test_summary_counts_left_out_entries(embedded: Embedded, input_layers):
    want = sum(special_entry_count(layer) for layer in input_layers.values())
    assert want > 0
    assert embedded.summary.get("entries_left_out") == want, (
        f"--json entries_left_out: {embedded.summary.get('entries_left_out')}, the input layers "
        f"hold {want} device nodes/fifos (and hardlinks to them)"
    )


# --------------------------------------------------------------------------------------------
# the output image itself


def expected_layer_ids(test_images) -> list[str]:
    """containers/image's layer ids for every app layer, deduplicated, in --image order."""
    seen: list[str] = []
    for short in APPS:
        parent = None
        for diff_id in test_images.image(short).diff_ids:
            hexid = diff_id.split(":", 1)[1]
            lid = (
                hexid
                if parent is None
                else hashlib.sha256(f"{parent}+{hexid}".encode()).hexdigest()
            )
            if lid not in seen:
                seen.append(lid)
            parent = lid
    return seen


def test_output_manifest_and_config(embedded: Embedded, test_images, registry):
    out, base = embedded.output, test_images.image("base")
    n = embedded.base_layers
    assert out.layers[:n] == base.layers, "base layer descriptors must pass through unchanged"
    for d in base.layers:
        assert ocilayout.file_digest(out.blob(d["digest"])) == d["digest"]

    appended = out.layers[n:]
    kinds = [d.get("annotations", {}).get(LAYER_ANNOTATION) for d in appended]
    # the test base has no storage.conf: a configuration layer follows the metadata layer
    tail = ["metadata", "config"] if kinds[-1:] == ["config"] else ["metadata"]
    assert kinds[-len(tail) :] == tail and set(kinds[: -len(tail)]) == {"app"}, kinds
    ids = [d["annotations"].get("io.bootc-embed.layer.id") for d in appended[: -len(tail)]]
    assert ids == expected_layer_ids(test_images), "app layers: one per unique layer id, in order"
    for d in appended:
        assert d["annotations"].get("io.bootc-embed.whiteouts") == embedded.mode

    cfg = out.config
    assert cfg["rootfs"]["diff_ids"][:n] == base.diff_ids
    assert cfg["rootfs"]["diff_ids"][n:] == embedded.layer_diff_ids, (
        "config diff_ids must be the sha256 of the appended layers as they decompress"
    )
    assert cfg["config"]["Labels"].get("containers.bootc") == "1", "base labels must be kept"
    real_history = [h for h in cfg.get("history", []) if not h.get("empty_layer")]
    assert len(real_history) == len(cfg["rootfs"]["diff_ids"])

    listed = json.loads(out.manifest["annotations"]["io.bootc-embed.images"])
    assert listed == [
        {"name": registry[s], "digest": test_images.image(s).manifest_digest} for s in APPS
    ]
    assert embedded.summary["manifest_digest"] == out.manifest_digest


# --------------------------------------------------------------------------------------------
# the unpacked store


def test_store_has_no_oci_whiteouts_or_devices(embedded: Embedded):
    whiteouts, opaque_y, chardev_whiteouts, problems = 0, 0, 0, []
    for dirpath, dirnames, filenames in os.walk(embedded.store):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, embedded.unpacked)
            st = os.lstat(p)
            if name.startswith(".wh."):
                problems.append(f"OCI whiteout name in the store: {rel}")
            if stat.S_ISCHR(st.st_mode):
                if embedded.mode == "chardev" and st.st_rdev == 0:
                    chardev_whiteouts += 1
                else:
                    problems.append(f"device node in the store: {rel} rdev={st.st_rdev}")
            elif stat.S_ISBLK(st.st_mode) or stat.S_ISFIFO(st.st_mode) or stat.S_ISSOCK(st.st_mode):
                problems.append(f"special file in the store: {rel}")
            xattrs = set(os.listxattr(p, follow_symlinks=False))
            if "trusted.overlay.whiteout" in xattrs:
                whiteouts += 1
                parent_opaque = os.getxattr(dirpath, "trusted.overlay.opaque")
                if not (stat.S_ISREG(st.st_mode) and st.st_size == 0 and parent_opaque == b"x"):
                    problems.append(f"bad xattr whiteout {rel} (parent opaque={parent_opaque!r})")
                if embedded.mode != "xattr":
                    problems.append(f"xattr whiteout in {embedded.mode} mode: {rel}")
            if (
                "trusted.overlay.opaque" in xattrs
                and os.getxattr(p, "trusted.overlay.opaque", follow_symlinks=False) == b"y"
            ):
                opaque_y += 1
    assert not problems, "\n".join(problems[:40])
    if embedded.mode == "xattr":
        assert whiteouts >= 10, f"expected app1/app3 whiteouts as xattr files, found {whiteouts}"
    else:
        assert chardev_whiteouts >= 10, f"expected 0:0 whiteouts, found {chardev_whiteouts}"
    assert opaque_y >= 2, f"expected opaque directories (app1 opq, app3 opq2), found {opaque_y}"


# --------------------------------------------------------------------------------------------
# podman on the host


def test_podman_images_lists_every_name(
    embedded: Embedded, registry, test_images, reference_podman
):
    names = embedded.podman.image_names()
    missing = [registry[s] for s in APPS if registry[s] not in names]
    assert not missing, f"podman images does not list {missing}; it lists {sorted(names)}"
    for short in APPS:
        info = embedded.podman.json("image", "inspect", registry[short])[0]
        ref = reference_podman.json("image", "inspect", registry[short])[0]
        assert info["Digest"] == test_images.image(short).manifest_digest == ref["Digest"]
        assert info["Id"] == ref["Id"], f"{short}: image id differs from a real pull"
        assert info["RootFS"]["Layers"] == ref["RootFS"]["Layers"]
        assert info["Config"].get("Labels") == ref["Config"].get("Labels")


@pytest.mark.parametrize("app", APPS)
def test_podman_run(embedded: Embedded, registry, app):
    res = embedded.podman("run", "--rm", "--network", "none", registry[app], "true", check=False)
    assert res.returncode == 0, f"podman run {registry[app]} true failed:\n{res.stderr}"


def test_podman_run_sees_whiteouts_and_opaque_dirs(embedded: Embedded, registry):
    script = (
        "set -e; cat /opt/app/opq/new; ls -A /opt/app/opq; "
        "for p in /opt/app/delme /opt/app/olddir /opt/app/keepdir/gone /usr/share/doc "
        "/opt/app/opq/lower1 /opt/app/opq/lowerdir /usr/bin/tac /opt/app/hl-c; "
        'do if [ -e "$p" ] || [ -L "$p" ]; then echo "PRESENT $p"; fi; done; '
        "cat /opt/app/keepdir/keep /opt/app/replaced /opt/app/dir2file; id -u"
    )
    res = embedded.podman("run", "--rm", "--network", "none", registry["app1"], "sh", "-c", script)
    assert res.stdout.split("\n") == [
        "new",
        "new",
        "keep",
        "upper",
        "now-a-file",
        "1000",
        "",
    ], f"unexpected view inside the container:\n{res.stdout}\n{res.stderr}"


MUST_BE_ABSENT = {
    "app1": [
        "opt/app/delme",
        "opt/app/olddir",
        "opt/app/keepdir/gone",
        "opt/app/opq/lower1",
        "opt/app/opq/lowerdir",
        "opt/app/dir2file/x",
        "opt/app/hl-c",
        "opt/app/empty-tree/a/b",
        "usr/share/doc",
        "usr/share/man",
        "usr/bin/tac",
    ],
    "app2": ["usr/share/doc", "usr/share/man"],
    "app3": ["srv/wdir/x", "srv/opq2/stale", "srv/opq2/also-stale"],
}
MUST_BE_PRESENT = {
    "app1": ["opt/app/opq/new", "opt/app/keepdir/keep", "opt/app/replaced", "usr/bin/true"],
    "app2": ["var/www/html/health", "var/www/html/version", "usr/sbin/nginx"],
    "app3": ["srv/wdir/y", "srv/opq2/fresh", "srv/cleaned", "srv/noparent/deep/file"],
}


@pytest.fixture(scope="module")
def embedded_trees(embedded: Embedded, registry):
    cache: dict[str, dict] = {}

    class Trees:
        def __getitem__(self, short: str):
            if short not in cache:
                from conftest import mounted_tree

                cache[short] = mounted_tree(embedded.podman, registry[short])
            return cache[short]

    return Trees()


@pytest.mark.parametrize("app", APPS)
def test_image_tree_matches_registry_pull(embedded: Embedded, embedded_trees, reference_trees, app):
    actual = embedded_trees[app]
    expected, left_out = trees.without_special_files(reference_trees[app])

    absent = [p for p in MUST_BE_ABSENT[app] if p in actual]
    present = [p for p in MUST_BE_PRESENT[app] if p not in actual]
    assert not absent, f"{app}: deleted/hidden paths visible through the store: {absent}"
    assert not present, f"{app}: paths missing through the store: {present}"
    specials = sorted(p for p, e in actual.items() if e.type in trees.SPECIAL_TYPES)
    assert not specials, f"{app}: device nodes/fifos visible through the store: {specials[:20]}"
    assert not actual.phantoms, f"{app}: names listed but not there: {actual.phantoms[:20]}"
    # podman's own pull of app3 shows srv/opq2/stale this way (its 0:0 whiteout inside a
    # directory the same layer made opaque); the store drops such whiteouts, as it should
    phantoms = reference_trees[app].phantoms
    assert set(phantoms) <= set(MUST_BE_ABSENT[app]), f"reference phantoms: {phantoms}"

    diff = trees.differences(expected, actual)
    assert not diff, (
        f"{app} ({embedded.mode} whiteouts): file tree through the store differs from a registry "
        f"pull (device nodes/fifos left out on purpose: {len(left_out)}).\n"
        + trees.format_differences(diff)
    )


# --------------------------------------------------------------------------------------------
# skopeo: export out of the store


@pytest.mark.parametrize("app", APPS)
def test_skopeo_copy_out_gives_original_diff_ids(
    embedded: Embedded, session_dir, test_images, registry, app
):
    dest = session_dir / f"export-{embedded.mode}-{app}"
    try:
        embedded.podman.skopeo_copy(embedded.podman.storage_ref(registry[app]), f"oci:{dest}:1")
        exported = ocilayout.read_image(dest, "1")
        original = test_images.image(app)
        got = [ocilayout.uncompressed_digest(exported.blob(d["digest"])) for d in exported.layers]
        bad = [
            f"layer {i}: exported {g}, original diff_id {w}"
            for i, (g, w) in enumerate(zip(got, original.diff_ids, strict=False))
            if g != w
        ]
        assert len(got) == len(original.diff_ids), f"{len(got)} layers exported"
        assert not bad, f"{app}: tar-split does not rebuild the original layers:\n" + "\n".join(bad)
        assert exported.config_digest == original.config_digest, "config must come back unchanged"
    finally:
        remove_tree(dest)


# --------------------------------------------------------------------------------------------
# determinism


def test_build_twice_same_manifest_digest(session_dir, test_images, registry):
    """Two builds from the inputs (no layer cache) give the same bytes; so does a cached one."""
    outs = [session_dir / "twice-a", session_dir / "twice-b"]
    archive = session_dir / "twice.tar"
    try:
        summaries = [
            expect_ok(
                run_bootc_embed(*build_args(test_images, registry, f"oci:{o}:1", "--no-cache"))
            )
            for o in outs
        ]
        images_ = [ocilayout.read_image(o, "1") for o in outs]
        assert summaries[0]["manifest_digest"] == summaries[1]["manifest_digest"]
        assert images_[0].manifest_digest == images_[1].manifest_digest
        assert images_[0].manifest_digest == summaries[0]["manifest_digest"]
        blobs = [sorted(os.listdir(o / "blobs" / "sha256")) for o in outs]
        assert blobs[0] == blobs[1]
        # the same output through the other transport, twice: filling the cache, then from it
        for _ in range(2):
            s3 = expect_ok(
                run_bootc_embed(*build_args(test_images, registry, f"oci-archive:{archive}:1"))
            )
            assert s3["manifest_digest"] == summaries[0]["manifest_digest"]
            archive.unlink()
    finally:
        for o in outs:
            remove_tree(o)
        archive.unlink(missing_ok=True)
