"""Image references (``TRANSPORT:DETAILS``, as skopeo spells them) and image names."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import UsageError

TRANSPORTS = ("oci", "oci-archive", "docker", "docker-archive", "containers-storage")
_SPELLINGS = {"docker": "docker://"}
DOCKER_HUB = "docker.io"

# docker/distribution reference grammar
_ALNUM = r"[a-z0-9]+"
_SEP = r"(?:[._]|__|[-]+)"
_COMPONENT = rf"{_ALNUM}(?:{_SEP}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_NAME_RE = re.compile(
    rf"^(?P<name>(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*)"
    rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?$"
)


@dataclass(frozen=True)
class ImageName:
    """A fully qualified image name: ``registry/repo`` plus a tag and/or digest."""

    repository: str
    tag: str | None
    digest: str | None

    def __str__(self) -> str:
        s = self.repository
        if self.tag:
            s += ":" + self.tag
        if self.digest:
            s += "@" + self.digest
        return s


def looks_like_name(text: str) -> bool:
    return bool(_NAME_RE.match(text)) and len(text) <= 255


def parse_image_name(text: str) -> ImageName:
    """Parse and normalise a name for the store: fully qualified, ``:latest`` added."""
    m = _NAME_RE.match(text)
    if not m or len(m.group("name")) > 255:
        raise UsageError(f"{text!r} is not a valid image name")
    repo = m.group("name")
    first, _, rest = repo.partition("/")
    qualified = bool(rest) and ("." in first or ":" in first or first == "localhost")
    if not qualified:
        hub = repo if rest else f"library/{repo}"
        raise UsageError(
            f"image name {text!r} is not fully qualified: podman shows store images by their full "
            f"name; write e.g. 'docker.io/{hub}' or 'localhost/{repo}'"
        )
    tag, digest = m.group("tag"), m.group("digest")
    if tag is None and digest is None:
        tag = "latest"
    return ImageName(repo, tag, digest)


@dataclass(frozen=True)
class Reference:
    """``TRANSPORT:PATH[:TAG]``, as skopeo spells references.

    - ``oci:DIR[:TAG]``, ``oci-archive:FILE[:TAG]``: ``path`` is the directory or file.
    - ``docker://HOST[:PORT]/REPO[:TAG|@DIGEST]``: ``path`` is ``HOST/REPO`` (normalised like
      docker: ``docker.io`` and ``library/`` added to short names, ``:latest`` when neither a
      tag nor a digest is given), ``tag`` or ``digest`` the rest.
    - ``docker-archive:FILE[:NAME|:@INDEX]``: ``path`` is the file, ``tag`` the image name
      (normalised) or ``@INDEX`` in the archive's manifest.json.
    - ``containers-storage:[STORE-SPEC]NAME``: ``path`` is everything after the transport,
      read by skopeo.
    """

    transport: str
    path: str
    tag: str | None
    digest: str | None = None

    def __str__(self) -> str:
        head = _SPELLINGS.get(self.transport, self.transport + ":")
        return (
            f"{head}{self.path}"
            + (f":{self.tag}" if self.tag else "")
            + (f"@{self.digest}" if self.digest else "")
        )

    @property
    def host(self) -> str:
        """The registry of a ``docker://`` reference (``HOST[:PORT]``)."""
        return self.path.partition("/")[0]

    @property
    def repository(self) -> str:
        """The repository path of a ``docker://`` reference, without the registry."""
        return self.path.partition("/")[2]


def normalize_docker_name(text: str, what: str) -> ImageName:
    """A docker-style name as docker and skopeo read it: ``busybox`` is
    ``docker.io/library/busybox:latest``, a first component with ``.`` or ``:`` (or
    ``localhost``) is a registry."""
    m = _NAME_RE.match(text)
    if not m or len(m.group("name")) > 255:
        raise UsageError(f"{what}: {text!r} is not a valid image name")
    repo = m.group("name")
    first, _, rest = repo.partition("/")
    if not (rest and ("." in first or ":" in first or first == "localhost")):
        repo = f"{DOCKER_HUB}/{repo}" if rest else f"{DOCKER_HUB}/library/{repo}"
    elif first in ("index.docker.io", "registry-1.docker.io"):
        repo = f"{DOCKER_HUB}/{rest}"
    tag, digest = m.group("tag"), m.group("digest")
    if tag is None and digest is None:
        tag = "latest"
    return ImageName(repo, tag, digest)


def _parse_docker(text: str, rest: str) -> Reference:
    if not rest.startswith("//") or len(rest) == 2:
        raise UsageError(
            f"image reference {text!r}: expected docker://HOST[:PORT]/REPO[:TAG|@DIGEST]"
        )
    name = normalize_docker_name(rest[2:], f"image reference {text!r}")
    if name.tag and name.digest:
        raise UsageError(
            f"image reference {text!r} has both a tag and a digest; give one of them "
            f"(as skopeo requires)"
        )
    return Reference("docker", name.repository, name.tag, name.digest)


def _parse_docker_archive(text: str, rest: str) -> Reference:
    path, sep, name = rest.partition(":")
    if not path:
        raise UsageError(f"image reference {text!r} has no path")
    if not sep:
        return Reference("docker-archive", path, None)
    if not name:
        raise UsageError(f"image reference {text!r} has an empty image name")
    if name.startswith("@"):
        if not name[1:].isdigit():
            raise UsageError(f"image reference {text!r}: @INDEX must be a number")
        return Reference("docker-archive", path, name)
    parsed = normalize_docker_name(name, f"image reference {text!r}")
    if parsed.digest:
        raise UsageError(f"image reference {text!r}: a docker-archive name cannot have a digest")
    return Reference("docker-archive", path, str(parsed))


def _parse_containers_storage(text: str, rest: str) -> Reference:
    name = rest
    if rest.startswith("["):
        end = rest.find("]")
        if end < 0:
            raise UsageError(f"image reference {text!r}: the store specification has no ']'")
        name = rest[end + 1 :]
    if not name:
        raise UsageError(
            f"image reference {text!r} has no image name: containers-storage:[STORE]NAME"
        )
    return Reference("containers-storage", rest, None)


def parse_reference(text: str) -> Reference:
    transport, sep, rest = text.partition(":")
    if not sep or transport not in TRANSPORTS:
        known = ", ".join(_SPELLINGS.get(t, t + ":") for t in TRANSPORTS)
        raise UsageError(f"unsupported image reference {text!r}: expected one of {known}")
    if not rest:
        raise UsageError(f"image reference {text!r} has no path")
    if transport == "docker":
        return _parse_docker(text, rest)
    if transport == "docker-archive":
        return _parse_docker_archive(text, rest)
    if transport == "containers-storage":
        return _parse_containers_storage(text, rest)
    # Like containers/image: the path ends at the first ':' (paths with ':' are not supported)
    path, sep, tag = rest.partition(":")
    if not path:
        raise UsageError(f"image reference {text!r} has no path")
    if sep and not tag:
        raise UsageError(f"image reference {text!r} has an empty tag")
    return Reference(transport, path, tag or None)


def split_image_arg(arg: str) -> tuple[ImageName | None, Reference]:
    """``[NAME=]REF``: split at the first ``=`` only when the left side parses as a name."""
    left, sep, right = arg.partition("=")
    is_transport = left.partition(":")[0] in TRANSPORTS
    if sep and looks_like_name(left) and not is_transport:
        return parse_image_name(left), parse_reference(right)
    return None, parse_reference(arg)
