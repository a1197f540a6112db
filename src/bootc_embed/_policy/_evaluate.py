"""Evaluating the policy for one image, as containers/image's ``IsRunningImageAllowed`` does:
the requirements of the most specific scope all have to allow the image; a signature
requirement is met by one signature that verifies with its keys, signs this manifest digest and
claims an identity that its ``signedIdentity`` accepts."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .._reference import Reference
from ..errors import DigestMismatchError, PolicyError, UsageError
from . import _json, _openpgp, _sigstore
from ._config import Policy, Requirement, parse_policy, policy_file
from ._names import Named, docker_identity, docker_namespaces, valid_digest
from ._signatures import (
    SignatureReadError,
    SignatureSource,
    Sigstore,
    SimpleSigning,
)

SIMPLE_SIGNING_TYPE = "atomic container signature"
SIGSTORE_TYPE = "cosign container image signature"


class _Rejected(Exception):
    """Why one signature, or one requirement, does not allow the image."""


def policy_scope(ref: Reference) -> tuple[str, list[str]]:
    """(the image's policy identity, its namespaces, most specific first) for ``ref``'s
    transport (containers/image's PolicyConfigurationIdentity and ...Namespaces)."""
    if ref.transport == "docker":
        named = docker_identity(ref)
        assert named is not None
        return str(named), docker_namespaces(named.name)
    if ref.transport in ("oci", "oci-archive"):
        resolved = os.path.realpath(ref.path)
        namespaces = []
        path = resolved
        while path not in ("/", ""):
            namespaces.append(path)
            path = os.path.dirname(path)
        return resolved, namespaces
    if ref.transport == "docker-archive":
        return "", []  # only the transport's default scope
    raise ValueError(
        f"{ref}: the policy for {ref.transport}: images is applied by skopeo "
        f"(pass PolicyContext.skopeo_args())"
    )


def _digest_matches(manifest: bytes, digest: str) -> bool:
    algo, _, hexpart = digest.partition(":")
    return valid_digest(digest) and hashlib.new(algo, manifest).hexdigest() == hexpart


def _payload(data: bytes, expected_type: str, null_optional: bool) -> tuple[str, str]:
    """(docker-manifest-digest, docker-reference) of a signed payload, parsed as strictly as
    containers/image parses it."""
    try:
        doc = _json.fields(
            _json.loads(data), "payload", ("critical", "optional"), ("critical", "optional")
        )
        optional = doc["optional"]
        if not (null_optional and optional is None):
            opt = _json.obj(optional, "payload optional")
            if "creator" in opt:
                _json.string(opt["creator"], "payload optional.creator")
            if "timestamp" in opt:
                _json.integer_valued(opt["timestamp"], "payload optional.timestamp")
        critical = _json.fields(
            doc["critical"],
            "payload critical",
            ("type", "image", "identity"),
            ("type", "image", "identity"),
        )
        kind = _json.string(critical["type"], "payload critical.type")
        if kind != expected_type:
            raise _json.ShapeError(f"it is a {kind!r}, not an {expected_type!r}")
        image = _json.fields(
            critical["image"],
            "payload critical.image",
            ("docker-manifest-digest",),
            ("docker-manifest-digest",),
        )
        digest = _json.string(image["docker-manifest-digest"], "docker-manifest-digest")
        if not valid_digest(digest):
            raise _json.ShapeError(f"docker-manifest-digest {digest!r} is not a valid digest")
        identity = _json.fields(
            critical["identity"],
            "payload critical.identity",
            ("docker-reference",),
            ("docker-reference",),
        )
        reference = _json.string(identity["docker-reference"], "docker-reference")
    except _json.ShapeError as e:
        raise _Rejected(f"bad signature: the signed payload is invalid: {e}") from None
    return digest, reference


@dataclass
class _Check:
    """One evaluation: the image, its manifest and its signatures."""

    ref: Reference
    intended: Named | None
    manifest_digest: str
    manifest: bytes
    source: SignatureSource

    def claims(self, req: Requirement, digest: str, claimed: str) -> None:
        """The checks every verified payload passes: this manifest, an accepted identity."""
        if not _digest_matches(self.manifest, digest):
            raise _Rejected(
                f"wrong image: the signature is for manifest {digest}, not this image's "
                f"{self.manifest_digest}"
            )
        if not req.identity.matches(self.intended, claimed):
            raise _Rejected(
                f"wrong identity: the signature claims {claimed!r}; signedIdentity "
                f"{req.identity.describe()} accepts {req.identity.expected(self.intended)}"
            )

    def signatures(self) -> list[SimpleSigning | Sigstore]:
        try:
            return list(self.source.signatures())
        except SignatureReadError as e:
            raise PolicyError(f"{self.ref}: cannot read its signatures: {e}") from None


def _summary(reasons: list[str], none: str) -> str:
    if not reasons:
        return none
    if len(reasons) == 1:
        return reasons[0]
    listed = "; ".join(f"signature {i}: {r}" for i, r in enumerate(reasons, 1))
    return f"none of the {len(reasons)} signatures is accepted: {listed}"


@dataclass
class PolicyContext:
    """A loaded policy (or ``--insecure-policy``), ready to check images.

    Key files are read once per requirement and kept; nothing else is cached between images."""

    policy: Policy | None  # None: --insecure-policy
    path: Path | None = None
    _keyrings: dict[Requirement, _openpgp.Keyring] = field(default_factory=dict, repr=False)
    _keys: dict[Requirement, list[_sigstore.SigstoreKey]] = field(default_factory=dict, repr=False)

    @classmethod
    def load(
        cls,
        policy: str | None = None,
        insecure: bool = False,
        env: Mapping[str, str] | None = None,
    ) -> PolicyContext:
        """``--policy FILE`` / ``--insecure-policy`` (both given is a usage error), else the
        user's or the system's policy file; a missing or invalid policy is an error."""
        if insecure:
            if policy:
                raise UsageError("--policy and --insecure-policy cannot be used together")
            return cls(None)
        path = policy_file(policy, env)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            if policy:
                raise UsageError(f"--policy {path}: no such file") from None
            raise PolicyError(
                f"no signature policy: {path} does not exist (nor the user's "
                f"~/.config/containers/policy.json); install the containers-common package "
                f"(golang-github-containers-common on Debian), write one, give --policy FILE, "
                f"or --insecure-policy to check nothing"
            ) from None
        except OSError as e:
            raise PolicyError(f"signature policy {path}: cannot be read: {e.strerror}") from None
        return cls(parse_policy(data, str(path)), path)

    @property
    def insecure(self) -> bool:
        return self.policy is None

    def skopeo_args(self) -> list[str]:
        """skopeo's global options that apply this policy (for ``containers-storage:`` inputs,
        which skopeo reads): ``--policy FILE`` or ``--insecure-policy``."""
        if self.policy is None:
            return ["--insecure-policy"]
        return ["--policy", str(self.path or self.policy.origin)]

    def scope(self, ref: Reference) -> tuple[str, tuple[Requirement, ...]]:
        """(the scope that applies to ``ref``, its requirements)."""
        assert self.policy is not None
        identity, namespaces = policy_scope(ref)
        return self.policy.requirements_for(ref.transport, identity, namespaces)

    def needs_signatures(self, ref: Reference) -> bool:
        """Whether checking ``ref`` reads signatures (so the caller may skip setting up a
        signature source for images whose scope asks for none)."""
        if self.policy is None:
            return False
        _, reqs = self.scope(ref)
        return any(r.type in ("signedBy", "sigstoreSigned") for r in reqs)

    def check(
        self,
        ref: Reference,
        manifest_digest: str,
        manifest: bytes,
        signatures: SignatureSource,
    ) -> None:
        """Raise :class:`PolicyError` unless the policy allows the image ``ref`` names, whose
        manifest is ``manifest`` with digest ``manifest_digest``. When ``ref`` names an index,
        pass the manifest of the image that is used (the chosen platform's), as skopeo and
        podman check it (the identity stays the one ``ref`` names; the index's own signature
        is not what is checked). The message names the image, the scope that applied, the
        requirement and what failed."""
        if self.policy is None:
            return
        if not _digest_matches(manifest, manifest_digest):
            raise DigestMismatchError(
                f"{ref}: the manifest checked by the policy does not match {manifest_digest}"
            )
        label, reqs = self.scope(ref)
        check = _Check(ref, docker_identity(ref), manifest_digest, manifest, signatures)
        for number, req in enumerate(reqs, 1):
            try:
                self._allows(req, check)
            except _Rejected as e:
                of = f" of {len(reqs)}" if len(reqs) > 1 else ""
                raise PolicyError(
                    f"{ref}: rejected by the signature policy {self.policy.origin}: scope "
                    f"{label}, requirement {number}{of} ({req.describe()}): {e}"
                ) from None

    # -- requirements -------------------------------------------------------------------------

    def _allows(self, req: Requirement, check: _Check) -> None:
        if req.type == "insecureAcceptAnything":
            return
        if req.type == "reject":
            raise _Rejected("rejected by policy: the policy rejects every image in this scope")
        if req.type == "signedBaseLayer":
            raise _Rejected(
                "rejected by policy: signedBaseLayer is not implemented (nor by containers/image)"
            )
        if req.type == "signedBy":
            self._signed_by(req, check)
        else:
            self._sigstore_signed(req, check)

    def _keyring(self, req: Requirement) -> _openpgp.Keyring:
        cached = self._keyrings.get(req)
        if cached is not None:
            return cached
        parts = [(f"keyPath {p}", _read_key(p)) for p in req.key_paths] + [
            (f"{req.key_field} {i}", d) for i, d in enumerate(req.key_datas, 1)
        ]
        try:
            keyring = _openpgp.Keyring.from_parts(parts)
        except _openpgp.KeyringError as e:
            raise _Rejected(f"key unusable: {e}") from None
        self._keyrings[req] = keyring
        return keyring

    def _signed_by(self, req: Requirement, check: _Check) -> None:
        if req.key_type != "GPGKeys":
            raise _Rejected(
                f"key unusable: keyType {req.key_type} is not implemented (only GPGKeys is, as "
                f"in containers/image)"
            )
        keyring = self._keyring(req)
        found = check.signatures()
        simple = [s for s in found if isinstance(s, SimpleSigning)]
        reasons: list[str] = []
        for sig in simple:
            try:
                try:
                    verified = _openpgp.verify(keyring, sig.blob)
                except _openpgp.GpgvMissing:
                    raise PolicyError(
                        f"{check.ref}: checking its simple signing signatures needs gpgv, which "
                        f"is not installed (install the 'gpgv' package)"
                    ) from None
                except _openpgp.SignatureInvalid as e:
                    raise _Rejected(f"bad signature: {e}") from None
                digest, claimed = _payload(verified.payload, SIMPLE_SIGNING_TYPE, False)
                check.claims(req, digest, claimed)
                return
            except _Rejected as e:
                reasons.append(f"{e}, in {sig.origin}")
        others = len(found) - len(simple)
        extra = f"; {others} sigstore signature(s), which signedBy does not use" if others else ""
        raise _Rejected(
            _summary(reasons, f"no signature: none exists; {check.source.describe()}{extra}")
        )

    def _sigstore_keys(self, req: Requirement) -> list[_sigstore.SigstoreKey]:
        cached = self._keys.get(req)
        if cached is not None:
            return cached
        if req.unsupported:
            raise _Rejected(
                f"not supported: keyless sigstore verification ({', '.join(req.unsupported)} "
                f"in {req.where}) is not supported by bootc-embed; use public keys (keyPath, "
                f"keyPaths, keyData, keyDatas)"
            )
        parts = [(f"keyPath {p}", _read_key(p)) for p in req.key_paths] + [
            (f"{req.key_field} {i}", d) for i, d in enumerate(req.key_datas, 1)
        ]
        try:
            keys = [_sigstore.load_key(data, what) for what, data in parts]
        except _sigstore.UnusableKey as e:
            raise _Rejected(f"key unusable: {e}") from None
        self._keys[req] = keys
        return keys

    def _sigstore_signed(self, req: Requirement, check: _Check) -> None:
        keys = self._sigstore_keys(req)
        found = check.signatures()
        usable = [
            s
            for s in found
            if isinstance(s, Sigstore) and s.media_type == _sigstore.SIGNATURE_MEDIA_TYPE
        ]
        reasons: list[str] = []
        for sig in usable:
            try:
                b64 = sig.annotations.get(_sigstore.SIGNATURE_ANNOTATION)
                if b64 is None:
                    raise _Rejected(
                        f"bad signature: no {_sigstore.SIGNATURE_ANNOTATION} annotation"
                    )
                failures = []
                for key in keys:
                    try:
                        _sigstore.verify(key, sig.payload, b64)
                        break
                    except _sigstore.SignatureInvalid as e:
                        failures.append(str(e))
                else:
                    raise _Rejected("bad signature: " + "; ".join(failures))
                digest, claimed = _payload(sig.payload, SIGSTORE_TYPE, True)
                check.claims(req, digest, claimed)
                return
            except _Rejected as e:
                reasons.append(f"{e}, in {sig.origin}")
        others = len(found) - len(usable)
        extra = (
            f"; {others} other signature(s) or attachment(s), which sigstoreSigned does not use"
            if others
            else ""
        )
        raise _Rejected(
            _summary(reasons, f"no signature: none exists; {check.source.describe()}{extra}")
        )


def _read_key(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise _Rejected(f"key unusable: keyPath {path} cannot be read: {e.strerror}") from None
