"""Image transports (issue 3): docker:// over our registry client, docker-archive:, and
containers-storage: through skopeo, against real registries on loopback.

The images are the small pure-Python samples (``bootc_embed._demo``), pushed unchanged with
skopeo. Every registry runs here: plain HTTP, TLS with a CA made by openssl (``--cert-dir``),
client certificates, htpasswd basic auth and bearer tokens from a token server started here.
What the client did is read from the registry's access log.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import BOOTC_EMBED, BootcEmbedResult, private_xdg_cache
from registry_support import (
    FakeBlob,
    FakeRegistry,
    Registry,
    TokenServer,
    cert_dir,
    htpasswd,
    make_certs,
    run,
    sha256,
    skopeo_push,
    wait_for,
)
from unit_support.auth import write_auth_json

from bootc_embed import UsageError
from bootc_embed._demo import SampleImages, host_architecture, write_sample_images
from bootc_embed._model import Descriptor
from bootc_embed._reference import Reference, parse_reference, split_image_arg
from bootc_embed._transports import (
    TransportOptions,
    open_blob,
    open_destination,
    open_source,
    resolve,
)
from bootc_embed._transports.registry import RegistrySource, is_local, parse_challenges
from bootc_embed.errors import DigestMismatchError, ImageReferenceError

USER, PASSWORD = "alice", "s3cret-pw"


# --------------------------------------------------------------------------------------------
# running the command with private credentials files


def bootc_embed(*args: str | os.PathLike[str], home: Path, **env: str) -> BootcEmbedResult:
    """The command, with HOME and XDG dirs of the test: no credentials leak in or out."""
    argv = [str(BOOTC_EMBED), *(os.fspath(a) for a in args)]
    e = {k: v for k, v in os.environ.items() if k not in ("REGISTRY_AUTH_FILE", "DOCKER_CONFIG")}
    e.update(
        HOME=str(home),
        XDG_RUNTIME_DIR=str(home / "run"),
        XDG_CONFIG_HOME=str(home / "config"),
        XDG_CACHE_HOME=str(private_xdg_cache()),
        **env,
    )
    proc = subprocess.run(
        argv, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL, env=e
    )
    return BootcEmbedResult(proc, argv)


def ok(r: BootcEmbedResult) -> dict:
    assert r.returncode == 0, r.describe()
    return r.json()


def failed(r: BootcEmbedResult) -> str:
    assert r.returncode == 1, r.describe()
    assert "Traceback" not in r.stderr, r.describe()
    return r.stderr


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    (h / "run").mkdir(parents=True)
    return h


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> SampleImages:
    return write_sample_images(tmp_path_factory.mktemp("samples"))


def _push_samples(reg: Registry, samples: SampleImages, *extra: str) -> dict[str, str]:
    return {
        "base": skopeo_push(samples.base, reg, "demo/base:latest", *extra),
        "app1": skopeo_push(samples.app1, reg, "demo/app1:1", *extra),
        "app2": skopeo_push(samples.app2, reg, "demo/app2:1", *extra),
    }


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory, samples: SampleImages) -> Iterator[Registry]:
    """Plain HTTP on 127.0.0.1 holding demo/base:latest, demo/app1:1 and demo/app2:1."""
    reg = Registry(tmp_path_factory.mktemp("plain")).start()
    try:
        _push_samples(reg, samples)
        yield reg
    finally:
        reg.stop()


def _build_args(reg: Registry, out: str) -> list[str]:
    r = reg.host
    return [
        "build",
        "--base",
        f"docker://{r}/demo/base:latest",
        "--image",
        f"docker://{r}/demo/app1:1",
        "--image",
        f"docker://{r}/demo/app2:1",
        "--output",
        out,
        "--json",
    ]


def _manifest(path: Path, tag: str | None = None) -> dict:
    index = json.loads((path / "index.json").read_text())
    desc = index["manifests"][0]
    return json.loads((path / "blobs/sha256" / desc["digest"][7:]).read_text())


def _pushed_manifest(reg: Registry, repo_tag: str) -> dict:
    raw = run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{reg.host}/{repo_tag}"]
    ).stdout
    return json.loads(raw)


def _config(path: Path) -> dict:
    m = _manifest(path)
    return json.loads((path / "blobs/sha256" / m["config"]["digest"][7:]).read_text())


# --------------------------------------------------------------------------------------------
# references, credentials, challenges (no network)


@pytest.mark.parametrize(
    ("text", "path", "tag", "digest", "shown"),
    [
        ("docker://quay.io/a/b:1", "quay.io/a/b", "1", None, None),
        ("docker://127.0.0.1:5000/a/b", "127.0.0.1:5000/a/b", "latest", None, "…:latest"),
        ("docker://localhost/x", "localhost/x", "latest", None, "…:latest"),
        ("docker://busybox", "docker.io/library/busybox", "latest", None, "full"),
        ("docker://org/app:2", "docker.io/org/app", "2", None, "full"),
        ("docker://[::1]:5000/a:t", "[::1]:5000/a", "t", None, None),
        (f"docker://quay.io/a@sha256:{'ab' * 32}", "quay.io/a", None, f"sha256:{'ab' * 32}", None),
    ],
)
def test_docker_references_parse_like_skopeo(
    text: str, path: str, tag: str | None, digest: str | None, shown: str | None
) -> None:
    ref = parse_reference(text)
    assert (ref.transport, ref.path, ref.tag, ref.digest) == ("docker", path, tag, digest)
    if shown is None:
        assert str(ref) == text
    assert parse_reference(str(ref)) == ref
    assert ref.host == path.split("/")[0]


def test_docker_archive_and_containers_storage_references() -> None:
    assert parse_reference("docker-archive:/a.tar") == Reference("docker-archive", "/a.tar", None)
    r = parse_reference("docker-archive:/a.tar:busybox")
    assert r.tag == "docker.io/library/busybox:latest"
    assert parse_reference("docker-archive:/a.tar:@2").tag == "@2"
    spec = "[overlay@/g+/r:overlay.imagestore=/s]localhost/app:1"
    r = parse_reference("containers-storage:" + spec)
    assert (r.transport, r.path, str(r)) == (
        "containers-storage",
        spec,
        "containers-storage:" + spec,
    )
    # '=' inside a store spec is not a NAME= split
    assert split_image_arg("containers-storage:" + spec) == (None, r)
    name, ref = split_image_arg("quay.io/x/y:1=docker://127.0.0.1:5000/y:2")
    assert str(name) == "quay.io/x/y:1" and ref.path == "127.0.0.1:5000/y"
    with pytest.raises(UsageError, match="docker-archive: is an input only"):
        open_destination(parse_reference("docker-archive:/x.tar"))


def test_loopback_hosts_are_local() -> None:
    for h in ("localhost", "localhost:5000", "127.0.0.1:80", "127.1.2.3", "[::1]:5000"):
        assert is_local(h), h
    for h in ("quay.io", "10.0.0.1:5000", "registry.example.com:443"):
        assert not is_local(h), h


def test_challenges_parse_with_commas_in_quoted_scopes() -> None:
    (c,) = parse_challenges(
        'Bearer realm="https://auth.example/token",service="reg",'
        'scope="repository:a/b:pull,push",error="insufficient_scope"'
    )
    assert c.scheme == "bearer"
    assert c.params == {
        "realm": "https://auth.example/token",
        "service": "reg",
        "scope": "repository:a/b:pull,push",
        "error": "insufficient_scope",
    }
    basic, bearer = parse_challenges('Basic realm="x", Bearer realm="y",service=s')
    assert (basic.scheme, bearer.scheme, bearer.params["service"]) == ("basic", "bearer", "s")


# --------------------------------------------------------------------------------------------
# plain HTTP registry: pull, push, mounts, skip-existing, podman


def test_build_from_registry_to_registry_mounts_base_layers_and_podman_pulls(
    plain: Registry, samples: SampleImages, home: Path, tmp_path: Path, container_env: dict
) -> None:
    from support.containers import Podman

    plain.mark()
    summary = ok(bootc_embed(*_build_args(plain, f"docker://{plain.host}/demo/out:1"), home=home))
    assert [i["name"] for i in summary["images"]] == [
        f"{plain.host}/demo/app1:1",
        f"{plain.host}/demo/app2:1",
    ]
    base_manifest = _manifest(Path(samples.base.split(":")[1]))
    mounts = plain.mounts()
    # every base layer came by a cross-repository mount, none was uploaded
    assert sorted(p.split("mount=")[1].split("&")[0] for p, _ in mounts) == sorted(
        d["digest"] for d in base_manifest["layers"]
    )
    assert all(status == 201 for _, status in mounts), mounts
    reqs = plain.requests()
    pushed = _pushed_manifest(plain, "demo/out:1")
    new_blobs = len(pushed["layers"]) - len(base_manifest["layers"]) + 1  # + the config
    uploads = plain.uploads()
    # only the new layers (app, metadata...) and the config are uploaded; the manifest last
    assert len(uploads) == new_blobs, plain.requests()
    assert set(uploads) == {"demo/out"}
    assert reqs[-1][:2] == ("PUT", "/v2/demo/out/manifests/1")
    assert not any(m == "GET" and "/demo/out/" in p for m, p, _ in reqs)
    # the base's blobs were not downloaded to be copied (only inspected by the build itself)

    pm = Podman(tmp_path / "podman", container_env)
    try:
        pm("pull", "-q", "--tls-verify=false", f"docker://{plain.host}/demo/out:1")
        digest = pm("image", "inspect", "--format", "{{.Digest}}", f"{plain.host}/demo/out:1")
        assert digest.stdout.strip() == summary["manifest_digest"]
    finally:
        pm.destroy()

    # a second push of the same output uploads nothing
    plain.mark()
    again = ok(bootc_embed(*_build_args(plain, f"docker://{plain.host}/demo/out:1"), home=home))
    assert again["manifest_digest"] == summary["manifest_digest"]
    assert plain.uploads() == []
    assert plain.mounts() == []
    assert plain.requests()[-1][:2] == ("PUT", "/v2/demo/out/manifests/1")


def test_pushing_into_the_base_repository_uploads_only_new_layers(
    plain: Registry, home: Path, samples: SampleImages
) -> None:
    plain.mark()
    ok(bootc_embed(*_build_args(plain, f"docker://{plain.host}/demo/base:embedded"), home=home))
    pushed = _pushed_manifest(plain, "demo/base:embedded")
    base_manifest = _manifest(Path(samples.base.split(":")[1]))
    assert len(plain.uploads()) == len(pushed["layers"]) - len(base_manifest["layers"]) + 1
    assert plain.mounts() == []  # the base's layers are there already: HEAD finds them
    heads = [p for m, p, s in plain.requests() if m == "HEAD" and s == 200]
    for d in base_manifest["layers"]:
        assert f"/v2/demo/base/blobs/{d['digest']}" in heads


def test_each_base_blob_is_downloaded_once_for_the_scan_and_the_copy(
    plain: Registry, home: Path, samples: SampleImages, tmp_path: Path
) -> None:
    # no cached scan: the read that scans a base layer also stages the output's copy (a
    # layout output, or a registry where the blob cannot be mounted), not a second download
    base_manifest = _manifest(Path(samples.base.split(":")[1]))
    digests = [d["digest"] for d in base_manifest["layers"]]

    def base_gets() -> list[str]:
        return [
            p.rsplit("/", 1)[1]
            for m, p, s in plain.requests()
            if m == "GET"
            and p.startswith("/v2/demo/base/blobs/")
            and p.rsplit("/", 1)[1] != base_manifest["config"]["digest"]
        ]

    plain.mark()
    out = tmp_path / "out"
    ok(bootc_embed(*_build_args(plain, f"oci:{out}:1"), "--no-cache", home=home))
    assert sorted(base_gets()) == sorted(digests)
    for d in digests:
        assert (out / "blobs/sha256" / d[7:]).read_bytes() == plain.blob_file(d).read_bytes()

    other = Registry(tmp_path / "other").start()
    try:
        other.mark()
        plain.mark()
        ok(
            bootc_embed(
                *_build_args(plain, f"docker://{other.host}/demo/out:1"), "--no-cache", home=home
            )
        )
        assert sorted(base_gets()) == sorted(digests)
        for d in digests:
            assert other.blob_file(d).read_bytes() == plain.blob_file(d).read_bytes()
    finally:
        other.stop()


def test_a_layer_the_base_shares_with_an_app_is_downloaded_once(
    plain: Registry, home: Path, tmp_path: Path
) -> None:
    # an app built FROM the base's distribution: its bottom layer is the base's blob. The app
    # layer's transform reads it (from the app's repository) and scans it for the base; the
    # same read stages the output's copy, for a layout and for another registry alike.
    import tarfile

    from unit_support.oci import info, tar_of, write_layout

    shared = tar_of(
        [
            (info("usr/", tarfile.DIRTYPE), b""),
            (info("usr/bin/", tarfile.DIRTYPE), b""),
            (info("usr/bin/tool"), os.urandom(1 << 20)),
        ]
    )
    top = tar_of([(info("app/", tarfile.DIRTYPE), b""), (info("app/run"), b"#!/bin/sh\n")])
    arch = host_architecture()
    base = write_layout(tmp_path / "base", [shared], architecture=arch)
    app = write_layout(tmp_path / "app", [shared, top], architecture=arch)
    skopeo_push(base, plain, "shared/base:1")
    skopeo_push(app, plain, "shared/app:1")
    digest = _manifest(tmp_path / "base")["layers"][0]["digest"]
    args = [
        "build",
        "--base",
        f"docker://{plain.host}/shared/base:1",
        "--image",
        f"docker://{plain.host}/shared/app:1",
        "--no-cache",
        "--json",
        "--output",
    ]

    def gets() -> int:
        return sum(1 for m, p, _ in plain.requests() if m == "GET" and p.endswith(digest))

    plain.mark()
    ok(bootc_embed(*args, f"oci:{tmp_path / 'out'}:1", home=home))
    assert gets() == 1
    out_blob = tmp_path / "out/blobs/sha256" / digest[7:]
    assert out_blob.read_bytes() == plain.blob_file(digest).read_bytes()

    other = Registry(tmp_path / "other").start()
    try:
        plain.mark()
        ok(bootc_embed(*args, f"docker://{other.host}/shared/out:1", home=home))
        assert gets() == 1
        assert other.blob_file(digest).read_bytes() == plain.blob_file(digest).read_bytes()
    finally:
        other.stop()


def test_registry_output_reads_back_identically_through_diff_and_skopeo(
    plain: Registry, home: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    local = ok(bootc_embed(*_build_args(plain, f"oci:{out}:1"), home=home))
    pushed = ok(bootc_embed(*_build_args(plain, f"docker://{plain.host}/demo/same:1"), home=home))
    assert pushed["manifest_digest"] == local["manifest_digest"]
    raw = run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{plain.host}/demo/same:1"]
    ).stdout
    assert sha256(raw.encode()) == local["manifest_digest"]
    d = bootc_embed(
        "diff", f"oci:{out}:1", f"docker://{plain.host}/demo/same:1", "--json", home=home
    )
    assert d.returncode == 0, d.describe()
    assert d.json()["total"]["download_bytes"] == 0


def test_missing_tag_and_repository_are_named(plain: Registry, home: Path, tmp_path: Path) -> None:
    r = plain.host
    err = failed(
        bootc_embed(
            "build",
            "--base",
            f"docker://{r}/demo/base:nope",
            "--image",
            f"docker://{r}/demo/app1:1",
            "--output",
            f"oci:{tmp_path}/o",
            home=home,
        )
    )
    assert f"tag 'nope' not found in {r}/demo/base (tags: " in err and "latest" in err
    err = failed(
        bootc_embed(
            "build",
            "--base",
            f"docker://{r}/demo/base:latest",
            "--image",
            f"docker://{r}/demo/nothing:1",
            "--output",
            f"oci:{tmp_path}/o",
            home=home,
        )
    )
    assert f"repository {r}/demo/nothing does not exist" in err
    assert not (tmp_path / "o").exists()


def test_a_corrupted_blob_in_the_registry_fails_the_build_and_pushes_nothing(
    tmp_path: Path, samples: SampleImages, home: Path
) -> None:
    reg = Registry(tmp_path / "reg").start()
    try:
        _push_samples(reg, samples)
        app1 = _manifest(Path(samples.app1.split(":")[1]))
        bad = app1["layers"][1]["digest"]
        blob = reg.blob_file(bad)
        data = bytearray(blob.read_bytes())
        data[len(data) // 2] ^= 0xFF  # same size, other bytes
        blob.write_bytes(bytes(data))
        reg.mark()
        err = failed(
            bootc_embed(
                *_build_args(reg, f"docker://{reg.host}/demo/out:1"), "--no-cache", home=home
            )
        )
        assert bad in err and "does not match its digest" in err
        assert not reg.has_tag("demo/out", "1")
        assert not any(m == "PUT" and "/manifests/" in p for m, p, _ in reg.requests())
    finally:
        reg.stop()


# --------------------------------------------------------------------------------------------
# multi-platform index


def _index_layout(dst: Path, images: dict[str, Path], tag: str) -> str:
    """One OCI layout holding an index of the images (arch → single-image layout)."""
    blobs = dst / "blobs/sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    entries = []
    for arch, src in images.items():
        for b in (src / "blobs/sha256").iterdir():
            shutil.copyfile(b, blobs / b.name)
        desc = dict(json.loads((src / "index.json").read_text())["manifests"][0])
        desc.pop("annotations", None)
        desc["platform"] = {"architecture": arch, "os": "linux"}
        entries.append(desc)
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": entries,
        }
    ).encode()
    (blobs / sha256(index)[7:]).write_bytes(index)
    top = {
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "digest": sha256(index),
        "size": len(index),
        "annotations": {"org.opencontainers.image.ref.name": tag},
    }
    (dst / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (dst / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [top]}))
    return f"oci:{dst}:{tag}"


def test_an_index_with_two_platforms_and_platform_choice(
    plain: Registry, samples: SampleImages, tmp_path: Path, home: Path
) -> None:
    host_arch = host_architecture()
    other = "arm64" if host_arch != "arm64" else "amd64"
    foreign = write_sample_images(tmp_path / "foreign", architecture=other)
    for short in ("base", "app1"):
        layout = _index_layout(
            tmp_path / f"multi-{short}",
            {
                host_arch: Path(getattr(samples, short).split(":")[1]),
                other: Path(getattr(foreign, short).split(":")[1]),
            },
            "multi",
        )
        skopeo_push(layout, plain, f"multi/{short}:1", "--all")
    r = plain.host
    args = [
        "build",
        "--base",
        f"docker://{r}/multi/base:1",
        "--image",
        f"docker://{r}/multi/app1:1",
        "--json",
    ]
    ok(
        bootc_embed(
            *args, "--output", f"oci:{tmp_path}/other", "--platform", f"linux/{other}", home=home
        )
    )
    assert _config(tmp_path / "other")["architecture"] == other
    ok(bootc_embed(*args, "--output", f"oci:{tmp_path}/host", home=home))
    assert _config(tmp_path / "host")["architecture"] == host_arch
    err = bootc_embed(
        *args, "--output", f"oci:{tmp_path}/none", "--platform", "linux/s390x", home=home
    )
    assert err.returncode == 1 and "has no image for platform linux/s390x" in err.stderr


# --------------------------------------------------------------------------------------------
# TLS


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory):
    return make_certs(tmp_path_factory.mktemp("certs"))


def test_tls_with_cert_dir_and_tls_verify(
    tmp_path: Path, samples: SampleImages, certs, home: Path
) -> None:
    reg = Registry(tmp_path / "reg", certs=certs).start()
    try:
        cd = cert_dir(tmp_path / "certs.d", certs)
        _push_samples(reg, samples, "--dest-cert-dir", str(cd))
        out = f"docker://{reg.host}/demo/out:1"
        ok(bootc_embed(*_build_args(reg, out), "--cert-dir", cd, home=home))
        assert reg.has_tag("demo/out", "1")
        # without the CA: refused, with a hint; nothing falls back to plain HTTP
        err = failed(bootc_embed(*_build_args(reg, f"docker://{reg.host}/demo/o2:1"), home=home))
        assert "CERTIFICATE_VERIFY_FAILED" in err and "--cert-dir" in err
        # --tls-verify=false accepts the unknown CA
        ok(
            bootc_embed(
                *_build_args(reg, f"docker://{reg.host}/demo/o3:1"), "--tls-verify=false", home=home
            )
        )
        # the certs.d directory podman reads by default, under $XDG_CONFIG_HOME
        cert_dir(home / "config/containers/certs.d" / reg.host, certs)
        ok(bootc_embed(*_build_args(reg, f"docker://{reg.host}/demo/o4:1"), home=home))
    finally:
        reg.stop()


def test_tls_client_certificates_from_the_cert_dir(
    tmp_path: Path, samples: SampleImages, certs, home: Path
) -> None:
    reg = Registry(tmp_path / "reg", certs=certs, client_certs=True).start()
    try:
        cd = cert_dir(tmp_path / "certs.d", certs, client=True)
        _push_samples(reg, samples, "--dest-cert-dir", str(cd))
        ok(
            bootc_embed(
                *_build_args(reg, f"docker://{reg.host}/demo/out:1"), "--cert-dir", cd, home=home
            )
        )
        only_ca = cert_dir(tmp_path / "ca-only", certs)
        err = failed(
            bootc_embed(
                *_build_args(reg, f"docker://{reg.host}/demo/o2:1"),
                "--cert-dir",
                only_ca,
                home=home,
            )
        )
        assert f"{reg.host}: TLS with the registry failed" in err and "client certificate" in err
    finally:
        reg.stop()


# --------------------------------------------------------------------------------------------
# basic auth


def test_htpasswd_basic_auth(tmp_path: Path, samples: SampleImages, home: Path) -> None:
    pw = htpasswd(tmp_path / "htpasswd", {USER: PASSWORD})
    reg = Registry(tmp_path / "reg", htpasswd=pw).start()
    try:
        _push_samples(reg, samples, f"--dest-creds={USER}:{PASSWORD}")
        out = f"docker://{reg.host}/demo/out:1"
        ok(bootc_embed(*_build_args(reg, out), "--creds", f"{USER}:{PASSWORD}", home=home))
        assert reg.has_tag("demo/out", "1")
        # an auth file given with --authfile
        authfile = write_auth_json(tmp_path / "auth.json", {reg.host: (USER, PASSWORD)})
        ok(
            bootc_embed(
                *_build_args(reg, f"docker://{reg.host}/demo/o2:1"),
                "--authfile",
                authfile,
                home=home,
            )
        )
        # podman's default file, $XDG_RUNTIME_DIR/containers/auth.json
        write_auth_json(home / "run/containers/auth.json", {reg.host: (USER, PASSWORD)})
        ok(bootc_embed(*_build_args(reg, f"docker://{reg.host}/demo/o3:1"), home=home))
        (home / "run/containers/auth.json").unlink()

        # wrong password: named user and origin, never the password; nothing pushed
        reg.mark()
        err = failed(
            bootc_embed(
                *_build_args(reg, f"docker://{reg.host}/demo/bad:1"),
                "--creds",
                f"{USER}:wrong-password",
                home=home,
            )
        )
        assert f"user '{USER}' from --creds" in err and "401" in err
        assert "wrong-password" not in err
        assert not reg.has_tag("demo/bad", "1")
        # no credentials at all: where they were looked for
        err = failed(bootc_embed(*_build_args(reg, f"docker://{reg.host}/demo/bad:1"), home=home))
        assert "anonymous" in err and str(home / "run/containers/auth.json") in err
        assert "--creds" in err
        # a wrong password in an auth file names the file
        bad = write_auth_json(tmp_path / "bad.json", {reg.host: (USER, "nope-pw")})
        err = failed(
            bootc_embed(
                *_build_args(reg, f"docker://{reg.host}/demo/bad:1"), "--authfile", bad, home=home
            )
        )
        assert f"user '{USER}' from {bad} ({reg.host})" in err and "nope-pw" not in err
    finally:
        reg.stop()


# --------------------------------------------------------------------------------------------
# bearer tokens


def test_bearer_token_auth_pull_push_and_mount_scopes(
    tmp_path: Path, samples: SampleImages, home: Path
) -> None:
    token = TokenServer(tmp_path / "token", {USER: PASSWORD}).start()
    reg = Registry(tmp_path / "reg", token=token).start()
    try:
        _push_samples(reg, samples, f"--dest-creds={USER}:{PASSWORD}")
        token.requests.clear()
        reg.mark()
        out = f"docker://{reg.host}/demo/out:1"
        ok(bootc_embed(*_build_args(reg, out), "--creds", f"{USER}:{PASSWORD}", home=home))
        assert reg.has_tag("demo/out", "1")
        scopes = [tuple(r["scopes"]) for r in token.requests]
        assert ("repository:demo/base:pull",) in scopes
        assert ("repository:demo/out:pull,push",) in scopes
        assert ("repository:demo/out:pull,push", "repository:demo/base:pull") in scopes
        assert all(r["user"] == USER for r in token.requests)
        assert len(token.requests) <= 6  # tokens are cached per scope set
        assert reg.mounts() and all(s == 201 for _, s in reg.mounts())

        # wrong password: the token server refuses it
        err = failed(
            bootc_embed(
                *_build_args(reg, f"docker://{reg.host}/demo/bad:1"),
                "--creds",
                f"{USER}:wrong-password",
                home=home,
            )
        )
        assert "token server" in err and f"user '{USER}' from --creds" in err
        assert "wrong-password" not in err
        # anonymous: a token without access, the registry refuses
        err = failed(bootc_embed(*_build_args(reg, f"docker://{reg.host}/demo/bad:1"), home=home))
        assert "anonymous" in err and "401" in err
        assert not reg.has_tag("demo/bad", "1")
    finally:
        reg.stop()
        token.stop()


def test_an_expired_token_is_replaced(tmp_path: Path, samples: SampleImages) -> None:
    token = TokenServer(tmp_path / "token", {USER: PASSWORD}).start()
    reg = Registry(tmp_path / "reg", token=token).start()
    try:
        _push_samples(reg, samples, f"--dest-creds={USER}:{PASSWORD}")
        token.requests.clear()
        token.expired_first = True  # the registry refuses the first token: 401, ask again
        ref = parse_reference(f"docker://{reg.host}/demo/app1:1")
        src = open_source(ref, TransportOptions(creds=f"{USER}:{PASSWORD}"))
        try:
            image = resolve(src, None)
        finally:
            src.close()
        assert image.manifest.layers
        assert len(token.requests) == 2
        # a token past its expires_in is renewed before use
        token.expired_first = False
        token.expires_in = 1
        token.requests.clear()
        src = open_source(ref, TransportOptions(creds=f"{USER}:{PASSWORD}"))
        try:
            src.top_descriptor()
            time.sleep(1.1)
            resolve(src, None)
        finally:
            src.close()
        assert len(token.requests) == 2
    finally:
        reg.stop()
        token.stop()


# --------------------------------------------------------------------------------------------
# faults: retries, resumed downloads, stalls (a fake registry)


def _fake_source(reg: FakeRegistry) -> RegistrySource:
    return RegistrySource(parse_reference(f"docker://{reg.host}/x/y:1"), TransportOptions())


def _read(src: RegistrySource, data: bytes) -> bytes:
    desc = Descriptor("application/vnd.oci.image.layer.v1.tar", sha256(data), len(data))
    with open_blob(src, desc, "test blob") as r:
        out = r.read(len(data))
        r.verify()
    return out


def test_downloads_retry_5xx_and_resume_a_dropped_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BOOTC_EMBED_REGISTRY_BACKOFF", "0.01")
    data = os.urandom(3 << 20)
    flaky = FakeBlob(data, fail_first=2)
    dropped = FakeBlob(data + b"x", drop_after=1 << 20)
    no_ranges = FakeBlob(data + b"y", drop_after=100_000, ranges=False)
    reg = FakeRegistry({sha256(b.data): b for b in (flaky, dropped, no_ranges)}).start()
    try:
        src = _fake_source(reg)
        assert _read(src, data) == data
        assert flaky.gets == [None, None, None]
        assert _read(src, data + b"x") == data + b"x"
        assert dropped.gets[0] is None and dropped.gets[1] is not None
        assert dropped.gets[1].startswith("bytes=") and dropped.gets[1] != "bytes=0-"
        assert _read(src, data + b"y") == data + b"y"  # read again from 0, the start dropped
        assert len(no_ranges.gets) == 2
        src.close()
    finally:
        reg.stop()


def test_a_stalled_download_times_out_with_a_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOOTC_EMBED_REGISTRY_TIMEOUT", "1")
    data = os.urandom(1 << 20)
    reg = FakeRegistry({sha256(data): FakeBlob(data, stall_after=4096)}).start()
    try:
        src = _fake_source(reg)
        with pytest.raises(ImageReferenceError, match=r"stalled: no data for 1 s after 4096 of"):
            _read(src, data)
        src.close()
    finally:
        reg.stop()


def test_ctrl_c_during_a_stalled_pull_stops_at_once_with_no_tag_and_no_temporary_files(
    plain: Registry, samples: SampleImages, tmp_path: Path, home: Path
) -> None:
    # app1 served by a fake registry whose last layer stalls; the base comes from the real one
    layout = Path(samples.app1.split(":")[1])
    desc = json.loads((layout / "index.json").read_text())["manifests"][0]
    manifest_raw = (layout / "blobs/sha256" / desc["digest"][7:]).read_bytes()
    manifest = json.loads(manifest_raw)
    blobs = {
        d["digest"]: FakeBlob((layout / "blobs/sha256" / d["digest"][7:]).read_bytes())
        for d in [manifest["config"], *manifest["layers"]]
    }
    stalled = blobs[manifest["layers"][-1]["digest"]]
    stalled.stall_after = 10
    fake = FakeRegistry(blobs, {"1": (manifest_raw, desc["mediaType"])}).start()
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    e = {k: v for k, v in os.environ.items() if k not in ("REGISTRY_AUTH_FILE", "DOCKER_CONFIG")}
    e.update(
        HOME=str(home),
        XDG_RUNTIME_DIR=str(home / "run"),
        TMPDIR=str(tmp),
        BOOTC_EMBED_REGISTRY_TIMEOUT="120",  # Ctrl-C must not wait for the stall timeout
    )
    argv = [
        str(BOOTC_EMBED),
        "build",
        "--base",
        f"docker://{plain.host}/demo/base:latest",
        "--image",
        f"localhost/app1:1=docker://{fake.host}/x/y:1",
        "--no-cache",
        "--output",
        f"docker://{plain.host}/demo/interrupted:1",
    ]
    try:
        proc = subprocess.Popen(
            argv,
            env=e,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert wait_for(lambda: bool(stalled.gets), 30), "the build never reached the blob"
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        started = time.monotonic()
        _, err = proc.communicate(timeout=100)
        took = time.monotonic() - started
    finally:
        fake.stop()
    assert proc.returncode == 130, err
    assert took < 10, f"Ctrl-C took {took:.1f} s to stop the build"
    assert "interrupted" in err and "Traceback" not in err
    assert not plain.has_tag("demo/interrupted", "1")
    assert list(tmp.iterdir()) == []


def test_a_base_blob_streams_into_the_upload_and_a_bad_one_is_named(plain: Registry) -> None:
    good = os.urandom(3 << 20)
    bad = os.urandom(1 << 20)
    bad_digest = sha256(b"something else" + bad[14:])
    fake = FakeRegistry({sha256(good): FakeBlob(good), bad_digest: FakeBlob(bad)}).start()
    try:
        src = _fake_source(fake)
        dest = open_destination(
            parse_reference(f"docker://{plain.host}/demo/streamed:1"), TransportOptions()
        )
        try:
            plain.mark()
            layer = "application/vnd.oci.image.layer.v1.tar+gzip"
            assert dest.try_reuse(src, Descriptor(layer, sha256(good), len(good)))
            assert [(m, s) for m, p, s in plain.requests() if m == "PUT"] == [("PUT", 201)]
            assert plain.blob_file(sha256(good)).read_bytes() == good
            with pytest.raises(DigestMismatchError, match=bad_digest):
                dest.try_reuse(src, Descriptor(layer, bad_digest, len(bad)))
            assert not plain.blob_file(bad_digest).exists()
        finally:
            dest.abort()
            src.close()
    finally:
        fake.stop()


def test_plain_http_is_refused_for_a_registry_that_is_not_local() -> None:
    # a name that does not resolve: HTTPS fails, and no plain HTTP is tried without permission
    src = RegistrySource(parse_reference("docker://registry.invalid:5000/a:1"), TransportOptions())
    with pytest.raises(ImageReferenceError, match=r"over HTTPS.*--tls-verify=false"):
        src.top_descriptor()
    src.close()


# --------------------------------------------------------------------------------------------
# docker-archive and containers-storage (podman)


def test_docker_archive_from_podman_save_and_containers_storage_in_and_out(
    plain: Registry, tmp_path: Path, container_env: dict, home: Path
) -> None:
    from support.containers import Podman

    pm = Podman(tmp_path / "podman", container_env)
    try:
        app1 = f"{plain.host}/demo/app1:1"
        pm("pull", "-q", "--tls-verify=false", f"docker://{app1}")
        archive = tmp_path / "app1.tar"
        pm("save", "-o", archive, app1)
        base = f"docker://{plain.host}/demo/base:latest"

        out = tmp_path / "from-archive"
        s = ok(
            bootc_embed(
                "build",
                "--base",
                base,
                "--image",
                f"docker-archive:{archive}",
                "--output",
                f"oci:{out}:1",
                "--json",
                home=home,
            )
        )
        assert s["images"][0]["name"] == app1  # from the archive's RepoTags
        s2 = ok(
            bootc_embed(
                "build",
                "--base",
                base,
                "--image",
                f"localhost/renamed:2=docker-archive:{archive}:{app1}",
                "--output",
                f"oci:{tmp_path}/renamed:1",
                "--json",
                home=home,
            )
        )
        assert s2["images"][0]["name"] == "localhost/renamed:2"
        # the layers are the same content, whatever the transport
        from_registry = ok(
            bootc_embed(
                "build",
                "--base",
                base,
                "--image",
                f"docker://{app1}",
                "--output",
                f"oci:{tmp_path}/reg:1",
                "--json",
                home=home,
            )
        )
        assert [x["diff_id"] for x in s["images"][0]["layers"]] == [
            x["diff_id"] for x in from_registry["images"][0]["layers"]
        ]
        err = failed(
            bootc_embed(
                "build",
                "--base",
                base,
                "--image",
                f"docker-archive:{archive}:quay.io/not/there:1",
                "--output",
                f"oci:{tmp_path}/x",
                home=home,
            )
        )
        assert "no image named quay.io/not/there:1" in err and app1 in err

        # containers-storage in (the podman store) and out (a name podman then lists)
        s3 = ok(
            bootc_embed(
                "build",
                "--base",
                base,
                "--image",
                pm.storage_ref(app1),
                "--output",
                pm.storage_ref("localhost/embedded:1"),
                "--json",
                home=home,
            )
        )
        assert s3["images"][0]["name"] == app1
        assert [x["diff_id"] for x in s3["images"][0]["layers"]] == [
            x["diff_id"] for x in from_registry["images"][0]["layers"]
        ]
        assert "localhost/embedded:1" in pm.image_names()
        cfg = json.loads(pm("image", "inspect", "localhost/embedded:1").stdout)[0]
        assert cfg["Id"] == s3["config_digest"][7:]
        err = failed(
            bootc_embed(
                "build",
                "--base",
                base,
                "--image",
                pm.storage_ref("localhost/absent:1"),
                "--output",
                f"oci:{tmp_path}/y",
                home=home,
            )
        )
        assert "skopeo copy" in err and "localhost/absent" in err
    finally:
        pm.destroy()


def test_containers_storage_without_skopeo_says_so(tmp_path: Path, home: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    os.symlink(sys.executable, bin_dir / "python3")
    r = bootc_embed(
        "build",
        "--base",
        "containers-storage:localhost/base:1",
        "--image",
        "containers-storage:localhost/app:1",
        "--output",
        f"oci:{tmp_path}/o",
        home=home,
        PATH=str(bin_dir),
    )
    assert r.returncode == 1, r.describe()
    assert "skopeo, which is not installed" in r.stderr
