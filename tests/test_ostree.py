"""ostree as the host's importer: what a bootc host does with the appended layers.

Each appended layer is committed with ``ostree commit --tree=tar=`` (how bootc imports a
layer), the commits are checked out on top of each other, and podman runs from the store in
that checkout: every app's file tree must equal a registry pull. ostree stores no mtimes and
deduplicates identical files into hardlinks, so those two properties are not compared.
"""

from __future__ import annotations

import dataclasses

import pytest
from conftest import mounted_tree, run_bootc_embed
from support import ocilayout, trees
from support.containers import Podman, read_only_bind, remove_tree, run
from support.images import APP_IMAGES as APPS
from support.ocilayout import decompressed_stream

STORE = "usr/lib/containers/storage"


def _normalised(tree: dict[str, trees.Entry]) -> dict[str, trees.Entry]:
    return {p: dataclasses.replace(e, mtime_ns=None, links=None) for p, e in tree.items()}


@pytest.fixture(scope="module")
def ostree_podman(session_dir, container_env, test_images, registry):
    out_dir = session_dir / "out-ostree"
    args = ["build", "--base", test_images.ref("base"), "--output", f"oci:{out_dir}:1", "--json"]
    for short in APPS:
        args += ["--image", f"{registry[short]}={test_images.ref(short)}"]
    res = run_bootc_embed(*args, "--no-cache")
    assert res.returncode == 0, res.describe()
    out = ocilayout.read_image(out_dir, "1")
    appended = [d for d in out.layers if d.get("annotations", {}).get("io.bootc-embed.layer")]
    repo, checkout = session_dir / "ostree-repo", session_dir / "ostree-checkout"
    run(["ostree", f"--repo={repo}", "init", "--mode=bare"])
    try:
        for n, desc in enumerate(appended):
            tar = session_dir / f"ostree-layer-{n}.tar"
            with open(tar, "wb") as f:
                for chunk in decompressed_stream(out.blob(desc["digest"])):
                    f.write(chunk)
            branch = f"layer{n}"
            run(
                ["ostree", f"--repo={repo}", "commit", f"--branch={branch}",
                 f"--tree=tar={tar}", "--tar-autocreate-parents"]
            )  # fmt: skip
            run(["ostree", f"--repo={repo}", "checkout", "--union", branch, str(checkout)])
            tar.unlink()
        with read_only_bind(checkout):
            pm = Podman(session_dir / "ostree-consumer", container_env, checkout / STORE)
            try:
                yield pm
            finally:
                pm.destroy()
    finally:
        remove_tree(checkout)
        remove_tree(repo)
        remove_tree(out_dir)


def test_podman_lists_every_image_from_an_ostree_checkout(ostree_podman, registry):
    assert {registry[s] for s in APPS} <= ostree_podman.image_names()


@pytest.mark.parametrize("app", APPS)
def test_ostree_checkout_tree_matches_registry_pull(ostree_podman, reference_trees, registry, app):
    actual = mounted_tree(ostree_podman, registry[app])
    expected, _ = trees.without_special_files(reference_trees[app])
    diff = trees.differences(_normalised(expected), _normalised(actual))
    assert not diff, (
        f"{app}: through an ostree commit + checkout, the tree differs from a registry pull\n"
        + trees.format_differences(diff)
    )
