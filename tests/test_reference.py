"""Transport references and image names (``bootc_embed._reference``)."""

from __future__ import annotations

import pytest

from bootc_embed import UsageError
from bootc_embed._reference import (
    ImageName,
    Reference,
    parse_image_name,
    parse_reference,
    split_image_arg,
)

DIGEST = "sha256:" + "0123456789abcdef" * 4

# -- references ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "transport", "path", "tag"),
    [
        ("oci:/src/app", "oci", "/src/app", None),
        ("oci:/src/app:1", "oci", "/src/app", "1"),
        ("oci:relative/dir:v1.2-rc_3", "oci", "relative/dir", "v1.2-rc_3"),
        ("oci-archive:/tmp/app.tar", "oci-archive", "/tmp/app.tar", None),
        ("oci-archive:/tmp/app.tar:latest", "oci-archive", "/tmp/app.tar", "latest"),
        ("oci:/with=equals:t", "oci", "/with=equals", "t"),
    ],
)
def test_parse_reference_splits_transport_path_and_tag(
    text: str, transport: str, path: str, tag: str | None
) -> None:
    ref = parse_reference(text)
    assert ref == Reference(transport, path, tag)
    assert str(ref) == text


@pytest.mark.parametrize(
    "text",
    [
        "docker:quay.io/a/b:1",  # docker needs //
        "docker://",
        "docker://quay.io/a/b:1@sha256:" + "0" * 64,  # tag and digest: skopeo refuses it too
        "docker://quay.io/A/b",
        "docker-archive:",
        "docker-archive:/a.tar:",
        "containers-storage:",
        "containers-storage:[overlay@/a+/b]",
        "dir:/x",
        "/just/a/path",
        "quay.io/org/app:1",
        "oci",
        "oci:",
        "oci::tag",
        "oci:/dir:",
        "oci-archive:",
        "OCI:/dir",
    ],
)
def test_parse_reference_refuses_unsupported_or_incomplete_references(text: str) -> None:
    with pytest.raises(UsageError):
        parse_reference(text)


def test_parse_reference_names_the_supported_transports_in_its_error() -> None:
    with pytest.raises(UsageError, match=r"oci:.*oci-archive:.*docker://.*containers-storage:"):
        parse_reference("dir:/x")


# -- NAME=REF --------------------------------------------------------------------------------------


def test_split_image_arg_splits_when_the_left_side_is_a_name() -> None:
    name, ref = split_image_arg("quay.io/org/app:1.2=oci:/src/app:1")
    assert name == ImageName("quay.io/org/app", "1.2", None)
    assert ref == Reference("oci", "/src/app", "1")


def test_split_image_arg_adds_latest_to_the_name() -> None:
    name, ref = split_image_arg("localhost/app=oci-archive:/a.tar")
    assert str(name) == "localhost/app:latest"
    assert ref == Reference("oci-archive", "/a.tar", None)


def test_split_image_arg_splits_only_at_the_first_equals() -> None:
    name, ref = split_image_arg("localhost/app:1=oci:/dir=with=equals:t")
    assert str(name) == "localhost/app:1"
    assert ref == Reference("oci", "/dir=with=equals", "t")


@pytest.mark.parametrize(
    ("arg", "path"),
    [
        ("oci:dir=x", "dir=x"),
        ("oci:dir=x:tag", "dir=x"),
        ("oci-archive:a=b.tar", "a=b.tar"),
        ("oci:/abs/dir=x", "/abs/dir=x"),
    ],
)
def test_split_image_arg_does_not_split_a_reference_with_equals_in_its_path(
    arg: str, path: str
) -> None:
    name, ref = split_image_arg(arg)
    assert name is None
    assert ref.path == path


def test_split_image_arg_without_a_name_gives_only_the_reference() -> None:
    assert split_image_arg("oci:/src/app:1") == (None, Reference("oci", "/src/app", "1"))


def test_split_image_arg_refuses_an_unqualified_name_with_a_hint() -> None:
    with pytest.raises(UsageError, match=r"docker\.io/library/nginx"):
        split_image_arg("nginx=oci:/src/nginx")


def test_split_image_arg_refuses_a_bad_reference_after_a_name() -> None:
    with pytest.raises(UsageError):
        split_image_arg("quay.io/a/b=dir:/x")


# -- image names -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "normalised"),
    [
        ("localhost/x", "localhost/x:latest"),
        ("localhost/x:1", "localhost/x:1"),
        ("localhost:5000/x", "localhost:5000/x:latest"),
        ("host:5000/a/b:t", "host:5000/a/b:t"),
        ("quay.io/org/app", "quay.io/org/app:latest"),
        ("docker.io/library/nginx:1.25", "docker.io/library/nginx:1.25"),
        ("registry.example.com/a/b/c/d:v1.0.0-rc.1", "registry.example.com/a/b/c/d:v1.0.0-rc.1"),
        ("quay.io/org/my_app-x.y:latest", "quay.io/org/my_app-x.y:latest"),
        ("[::1]:5000/a:t", "[::1]:5000/a:t"),
        (f"quay.io/org/app@{DIGEST}", f"quay.io/org/app@{DIGEST}"),
        (f"quay.io/org/app:1@{DIGEST}", f"quay.io/org/app:1@{DIGEST}"),
    ],
)
def test_parse_image_name_normalises_fully_qualified_names(text: str, normalised: str) -> None:
    assert str(parse_image_name(text)) == normalised


def test_parse_image_name_keeps_tag_and_digest_apart() -> None:
    assert parse_image_name("host:5000/a/b:t") == ImageName("host:5000/a/b", "t", None)
    assert parse_image_name(f"quay.io/a@{DIGEST}") == ImageName("quay.io/a", None, DIGEST)
    assert parse_image_name(f"quay.io/a:1@{DIGEST}") == ImageName("quay.io/a", "1", DIGEST)


@pytest.mark.parametrize(
    "text", ["nginx", "nginx:latest", "library/nginx", "myorg/app:1", f"nginx@{DIGEST}"]
)
def test_parse_image_name_refuses_unqualified_names_with_a_hint(text: str) -> None:
    with pytest.raises(UsageError, match="not fully qualified") as err:
        parse_image_name(text)
    repo = text.split("@")[0].split(":")[0]
    assert f"localhost/{repo}" in str(err.value)
    if "/" not in repo:
        assert f"docker.io/library/{repo}" in str(err.value)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "quay.io/Org/app",  # upper case in the repository
        "quay.io/org/app:",  # empty tag
        "quay.io/org/app:" + "t" * 129,  # tag too long
        "quay.io/org/app@sha256:abc",  # digest too short
        "quay.io//app",
        "quay.io/org/app:-bad",
        "quay.io/org/app/",
        "localhost/" + "a" * 250,  # over 255 characters
        "quay.io/org app",
    ],
)
def test_parse_image_name_refuses_invalid_names(text: str) -> None:
    with pytest.raises(UsageError):
        parse_image_name(text)


def test_the_hint_for_an_unqualified_name_with_a_namespace_is_docker_io_without_library() -> None:
    # "myorg/app" means docker.io/myorg/app; "library/" is only added to single-component names
    with pytest.raises(UsageError) as err:
        parse_image_name("myorg/app:1")
    assert "'docker.io/myorg/app'" in str(err.value)
    assert "docker.io/library/myorg/app" not in str(err.value)
