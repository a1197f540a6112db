"""containers-policy.json(5), parsed as strictly as containers/image parses it (an unknown,
duplicated or mistyped field makes the whole file invalid), and the scope lookup that picks the
requirements for an image.

File: ``--policy FILE``, else ``$HOME/.config/containers/policy.json`` when it exists, else
``/etc/containers/policy.json``; there is no built-in fallback policy (as in podman and skopeo).
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import PolicyError
from . import _json
from ._names import BadReference, Named, parse_named, parse_normalized, valid_digest

SYSTEM_POLICY = Path("/etc/containers/policy.json")
USER_POLICY = Path(".config/containers/policy.json")  # under $HOME

KEY_TYPES = ("GPGKeys", "signedByGPGKeys", "X509Certificates", "signedByX509CAs")
REQUIREMENT_TYPES = (
    "insecureAcceptAnything",
    "reject",
    "signedBy",
    "sigstoreSigned",
    "signedBaseLayer",
)
IDENTITY_TYPES = (
    "matchExact",
    "matchRepoDigestOrExact",
    "matchRepository",
    "exactReference",
    "exactRepository",
    "remapIdentity",
)
_PATH_SCOPE_TRANSPORTS = ("oci", "oci-archive", "dir")
_NO_SCOPE_TRANSPORTS = ("docker-archive", "docker-daemon", "tarball", "sif")

# docker/distribution's domain grammar, for remapIdentity prefixes
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
_DOMAIN_RE = re.compile(rf"^{_DOMAIN}$")
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_PREFIX_NAME_RE = re.compile(rf"^{_DOMAIN}(?:/{_PATH_COMPONENT})+$")


class InvalidPolicyError(PolicyError):
    """A policy file that cannot be used; the message names the file and the field at fault."""


# --------------------------------------------------------------------------------------------
# signedIdentity


@dataclass(frozen=True)
class IdentityMatch:
    """A ``signedIdentity``: which docker reference a signature may claim for an image."""

    type: str = "matchRepoDigestOrExact"
    reference: Named | None = None  # exactReference's dockerReference
    repository: Named | None = None  # exactRepository's dockerRepository
    prefix: str = ""  # remapIdentity
    signed_prefix: str = ""

    def describe(self) -> str:
        if self.type == "exactReference":
            return f"exactReference {self.reference}"
        if self.type == "exactRepository":
            assert self.repository is not None
            return f"exactRepository {self.repository.name}"
        if self.type == "remapIdentity":
            return f"remapIdentity {self.prefix} -> {self.signed_prefix}"
        return self.type

    def expected(self, intended: Named | None) -> str:
        """What a signature must claim, for messages."""
        if self.type == "exactReference":
            return str(self.reference)
        if self.type == "exactRepository":
            assert self.repository is not None
            return f"any tag or digest of {self.repository.name}"
        if intended is None:
            return "a docker reference (this image has none to compare it with)"
        if self.type == "remapIdentity":
            intended = self._remap(intended) or intended
        if self.type == "matchRepository" or (
            self.type in ("matchRepoDigestOrExact", "remapIdentity") and intended.tag is None
        ):
            return f"any tag or digest of {intended.name}"
        return str(intended)

    def _remap(self, intended: Named) -> Named | None:
        """remapIdentity: the image's reference with ``prefix`` replaced by ``signed_prefix``
        (unchanged when the prefix does not match; None when the result is not a reference)."""
        name, prefix = intended.name, self.prefix
        if not (name == prefix or (name.startswith(prefix) and name[len(prefix) :][:1] == "/")):
            return intended
        try:
            return parse_named(str(intended).replace(prefix, self.signed_prefix, 1))
        except BadReference:
            return None

    def matches(self, intended: Named | None, signed: str) -> bool:
        """Whether a signature claiming ``signed`` is acceptable for an image known as
        ``intended`` (containers/image's matchesDockerReference)."""
        try:
            claimed = parse_normalized(signed)
        except BadReference:
            return False
        if self.type == "exactReference":
            assert self.reference is not None
            return not claimed.name_only and str(claimed) == str(self.reference)
        if self.type == "exactRepository":
            assert self.repository is not None
            return claimed.name == self.repository.name
        if intended is None:
            return False
        if self.type == "matchExact":
            return not intended.name_only and not claimed.name_only and claimed == intended
        if self.type == "matchRepository":
            return claimed.name == intended.name
        if self.type == "remapIdentity":
            remapped = self._remap(intended)
            if remapped is None:
                return False
            intended = remapped
        # matchRepoDigestOrExact
        if claimed.name_only:
            return False
        if intended.tag is not None:
            return str(claimed) == str(intended)
        if intended.digest is not None:
            return claimed.name == intended.name
        return False


# --------------------------------------------------------------------------------------------
# requirements


@dataclass(frozen=True)
class Requirement:
    """One policy requirement object; ``where`` is its place in the file, for messages."""

    type: str
    where: str
    key_type: str = ""  # signedBy
    key_paths: tuple[str, ...] = ()  # keyPath / keyPaths
    key_datas: tuple[bytes, ...] = ()  # keyData / keyDatas
    key_field: str = ""  # which of keyPath, keyPaths, keyData, keyDatas was given
    identity: IdentityMatch = field(default_factory=IdentityMatch)
    unsupported: tuple[str, ...] = ()  # keyless fields present (fulcio, pki, rekorPublicKey*)

    def describe(self) -> str:
        if self.type in ("insecureAcceptAnything", "reject"):
            return self.type
        if self.type == "signedBaseLayer":
            return self.type
        if self.unsupported:
            keys = ", ".join(self.unsupported)
        elif self.key_field in ("keyPath", "keyPaths"):
            keys = f"{self.key_field} {', '.join(self.key_paths)}"
        else:
            keys = f"{self.key_field} ({len(self.key_datas)} inline)"
        extra = f"keyType {self.key_type}, " if self.key_type not in ("", "GPGKeys") else ""
        return f"{self.type} with {extra}{keys}, signedIdentity {self.identity.describe()}"


@dataclass(frozen=True)
class Policy:
    origin: str  # the file (or what the bytes came from)
    default: tuple[Requirement, ...]
    transports: Mapping[str, Mapping[str, tuple[Requirement, ...]]]

    def requirements_for(
        self, transport: str, identity: str, namespaces: list[str]
    ) -> tuple[str, tuple[Requirement, ...]]:
        """(the scope that applies, its requirements): the most specific of the transport's
        scopes (``identity``, then each of ``namespaces``, then ``""``), else ``default``."""
        scopes = self.transports.get(transport)
        if scopes is not None:
            for name in ([identity] if identity else []) + namespaces + [""]:
                reqs = scopes.get(name)
                if reqs is not None:
                    return _scope_label(transport, name), reqs
        return "default", self.default


def _scope_label(transport: str, scope: str) -> str:
    return f'transports.{transport}["{scope}"]'


# --------------------------------------------------------------------------------------------
# parsing


def _identity(value: Any, where: str) -> IdentityMatch:
    d = _json.obj(value, where)
    kind = d.get("type")
    if kind not in IDENTITY_TYPES:
        raise _json.ShapeError(
            f"{where}: unknown signedIdentity type {kind!r} (one of {', '.join(IDENTITY_TYPES)})"
        )
    if kind in ("matchExact", "matchRepoDigestOrExact", "matchRepository"):
        _json.fields(d, where, ("type",))
        return IdentityMatch(kind)
    if kind == "exactReference":
        d = _json.fields(d, where, ("type", "dockerReference"), ("dockerReference",))
        text = _json.string(d["dockerReference"], f"{where}.dockerReference")
        ref = _reference(text, f"{where}.dockerReference")
        if ref.name_only:
            raise _json.ShapeError(
                f"{where}.dockerReference {text!r} has neither a tag nor a digest"
            )
        return IdentityMatch(kind, reference=ref)
    if kind == "exactRepository":
        d = _json.fields(d, where, ("type", "dockerRepository"), ("dockerRepository",))
        text = _json.string(d["dockerRepository"], f"{where}.dockerRepository")
        return IdentityMatch(kind, repository=_reference(text, f"{where}.dockerRepository"))
    d = _json.fields(d, where, ("type", "prefix", "signedPrefix"), ("prefix", "signedPrefix"))
    prefixes = []
    for key in ("prefix", "signedPrefix"):
        text = _json.string(d[key], f"{where}.{key}")
        if not (_DOMAIN_RE.match(text) or _PREFIX_NAME_RE.match(text)):
            raise _json.ShapeError(
                f"{where}.{key} {text!r} is not a host[:port], namespace or repository in the "
                f"fully expanded form (e.g. docker.io/library, not library)"
            )
        prefixes.append(text)
    return IdentityMatch(kind, prefix=prefixes[0], signed_prefix=prefixes[1])


def _reference(text: str, where: str) -> Named:
    try:
        return parse_normalized(text)
    except BadReference as e:
        raise _json.ShapeError(f"{where}: {e}") from None


def _key_sources(
    d: dict[str, Any], where: str, names: tuple[str, ...], others: tuple[str, ...] = ()
) -> tuple[str, tuple[str, ...], tuple[bytes, ...]]:
    """(the key field given, paths, inline datas): exactly one of ``names`` + ``others``."""
    given = [k for k in (*names, *others) if k in d]
    if len(given) != 1:
        what = "none" if not given else "both " + " and ".join(given)
        raise _json.ShapeError(
            f"{where}: exactly one of {', '.join((*names, *others))} must be given ({what})"
        )
    key = given[0]
    if key in others:
        return key, (), ()
    if key == "keyPath":
        path = _json.string(d[key], f"{where}.keyPath")
        if not path:
            raise _json.ShapeError(f"{where}.keyPath is empty")
        return key, (path,), ()
    if key == "keyPaths":
        paths = _json.strings(d[key], f"{where}.keyPaths")
        return key, tuple(paths), ()
    if key == "keyData":
        return key, (), (_json.b64bytes(d[key], f"{where}.keyData"),)
    if not isinstance(d[key], list):
        raise _json.ShapeError(f"{where}.{key} must be a list of base64 strings")
    return key, (), tuple(_json.b64bytes(v, f"{where}.{key}[{i}]") for i, v in enumerate(d[key]))


def _requirement(value: Any, where: str) -> Requirement:
    d = _json.obj(value, where)
    kind = d.get("type")
    if kind not in REQUIREMENT_TYPES:
        raise _json.ShapeError(
            f"{where}: unknown requirement type {kind!r} (one of {', '.join(REQUIREMENT_TYPES)})"
        )
    if kind in ("insecureAcceptAnything", "reject"):
        _json.fields(d, where, ("type",))
        return Requirement(kind, where)
    if kind == "signedBaseLayer":
        d = _json.fields(d, where, ("type", "baseLayerIdentity"), ("baseLayerIdentity",))
        return Requirement(
            kind, where, identity=_identity(d["baseLayerIdentity"], f"{where}.baseLayerIdentity")
        )
    identity = (
        _identity(d["signedIdentity"], f"{where}.signedIdentity")
        if "signedIdentity" in d
        else IdentityMatch()
    )
    if kind == "signedBy":
        d = _json.fields(
            d, where, ("type", "keyType", "keyPath", "keyPaths", "keyData", "signedIdentity")
        )
        key_type = _json.string(d.get("keyType", ""), f"{where}.keyType")
        if key_type not in KEY_TYPES:
            raise _json.ShapeError(
                f"{where}.keyType {key_type!r} is not one of {', '.join(KEY_TYPES)}"
            )
        key_field, paths, datas = _key_sources(d, where, ("keyPath", "keyPaths", "keyData"))
        return Requirement(kind, where, key_type, paths, datas, key_field, identity)
    keyless = ("fulcio", "pki")
    rekor = (
        "rekorPublicKeyPath",
        "rekorPublicKeyPaths",
        "rekorPublicKeyData",
        "rekorPublicKeyDatas",
    )
    d = _json.fields(
        d,
        where,
        ("type", "keyPath", "keyPaths", "keyData", "keyDatas", *keyless, *rekor, "signedIdentity"),
    )
    key_field, paths, datas = _key_sources(
        d, where, ("keyPath", "keyPaths", "keyData", "keyDatas"), keyless
    )
    if key_field in ("keyPaths", "keyDatas") and not (paths or datas):
        raise _json.ShapeError(f"{where}.{key_field} contains no entries")
    for name in keyless:
        if name in d:
            _json.obj(d[name], f"{where}.{name}")
    rekors = [k for k in rekor if k in d]
    if len(rekors) > 1:
        raise _json.ShapeError(f"{where}: at most one of {', '.join(rekor)} may be given")
    for name in rekors:
        if name.endswith("s"):
            _json.strings(d[name], f"{where}.{name}")
        else:
            _json.string(d[name], f"{where}.{name}")
    unsupported = tuple(k for k in (*keyless, *rekor) if k in d)
    return Requirement(kind, where, "", paths, datas, key_field, identity, unsupported)


def _requirements(value: Any, where: str) -> tuple[Requirement, ...]:
    if not isinstance(value, list):
        raise _json.ShapeError(f"{where} must be a list of requirements")
    if not value:
        raise _json.ShapeError(f"{where}: the list of requirements must not be empty")
    return tuple(_requirement(v, f"{where}[{i}]") for i, v in enumerate(value))


def _check_scope(transport: str, scope: str, where: str) -> None:
    """The scope names containers/image's transports accept (it refuses the whole file
    otherwise); transports it does not know are not checked."""
    problem = ""
    if transport in _PATH_SCOPE_TRANSPORTS:
        if not scope.startswith("/"):
            problem = "must be an absolute path"
        elif scope == "/":
            problem = 'use the transport default scope "" instead of "/"'
        elif posixpath.normpath(scope) != scope:
            problem = f"is not in canonical form (write {posixpath.normpath(scope)!r})"
    elif transport in _NO_SCOPE_TRANSPORTS:
        problem = f'{transport}: takes no scopes except the default ""'
    elif transport == "containers-storage":
        problem = _storage_scope_problem(scope)
    if problem:
        raise _json.ShapeError(f"{where}: the scope {scope!r} {problem}".replace(" : ", ": "))


def _storage_scope_problem(scope: str) -> str:
    if not scope.startswith("["):
        return "must start with a store specification: [DRIVER@GRAPHROOT] or [GRAPHROOT]"
    end = scope.find("]")
    if end < 1:
        return "has no ']' closing its store specification"
    spec, rest = scope[1:end], scope[end + 1 :]
    driver, at, root = spec.partition("@")
    if at and not (driver and root):
        return "has an incomplete store specification"
    if not (root if at else spec).startswith("/"):
        return "must name the graph root by an absolute path"
    parts = rest.split("@")
    if len(parts) > 3:
        return "has too many '@'"
    for extra in parts[1:]:
        if not (re.fullmatch(r"[a-f0-9]{64}", extra) or valid_digest(extra)):
            return f"has {extra!r}, neither an image ID nor a digest"
    return ""


def parse_policy(data: bytes, origin: str) -> Policy:
    """The policy in ``data`` (``origin`` names it in errors)."""
    try:
        doc = _json.fields(_json.loads(data), "the policy", ("default", "transports"), ("default",))
        default = _requirements(doc["default"], "default")
        transports: dict[str, dict[str, tuple[Requirement, ...]]] = {}
        for transport, scopes in _json.obj(doc.get("transports", {}), "transports").items():
            where = f"transports.{transport}"
            table: dict[str, tuple[Requirement, ...]] = {}
            for scope, reqs in _json.obj(scopes, where).items():
                label = _scope_label(transport, scope)
                if scope:
                    _check_scope(transport, scope, label)
                table[scope] = _requirements(reqs, label)
            transports[transport] = table
    except _json.ShapeError as e:
        raise InvalidPolicyError(f"signature policy {origin}: {e}") from None
    return Policy(origin, default, transports)


def policy_file(explicit: str | None, env: Mapping[str, str] | None = None) -> Path:
    """The file to read: ``--policy``, else the user's when it exists, else the system's."""
    if explicit:
        return Path(explicit)
    env = os.environ if env is None else env
    home = Path(env.get("HOME") or os.path.expanduser("~"))
    user = home / USER_POLICY
    return user if user.exists() else SYSTEM_POLICY
