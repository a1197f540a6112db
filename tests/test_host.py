"""Host integration: storage.conf, stores already in the base, embedding in stages."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
import tomllib
from pathlib import Path
from typing import Any

import pytest
from support.containers import run, unpack_layers
from unit_support.oci import Layout, info, tar_of, write_layout

from bootc_embed import BuildOptions, DigestMismatchError, ImageFormatError, UsageError, build
from bootc_embed._demo import SampleImages, write_sample_images
from bootc_embed._tarsplit import _compress

STORE = "/usr/lib/containers/storage"
A = "io.bootc-embed."


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> SampleImages:
    return write_sample_images(tmp_path_factory.mktemp("samples"))


def _build(base: str, images: list[str], out: Path, **kw: Any) -> Layout:
    kw.setdefault("cache", False)
    build(BuildOptions(base=base, images=images, output=f"oci:{out}:1", **kw))
    return Layout(out, "1")


def _kinds(layout: Layout) -> list[str | None]:
    return [d.get("annotations", {}).get(A + "layer") for d in layout.manifest["layers"]]


def _layer_files(layout: Layout, desc: dict[str, Any]) -> dict[str, bytes]:
    data = _compress.open_decompressed(io.BytesIO(layout.blob(desc["digest"])), "gzip").read()
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return {m.name: tf.extractfile(m).read() for m in tf if m.isfile()}  # type: ignore[union-attr]


def _metadata(layout: Layout) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    desc = [
        d
        for d in layout.manifest["layers"]
        if d.get("annotations", {}).get(A + "layer") == "metadata"
    ][-1]  # the topmost: it holds the whole store's records
    files = _layer_files(layout, desc)
    images = json.loads(files[STORE.lstrip("/") + "/overlay-images/images.json"])
    layers = json.loads(files[STORE.lstrip("/") + "/overlay-layers/layers.json"])
    return images, layers


def _base_with(tmp: Path, files: dict[str, bytes]) -> str:
    members = []
    dirs: set[str] = set()
    for path in files:
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in dirs:
                dirs.add(d)
                members.append((info(d + "/", tarfile.DIRTYPE), b""))
    members += [(info(p), data) for p, data in files.items()]
    return write_layout(tmp, [tar_of(members)], architecture=_arch())


def _arch() -> str:
    import platform

    return {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def test_a_base_without_storage_conf_gets_the_defaults_plus_the_store(
    samples: SampleImages, tmp_path: Path
) -> None:
    out = _build(samples.base, samples.image_args, tmp_path / "out")
    assert _kinds(out)[-2:] == ["metadata", "config"]
    files = _layer_files(out, out.manifest["layers"][-1])
    conf = tomllib.loads(files["etc/containers/storage.conf"].decode())
    assert conf["storage"]["driver"] == "overlay"
    assert conf["storage"]["options"]["additionalimagestores"] == [STORE]


def test_an_existing_storage_conf_keeps_every_setting_and_gains_the_store(
    samples: SampleImages, tmp_path: Path
) -> None:
    original = (
        b'# site settings\n[storage]\ndriver = "overlay"\nrunroot = "/run/x"\n'
        b'graphroot = "/var/lib/x"\n\n[storage.options]\n'
        b'additionalimagestores = [\n  "/usr/share/other",\n]\n'
        b'pull_options = {enable_partial_images = "true"}\n\n'
        b'[storage.options.overlay]\nmountopt = "nodev,metacopy=on"\n'
    )
    base = _base_with(tmp_path / "base", {"usr/share/containers/storage.conf": original})
    out = _build(base, samples.image_args, tmp_path / "out")
    files = _layer_files(out, out.manifest["layers"][-1])
    assert list(files) == ["usr/share/containers/storage.conf"]  # the same file podman reads
    new = files["usr/share/containers/storage.conf"]
    assert new.startswith(b"# site settings\n")  # comments and layout kept
    before, after = tomllib.loads(original.decode()), tomllib.loads(new.decode())
    assert after["storage"]["options"].pop("additionalimagestores") == ["/usr/share/other", STORE]
    before["storage"]["options"].pop("additionalimagestores")
    assert after == before


def test_a_storage_conf_that_lists_the_store_is_left_alone(
    samples: SampleImages, tmp_path: Path
) -> None:
    conf = (
        f'[storage]\ndriver = "overlay"\n[storage.options]\nadditionalimagestores = ["{STORE}"]\n'
    )
    base = _base_with(tmp_path / "base", {"etc/containers/storage.conf": conf.encode()})
    out = _build(base, samples.image_args, tmp_path / "out")
    assert _kinds(out)[-1] == "metadata"
    no_conf = _build(samples.base, samples.image_args, tmp_path / "out2", storage_conf=False)
    assert _kinds(no_conf)[-1] == "metadata"


def _unpack_embedded(layout: Layout, dest: Path) -> None:
    blobs = [
        layout.blob_path(d["digest"])
        for d in layout.manifest["layers"]
        if d.get("annotations", {}).get(A + "layer")
    ]
    dest.mkdir()
    unpack_layers(blobs, dest)


def _podman_images_through_conf(unpacked: Path, tmp: Path, env: dict[str, str]) -> set[str]:
    """podman reading the unpacked image's own storage.conf, as is, in a private mount
    namespace: the unpacked store mounted read-only at the store path, and private directories
    over the graph root and run root the file names (podman drops the file's options when
    --root is given, so the file's own roots are used)."""
    conf = tomllib.loads((unpacked / "etc/containers/storage.conf").read_text())["storage"]
    mounts = {
        STORE: (unpacked / STORE.lstrip("/"), True),
        conf["graphroot"]: (tmp / "graphroot", False),
        conf["runroot"]: (tmp / "runroot", False),
    }
    made = []
    script = []
    for target, (source, read_only) in mounts.items():
        source.mkdir(parents=True, exist_ok=True)
        if not Path(target).exists():
            Path(target).mkdir(parents=True)
            made.append(target)
        script.append(f"mount --bind {source} {target}")
        if read_only:
            script.append(f"mount -o remount,ro,bind {target}")
    script.append(f"exec podman --tmpdir {tmp / 'podman-tmp'} images --format json")
    try:
        out = run(
            ["unshare", "-m", "--propagation", "private", "sh", "-c", " && ".join(script)],
            env={**env, "CONTAINERS_STORAGE_CONF": str(unpacked / "etc/containers/storage.conf")},
        )
    finally:
        for target in made:
            subprocess.run(["rmdir", "-p", "--ignore-fail-on-non-empty", target], check=False)
    return {n for img in json.loads(out.stdout or "[]") for n in img.get("Names") or []}


def test_podman_reading_the_written_storage_conf_sees_the_images(
    samples: SampleImages, tmp_path: Path, container_env: dict[str, str]
) -> None:
    out = _build(samples.base, samples.image_args, tmp_path / "out")
    _unpack_embedded(out, tmp_path / "u")
    names = _podman_images_through_conf(tmp_path / "u", tmp_path, container_env)
    assert {samples.app1_name, samples.app2_name} <= names


def test_embedding_in_two_stages_keeps_both_stages_images(
    samples: SampleImages, tmp_path: Path, container_env: dict[str, str]
) -> None:
    app1, app2 = samples.image_args
    stage1 = _build(samples.base, [app1], tmp_path / "stage1")
    stage2 = _build(f"oci:{tmp_path / 'stage1'}:1", [app2], tmp_path / "stage2")
    images, layers = _metadata(stage2)
    assert sorted(n for r in images for n in r["names"]) == sorted(
        [samples.app1_name, samples.app2_name]
    )
    ids = [r["id"] for r in layers]
    assert len(ids) == len(set(ids))  # the layer both apps share is kept once
    appended = [d for d in stage2.manifest["layers"][len(stage1.manifest["layers"]) :]]
    assert [d["annotations"][A + "layer"] for d in appended] == ["app", "metadata"]  # no config
    _unpack_embedded(stage2, tmp_path / "u")
    names = _podman_images_through_conf(tmp_path / "u", tmp_path, container_env)
    assert {samples.app1_name, samples.app2_name} <= names


def test_a_name_already_in_the_base_store_needs_replace(
    samples: SampleImages, tmp_path: Path
) -> None:
    app1, app2 = samples.image_args
    _build(samples.base, [app1], tmp_path / "stage1")
    clash = f"{samples.app1_name}={app2.split('=', 1)[1]}"
    with pytest.raises(UsageError, match="--replace"):
        _build(f"oci:{tmp_path / 'stage1'}:1", [clash], tmp_path / "stage2")
    assert not (tmp_path / "stage2").exists()
    out = _build(
        f"oci:{tmp_path / 'stage1'}:1", [clash], tmp_path / "stage3", replace=[samples.app1_name]
    )
    images, _ = _metadata(out)
    named = [r for r in images if samples.app1_name in r["names"]]
    assert len(named) == 1
    assert named[0]["digest"] != Layout(Path(samples.app1.split(":")[1]), "1").descriptor["digest"]


def _bound_base(tmp: Path, image: str) -> str:
    quadlet = f"[Container]\nImage={image}\nPull=never\n".encode()
    members = [
        (info("usr/", tarfile.DIRTYPE), b""),
        (info("usr/share/", tarfile.DIRTYPE), b""),
        (info("usr/share/containers/", tarfile.DIRTYPE), b""),
        (info("usr/share/containers/systemd/", tarfile.DIRTYPE), b""),
        (info("usr/share/containers/systemd/app.container"), quadlet),
        (info("usr/lib/", tarfile.DIRTYPE), b""),
        (info("usr/lib/bootc/", tarfile.DIRTYPE), b""),
        (info("usr/lib/bootc/bound-images.d/", tarfile.DIRTYPE), b""),
        (
            info(
                "usr/lib/bootc/bound-images.d/app.container",
                tarfile.SYMTYPE,
                linkname="../../../share/containers/systemd/app.container",
            ),
            b"",
        ),
    ]
    return write_layout(tmp, [tar_of(members)], architecture=_arch())


def test_from_bound_images_embeds_what_the_base_declares(
    samples: SampleImages, tmp_path: Path
) -> None:
    base = _bound_base(tmp_path / "base", samples.app1_name)
    app1 = samples.image_args[0]
    # app1 is declared (and found under its name among --image); app2 is not declared
    out = _build(base, [app1], tmp_path / "out", from_bound_images=True)
    images, _ = _metadata(out)
    assert [r["names"] for r in images] == [[samples.app1_name]]


def test_a_bound_image_with_a_systemd_specifier_is_refused(
    samples: SampleImages, tmp_path: Path
) -> None:
    base = _bound_base(tmp_path / "base", "quay.io/org/app-%i:1")
    with pytest.raises(ImageFormatError, match="specifier"):
        _build(base, samples.image_args, tmp_path / "out", from_bound_images=True)
    assert not (tmp_path / "out").exists()


def test_a_quadlet_file_is_installed_and_its_pull_policy_warned_about(
    samples: SampleImages, tmp_path: Path
) -> None:
    unit = tmp_path / "web.container"
    unit.write_text(f"[Container]\nImage={samples.app1_name}\n")
    result = build(
        BuildOptions(
            base=samples.base,
            images=samples.image_args,
            output=f"oci:{tmp_path / 'out'}:1",
            quadlets=[str(unit)],
            cache=False,
        )
    )
    assert any("Pull=never" in w for w in result.warnings)
    out = Layout(tmp_path / "out", "1")
    files = _layer_files(out, out.manifest["layers"][-1])
    assert files["usr/share/containers/systemd/web.container"] == unit.read_bytes()
    assert result.quadlets == ["web.container"]


def test_a_layer_the_base_shares_with_an_app_is_scanned_by_the_apps_transform(
    tmp_path: Path,
) -> None:
    # an app built FROM the same distribution as the base: its bottom layer is the base's blob,
    # read once for both. The base's findings (here its storage.conf) must be the same whether
    # they come from that shared pass, from the scan cache, or from a scan of its own (when the
    # app layer is reused from the cache and the scan is not).
    conf = b'[storage]\ndriver = "overlay"\nrunroot = "/run/shared-test"\n'
    shared = tar_of(
        [
            (info("etc/", tarfile.DIRTYPE), b""),
            (info("etc/containers/", tarfile.DIRTYPE), b""),
            (info("etc/containers/storage.conf"), conf),
            (info("usr/", tarfile.DIRTYPE), b""),
            (info("usr/bin/", tarfile.DIRTYPE), b""),
            (info("usr/bin/tool"), b"tool" * 1000),
        ]
    )
    base = write_layout(tmp_path / "base", [shared], architecture=_arch())
    top = tar_of([(info("app/", tarfile.DIRTYPE), b""), (info("app/run"), b"#!/bin/sh\n")])
    app_layout = tmp_path / "app"
    app = "localhost/shared:1=" + write_layout(app_layout, [shared, top], architecture=_arch())
    cache = tmp_path / "cache"

    def run_build(name: str, **kw: Any) -> tuple[Layout, list[str | None]]:
        result = build(
            BuildOptions(base=base, images=[app], output=f"oci:{tmp_path / name}:1", **kw)
        )
        return Layout(tmp_path / name, "1"), [la.reused_from for la in result.images[0].layers]

    shared_pass, reused = run_build("a", cache_dir=str(cache))
    assert reused == [None, None]
    files = _layer_files(shared_pass, shared_pass.manifest["layers"][-1])
    after = tomllib.loads(files["etc/containers/storage.conf"].decode())
    assert after["storage"]["runroot"] == "/run/shared-test"  # the base's file, not defaults
    assert after["storage"]["options"]["additionalimagestores"] == [STORE]
    base_digest = Layout(tmp_path / "base", "1").manifest["layers"][0]["digest"]
    assert shared_pass.manifest["layers"][0]["digest"] == base_digest
    assert shared_pass.blob_path(base_digest).read_bytes() == (
        Layout(tmp_path / "base", "1").blob(base_digest)
    )
    scans = list((cache / "base-scan").iterdir())
    assert len(scans) == 1  # remembered under the base layer's digest

    from_cache, reused = run_build("b", cache_dir=str(cache))
    assert reused == ["cache", "cache"]
    scans[0].unlink()
    scanned_alone, reused = run_build("c", cache_dir=str(cache))
    assert reused == ["cache", "cache"]
    no_cache, reused = run_build("d", cache=False)
    assert reused == [None, None]
    digests = {o.descriptor["digest"] for o in (shared_pass, from_cache, scanned_alone, no_cache)}
    assert len(digests) == 1

    # the app's copy of the shared blob is the one read: damage there is named as the app's
    blob = Layout(app_layout, "1").blob_path(base_digest)
    data = bytearray(blob.read_bytes())
    data[40] ^= 1
    blob.write_bytes(bytes(data))
    with pytest.raises(DigestMismatchError, match="localhost/shared:1"):
        run_build("e", cache=False)
    assert not (tmp_path / "e").exists()
    # also when the app layer is reused from the cache: the copy the output gets is checked
    with pytest.raises(DigestMismatchError, match="localhost/shared:1"):
        run_build("f", cache_dir=str(cache))
    assert not (tmp_path / "f").exists()
