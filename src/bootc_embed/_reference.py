"""Image references (``TRANSPORT:DETAILS``, as skopeo spells them) and image names."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import UsageError

TRANSPORTS = ("oci", "oci-archive")

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
    """``TRANSPORT:PATH[:TAG]``."""

    transport: str
    path: str
    tag: str | None

    def __str__(self) -> str:
        return f"{self.transport}:{self.path}" + (f":{self.tag}" if self.tag else "")


def parse_reference(text: str) -> Reference:
    transport, sep, rest = text.partition(":")
    if not sep or transport not in TRANSPORTS:
        known = ", ".join(f"{t}:" for t in TRANSPORTS)
        raise UsageError(f"unsupported image reference {text!r}: expected one of {known}")
    if not rest:
        raise UsageError(f"image reference {text!r} has no path")
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
