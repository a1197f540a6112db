"""Hostile and odd inputs (issue 14 items 3, 9-12): symlinked and hard-linked input blobs, an
app with more layers than the store can chain, credentials inside a reference, the permissions
of what is written, and a ``--previous`` image whose annotations lie.

Each case asserts the exit status, the message and what is at the output; what fails today is
``xfail(strict=True)`` with the issue's item.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest
from support.faultimages import APP1, FaultImages
from support.faultrun import Build, Outcome, Sandbox
from support.leftovers import layout_problems, tags, temporaries
from unit_support.oci import info, sha256, tar_of, write_layout

from bootc_embed._demo import host_architecture


def build(box: Sandbox, args: list[str], *extra: str, name: str = "out") -> Outcome:
    out = box.out / name
    return Build(box, ["build", *args, "--output", f"oci:{out}:1", *extra]).run()


def failed_cleanly(r: Outcome, box: Sandbox, status: int = 1) -> str:
    assert r.returncode == status, r.describe()
    assert "Traceback" not in r.stderr and r.stderr.strip(), r.describe()
    assert list(box.out.iterdir()) == [], f"a failed build left {list(box.out.iterdir())}"
    assert temporaries(box.roots) == []
    return r.stderr


# --------------------------------------------------------------------------------------------
# symlinked and hard-linked blobs in an input layout


def relink_blobs(layout: Path, store: Path, how: str) -> None:
    """Move every blob of ``layout`` into ``store`` and put a relative or absolute symlink, or a
    hard link, in its place."""
    store.mkdir(parents=True, exist_ok=True)
    for blob in (layout / "blobs/sha256").iterdir():
        kept = store / blob.name
        shutil.move(blob, kept)
        if how == "hardlink":
            os.link(kept, blob)
        elif how == "absolute":
            blob.symlink_to(kept)
        else:
            blob.symlink_to(os.path.relpath(kept, blob.parent))


@pytest.mark.parametrize(
    "how",
    [
        "hardlink",
        pytest.param(
            "relative",
            marks=pytest.mark.xfail(
                strict=True,
                reason="issue 14 item 3: a base layout's relative blob symlink is linked into "
                "the output as a symlink: dangling at another depth (exit 0)",
            ),
        ),
        pytest.param(
            "absolute",
            marks=pytest.mark.xfail(
                strict=True,
                reason="issue 14 item 3: a base layout's absolute blob symlink is linked into "
                "the output as a symlink pointing outside it (exit 0)",
            ),
        ),
    ],
)
def test_linked_input_blobs_give_an_output_of_regular_files(
    how: str, tmp_path: Path, box: Sandbox, fault_images: FaultImages, fault_reference: str
) -> None:
    base = tmp_path / "inputs/base"
    shutil.copytree(fault_images.layout("base"), base)
    relink_blobs(base, tmp_path / "inputs/store", how)
    out = box.out / "deeper/than/the/input"  # a relative link means something else here
    out.parent.mkdir(parents=True)
    args = fault_images.build_args(base=f"oci:{base}:1")
    r = Build(box, ["build", *args, "--output", f"oci:{out}:1", "--no-cache"]).run()
    assert r.returncode == 0, r.describe()
    links = [p.name for p in out.rglob("*") if p.is_symlink()]
    assert not links, f"symlinks in the output: {links}"
    assert not layout_problems(out), layout_problems(out)
    assert tags(out) == {"1": fault_reference}


# --------------------------------------------------------------------------------------------
# more layers than the store can chain


def many_layers(d: Path, n: int) -> str:
    """An app of ``n`` one-file uncompressed layers."""
    layers = [tar_of([(info(f"l/{i:05d}"), b"%d\n" % i)]) for i in range(n)]
    return write_layout(d, layers, compression="none", architecture=host_architecture())


def test_an_app_of_500_layers_is_embedded(
    tmp_path: Path, box: Sandbox, fault_images: FaultImages
) -> None:
    app = many_layers(tmp_path / "many", 500)
    r = build(box, fault_images.build_args(app1=app, app2=""), "--no-cache", "--jobs", "2")
    assert r.returncode == 0, r.describe()
    assert not layout_problems(box.out / "out")


@pytest.mark.xfail(
    strict=True,
    reason="issue 14 item 9: an app whose layers need a lower chain longer than the store's "
    "500 ends in a Python traceback after every layer was transformed; refuse it up front",
)
def test_an_app_of_more_than_500_layers_is_refused_up_front(
    tmp_path: Path, box: Sandbox, fault_images: FaultImages
) -> None:
    # 502: more than 500 layers, and a top layer with 501 ancestors (lower chain limit 500)
    app = many_layers(tmp_path / "many", 502)
    args = fault_images.build_args(app1=app, app2="")
    r = Build(box, ["build", *args, "--output", f"oci:{box.out}/out:1", "--no-cache"]).run()
    err = failed_cleanly(r, box)
    assert APP1 in err and "500" in err, err
    made = [c for c in r.calls if c["op"] == "mkstemp" and c["desc"].endswith("/layer-")]
    assert not made, f"{len(made)} layers were transformed before the refusal"


# --------------------------------------------------------------------------------------------
# credentials inside a reference


@pytest.mark.xfail(
    strict=True,
    reason="issue 14 item 10: docker://user:password@host/... is refused, but the error "
    "repeats the password",
)
@pytest.mark.parametrize("option", ["--base", "--image", "--output"])
def test_a_password_in_a_reference_is_refused_without_repeating_it(
    option: str, box: Sandbox, fault_images: FaultImages
) -> None:
    secret = "hunter2-in-the-url"
    ref = f"docker://alice:{secret}@127.0.0.1:5000/faults/app1:1"
    args = ["--base", fault_images.base, "--image", f"{APP1}={fault_images.app1}"]
    if option == "--output":
        args += ["--output", ref]
    else:
        i = args.index(option) + 1
        args[i] = ref if option == "--base" else f"{APP1}={ref}"
        args += ["--output", f"oci:{box.out}/out:1"]
    r = Build(box, ["build", *args]).run()
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.describe()
    assert "alice" in r.stderr or "credentials" in r.stderr.lower(), r.describe()
    assert secret not in r.stderr + r.stdout, r.describe()


# --------------------------------------------------------------------------------------------
# permissions of what is written


@pytest.mark.xfail(
    strict=True,
    reason="issue 14 item 11: output blobs are written 0600 whatever the umask (skopeo writes "
    "0644): other users and a registry served from the layout cannot read them",
)
@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_written_files_follow_the_umask(
    umask: int, box: Sandbox, fault_images: FaultImages
) -> None:
    out = box.out / "out"
    args = ["build", *fault_images.build_args(), "--output", f"oci:{out}:1", "--no-cache"]
    r = Build(box, args, umask=umask).run()
    assert r.returncode == 0, r.describe()
    want = 0o666 & ~umask
    modes = {
        str(p.relative_to(out)): oct(stat.S_IMODE(p.stat().st_mode))
        for p in out.rglob("*")
        if p.is_file()
    }
    wrong = {p: m for p, m in modes.items() if m != oct(want)}
    assert not wrong, f"not {oct(want)} under umask {oct(umask)}: {wrong}"


# --------------------------------------------------------------------------------------------
# --previous whose annotations lie


@pytest.mark.xfail(
    strict=True,
    reason="issue 14 item 12: --previous blobs are reused on the strength of their "
    "annotations alone; what is reused must agree with the previous image's config and store "
    "records",
)
def test_a_previous_image_with_swapped_layer_annotations_is_not_trusted(
    box: Sandbox, fault_images: FaultImages, fault_reference: str
) -> None:
    r = build(box, fault_images.build_args(), name="previous")
    assert r.returncode == 0, r.describe()
    prev = box.out / "previous"
    index = json.loads((prev / "index.json").read_bytes())
    manifest_path = prev / "blobs/sha256" / index["manifests"][0]["digest"][7:]
    manifest = json.loads(manifest_path.read_bytes())
    app = [d for d in manifest["layers"] if d["annotations"].get("io.bootc-embed.layer") == "app"]
    first, second = app[0], app[1]  # app1's two layers
    first["annotations"], second["annotations"] = second["annotations"], first["annotations"]
    raw = json.dumps(manifest).encode()
    (prev / "blobs/sha256" / sha256(raw)[7:]).write_bytes(raw)
    index["manifests"][0].update(digest=sha256(raw), size=len(raw))
    (prev / "index.json").write_bytes(json.dumps(index).encode())

    r = build(box, fault_images.build_args(), "--previous", f"oci:{prev}:1", "--no-cache")
    if r.returncode == 0:
        assert tags(box.out / "out") == {"1": fault_reference}, "reused the wrong blobs"
    else:
        assert r.returncode == 1 and str(prev) in r.stderr, r.describe()
