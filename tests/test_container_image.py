"""bootc-embed's container image (the repository's Containerfile), built with podman on a
debootstrap base and run: its metadata, the demo, and a real build with OCI layouts mounted in,
whose output must be byte-identical to the same build run on this host."""

from __future__ import annotations

import hashlib
import json
import tomllib
from pathlib import Path

from support import toolimage
from support.containers import run

VERSION = tomllib.loads((toolimage.REPO / "pyproject.toml").read_text())["project"]["version"]


def podman_run(tool_image, *args: str | Path, check: bool = True):
    return tool_image.podman("run", "--rm", "--network", "none", *args, check=check, timeout=900)


def test_image_metadata_and_tools(tool_image):
    (info,) = tool_image.podman.json("image", "inspect", tool_image.name)  # type: ignore[misc]
    config = info["Config"]
    assert config["Entrypoint"] == ["bootc-embed"]
    labels = config["Labels"]
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert labels["org.opencontainers.image.source"] == toolimage.SOURCE_URL
    assert labels["org.opencontainers.image.title"] == "bootc-embed"

    # the default command is the help; the version is this checkout's
    assert "Commands:" in podman_run(tool_image, tool_image.name).stdout
    assert VERSION in podman_run(tool_image, tool_image.name, "--version").stdout
    # skopeo is there for containers-storage: references, and the CA bundle for TLS registries
    out = podman_run(
        tool_image,
        "--entrypoint",
        "sh",
        tool_image.name,
        "-c",
        "skopeo --version && test -s /etc/ssl/certs/ca-certificates.crt && echo certs-ok",
    ).stdout
    assert "skopeo version" in out and "certs-ok" in out


def test_demo_runs_in_the_image(tool_image, bootc_embed, tmp_path):
    res = podman_run(tool_image, "-v", f"{tmp_path}:/demo", tool_image.name, "demo", "/demo")
    assert "Embedding" in res.stdout, res.stdout
    # what the demo wrote inside the container is a valid image for this host's tools
    check = bootc_embed("verify", f"oci:{tmp_path / 'output'}:latest")
    assert check.returncode == 0, check.describe()


def test_build_in_the_image_matches_the_host(tool_image, test_images, bootc_embed, tmp_path):
    """A real build in the container (inputs mounted read-only) gives the host's bytes."""
    images_dir = test_images.root
    out = tmp_path / "container"
    out.mkdir()
    inputs = ["localhost/app1:1=app1", "localhost/app3:1=app3"]

    def args(root: Path | str, output: str) -> list[str]:
        a = ["build", "--base", f"oci:{root}/base:1", "--output", output, "--json"]
        for spec in inputs:
            name, layout = spec.split("=")
            a += ["--image", f"{name}=oci:{root}/{layout}:1"]
        return a

    res = podman_run(
        tool_image,
        "-v",
        f"{images_dir}:/images:ro",
        "-v",
        f"{out}:/out",
        tool_image.name,
        *args("/images", "oci:/out/os:1"),
    )
    in_container = json.loads(res.stdout)

    host = bootc_embed(*args(images_dir, f"oci:{tmp_path / 'host'}:1"))
    assert host.returncode == 0, host.describe()
    assert in_container["manifest_digest"] == host.json()["manifest_digest"]

    # the output as other tools read it: skopeo, and this host's verify
    raw = run(["skopeo", "inspect", "--raw", f"oci:{out / 'os'}:1"], text=False).stdout
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == in_container["manifest_digest"]
    check = bootc_embed("verify", f"oci:{out / 'os'}:1")
    assert check.returncode == 0, check.describe()
