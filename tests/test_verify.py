"""``bootc-embed verify``: good images pass, each defect class is found in a purpose-built image.

The good images are real builds (``bootc_embed.build``) of the pure-Python demo apps into small
bases; each broken image is a copy of a good output with ONE appended layer rewritten by
tests/verify_support.py (standard library only), with every digest that depends on it fixed,
so that only the defect differs.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from verify_support import (
    STORE,
    Layout,
    Member,
    copy_layout,
    dirs,
    edit_json,
    edit_layer,
    entry,
    find,
    storage_conf,
    tar_bytes,
    write_base,
    write_image,
    write_recipe_image,
)

from bootc_embed import BuildOptions, build
from bootc_embed._demo import APP1_NAME, APP2_NAME, SampleImages, write_sample_images
from bootc_embed._verify import VerifyResult, verify_image
from bootc_embed.cli import main

STORE_ABS = "/" + STORE
Edit = Callable[[list[Member]], list[Member] | None]
NEW_KERNEL = "6.8.9-300.fc40.x86_64"
OLD_KERNEL = "6.1.0-13-amd64"


def _build(base: str, images: list[str], out: Path, **options: Any) -> Path:
    build(
        BuildOptions(
            base=base,
            images=images,
            output=f"oci:{out}:latest",
            cache=False,
            **options,
        )
    )
    return out


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> SampleImages:
    return write_sample_images(tmp_path_factory.mktemp("samples"))


@pytest.fixture(scope="module")
def good(samples: SampleImages, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both demo apps embedded into a base whose storage.conf lists the store, kernel 6.8."""
    d = tmp_path_factory.mktemp("good")
    base = write_base(d / "base", conf=storage_conf([STORE_ABS]), kernel=NEW_KERNEL)
    return _build(base.ref, samples.image_args, d / "out")


@pytest.fixture
def broken(good: Path, tmp_path: Path) -> Layout:
    """A copy of the good output, to break."""
    return copy_layout(good, tmp_path / "broken")


def errors(result: VerifyResult) -> set[str]:
    return {f.check for f in result.findings if f.severity == "error"}


def warnings(result: VerifyResult) -> set[str]:
    return {f.check for f in result.findings if f.severity == "warning"}


def only_error(result: VerifyResult, check: str) -> list[str]:
    """The messages of ``check``'s errors; asserts the image fails for that reason alone."""
    assert result.exit_code == 1, result.to_json()
    assert errors(result) == {check}, result.to_json()
    return [f.message for f in result.findings if f.check == check]


def diff_of(layout: Layout, i: int) -> str:
    return f"{STORE}/overlay/{layout.layer_id(i)}/diff"


# --------------------------------------------------------------------------------------------
# good images


def test_good_image_is_clean(good: Path) -> None:
    result = verify_image(f"oci:{good}:latest")
    assert result.findings == [], result.to_json()
    assert result.exit_code == 0
    assert result.images == [APP1_NAME, APP2_NAME]
    assert result.store == STORE_ABS
    assert result.store_layers == 4
    assert result.kernel == NEW_KERNEL
    assert result.storage_conf == "/etc/containers/storage.conf"
    # 3 base layers... read once, and the 4 app layers once more for the tar-split digests
    layers = Layout(good).layers
    apps = sum(
        1 for d in layers if (d.get("annotations") or {}).get("io.bootc-embed.layer") == "app"
    )
    assert result.layers_read == len(layers) + apps


def test_demo_base_without_storage_conf_warns(samples: SampleImages, tmp_path: Path) -> None:
    """The demo base has no storage.conf; with --no-storage-conf nothing lists the store."""
    out = _build(samples.base, samples.image_args, tmp_path / "out", storage_conf=False)
    result = verify_image(f"oci:{out}:latest")
    assert result.exit_code == 4, result.to_json()
    assert errors(result) == set()
    assert warnings(result) == {"host.storage-conf"}
    # no /usr/lib/modules in the demo base: said, but not a warning
    assert {f.check for f in result.findings if f.severity == "info"} == {"host.kernel"}


def test_demo_base_with_the_storage_conf_build_writes(
    samples: SampleImages, tmp_path: Path
) -> None:
    """By default build writes /etc/containers/storage.conf into a base that has none."""
    out = _build(samples.base, samples.image_args, tmp_path / "out")
    result = verify_image(f"oci:{out}:latest")
    assert result.exit_code == 0, result.to_json()
    assert result.storage_conf == "/etc/containers/storage.conf"


def test_storage_conf_that_does_not_list_the_store(samples: SampleImages, tmp_path: Path) -> None:
    conf = storage_conf(["/usr/share/other/storage"])
    base = write_base(
        tmp_path / "base",
        conf=conf,
        conf_path="usr/share/containers/storage.conf",
        kernel=NEW_KERNEL,
    )
    out = _build(base.ref, samples.image_args, tmp_path / "out", storage_conf=False)
    result = verify_image(f"oci:{out}:latest")
    assert result.exit_code == 4, result.to_json()
    assert warnings(result) == {"host.storage-conf"}
    (message,) = [f.message for f in result.findings]
    assert "/usr/share/containers/storage.conf does not list /usr/lib/containers/storage" in message


def test_oci_archive(samples: SampleImages, tmp_path: Path) -> None:
    base = write_base(tmp_path / "base", conf=storage_conf([STORE_ABS]), kernel=NEW_KERNEL)
    archive = tmp_path / "out.tar"
    build(
        BuildOptions(
            base=base.ref,
            images=samples.image_args,
            output=f"oci-archive:{archive}:latest",
            cache=False,
        )
    )
    result = verify_image(f"oci-archive:{archive}:latest")
    assert result.exit_code == 0, result.to_json()
    assert result.images == [APP1_NAME, APP2_NAME]


# --------------------------------------------------------------------------------------------
# store consistency


def _remove(name: str) -> Edit:
    def edit(items: list[Member]) -> list[Member]:
        return [m for m in items if m[0].name != name]

    return edit


def test_missing_lock_file(broken: Layout) -> None:
    meta = broken.layer_index("metadata")
    edit_layer(broken, meta, _remove(f"{STORE}/overlay-layers/layers.lock"))
    (message,) = only_error(verify_image(broken.ref), "store.lock-files")
    assert "overlay-layers/layers.lock is missing" in message


def test_broken_link_file(broken: Layout) -> None:
    i = broken.layer_index("app", APP1_NAME, 0)
    lid = broken.layer_id(i)

    def edit(items: list[Member]) -> None:
        k = find(items, lambda n: n == f"{STORE}/overlay/{lid}/link")
        items[k] = (items[k][0], b"not-a-link-id\n")

    edit_layer(broken, i, edit)
    result = verify_image(broken.ref)
    assert result.exit_code == 1
    link = [f for f in result.findings if f.check == "store.link"]
    assert link and link[0].layer == lid and link[0].image == APP1_NAME
    assert "not 26 characters of A-Z2-7" in link[0].message


def test_wrong_lower(broken: Layout) -> None:
    i = broken.layer_index("app", APP1_NAME, 1)  # app1's second layer: one ancestor

    def edit(items: list[Member]) -> None:
        k = find(items, lambda n: n.endswith("/lower"))
        items[k] = (items[k][0], b"l/AAAAAAAAAAAAAAAAAAAAAAAAAA")

    edit_layer(broken, i, edit)
    (message,) = only_error(verify_image(broken.ref), "store.lower")
    assert "'l/AAAAAAAAAAAAAAAAAAAAAAAAAA'" in message


def test_broken_l_symlink(broken: Layout) -> None:
    i = broken.layer_index("app", APP2_NAME, 0)
    lid = broken.layer_id(i)

    def edit(items: list[Member]) -> None:
        k = find(items, lambda n: n.startswith(f"{STORE}/overlay/l/"))
        items[k][0].linkname = "../0000/diff"

    edit_layer(broken, i, edit)
    result = verify_image(broken.ref)
    (message,) = only_error(result, "store.l-symlink")
    assert "points to '../0000/diff'" in message and f"'../{lid}/diff'" in message


def test_duplicate_image_names(broken: Layout) -> None:
    def change(images: list[dict[str, Any]]) -> None:
        images[1]["names"] = list(images[0]["names"])

    edit_layer(
        broken,
        broken.layer_index("metadata"),
        edit_json(f"{STORE}/overlay-images/images.json", change),
    )
    (message,) = only_error(verify_image(broken.ref), "store.names")
    assert f"name {APP1_NAME} is given to images" in message


def test_missing_layer_record(broken: Layout) -> None:
    """An image whose top layer has no record (and a child whose parent is gone)."""
    i = broken.layer_index("app", APP1_NAME, 2)
    lid = broken.layer_id(i)

    def change(layers: list[dict[str, Any]]) -> None:
        layers[:] = [r for r in layers if r["id"] != lid]

    edit_layer(
        broken,
        broken.layer_index("metadata"),
        edit_json(f"{STORE}/overlay-layers/layers.json", change),
    )
    result = verify_image(broken.ref)
    assert "store.layer-missing" in errors(result)
    missing = [f for f in result.findings if f.check == "store.layer-missing"]
    assert missing[0].image == APP1_NAME and missing[0].layer == lid


def test_corrupt_big_data(broken: Layout) -> None:
    def edit(items: list[Member]) -> None:
        # app1's config: the big-data file named "=" + base64("sha256:<image id>")
        k = find(items, lambda n: "/overlay-images/" in n and "/=c2hhMjU2" in n)
        data = bytearray(items[k][1])
        data[-2] ^= 0x01
        items[k] = (items[k][0], bytes(data))

    edit_layer(broken, broken.layer_index("metadata"), edit)
    result = verify_image(broken.ref)
    messages = only_error(result, "store.big-data")
    assert any("images.json says" in m for m in messages)


def test_diff_file_altered(broken: Layout) -> None:
    """Same size, other bytes: the tar-split's CRC no longer matches diff/."""
    i = broken.layer_index("app", APP1_NAME, 0)
    diff = diff_of(broken, i)

    def edit(items: list[Member]) -> None:
        k = find(items, lambda n: n == f"{diff}/bin/app")
        items[k] = (items[k][0], items[k][1].replace(b"hello", b"HELLO"))

    edit_layer(broken, i, edit)
    (message,) = only_error(verify_image(broken.ref), "store.tar-split")
    assert "diff/bin/app does not match its tar-split record" in message


def test_tar_split_segment_altered(broken: Layout) -> None:
    """Every file matches its CRC, but a raw header in the tar-split was changed: only the
    reassembled tar's sha256 (the second pass) can tell."""
    i = broken.layer_index("app", APP1_NAME, 2)
    lid = broken.layer_id(i)

    def edit(items: list[Member]) -> None:
        k = find(items, lambda n: n.endswith(f"{lid}.tar-split.gz"))
        lines = gzip.decompress(items[k][1]).decode().splitlines()
        rec = json.loads(lines[0])
        assert rec["type"] == 2
        raw = bytearray(base64.b64decode(rec["payload"]))
        raw[100] ^= 0x01  # the mode field of the first header
        rec["payload"] = base64.b64encode(bytes(raw)).decode()
        lines[0] = json.dumps(rec)
        items[k] = (items[k][0], gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0))

    edit_layer(broken, i, edit)
    (message,) = only_error(verify_image(broken.ref), "store.tar-split")
    assert "reassemble to" in message and "layers.json says" in message


# --------------------------------------------------------------------------------------------
# bootc import rules


def _add(*new: Member, after: str | None = None) -> Edit:
    def edit(items: list[Member]) -> None:
        k = find(items, lambda n: n == after) + 1 if after else len(items)
        items[k:k] = list(new)

    return edit


def test_device_node(broken: Layout) -> None:
    i = broken.layer_index("app", APP1_NAME, 0)
    diff = diff_of(broken, i)
    node = entry(f"{diff}/dev/tty", tarfile.CHRTYPE, devmajor=5, devminor=0, mode=0o666)
    edit_layer(broken, i, _add((node, b""), after=f"{diff}/bin/app"))
    (message,) = only_error(verify_image(broken.ref), "import.device")
    assert "is a character device: ostree refuses" in message
    assert "--whiteouts xattr" not in message


def test_chardev_whiteouts(good: Path, samples: SampleImages, tmp_path: Path) -> None:
    """A store built with --whiteouts chardev cannot go through ostree: error, with the fix."""
    base = write_base(tmp_path / "base", conf=storage_conf([STORE_ABS]), kernel=NEW_KERNEL)
    out = _build(base.ref, samples.image_args, tmp_path / "out", whiteouts="chardev")
    messages = only_error(verify_image(f"oci:{out}:latest"), "import.device")
    assert len(messages) == 3  # bin/old-tool, usr/share/app/old-dir and remove-me.txt
    assert all("--whiteouts xattr" in m for m in messages)


def test_whiteout_name_under_the_store(broken: Layout) -> None:
    i = broken.layer_index("app", APP2_NAME, 0)
    diff = diff_of(broken, i)
    edit_layer(broken, i, _add((entry(f"{diff}/etc/.wh.foo"), b"")))
    result = verify_image(broken.ref)
    (message,) = only_error(result, "import.whiteout-name")
    assert "deletes foo" in message
    (finding,) = [f for f in result.findings if f.check == "import.whiteout-name"]
    assert finding.path == f"/{diff}/etc/.wh.foo" and finding.image == APP2_NAME


def test_non_utf8_name(broken: Layout) -> None:
    i = broken.layer_index("app", APP1_NAME, 1)
    diff = diff_of(broken, i)
    bad = entry(f"{diff}/etc/caf\udce9.conf")  # b"caf\xe9": Latin-1, not UTF-8
    edit_layer(broken, i, _add((bad, b"x\n")))
    result = verify_image(broken.ref)
    (message,) = only_error(result, "import.utf8")
    assert "not UTF-8" in message and "caf\\xe9.conf" in message


def test_hardlink_to_missing_target(broken: Layout) -> None:
    i = broken.layer_index("app", APP1_NAME, 2)
    diff = diff_of(broken, i)
    link = entry(f"{diff}/etc/linked", tarfile.LNKTYPE, linkname=f"{diff}/etc/not-there")
    edit_layer(broken, i, _add((link, b"")))
    (message,) = only_error(verify_image(broken.ref), "import.hardlink")
    assert "/etc/not-there, which is not an earlier regular file" in message


def test_file_under_var(broken: Layout) -> None:
    i = broken.layer_index("app", APP2_NAME, 0)
    edit_layer(
        broken,
        i,
        _add(*dirs("var/lib/app"), (entry("var/lib/app/state"), b"1\n")),
    )
    result = verify_image(broken.ref)
    messages = only_error(result, "import.var")
    assert any(m.startswith("/var/lib/app/state is under /var") for m in messages)


def test_empty_xattr(broken: Layout) -> None:
    i = broken.layer_index("app", APP1_NAME, 0)
    diff = diff_of(broken, i)

    def edit(items: list[Member]) -> None:
        k = find(items, lambda n: n == f"{diff}/etc/app.conf")
        items[k][0].pax_headers = {**items[k][0].pax_headers, "SCHILY.xattr.user.note": ""}

    edit_layer(broken, i, edit)
    (message,) = only_error(verify_image(broken.ref), "import.empty-xattr")
    assert "xattr user.note has an empty value" in message


# --------------------------------------------------------------------------------------------
# host readiness


def test_old_kernel_with_xattr_whiteouts(samples: SampleImages, tmp_path: Path) -> None:
    base = write_base(tmp_path / "base", conf=storage_conf([STORE_ABS]), kernel=OLD_KERNEL)
    out = _build(base.ref, samples.image_args, tmp_path / "out")
    result = verify_image(f"oci:{out}:latest")
    assert result.exit_code == 4, result.to_json()
    assert errors(result) == set() and warnings(result) == {"host.kernel"}
    (message,) = [f.message for f in result.findings]
    assert OLD_KERNEL in message and "older than 6.7" in message
    assert APP1_NAME in message and APP2_NAME not in message  # only app1 deletes files


def test_old_kernel_without_whiteouts(samples: SampleImages, tmp_path: Path) -> None:
    base = write_base(tmp_path / "base", conf=storage_conf([STORE_ABS]), kernel=OLD_KERNEL)
    out = _build(base.ref, [f"{samples.app2_name}={samples.app2}"], tmp_path / "out")
    result = verify_image(f"oci:{out}:latest")
    assert result.exit_code == 0, result.to_json()
    assert result.kernel == OLD_KERNEL


# --------------------------------------------------------------------------------------------
# the Containerfile recipe's vfs store


def test_recipe_vfs_store(tmp_path: Path) -> None:
    image = write_recipe_image(tmp_path / "recipe")
    result = verify_image(image.ref)
    assert result.exit_code == 1
    assert errors(result) == {"store.vfs", "import.whiteout-name"}, result.to_json()
    (vfs,) = [f for f in result.findings if f.check == "store.vfs"]
    assert vfs.path == "/usr/share/containers/storage"
    (wh,) = [f for f in result.findings if f.check == "import.whiteout-name"]
    assert wh.path is not None and wh.path.endswith("/vfs/dir/" + "a" * 64 + "/etc/.wh.foo")
    assert [(s.path, s.driver) for s in result.stores] == [("/usr/share/containers/storage", "vfs")]
    # the store at the default path is missing; reported, but the vfs store is the error
    assert "store.missing" in warnings(result)
    # pointed at the recipe's store path, the same two errors and a missing overlay store
    at = verify_image(image.ref, store_path="/usr/share/containers/storage")
    assert errors(at) == {"store.vfs", "import.whiteout-name", "store.missing"}


# --------------------------------------------------------------------------------------------
# command line


def test_cli_exit_codes_and_json(good: Path, broken: Layout, tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(main, ["verify", f"oci:{good}:latest", "--json"])
    assert ok.exit_code == 0, ok.output
    doc = json.loads(ok.output)
    assert doc["findings"] == []
    assert doc["summary"]["status"] == "ok" and doc["summary"]["errors"] == 0
    assert doc["summary"]["images"] == [APP1_NAME, APP2_NAME]
    assert doc["store"] == STORE_ABS

    edit_layer(
        broken, broken.layer_index("metadata"), _remove(f"{STORE}/overlay-images/images.lock")
    )
    bad = runner.invoke(main, ["verify", broken.ref, "--json"])
    assert bad.exit_code == 1
    doc = json.loads(bad.output)
    (finding,) = doc["findings"]
    assert set(finding) == {"severity", "check", "message", "path"}
    assert finding["severity"] == "error" and finding["check"] == "store.lock-files"
    assert doc["summary"]["errors"] == 1

    text = runner.invoke(main, ["verify", broken.ref])
    assert text.exit_code == 1
    assert "error: [store.lock-files]" in text.output and "1 errors, 0 warnings" in text.output

    missing = runner.invoke(main, ["verify", f"oci:{tmp_path / 'nothing'}:latest"])
    assert missing.exit_code == 1 and "Traceback" not in missing.output


def test_cli_warnings_only_exit_4(samples: SampleImages, tmp_path: Path) -> None:
    out = _build(samples.base, samples.image_args, tmp_path / "out", storage_conf=False)
    result = CliRunner().invoke(main, ["verify", f"oci:{out}:latest"])
    assert result.exit_code == 4, result.output
    assert "warning: [host.storage-conf]" in result.output


# --------------------------------------------------------------------------------------------
# the merged view


def test_diff_content_out_of_order_still_reassembles(broken: Layout) -> None:
    """podman does not care in which order diff/ files come; the tar-split check spools
    content that streams past before the tar-split needs it."""
    i = broken.layer_index("app", APP1_NAME, 0)
    diff = diff_of(broken, i)

    def edit(items: list[Member]) -> None:
        a = find(items, lambda n: n == f"{diff}/bin/app")
        b = find(items, lambda n: n == f"{diff}/etc/app.conf")
        items[a], items[b] = items[b], items[a]

    edit_layer(broken, i, edit)
    result = verify_image(broken.ref)
    assert result.findings == [], result.to_json()


def test_later_layer_whiteout_deletes_from_the_store(broken: Layout) -> None:
    """A layer added on top (say, by a derived Containerfile build) that deletes a lock file:
    OCI whiteout semantics apply, and a '.wh.' name inside the store is itself an error."""
    broken.append_layer(
        tar_bytes(
            [
                *dirs(f"{STORE}/overlay-layers"),
                (entry(f"{STORE}/overlay-layers/.wh.layers.lock"), b""),
            ]
        )
    )
    result = verify_image(broken.ref)
    assert errors(result) == {"store.lock-files", "import.whiteout-name"}, result.to_json()


def test_later_layer_opaque_directory_empties_the_store(broken: Layout) -> None:
    broken.append_layer(
        tar_bytes(
            [
                *dirs(f"{STORE}/overlay-images"),
                (entry(f"{STORE}/overlay-images/.wh..wh..opq"), b""),
            ]
        )
    )
    result = verify_image(broken.ref)
    assert {"store.lock-files", "store.records"} <= errors(result), result.to_json()
    messages = [f.message for f in result.findings if f.check == "store.records"]
    assert any("overlay-images/images.json is missing" in m for m in messages)


def test_a_store_inside_an_app_is_the_apps(broken: Layout) -> None:
    """An app that carries a vfs store of its own (podman in a container) is not a store of
    the host: nothing to report."""
    i = broken.layer_index("app", APP2_NAME, 0)
    own = f"{diff_of(broken, i)}/var/lib/containers/storage"
    edit_layer(
        broken,
        i,
        _add(*dirs(f"{own}/vfs-images")[-5:], (entry(f"{own}/vfs-images/images.json"), b"[]")),
    )
    result = verify_image(broken.ref)
    assert result.findings == [], result.to_json()
    assert [s.path for s in result.stores] == [STORE_ABS]


# --------------------------------------------------------------------------------------------
# a store podman wrote itself


def _podman_store_image(
    session_dir: Path, env: dict[str, str], name: str, layers: list[list[Member]]
) -> Layout:
    """An image whose last layer holds the store podman makes when it pulls ``layers``
    (its overlay/, overlay-layers/ and overlay-images/, as they are on disk)."""
    from support.containers import Podman, remove_tree

    work = session_dir / f"verify-{name}"
    app = write_image(work / "app", layers, tag="1", labels={})
    pm = Podman(work / "root", env)
    try:
        pm.skopeo_copy(app.ref, pm.storage_ref(f"quay.io/test/{name}:1"))
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tf:
            for info, _ in dirs(STORE):
                tf.addfile(info)
            for top in ("overlay", "overlay-layers", "overlay-images"):
                tf.add(
                    pm.root / top,
                    arcname=f"{STORE}/{top}",
                    filter=lambda ti: None if ti.name.endswith(".has-mount-program") else ti,
                )
    finally:
        pm.destroy()
        remove_tree(work / "root")
    image = write_base(work / "image", conf=storage_conf([STORE_ABS]), kernel=NEW_KERNEL)
    image.append_layer(out.getvalue())
    return image


def test_store_written_by_podman(session_dir: Path, container_env: dict[str, str]) -> None:
    """podman's own store (random link ids, its tar-splits, a hardlink whose name sorts
    before its target so that diff/ holds the tar-split's file as a hardlink) passes."""
    image = _podman_store_image(
        session_dir,
        container_env,
        "podman-made",
        [
            [
                *dirs("srv/data"),
                (entry("srv/data/z-data"), b"shared content\n"),
                (entry("srv/data/a-link", tarfile.LNKTYPE, linkname="srv/data/z-data"), b""),
                (entry("srv/data/sym", tarfile.SYMTYPE, linkname="z-data"), b""),
            ],
            [*dirs("etc"), (entry("etc/app.conf"), b"x=1\n")],
        ],
    )
    result = verify_image(image.ref)
    assert result.findings == [], result.to_json()
    assert result.images == ["quay.io/test/podman-made:1"] and result.store_layers == 2


def test_store_written_by_podman_with_whiteouts(
    session_dir: Path, container_env: dict[str, str]
) -> None:
    """podman writes whiteouts as 0:0 character devices: ostree refuses them."""
    image = _podman_store_image(
        session_dir,
        container_env,
        "podman-whiteouts",
        [
            [*dirs("etc"), (entry("etc/old.conf"), b"old\n"), (entry("etc/keep"), b"k\n")],
            [*dirs("etc"), (entry("etc/.wh.old.conf"), b"")],
        ],
    )
    result = verify_image(image.ref)
    (message,) = only_error(result, "import.device")
    assert "/diff/etc/old.conf" in message and "is a character device inside the store" in message
