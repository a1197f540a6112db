"""The signature policy library (``bootc_embed._policy``), without a registry: policy parsing and
scope precedence, signedIdentity matching, registries.d lookup, payload checks, sigstore
signatures made here with ``cryptography`` keys, simple signing with real ``gpg`` keys checked by
``gpgv``, lookasides on ``file://`` and on a small HTTP server, and malformed attachments.

The end-to-end cases (skopeo signing into a registry, skopeo 1.18 as the reference verifier) are
in test_policy_e2e.py.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from policy_support import Gpg, payload

from bootc_embed._policy import (
    InvalidPolicyError,
    InvalidRegistriesD,
    NoSignatures,
    PolicyContext,
    RegistrySignatures,
    Signature,
    Sigstore,
    SimpleSigning,
    attachment_tag,
    load_registries_d,
    parse_policy,
    policy_scope,
    source_without_signatures,
)
from bootc_embed._policy._config import IdentityMatch
from bootc_embed._policy._names import Named, docker_namespaces, parse_named, parse_normalized
from bootc_embed._reference import parse_reference
from bootc_embed.errors import DigestMismatchError, PolicyError, UsageError

MANIFEST = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}'
DIGEST = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()
OTHER_DIGEST = "sha256:" + "ab" * 32
SIGSTORE_MT = "application/vnd.dev.cosign.simplesigning.v1+json"
SIG_ANNOTATION = "dev.cosignproject.cosign/signature"


def policy(doc: dict[str, Any], origin: str = "/etc/test-policy.json") -> PolicyContext:
    return PolicyContext(parse_policy(json.dumps(doc).encode(), origin))


def scoped(transport: str, scope: str, reqs: list[dict[str, Any]]) -> PolicyContext:
    return policy({"default": [{"type": "reject"}], "transports": {transport: {scope: reqs}}})


@dataclass
class Found:
    """A signature source holding the signatures given."""

    sigs: Sequence[Signature]
    where: str = "in the test"

    def signatures(self) -> Sequence[Signature]:
        return self.sigs

    def describe(self) -> str:
        return self.where


def rejected(ctx: PolicyContext, ref: str, sigs: Sequence[Signature] = (), **kw: Any) -> str:
    with pytest.raises(PolicyError) as e:
        ctx.check(parse_reference(ref), kw.get("digest", DIGEST), MANIFEST, Found(sigs))
    return str(e.value)


def accepted(ctx: PolicyContext, ref: str, sigs: Sequence[Signature] = ()) -> None:
    ctx.check(parse_reference(ref), DIGEST, MANIFEST, Found(sigs))


# --------------------------------------------------------------------------------------------
# parsing


FULL_POLICY = {
    "default": [{"type": "reject"}],
    "transports": {
        "docker": {
            "": [{"type": "insecureAcceptAnything"}],
            "quay.io/org": [
                {"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/k.gpg"},
                {
                    "type": "signedBy",
                    "keyType": "GPGKeys",
                    "keyPaths": ["/a.gpg", "/b.gpg"],
                    "signedIdentity": {"type": "matchRepository"},
                },
            ],
            "quay.io/org/app:1": [
                {
                    "type": "signedBy",
                    "keyType": "GPGKeys",
                    "keyData": base64.b64encode(b"keyring").decode(),
                    "signedIdentity": {
                        "type": "exactReference",
                        "dockerReference": "quay.io/vendor/app:1",
                    },
                }
            ],
            "*.example.com": [
                {
                    "type": "sigstoreSigned",
                    "keyPath": "/cosign.pub",
                    "signedIdentity": {
                        "type": "remapIdentity",
                        "prefix": "mirror.example.com/vendor",
                        "signedPrefix": "vendor.io",
                    },
                },
                {
                    "type": "sigstoreSigned",
                    "keyDatas": [
                        base64.b64encode(b"k1").decode(),
                        base64.b64encode(b"k2").decode(),
                    ],
                    "signedIdentity": {"type": "exactRepository", "dockerRepository": "busybox"},
                },
                {"type": "signedBaseLayer", "baseLayerIdentity": {"type": "matchExact"}},
            ],
        },
        "oci": {"/srv/layouts": [{"type": "insecureAcceptAnything"}]},
        "oci-archive": {"": [{"type": "reject"}]},
        "docker-archive": {"": [{"type": "insecureAcceptAnything"}]},
        "containers-storage": {
            "[overlay@/var/lib/containers/storage]docker.io/library/busybox": [
                {"type": "insecureAcceptAnything"}
            ]
        },
        "atomic": {"anything goes here": [{"type": "reject"}]},
    },
}


def test_a_policy_with_every_kind_of_requirement_parses() -> None:
    p = parse_policy(json.dumps(FULL_POLICY).encode(), "/p.json")
    assert [r.type for r in p.default] == ["reject"]
    org = p.transports["docker"]["quay.io/org"]
    assert org[0].key_paths == ("/k.gpg",) and org[0].identity.type == "matchRepoDigestOrExact"
    assert org[1].key_paths == ("/a.gpg", "/b.gpg") and org[1].identity.type == "matchRepository"
    exact = p.transports["docker"]["quay.io/org/app:1"][0]
    assert exact.key_datas == (b"keyring",)
    assert exact.identity.reference == Named("quay.io/vendor/app", "1")
    wild = p.transports["docker"]["*.example.com"]
    assert wild[0].identity == IdentityMatch(
        "remapIdentity", prefix="mirror.example.com/vendor", signed_prefix="vendor.io"
    )
    assert wild[1].key_datas == (b"k1", b"k2")
    assert wild[1].identity.repository == Named("docker.io/library/busybox")
    assert wild[2].type == "signedBaseLayer"
    assert wild[0].where == 'transports.docker["*.example.com"][0]'


@pytest.mark.parametrize(
    ("doc", "fragment"),
    [
        ({}, "'default' is missing"),
        ({"default": []}, "default: the list of requirements must not be empty"),
        ({"default": [{"type": "reject"}], "other": 1}, "unknown field 'other'"),
        ({"default": {"type": "reject"}}, "default must be a list"),
        ({"default": [{"type": "rejected"}]}, "default[0]: unknown requirement type 'rejected'"),
        ({"default": [{"type": "reject", "x": 1}]}, "default[0]: unknown field 'x'"),
        ({"default": [{"type": "signedBy", "keyPath": "/k"}]}, "default[0].keyType ''"),
        (
            {"default": [{"type": "signedBy", "keyType": "GPGKeys"}]},
            "exactly one of keyPath, keyPaths, keyData must be given (none)",
        ),
        (
            {
                "default": [
                    {"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/a", "keyData": "YQ=="}
                ]
            },
            "both keyPath and keyData",
        ),
        (
            {"default": [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": ""}]},
            "keyPath is empty",
        ),
        (
            {"default": [{"type": "signedBy", "keyType": "GPGKeys", "keyData": "not base64!"}]},
            "default[0].keyData is not valid base64",
        ),
        (
            {"default": [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": 3}]},
            "default[0].keyPath must be a string, not a number",
        ),
        (
            {
                "default": [
                    {
                        "type": "signedBy",
                        "keyType": "GPGKeys",
                        "keyPath": "/k",
                        "signedIdentity": None,
                    }
                ]
            },
            "default[0].signedIdentity must be a JSON object, not null",
        ),
        (
            {
                "default": [
                    {
                        "type": "signedBy",
                        "keyType": "GPGKeys",
                        "keyPath": "/k",
                        "signedIdentity": {"type": "exactReference", "dockerReference": "busybox"},
                    }
                ]
            },
            "has neither a tag nor a digest",
        ),
        (
            {
                "default": [
                    {
                        "type": "signedBy",
                        "keyType": "GPGKeys",
                        "keyPath": "/k",
                        "signedIdentity": {"type": "exactRepository", "dockerRepository": "A/B"},
                    }
                ]
            },
            "dockerRepository",
        ),
        (
            {
                "default": [
                    {
                        "type": "signedBy",
                        "keyType": "GPGKeys",
                        "keyPath": "/k",
                        "signedIdentity": {
                            "type": "remapIdentity",
                            "prefix": "quay.io/org:tag",
                            "signedPrefix": "docker.io",
                        },
                    }
                ]
            },
            "signedIdentity.prefix 'quay.io/org:tag' is not a host[:port]",
        ),
        (
            {"default": [{"type": "sigstoreSigned", "keyPaths": []}]},
            "default[0].keyPaths contains no entries",
        ),
        (
            {
                "default": [
                    {
                        "type": "sigstoreSigned",
                        "keyPath": "/k",
                        "rekorPublicKeyPath": "/r",
                        "rekorPublicKeyData": "YQ==",
                    }
                ]
            },
            "at most one of rekorPublicKeyPath",
        ),
        (
            {"default": [{"type": "sigstoreSigned", "keyPath": "/k", "fulcio": {}, "x": 1}]},
            "unknown field 'x'",
        ),
        (
            {
                "default": [{"type": "reject"}],
                "transports": {"oci": {"relative/dir": [{"type": "reject"}]}},
            },
            "the scope 'relative/dir' must be an absolute path",
        ),
        (
            {"default": [{"type": "reject"}], "transports": {"oci": {"/": [{"type": "reject"}]}}},
            'use the transport default scope "" instead of "/"',
        ),
        (
            {
                "default": [{"type": "reject"}],
                "transports": {"oci-archive": {"/a/../b": [{"type": "reject"}]}},
            },
            "not in canonical form (write '/b')",
        ),
        (
            {
                "default": [{"type": "reject"}],
                "transports": {"docker-archive": {"/a.tar": [{"type": "reject"}]}},
            },
            'takes no scopes except the default ""',
        ),
        (
            {
                "default": [{"type": "reject"}],
                "transports": {"containers-storage": {"busybox": [{"type": "reject"}]}},
            },
            "must start with a store specification",
        ),
        (
            {"default": [{"type": "reject"}], "transports": {"docker": {"quay.io": []}}},
            'transports.docker["quay.io"]: the list of requirements must not be empty',
        ),
        (
            {"default": [{"type": "reject"}], "transports": {"docker": None}},
            "transports.docker must be",
        ),
    ],
)
def test_an_invalid_policy_names_the_file_and_the_field(doc: dict[str, Any], fragment: str) -> None:
    with pytest.raises(InvalidPolicyError) as e:
        parse_policy(json.dumps(doc).encode(), "/etc/containers/policy.json")
    message = str(e.value)
    assert message.startswith("signature policy /etc/containers/policy.json: ")
    assert fragment in message


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (b'{"default": [{"type": "reject"}], "default": []}', "duplicate key 'default'"),
        (b'{"default": [{"type": \'reject\'}]}', "not valid JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b'{"default": [{"type": "reject", "type": "reject"}]}', "duplicate key 'type'"),
    ],
)
def test_a_policy_that_is_not_strict_json_is_refused(text: bytes, fragment: str) -> None:
    with pytest.raises(InvalidPolicyError, match=r"/p\.json") as e:
        parse_policy(text, "/p.json")
    assert fragment in str(e.value)


def test_the_policy_file_is_the_users_then_the_systems(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {"HOME": str(home)}
    from bootc_embed._policy import policy_file

    assert policy_file(None, env) == Path("/etc/containers/policy.json")
    user = home / ".config/containers/policy.json"
    user.parent.mkdir(parents=True)
    user.write_text('{"default": [{"type": "reject"}]}')
    assert policy_file(None, env) == user
    assert policy_file("/explicit.json", env) == Path("/explicit.json")
    ctx = PolicyContext.load(None, env=env)
    assert ctx.path == user and ctx.skopeo_args() == ["--policy", str(user)]
    assert "rejects every image" in rejected(ctx, "oci:/x")


def test_a_missing_policy_is_an_error_never_a_silent_default(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"--policy .*nope.json: no such file"):
        PolicyContext.load(str(tmp_path / "nope.json"))
    with pytest.raises(UsageError, match="cannot be used together"):
        PolicyContext.load(str(tmp_path / "nope.json"), insecure=True)
    insecure = PolicyContext.load(None, insecure=True)
    assert insecure.insecure and insecure.skopeo_args() == ["--insecure-policy"]
    insecure.check(parse_reference("docker://quay.io/a/b:1"), "sha256:" + "0" * 64, b"", Found([]))


# --------------------------------------------------------------------------------------------
# scopes


DOCKER_SCOPES = [
    ("quay.io/org/team/app:1", "exact tag"),
    ("quay.io/org/team/app", "repository"),
    ("quay.io/org/team", "namespace"),
    ("quay.io/org", "parent namespace"),
    ("quay.io", "registry"),
    ("*.io", "wildcard"),
    ("", "transport default"),
]


@pytest.mark.parametrize("first", range(len(DOCKER_SCOPES) + 1))
def test_the_most_specific_docker_scope_applies(first: int) -> None:
    """With the scopes from ``first`` on configured, the first of them applies; none: the
    global default."""
    transports = {"docker": {scope: [{"type": "reject"}] for scope, _ in DOCKER_SCOPES[first:]}}
    ctx = policy({"default": [{"type": "insecureAcceptAnything"}], "transports": transports})
    label, reqs = ctx.scope(parse_reference("docker://quay.io/org/team/app:1"))
    if first == len(DOCKER_SCOPES):
        assert label == "default" and reqs[0].type == "insecureAcceptAnything"
    else:
        assert label == f'transports.docker["{DOCKER_SCOPES[first][0]}"]'


def test_docker_scopes_of_digests_ports_and_docker_hub() -> None:
    digest = "sha256:" + "1" * 64
    ctx = policy(
        {
            "default": [{"type": "reject"}],
            "transports": {
                "docker": {
                    f"quay.io/org/app@{digest}": [{"type": "insecureAcceptAnything"}],
                    "*.example.com": [{"type": "insecureAcceptAnything"}],
                    "docker.io/library/busybox": [{"type": "insecureAcceptAnything"}],
                    "localhost:5000": [{"type": "insecureAcceptAnything"}],
                }
            },
        }
    )
    assert ctx.scope(parse_reference(f"docker://quay.io/org/app@{digest}"))[0].endswith(
        f'["quay.io/org/app@{digest}"]'
    )
    assert ctx.scope(parse_reference("docker://quay.io/org/app:1"))[0] == "default"
    # the wildcard matches subdomains at any depth, with or without a port
    for ref in ("docker://reg.example.com:5000/a:1", "docker://a.b.example.com/x/y:2"):
        assert ctx.scope(parse_reference(ref))[0] == 'transports.docker["*.example.com"]'
    assert ctx.scope(parse_reference("docker://example.com/a:1"))[0] == "default"
    assert ctx.scope(parse_reference("docker://busybox"))[0].endswith(
        '["docker.io/library/busybox"]'
    )
    assert ctx.scope(parse_reference("docker://localhost:5000/a/b:1"))[0].endswith(
        '["localhost:5000"]'
    )
    assert docker_namespaces("a.example.com:5000/ns/app") == [
        "a.example.com:5000/ns/app",
        "a.example.com:5000/ns",
        "a.example.com:5000",
        "*.example.com",
        "*.com",
    ]


def test_layout_scopes_are_resolved_paths_and_their_parents(tmp_path: Path) -> None:
    real = tmp_path / "real" / "layouts"
    (real / "app").mkdir(parents=True)
    link = tmp_path / "link"
    link.symlink_to(real)
    ctx = policy(
        {
            "default": [{"type": "reject"}],
            "transports": {
                "oci": {str(real): [{"type": "insecureAcceptAnything"}]},
                "oci-archive": {str(real / "app.tar"): [{"type": "insecureAcceptAnything"}]},
                "docker-archive": {"": [{"type": "insecureAcceptAnything"}]},
            },
        }
    )
    # through a symlink, with a tag (not part of the scope, as in containers/image)
    label, _ = ctx.scope(parse_reference(f"oci:{link}/app:1"))
    assert label == f'transports.oci["{real}"]'
    assert policy_scope(parse_reference(f"oci:{link}/app:1"))[0] == str(real / "app")
    assert ctx.scope(parse_reference(f"oci-archive:{link}/app.tar"))[0].endswith(
        f'["{real / "app.tar"}"]'
    )
    assert ctx.scope(parse_reference(f"oci:{tmp_path}/elsewhere"))[0] == "default"
    assert ctx.scope(parse_reference("docker-archive:/x.tar:a/b:1"))[0] == (
        'transports.docker-archive[""]'
    )
    with pytest.raises(ValueError, match="applied by skopeo"):
        policy_scope(parse_reference("containers-storage:localhost/a:1"))


# --------------------------------------------------------------------------------------------
# signedIdentity


TAGGED = Named("quay.io/org/app", "1")
DIGESTED = Named("quay.io/org/app", None, OTHER_DIGEST)


@pytest.mark.parametrize(
    ("identity", "intended", "claimed", "ok"),
    [
        (IdentityMatch("matchExact"), TAGGED, "quay.io/org/app:1", True),
        (IdentityMatch("matchExact"), TAGGED, "quay.io/org/app:2", False),
        (IdentityMatch("matchExact"), TAGGED, "quay.io/org/app", False),
        (IdentityMatch("matchExact"), DIGESTED, "quay.io/org/app:1", False),
        (IdentityMatch("matchExact"), DIGESTED, f"quay.io/org/app@{OTHER_DIGEST}", True),
        (IdentityMatch(), TAGGED, "quay.io/org/app:1", True),
        (IdentityMatch(), TAGGED, "quay.io/org/app:latest", False),
        (IdentityMatch(), DIGESTED, "quay.io/org/app:anytag", True),
        (IdentityMatch(), DIGESTED, "quay.io/org/other:1", False),
        (IdentityMatch(), DIGESTED, "quay.io/org/app", False),
        (IdentityMatch(), Named("docker.io/library/busybox", "1"), "busybox:1", True),
        (IdentityMatch(), TAGGED, "Quay.io/org/APP:1", False),
        (IdentityMatch("matchRepository"), TAGGED, "quay.io/org/app:2", True),
        (IdentityMatch("matchRepository"), TAGGED, "quay.io/org/app", True),
        (IdentityMatch("matchRepository"), TAGGED, "quay.io/org/app2:1", False),
        (
            IdentityMatch("exactReference", reference=Named("v.io/a/b", "1")),
            TAGGED,
            "v.io/a/b:1",
            True,
        ),
        (
            IdentityMatch("exactReference", reference=Named("v.io/a/b", "1")),
            TAGGED,
            "v.io/a/b:2",
            False,
        ),
        (
            IdentityMatch("exactReference", reference=Named("v.io/a/b", "1")),
            None,
            "v.io/a/b:1",
            True,
        ),
        (IdentityMatch("exactRepository", repository=Named("v.io/a/b")), None, "v.io/a/b:7", True),
        (
            IdentityMatch("exactRepository", repository=Named("v.io/a/b")),
            TAGGED,
            "v.io/a/c:7",
            False,
        ),
        (IdentityMatch("matchRepository"), None, "quay.io/org/app:1", False),
    ],
)
def test_signed_identity_matching(
    identity: IdentityMatch, intended: Named | None, claimed: str, ok: bool
) -> None:
    assert identity.matches(intended, claimed) is ok


REMAP = IdentityMatch("remapIdentity", prefix="mirror.local:5000/vendor", signed_prefix="vendor.io")


@pytest.mark.parametrize(
    ("intended", "claimed", "ok"),
    [
        (Named("mirror.local:5000/vendor/a/b", "1"), "vendor.io/a/b:1", True),
        (Named("mirror.local:5000/vendor/a/b", "1"), "mirror.local:5000/vendor/a/b:1", False),
        (Named("mirror.local:5000/vendor/a/b", None, OTHER_DIGEST), "vendor.io/a/b:any", True),
        # not under the prefix: matched as it is
        (Named("mirror.local:5000/vendorx/a", "1"), "mirror.local:5000/vendorx/a:1", True),
        (Named("other.io/vendor/a", "1"), "vendor.io/a:1", False),
    ],
)
def test_remap_identity(intended: Named, claimed: str, ok: bool) -> None:
    assert REMAP.matches(intended, claimed) is ok


def test_docker_reference_normalisation() -> None:
    assert parse_normalized("busybox") == Named("docker.io/library/busybox")
    assert parse_normalized("index.docker.io/a/b:1") == Named("docker.io/a/b", "1")
    assert parse_normalized("Host.io/a") == Named("Host.io/a")  # an uppercase first part is a host
    assert parse_normalized("UPPER/case") == Named("UPPER/case")  # so is this one
    for bad in (
        "docker.io/UPPER/case",
        "a" * 64,
        "quay.io/a@sha256:" + "A" * 64,
        "quay.io/a@md5:" + "0" * 32,
    ):
        with pytest.raises(ValueError):
            parse_normalized(bad)
    assert parse_named("docker.io/library/busybox:1") == Named("docker.io/library/busybox", "1")
    with pytest.raises(ValueError, match="fully expanded"):
        parse_named("busybox:1")


# --------------------------------------------------------------------------------------------
# registries.d


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_registries_d_picks_the_most_specific_section_that_sets_a_value(tmp_path: Path) -> None:
    d = tmp_path / "registries.d"
    write(
        d / "a.yaml",
        "default-docker:\n  lookaside: https://default.example/sigs\n"
        "docker:\n"
        "  quay.io:\n    lookaside: file:///quay\n    use-sigstore-attachments: true\n"
        "  quay.io/org/app:\n    use-sigstore-attachments: false\n",
    )
    write(
        d / "b.yaml",
        "docker:\n"
        "  quay.io/org:\n    sigstore: file:///old-name\n    sigstore-staging: file:///old-staging\n"
        "  quay.io/org/app:2:\n    lookaside: file:///tag-only\n"
        "  '*.example.com':\n    lookaside-staging: file:///staging\n    lookaside: file:///ex\n",
    )
    write(d / "ignored.yml", "default-docker: [not, read]\n")
    rd = load_registries_d(str(d))
    app1 = Named("quay.io/org/app", "1")
    assert rd.lookaside(app1).base == "file:///old-name/org/app"  # the old key still works
    assert rd.lookaside(app1, write=True).base == "file:///old-staging/org/app"
    assert rd.lookaside(Named("quay.io/org/app", "2")).base == "file:///tag-only/org/app"
    assert rd.lookaside(Named("quay.io/x/y", "1")).base == "file:///quay/x/y"
    assert rd.lookaside(Named("a.example.com:5000/r", "1")).base == "file:///ex/r"
    assert rd.lookaside(Named("a.example.com/r", "1"), write=True).base == "file:///staging/r"
    assert rd.lookaside(Named("ghcr.io/o/r", "1")).base == "https://default.example/sigs/o/r"
    assert rd.use_sigstore_attachments(app1)[0] is False
    enabled, why = rd.use_sigstore_attachments(Named("quay.io/org/other", "1"))
    assert enabled and 'docker["quay.io"]' in why and "a.yaml" in why
    assert rd.use_sigstore_attachments(Named("ghcr.io/o/r", "1"))[0] is False
    lk = rd.lookaside(app1)
    assert lk.url(DIGEST, 3) == f"file:///old-name/org/app@sha256={DIGEST[7:]}/signature-3"
    assert "b.yaml" in lk.origin


def test_registries_d_builtin_lookaside_and_directory_choice(tmp_path: Path) -> None:
    home = tmp_path / "home"
    rd = load_registries_d(env={"HOME": str(home)})
    assert rd.directory == Path("/etc/containers/registries.d")
    user = home / ".config/containers/registries.d"
    user.mkdir(parents=True)
    rd = load_registries_d(env={"HOME": str(home)})
    assert rd.directory == user
    lk = rd.lookaside(Named("quay.io/a/b", "1"))
    if os.geteuid() == 0:
        assert lk.base == "file:///var/lib/containers/sigstore/a/b"
    assert "built-in default" in lk.origin
    with pytest.raises(InvalidRegistriesD, match="no such directory"):
        load_registries_d(str(tmp_path / "missing"))


@pytest.mark.parametrize(
    ("files", "fragment"),
    [
        (
            {"a.yaml": "default-docker: {}\n", "b.yaml": "default-docker: {}\n"},
            '"default-docker" is defined both',
        ),
        (
            {"a.yaml": "docker:\n  q.io: {}\n", "b.yaml": "docker:\n  q.io: {}\n"},
            'namespace "q.io" is defined both',
        ),
        ({"a.yaml": "docker:\n  q.io: {}\n  q.io: {}\n"}, "duplicate key 'q.io'"),
        ({"a.yaml": "docker: [1]\n"}, "docker must be a mapping"),
        ({"a.yaml": "docker:\n  q.io:\n    lookaside: 5\n"}, "lookaside must be a URL"),
        (
            {"a.yaml": "docker:\n  q.io:\n    use-sigstore-attachments: maybe\n"},
            "must be true or false",
        ),
        ({"a.yaml": "docker: {\n"}, "not valid YAML"),
    ],
)
def test_invalid_registries_d_names_the_file(
    tmp_path: Path, files: dict[str, str], fragment: str
) -> None:
    for name, text in files.items():
        write(tmp_path / name, text)
    with pytest.raises(InvalidRegistriesD) as e:
        load_registries_d(str(tmp_path))
    assert fragment in str(e.value) and str(tmp_path) in str(e.value)


# --------------------------------------------------------------------------------------------
# sigstore signatures made here


def pem(key: Any) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def sigstore_sign(key: Any, data: bytes) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        sig = key.sign(data, ec.ECDSA(hashes.SHA256()))
    elif isinstance(key, rsa.RSAPrivateKey):
        sig = key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    else:
        sig = key.sign(data)
    return base64.b64encode(sig).decode()


def sigstore_sig(key: Any, body: bytes, **annotations: str) -> Sigstore:
    return Sigstore(
        SIGSTORE_MT, body, {SIG_ANNOTATION: sigstore_sign(key, body), **annotations}, "test"
    )


SIGSTORE_KIND = "cosign container image signature"
REF = "docker://quay.io/org/app:1"


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def sigstore_policy(tmp_path: Path, *keys: Any, **extra: Any) -> PolicyContext:
    paths = []
    for i, k in enumerate(keys):
        paths.append(str(write(tmp_path / f"k{i}.pub", pem(k).decode())))
    req: dict[str, Any] = {"type": "sigstoreSigned", **extra}
    if len(paths) == 1:
        req["keyPath"] = paths[0]
    elif paths:
        req["keyPaths"] = paths
    return scoped("docker", "quay.io/org", [req])


@pytest.mark.parametrize(
    "make",
    [
        lambda: ec.generate_private_key(ec.SECP256R1()),
        lambda: ec.generate_private_key(ec.SECP384R1()),
        lambda: rsa.generate_private_key(65537, 2048),
        lambda: ed25519.Ed25519PrivateKey.generate(),
    ],
    ids=["ecdsa-p256", "ecdsa-p384", "rsa-2048", "ed25519"],
)
def test_sigstore_signatures_of_every_key_kind_are_accepted(tmp_path: Path, make: Any) -> None:
    key = make()
    ctx = sigstore_policy(tmp_path, key)
    accepted(ctx, REF, [sigstore_sig(key, payload(DIGEST, "quay.io/org/app:1", SIGSTORE_KIND))])


def test_sigstore_rejections_say_what_failed(tmp_path: Path, ec_key: Any) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    ctx = sigstore_policy(tmp_path, ec_key)
    good = payload(DIGEST, "quay.io/org/app:1", SIGSTORE_KIND)
    msg = rejected(ctx, REF)
    assert msg.startswith(f"{REF}: rejected by the signature policy /etc/test-policy.json: scope ")
    assert 'transports.docker["quay.io/org"], requirement 1 (sigstoreSigned with keyPath ' in msg
    assert "no signature: none exists; in the test" in msg
    # by another key
    assert "bad signature: the cryptographic signature does not verify" in rejected(
        ctx, REF, [sigstore_sig(other, good)]
    )
    # tampered payload: signed, then changed
    sig = sigstore_sig(ec_key, good)
    tampered = Sigstore(sig.media_type, good.replace(b"app:1", b"app:2"), sig.annotations, "t")
    assert "does not verify" in rejected(ctx, REF, [tampered])
    # for another manifest
    assert f"wrong image: the signature is for manifest {OTHER_DIGEST}" in rejected(
        ctx, REF, [sigstore_sig(ec_key, payload(OTHER_DIGEST, "quay.io/org/app:1", SIGSTORE_KIND))]
    )
    # another identity
    msg = rejected(
        ctx, REF, [sigstore_sig(ec_key, payload(DIGEST, "quay.io/org/app:2", SIGSTORE_KIND))]
    )
    assert "wrong identity: the signature claims 'quay.io/org/app:2'" in msg
    assert "accepts quay.io/org/app:1" in msg
    # a simple signing payload type in a sigstore signature
    assert "it is a 'atomic container signature'" in rejected(
        ctx, REF, [sigstore_sig(ec_key, payload(DIGEST, "quay.io/org/app:1"))]
    )
    # no signature annotation; not base64
    assert "no dev.cosignproject.cosign/signature annotation" in rejected(
        ctx, REF, [Sigstore(SIGSTORE_MT, good, {}, "t")]
    )
    assert "not valid base64" in rejected(
        ctx, REF, [Sigstore(SIGSTORE_MT, good, {SIG_ANNOTATION: "%%%"}, "t")]
    )
    # other attachments and simple signatures are not used, and said so
    msg = rejected(
        ctx, REF, [Sigstore("application/x-attestation", good, {}, "t"), SimpleSigning(b"x", "f")]
    )
    assert "no signature: none exists" in msg and "2 other signature(s)" in msg
    # several: each reason is listed
    msg = rejected(ctx, REF, [sigstore_sig(other, good), sigstore_sig(other, good)])
    assert "none of the 2 signatures is accepted: signature 1: bad signature" in msg


def test_sigstore_identity_kinds_and_several_keys(tmp_path: Path, ec_key: Any) -> None:
    second = ed25519.Ed25519PrivateKey.generate()
    cosign_style = payload(DIGEST, "quay.io/org/app", SIGSTORE_KIND)  # cosign: repository only
    sig = sigstore_sig(second, cosign_style)
    assert "wrong identity" in rejected(sigstore_policy(tmp_path, ec_key, second), REF, [sig])
    ctx = sigstore_policy(tmp_path, ec_key, second, signedIdentity={"type": "matchRepository"})
    accepted(ctx, REF, [sig])
    by_digest = f"docker://quay.io/org/app@{DIGEST}"
    ok = sigstore_sig(ec_key, payload(DIGEST, "quay.io/org/app:v9", SIGSTORE_KIND))
    accepted(sigstore_policy(tmp_path, ec_key), by_digest, [ok])
    assert "wrong identity" in rejected(
        sigstore_policy(tmp_path, ec_key, signedIdentity={"type": "matchExact"}), by_digest, [ok]
    )
    key_data = scoped(
        "docker",
        "quay.io",
        [{"type": "sigstoreSigned", "keyDatas": [base64.b64encode(pem(ec_key)).decode()]}],
    )
    accepted(
        key_data, REF, [sigstore_sig(ec_key, payload(DIGEST, "quay.io/org/app:1", SIGSTORE_KIND))]
    )


def test_sigstore_unusable_keys_and_keyless_entries(tmp_path: Path, ec_key: Any) -> None:
    good = [sigstore_sig(ec_key, payload(DIGEST, "quay.io/org/app:1", SIGSTORE_KIND))]
    for text, fragment in (
        ("not a key", "not a PEM public key"),
        (
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            "a PEM 'CERTIFICATE' block is not",
        ),
        ("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "not a usable public key"),
    ):
        path = write(tmp_path / "bad.pub", text)
        ctx = scoped("docker", "quay.io", [{"type": "sigstoreSigned", "keyPath": str(path)}])
        assert f"key unusable: keyPath {path}: {fragment}" in rejected(ctx, REF, good)
    ctx = scoped("docker", "quay.io", [{"type": "sigstoreSigned", "keyPath": str(tmp_path / "no")}])
    assert "key unusable: keyPath" in rejected(ctx, REF, good) and "No such file" in rejected(
        ctx, REF, good
    )
    fulcio = {"caPath": "/ca.pem", "oidcIssuer": "https://issuer", "subjectEmail": "a@b.c"}
    ctx = scoped(
        "docker",
        "quay.io",
        [{"type": "sigstoreSigned", "fulcio": fulcio, "rekorPublicKeyPath": "/rekor.pub"}],
    )
    msg = rejected(ctx, REF, good)
    assert "not supported: keyless sigstore verification (fulcio, rekorPublicKeyPath" in msg
    assert 'in transports.docker["quay.io"][0])' in msg
    path = write(tmp_path / "k.pub", pem(ec_key).decode())
    ctx = scoped(
        "docker",
        "quay.io",
        [{"type": "sigstoreSigned", "keyPath": str(path), "rekorPublicKeyData": "YQ=="}],
    )
    assert "not supported: keyless sigstore verification (rekorPublicKeyData" in rejected(
        ctx, REF, good
    )


def test_payloads_are_parsed_strictly(tmp_path: Path, ec_key: Any) -> None:
    ctx = sigstore_policy(tmp_path, ec_key)
    base = json.loads(payload(DIGEST, "quay.io/org/app:1", SIGSTORE_KIND))

    def variant(change: Any) -> bytes:
        doc = json.loads(json.dumps(base))
        change(doc)
        return json.dumps(doc).encode()

    cases = [
        (lambda d: d["critical"].update(extra=1), "unknown field 'extra'"),
        (lambda d: d.pop("optional"), "'optional' is missing"),
        (
            lambda d: d["critical"]["image"].update({"docker-manifest-digest": "sha256:xyz"}),
            "not a valid digest",
        ),
        (lambda d: d["critical"]["identity"].update({"docker-reference": 5}), "must be a string"),
        (lambda d: d["optional"].update(timestamp=1.5), "timestamp is not an integer"),
        (lambda d: d["critical"].update(type="cosign something"), "it is a 'cosign something'"),
    ]
    for change, fragment in cases:
        msg = rejected(ctx, REF, [sigstore_sig(ec_key, variant(change))])
        assert "bad signature: the signed payload is invalid" in msg and fragment in msg, msg
    # cosign writes "optional": null; unknown optional fields are allowed
    accepted(ctx, REF, [sigstore_sig(ec_key, variant(lambda d: d.update(optional=None)))])
    accepted(ctx, REF, [sigstore_sig(ec_key, variant(lambda d: d["optional"].update(x=[1])))])
    dup = payload(DIGEST, "quay.io/org/app:1", SIGSTORE_KIND).replace(
        b'"type":', b'"type":"x","type":'
    )
    assert "duplicate key 'type'" in rejected(ctx, REF, [sigstore_sig(ec_key, dup)])


# --------------------------------------------------------------------------------------------
# every requirement type, and more than one


def test_requirements_reject_accept_and_all_must_hold(tmp_path: Path, ec_key: Any) -> None:
    accepted(scoped("oci", "", [{"type": "insecureAcceptAnything"}]), "oci:/x:1")
    msg = rejected(policy({"default": [{"type": "reject"}]}), "oci:/x:1")
    assert msg == (
        "oci:/x:1: rejected by the signature policy /etc/test-policy.json: scope default, "
        "requirement 1 (reject): rejected by policy: the policy rejects every image in this scope"
    )
    assert "signedBaseLayer is not implemented" in rejected(
        policy(
            {"default": [{"type": "signedBaseLayer", "baseLayerIdentity": {"type": "matchExact"}}]}
        ),
        "oci:/x",
    )
    assert "keyType X509Certificates is not implemented" in rejected(
        policy({"default": [{"type": "signedBy", "keyType": "X509Certificates", "keyPath": "/k"}]}),
        "oci:/x",
    )
    path = write(tmp_path / "k.pub", pem(ec_key).decode())
    both = scoped(
        "docker",
        "quay.io",
        [{"type": "insecureAcceptAnything"}, {"type": "sigstoreSigned", "keyPath": str(path)}],
    )
    msg = rejected(both, REF)
    assert "requirement 2 of 2 (sigstoreSigned" in msg
    accepted(both, REF, [sigstore_sig(ec_key, payload(DIGEST, "quay.io/org/app:1", SIGSTORE_KIND))])


def test_layouts_and_archives_carry_no_signatures(tmp_path: Path, ec_key: Any) -> None:
    path = write(tmp_path / "k.pub", pem(ec_key).decode())
    ctx = policy({"default": [{"type": "sigstoreSigned", "keyPath": str(path)}]})
    for ref in ("oci:/layouts/app:1", "oci-archive:/a.tar", "docker-archive:/d.tar:a/b:1"):
        source = source_without_signatures(parse_reference(ref).transport)
        with pytest.raises(PolicyError) as e:
            ctx.check(parse_reference(ref), DIGEST, MANIFEST, source)
        assert "no signature: none exists; " in str(e.value)
        assert "images carry no signatures (as in skopeo)" in str(e.value)
    assert ctx.needs_signatures(parse_reference("oci:/x"))
    assert not policy({"default": [{"type": "reject"}]}).needs_signatures(parse_reference("oci:/x"))


def test_the_checked_manifest_must_match_its_digest(tmp_path: Path, ec_key: Any) -> None:
    ctx = policy({"default": [{"type": "insecureAcceptAnything"}]})
    with pytest.raises(DigestMismatchError):
        ctx.check(parse_reference(REF), OTHER_DIGEST, MANIFEST, NoSignatures("x"))
    # a reference naming an index (by digest) is checked with the image chosen from it,
    # under the identity the reference names, as skopeo does
    index_ref = f"docker://quay.io/org/app@{OTHER_DIGEST}"
    sig = sigstore_sig(ec_key, payload(DIGEST, "quay.io/org/app:1", SIGSTORE_KIND))
    accepted(sigstore_policy(tmp_path, ec_key), index_ref, [sig])


# --------------------------------------------------------------------------------------------
# simple signing with gpg keys made here


@pytest.fixture(scope="module")
def gpg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gpg]:
    g = Gpg(tmp_path_factory.mktemp("gnupg"))
    try:
        yield g
    finally:
        g.close()


@pytest.fixture(scope="module")
def keys(gpg: Gpg) -> dict[str, str]:
    signer = gpg.gen_key("Signer <signer@example.com>")
    other = gpg.gen_key("Other <other@example.com>", "rsa2048")
    with_sub = gpg.gen_key("Subkey <sub@example.com>")
    sub = gpg.add_signing_subkey(with_sub)
    old = gpg.gen_key(
        "Expired <old@example.com>", "ed25519", "1d", "--faked-system-time", "20200101T000000"
    )
    return {"signer": signer, "other": other, "with_sub": with_sub, "sub": sub, "old": old}


def gpg_policy(
    tmp_path: Path, gpg: Gpg, *fprs: str, armor: bool = False, **extra: Any
) -> PolicyContext:
    paths = [str(write(tmp_path / f"{f}.gpg", "")) for f in fprs]
    for f, p in zip(fprs, paths, strict=True):
        Path(p).write_bytes(gpg.export(f, armor))
    req: dict[str, Any] = {"type": "signedBy", "keyType": "GPGKeys", **extra}
    if "keyData" not in extra:
        req["keyPath" if len(paths) == 1 else "keyPaths"] = paths[0] if len(paths) == 1 else paths
    return scoped("docker", "quay.io/org", [req])


def test_simple_signing_accepted_with_binary_armored_inline_and_several_keys(
    tmp_path: Path, gpg: Gpg, keys: dict[str, str]
) -> None:
    blob = gpg.sign(payload(DIGEST, "quay.io/org/app:1"), keys["signer"])
    sig = [SimpleSigning(blob, "file:///lookaside/signature-1")]
    accepted(gpg_policy(tmp_path, gpg, keys["signer"]), REF, sig)
    accepted(gpg_policy(tmp_path, gpg, keys["signer"], armor=True), REF, sig)
    accepted(gpg_policy(tmp_path, gpg, keys["other"], keys["signer"]), REF, sig)
    data = base64.b64encode(gpg.export(keys["signer"], armor=True)).decode()
    accepted(gpg_policy(tmp_path, gpg, keyData=data), REF, sig)


def test_simple_signing_rejections_say_what_failed(
    tmp_path: Path, gpg: Gpg, keys: dict[str, str]
) -> None:
    ctx = gpg_policy(tmp_path, gpg, keys["signer"])
    good = payload(DIGEST, "quay.io/org/app:1")
    blob = gpg.sign(good, keys["signer"])
    assert "no signature: none exists; in the test" in rejected(ctx, REF)
    msg = rejected(ctx, REF, [SimpleSigning(gpg.sign(good, keys["other"]), "file:///s-1")])
    assert (
        f"bad signature: it was made by key {keys['other']}, which is not one of the policy's keys"
        in msg
    )
    assert msg.endswith(", in file:///s-1")
    # tampered: a byte of the compressed signed data changed
    tampered = bytearray(blob)
    tampered[len(tampered) // 2] ^= 0x01
    assert "bad signature:" in rejected(ctx, REF, [SimpleSigning(bytes(tampered), "t")])
    assert "bad signature: it is not an OpenPGP signed message" in rejected(
        ctx, REF, [SimpleSigning(b"plain text", "t")]
    )
    detached = gpg("--local-user", keys["signer"], "--detach-sign", input=good)
    assert "bad signature" in rejected(ctx, REF, [SimpleSigning(detached, "t")])
    assert f"wrong image: the signature is for manifest {OTHER_DIGEST}" in rejected(
        ctx,
        REF,
        [SimpleSigning(gpg.sign(payload(OTHER_DIGEST, "quay.io/org/app:1"), keys["signer"]), "t")],
    )
    assert "wrong identity: the signature claims 'quay.io/org/app:2'" in rejected(
        ctx,
        REF,
        [SimpleSigning(gpg.sign(payload(DIGEST, "quay.io/org/app:2"), keys["signer"]), "t")],
    )
    assert "it is a 'cosign container image signature'" in rejected(
        ctx,
        REF,
        [
            SimpleSigning(
                gpg.sign(payload(DIGEST, "quay.io/org/app:1", SIGSTORE_KIND), keys["signer"]), "t"
            )
        ],
    )
    old_ctx = gpg_policy(tmp_path, gpg, keys["old"])
    old_sig = gpg.sign(good, keys["old"], "--faked-system-time", "20200101T120000")
    assert "bad signature: the signing key" in rejected(old_ctx, REF, [SimpleSigning(old_sig, "t")])
    # a signature by a signing subkey of a trusted key: refused, as containers/image does
    by_sub = gpg.sign(good, keys["sub"] + "!")
    msg = rejected(gpg_policy(tmp_path, gpg, keys["with_sub"]), REF, [SimpleSigning(by_sub, "s")])
    assert (
        f"bad signature: it was made by the subkey {keys['sub']} of key {keys['with_sub']}" in msg
    )
    # sigstore signatures are not used by signedBy, and said so
    msg = rejected(ctx, REF, [Sigstore(SIGSTORE_MT, good, {}, "t")])
    assert "1 sigstore signature(s), which signedBy does not use" in msg


def test_unusable_gpg_keys(tmp_path: Path, gpg: Gpg, keys: dict[str, str]) -> None:
    sig = [SimpleSigning(gpg.sign(payload(DIGEST, "quay.io/org/app:1"), keys["signer"]), "t")]
    for content, fragment in (
        (b"", "holds no OpenPGP public key"),
        (b"not a key", "not OpenPGP data"),
        (
            b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n!!!!\n-----END PGP PUBLIC KEY BLOCK-----\n",
            "the armored block is not valid base64",
        ),
    ):
        path = write(tmp_path / "bad.gpg", "")
        path.write_bytes(content)
        ctx = scoped(
            "docker", "quay.io", [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": str(path)}]
        )
        assert f"key unusable: keyPath {path}: {fragment}" in rejected(ctx, REF, sig)
    armored = gpg.export(keys["signer"], armor=True).decode().splitlines()
    line = next(i for i, text in enumerate(armored) if not text) + 2  # a line of the body
    armored[line] = ("B" if armored[line][0] != "B" else "C") + armored[line][1:]
    path = write(tmp_path / "crc.asc", "\n".join(armored) + "\n")
    ctx = scoped(
        "docker", "quay.io", [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": str(path)}]
    )
    assert "key unusable: keyPath " in rejected(ctx, REF, sig)
    assert "the armor checksum does not match" in rejected(ctx, REF, sig)
    empty = scoped(
        "docker", "quay.io", [{"type": "signedBy", "keyType": "GPGKeys", "keyPaths": []}]
    )
    assert "key unusable: no keys are given" in rejected(empty, REF, sig)


# --------------------------------------------------------------------------------------------
# finding signatures


def signed_lookaside(root: Path, repo: str, digest: str, blobs: list[bytes]) -> None:
    d = root / f"{repo}@{digest.replace(':', '=')}"
    d.mkdir(parents=True)
    for i, b in enumerate(blobs, 1):
        (d / f"signature-{i}").write_bytes(b)


def test_lookaside_signatures_are_read_in_order_until_one_is_missing(tmp_path: Path) -> None:
    look = tmp_path / "look"
    signed_lookaside(look, "org/app", DIGEST, [b"one", b"two", b"\x00simple-signing\nthree"])
    (look / f"org/app@{DIGEST.replace(':', '=')}" / "signature-5").write_bytes(b"not reached")
    rd = tmp_path / "rd"
    write(rd / "x.yaml", f"docker:\n  quay.io:\n    lookaside: file://{look}\n")
    src = RegistrySignatures(Named("quay.io/org/app", "1"), DIGEST, load_registries_d(str(rd)))
    assert [s.blob for s in src.signatures() if isinstance(s, SimpleSigning)] == [
        b"one",
        b"two",
        b"three",
    ]
    assert "3 simple signature(s) at file://" in src.describe()
    assert "sigstore attachments not read (use-sigstore-attachments is not set in" in src.describe()
    empty = RegistrySignatures(Named("quay.io/org/other", "1"), DIGEST, load_registries_d(str(rd)))
    assert empty.signatures() == []
    assert f"no file://{look}/org/other@sha256={DIGEST[7:]}/signature-1 in the lookaside" in (
        empty.describe()
    )


class _Lookaside(http.server.BaseHTTPRequestHandler):
    files: ClassVar[dict[str, bytes]] = {}
    fail: ClassVar[set[str]] = set()

    def do_GET(self) -> None:
        if self.path in self.fail:
            self.send_error(500)
            return
        data = self.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def http_lookaside() -> Iterator[tuple[str, type[_Lookaside]]]:
    class Handler(_Lookaside):
        files: ClassVar[dict[str, bytes]] = {}
        fail: ClassVar[set[str]] = set()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/sigs", Handler
    finally:
        server.shutdown()
        server.server_close()


def test_http_lookaside(
    tmp_path: Path, http_lookaside: tuple[str, type[_Lookaside]], ec_key: Any
) -> None:
    base, handler = http_lookaside
    prefix = f"/sigs/org/app@sha256={DIGEST[7:]}"
    handler.files = {f"{prefix}/signature-1": b"a", f"{prefix}/signature-2": b"b"}
    rd = tmp_path / "rd"
    write(rd / "x.yaml", f"default-docker:\n  lookaside: {base}\n")
    src = RegistrySignatures(Named("quay.io/org/app", "1"), DIGEST, load_registries_d(str(rd)))
    assert [s.origin for s in src.signatures()] == [
        f"{base}/org/app@sha256={DIGEST[7:]}/signature-1",
        f"{base}/org/app@sha256={DIGEST[7:]}/signature-2",
    ]
    handler.fail = {f"{prefix}/signature-2"}
    ctx = sigstore_policy(tmp_path, ec_key)
    broken = RegistrySignatures(Named("quay.io/org/app", "1"), DIGEST, load_registries_d(str(rd)))
    with pytest.raises(PolicyError, match=r"cannot read its signatures: .*signature-2: HTTP 500"):
        ctx.check(parse_reference(REF), DIGEST, MANIFEST, broken)
    write(rd / "x.yaml", "default-docker:\n  lookaside: ftp://x/y\n")
    ftp = RegistrySignatures(Named("quay.io/org/app", "1"), DIGEST, load_registries_d(str(rd)))
    with pytest.raises(PolicyError, match="scheme 'ftp' is not supported"):
        ctx.check(parse_reference(REF), DIGEST, MANIFEST, ftp)


class Attachments:
    """An AttachmentFetcher over fixed content (malformed cases a registry would not make)."""

    def __init__(self, manifests: dict[str, tuple[bytes, str]], blobs: dict[str, bytes]) -> None:
        self.manifests = manifests
        self.blobs = blobs
        self.asked: list[str] = []

    def get_manifest(self, tag: str) -> tuple[bytes, str] | None:
        self.asked.append(tag)
        return self.manifests.get(tag)

    def get_blob(self, digest: str, size: int) -> bytes:
        return self.blobs[digest]


def attachment(layers: list[dict[str, Any]]) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "x", "digest": OTHER_DIGEST, "size": 1},
            "layers": layers,
        }
    ).encode()


def test_sigstore_attachments(tmp_path: Path, ec_key: Any) -> None:
    rd = tmp_path / "rd"
    write(
        rd / "x.yaml",
        f"docker:\n  quay.io:\n    lookaside: file://{tmp_path}/none\n"
        "    use-sigstore-attachments: true\n",
    )
    body = payload(DIGEST, "quay.io/org/app:1", SIGSTORE_KIND)
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    layer = {
        "mediaType": SIGSTORE_MT,
        "digest": digest,
        "size": len(body),
        "annotations": {SIG_ANNOTATION: sigstore_sign(ec_key, body)},
    }
    tag = attachment_tag(DIGEST)
    assert tag == f"sha256-{DIGEST[7:]}.sig"
    ctx = sigstore_policy(tmp_path, ec_key)

    def source(manifest: bytes, media_type: str, blob: bytes = body) -> RegistrySignatures:
        fetch = Attachments({tag: (manifest, media_type)}, {digest: blob})
        return RegistrySignatures(
            Named("quay.io/org/app", "1"), DIGEST, load_registries_d(str(rd)), fetch
        )

    good = source(attachment([layer]), "application/vnd.oci.image.manifest.v1+json")
    ctx.check(parse_reference(REF), DIGEST, MANIFEST, good)
    assert "1 layer(s) in the sigstore attachment quay.io/org/app:" + tag in good.describe()
    no_type = source(attachment([layer]), "")
    ctx.check(parse_reference(REF), DIGEST, MANIFEST, no_type)
    for src, fragment in (
        (
            source(attachment([layer]), "application/vnd.docker.distribution.manifest.v2+json"),
            "unexpected manifest type",
        ),
        (source(attachment([layer]), "", blob=body + b" "), "bytes, not the"),
        (
            source(attachment([layer]), "", blob=body.replace(b"app:1", b"app:9")),
            "does not match its digest",
        ),
        (source(attachment([dict(layer, size=5 << 20)]), ""), "too large for a signature"),
        (source(b"{", ""), "not valid JSON"),
    ):
        with pytest.raises(PolicyError) as e:
            ctx.check(parse_reference(REF), DIGEST, MANIFEST, src)
        assert "cannot read its signatures" in str(e.value) and fragment in str(e.value)
    missing = RegistrySignatures(
        Named("quay.io/org/app", "1"), DIGEST, load_registries_d(str(rd)), Attachments({}, {})
    )
    with pytest.raises(PolicyError) as e:
        ctx.check(parse_reference(REF), DIGEST, MANIFEST, missing)
    assert f"no sigstore attachment quay.io/org/app:{tag}" in str(e.value)
