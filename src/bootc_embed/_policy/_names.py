"""Docker references as the signature policy compares them (containers/image's
``reference.ParseNormalizedNamed``, ``ParseNamed`` and the policy scopes of the ``docker:``
transport)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .._reference import _NAME_RE, DOCKER_HUB, Reference

_DIGEST_HEX = {"sha256": 64, "sha384": 96, "sha512": 128}
_HEX64 = re.compile(r"^[a-f0-9]{64}$")
_LOWER_HEX = re.compile(r"^[a-f0-9]+$")


def valid_digest(text: str) -> bool:
    """``ALGO:HEX`` with a known algorithm and lowercase hex of its length (go-digest's Parse)."""
    algo, sep, hexpart = text.partition(":")
    n = _DIGEST_HEX.get(algo)
    return bool(sep) and n is not None and len(hexpart) == n and bool(_LOWER_HEX.match(hexpart))


class BadReference(ValueError):
    pass


@dataclass(frozen=True)
class Named:
    """A fully qualified docker reference: ``name`` (``DOMAIN/PATH``) with an optional tag
    and digest."""

    name: str
    tag: str | None = None
    digest: str | None = None

    def __str__(self) -> str:
        return (
            self.name
            + (f":{self.tag}" if self.tag else "")
            + (f"@{self.digest}" if self.digest else "")
        )

    @property
    def name_only(self) -> bool:
        return self.tag is None and self.digest is None

    @property
    def domain(self) -> str:
        return self.name.partition("/")[0]

    @property
    def path(self) -> str:
        return self.name.partition("/")[2]


def parse_normalized(text: str) -> Named:
    """``busybox`` is ``docker.io/library/busybox``; no tag is added (ParseNormalizedNamed)."""
    if _HEX64.match(text):
        raise BadReference(f"{text!r}: a 64-character hexadecimal string is not a name")
    first, slash, rest = text.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost" or first.lower() != first):
        domain, remainder = first, rest
    else:
        domain, remainder = DOCKER_HUB, text
    if domain == "index.docker.io":
        domain = DOCKER_HUB
    if domain == DOCKER_HUB and "/" not in remainder:
        remainder = "library/" + remainder
    name_part = re.split(r"[:@]", remainder, maxsplit=1)[0]
    if name_part.lower() != name_part:
        raise BadReference(f"{text!r}: the repository name must be lowercase")
    return _parse_full(f"{domain}/{remainder}", text)


def _parse_full(full: str, text: str) -> Named:
    m = _NAME_RE.match(full)
    if not m:
        raise BadReference(f"{text!r} is not a valid image reference")
    if len(m.group("name")) > 255:
        raise BadReference(f"{text!r}: the repository name is longer than 255 characters")
    digest = m.group("digest")
    if digest is not None and not valid_digest(digest):
        raise BadReference(f"{text!r}: {digest!r} is not a valid digest")
    return Named(m.group("name"), m.group("tag"), digest)


def parse_named(text: str) -> Named:
    """A reference that must already be in the fully expanded form (ParseNamed)."""
    named = parse_normalized(text)
    if str(named) != text:
        raise BadReference(f"{text!r} is not in the fully expanded form (that is {named})")
    return named


def docker_identity(ref: Reference) -> Named | None:
    """The docker reference an image of ``ref`` is known by (containers/image's
    ``DockerReference()``): a ``docker://`` reference, or a ``docker-archive:`` image name;
    None for layouts, which have no such identity."""
    if ref.transport == "docker":
        return Named(ref.path, ref.tag, ref.digest)
    if ref.transport == "docker-archive" and ref.tag and not ref.tag.startswith("@"):
        return parse_normalized(ref.tag)
    return None


def docker_namespaces(name: str) -> list[str]:
    """The policy namespaces of a repository, most specific first: the repository, its parent
    namespaces up to the registry host, then ``*.domain`` wildcards of the host (without its
    port): ``a.example.com:5000/ns/app`` gives ``a.example.com:5000/ns/app``,
    ``a.example.com:5000/ns``, ``a.example.com:5000``, ``*.example.com``, ``*.com``."""
    out: list[str] = []
    while True:
        out.append(name)
        cut = name.rfind("/")
        if cut < 0:
            break
        name = name[:cut]
    host = name.split(":", 1)[0]
    while "." in host:
        host = host.split(".", 1)[1]
        out.append("*." + host)
    return out
