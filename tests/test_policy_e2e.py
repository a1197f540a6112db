"""The signature policy against real signatures in a real registry, with skopeo 1.18 as the
reference verifier.

Simple signing: GPG keys made with ``gpg --quick-gen-key``, images signed by Debian 12's skopeo
1.9.3 (``copy --sign-by``) into a ``file://`` lookaside (``lookaside-staging`` in registries.d).
Sigstore: keys made with skopeo 1.18's ``generate-sigstore-key`` and images signed with
``copy --sign-by-sigstore-private-key`` (``use-sigstore-attachments: true``), from the trixie
tree. Tampered and misplaced signatures are made by editing the lookaside and by pushing edited
attachment manifests.

Every case is decided twice, by bootc-embed and by skopeo 1.18 with the same policy and
registries.d, and both decisions must be the expected one; so must skopeo 1.18's verdict on
whether each policy file of a table loads.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from policy_support import (
    Gpg,
    RegistryAttachments,
    Skopeo118,
    cache_dir,
    ensure_trixie,
    policy_loads,
    put_blob,
    put_manifest,
    reference_decision,
    registry_manifest,
)
from registry_support import Registry
from support import containers, ocilayout
from support.containers import run

from bootc_embed._policy import (
    InvalidPolicyError,
    PolicyContext,
    RegistrySignatures,
    docker_identity,
    load_registries_d,
    parse_policy,
    source_without_signatures,
)
from bootc_embed._reference import parse_reference
from bootc_embed.errors import PolicyError


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class World:
    work: Path
    registry: Registry
    skopeo: Skopeo118
    keys: dict[str, Path]  # name → public key file
    layouts: dict[str, str]  # name → oci:DIR:1
    digests: dict[str, str]  # name → manifest digest
    registries_d: Path

    @property
    def host(self) -> str:
        return self.registry.host


def _layout(work: Path, name: str) -> tuple[str, str]:
    img = ocilayout.write_image(
        work / "layouts" / name,
        [ocilayout.TarBuilder().file(f"{name}.txt", f"image {name}\n".encode()).bytes()],
        tag="1",
    )
    return img.ref, img.manifest_digest


def _index_layout(work: Path) -> tuple[str, str, str]:
    """An OCI layout whose tag ``1`` is an index of two platform images: (reference, index
    digest, the digest of its first image)."""
    layout = work / "layouts" / "multi"
    entries = []
    for arch in ("amd64", "arm64"):
        img = ocilayout.write_image(
            layout,
            [ocilayout.TarBuilder().file("arch", arch.encode()).bytes()],
            tag=arch,
            config=ocilayout.default_config([], architecture=arch),
        )
        entries.append(
            {
                "mediaType": ocilayout.MT_MANIFEST,
                "digest": img.manifest_digest,
                "size": ocilayout.blob_path(layout, img.manifest_digest).stat().st_size,
                "platform": {"architecture": arch, "os": "linux"},
            }
        )
    index = {"schemaVersion": 2, "mediaType": ocilayout.MT_INDEX, "manifests": entries}
    raw = ocilayout.canonical_json(index)
    digest = ocilayout.write_blob(layout, raw)
    top = json.loads((layout / "index.json").read_text())
    top["manifests"].append(
        {
            "mediaType": ocilayout.MT_INDEX,
            "digest": digest,
            "size": len(raw),
            "annotations": {ocilayout.REF_NAME: "1"},
        }
    )
    (layout / "index.json").write_text(json.dumps(top))
    return f"oci:{layout}:1", digest, entries[0]["digest"]


def _copy(
    src: str, dst: str, *extra: str, env: dict[str, str] | None = None, registries_d: str = ""
) -> None:
    """Debian 12's skopeo copy (digests preserved unless the destination is a docker-archive)."""
    glob = ["--insecure-policy"] + (["--registries.d", registries_d] if registries_d else [])
    keep = [] if dst.startswith("docker-archive:") else ["--preserve-digests"]
    run(["skopeo", *glob, "copy", "-q", *keep, *extra, src, dst], env=env)


def _tamper_attachment(host: str, repo: str, digest: str, change: Any) -> None:
    """Rewrite the sigstore attachment of ``repo@digest``: ``change(layer, payload)`` gives the
    new (layer, payload); the signature annotation is kept as it was."""
    tag = digest.replace(":", "-") + ".sig"
    manifest = json.loads(registry_manifest(host, repo, tag))
    layer = manifest["layers"][0]
    attachments = RegistryAttachments(host, repo)
    payload = attachments.get_blob(layer["digest"], layer["size"])
    layer, payload = change(layer, payload)
    layer["digest"] = put_blob(host, repo, payload)
    layer["size"] = len(payload)
    manifest["layers"] = [layer]
    put_manifest(host, repo, tag, manifest)


def _move_attachment(host: str, src_repo: str, src_digest: str, repo: str, digest: str) -> None:
    """Put the attachment of ``src_repo@src_digest`` (a signature of that image) as the
    attachment of ``repo@digest``."""
    tag = src_digest.replace(":", "-") + ".sig"
    manifest = json.loads(registry_manifest(host, src_repo, tag))
    attachments = RegistryAttachments(host, src_repo)
    for desc in [manifest["config"], *manifest["layers"]]:
        put_blob(host, repo, attachments.get_blob(desc["digest"], desc["size"]))
    put_manifest(host, repo, digest.replace(":", "-") + ".sig", manifest)


@pytest.fixture(scope="module")
def world(session_dir: Path) -> Iterator[World]:
    work = session_dir / "policy"
    work.mkdir()
    skopeo = Skopeo118(ensure_trixie(cache_dir()), work)
    assert skopeo.version().startswith("skopeo version 1.18"), skopeo.version()
    registry = Registry(work / "registry").start()
    gpg = Gpg(work / "gnupg")
    try:
        yield _make_world(work, registry, skopeo, gpg)
    finally:
        gpg.close()
        registry.stop()


def _make_world(work: Path, registry: Registry, skopeo: Skopeo118, gpg: Gpg) -> World:
    host = registry.host
    layouts: dict[str, str] = {}
    digests: dict[str, str] = {}
    for name in ("a", "b", "c", "d", "e", "f"):
        layouts[name], digests[name] = _layout(work, name)
    keys_dir = work / "keys"
    keys_dir.mkdir()
    keys: dict[str, Path] = {}
    fprs = {
        "one": gpg.gen_key("Signer One <one@example.com>"),
        "two": gpg.gen_key("Signer Two <two@example.com>", "rsa3072"),
        "three": gpg.gen_key("Signer Three <three@example.com>"),
    }
    gpg.add_signing_subkey(fprs["three"])
    for name, fpr in fprs.items():
        keys[name] = keys_dir / f"{name}.gpg"
        keys[name].write_bytes(gpg.export(fpr))
    keys["one.asc"] = keys_dir / "one.asc"
    keys["one.asc"].write_bytes(gpg.export(fprs["one"], armor=True))
    (work / "pass").write_text("test passphrase\n")
    for name in ("k1", "k2"):
        skopeo(
            "generate-sigstore-key",
            "--output-prefix",
            str(keys_dir / name),
            "--passphrase-file",
            str(work / "pass"),
        )
        keys[name] = keys_dir / f"{name}.pub"

    # simple signing with Debian 12's skopeo into a file:// lookaside
    lookaside = work / "lookaside"
    sign_rd = work / "registries.d-sign"
    sign_rd.mkdir()
    (sign_rd / "sign.yaml").write_text(
        f"docker:\n  {host}:\n    lookaside-staging: file://{lookaside}\n"
        "    use-sigstore-attachments: true\n"
    )
    genv = dict(gpg.env)
    reg = f"docker://{host}"

    def gpg_sign(layout: str, dst: str, key: str) -> None:
        _copy(
            layout,
            f"{reg}/{dst}",
            "--dest-tls-verify=false",
            "--sign-by",
            key,
            env=genv,
            registries_d=str(sign_rd),
        )

    gpg_sign(layouts["a"], "gpg/app:1", fprs["one"])
    gpg_sign(layouts["c"], "gpg/other:1", fprs["two"])
    gpg_sign(layouts["d"], "gpg/tampered:1", fprs["one"])
    gpg_sign(layouts["f"], "gpg/subkey:1", fprs["three"])
    layouts["multi"], digests["multi"], digests["multi-amd64"] = _index_layout(work)
    _copy(
        layouts["multi"],
        f"{reg}/gpg/multi:1",
        "--all",
        "--dest-tls-verify=false",
        "--sign-by",
        fprs["one"],
        env=genv,
        registries_d=str(sign_rd),
    )
    # an image pushed first and signed afterwards, as docs/policy.md shows
    _copy(layouts["b"], f"{reg}/gpg/later:1", "--dest-tls-verify=false")
    raw = run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"{reg}/gpg/later:1"]).stdout
    (work / "later.json").write_text(raw)
    later = lookaside / f"gpg/later@{sha256(raw.encode()).replace(':', '=')}"
    later.mkdir(parents=True)
    run(
        [
            "skopeo",
            "standalone-sign",
            str(work / "later.json"),
            f"{host}/gpg/later:1",
            fprs["one"],
            "-o",
            str(later / "signature-1"),
        ],
        env=genv,
    )
    # skopeo signs the index and each image; gpg/multi-bare has the index's signature only
    _copy(layouts["multi"], f"{reg}/gpg/multi-bare:1", "--all", "--dest-tls-verify=false")
    index_sig = lookaside / f"gpg/multi@{digests['multi'].replace(':', '=')}/signature-1"
    assert (lookaside / f"gpg/multi@{digests['multi-amd64'].replace(':', '=')}").is_dir()
    bare = lookaside / f"gpg/multi-bare@{digests['multi'].replace(':', '=')}"
    bare.mkdir(parents=True)
    shutil.copy(index_sig, bare / "signature-1")
    for layout, dst in (
        (layouts["b"], "gpg/unsigned:1"),
        (layouts["a"], "gpg/app:2"),  # the signed image under another tag
        (layouts["e"], "gpg/moved:1"),
        (layouts["a"], "mirror/gpg/app:1"),
    ):
        _copy(layout, f"{reg}/{dst}", "--dest-tls-verify=false")
    sig_dir = {
        name: lookaside / f"{repo}@{digests[img].replace(':', '=')}"
        for name, repo, img in (
            ("app", "gpg/app", "a"),
            ("tampered", "gpg/tampered", "d"),
            ("moved", "gpg/moved", "e"),
            ("mirror", "mirror/gpg/app", "a"),
        )
    }
    assert (sig_dir["app"] / "signature-1").is_file(), "skopeo 1.9.3 wrote no signature"
    assert not (sig_dir["app"] / "signature-2").exists()
    blob = bytearray((sig_dir["tampered"] / "signature-1").read_bytes())
    blob[len(blob) // 2] ^= 0x20
    (sig_dir["tampered"] / "signature-1").write_bytes(bytes(blob))
    for name in ("moved", "mirror"):  # a signature of image a, for another image / a mirror
        sig_dir[name].mkdir(parents=True)
        shutil.copy(sig_dir["app"] / "signature-1", sig_dir[name] / "signature-1")

    # sigstore with skopeo 1.18
    def sigstore_sign(layout: str, dst: str, key: str) -> None:
        skopeo(
            "--insecure-policy",
            "--registries.d",
            str(sign_rd),
            "copy",
            "-q",
            "--dest-tls-verify=false",
            "--sign-by-sigstore-private-key",
            str(keys_dir / f"{key}.private"),
            "--sign-passphrase-file",
            str(work / "pass"),
            layout,  # the work directory is bound at the same path
            f"{reg}/{dst}",
        )

    sigstore_sign(layouts["a"], "sig/app:1", "k1")
    sigstore_sign(layouts["c"], "sig/other:1", "k2")
    sigstore_sign(layouts["d"], "sig/tampered:1", "k1")
    for layout, dst in (
        (layouts["b"], "sig/unsigned:1"),
        (layouts["a"], "sig/app:2"),
        (layouts["e"], "sig/moved:1"),
    ):
        _copy(layout, f"{reg}/{dst}", "--dest-tls-verify=false")
    assert registry.has_tag("sig/app", digests["a"].replace(":", "-") + ".sig")
    _tamper_attachment(
        host,
        "sig/tampered",
        digests["d"],
        lambda layer, payload: (layer, payload.replace(b"sig/tampered:1", b"sig/tampered:2")),
    )
    _move_attachment(host, "sig/app", digests["a"], "sig/moved", digests["e"])

    verify_rd = work / "registries.d"
    verify_rd.mkdir()
    (verify_rd / "verify.yaml").write_text(
        f"default-docker:\n  lookaside: file://{work / 'no-lookaside'}\n"
        f"docker:\n  {host}:\n    lookaside: file://{lookaside}\n"
        f"  {host}/sig:\n    use-sigstore-attachments: true\n"
    )
    return World(work, registry, skopeo, keys, layouts, digests, verify_rd)


# --------------------------------------------------------------------------------------------
# deciding


def ours(world: World, policy_path: Path, src: str) -> tuple[bool, str]:
    ctx = PolicyContext.load(str(policy_path))
    ref = parse_reference(src)
    if ref.transport == "docker":
        tag_or_digest = ref.digest or ref.tag or "latest"
        manifest = registry_manifest(ref.host, ref.repository, tag_or_digest)
        top = json.loads(manifest)
        if top.get("mediaType") == ocilayout.MT_INDEX:  # the image for this machine, as skopeo
            (chosen,) = [m for m in top["manifests"] if m["platform"]["architecture"] == "amd64"]
            manifest = registry_manifest(ref.host, ref.repository, chosen["digest"])
        named = docker_identity(ref)
        assert named is not None
        source: Any = RegistrySignatures(
            named,
            sha256(manifest),
            load_registries_d(str(world.registries_d)),
            RegistryAttachments(ref.host, ref.repository),
        )
    else:
        layout = Path(ref.path)
        if ref.transport == "oci":
            index = json.loads((layout / "index.json").read_text())
            desc = index["manifests"][0]
            manifest = ocilayout.blob_path(layout, desc["digest"]).read_bytes()
        else:  # archives: the manifest is not needed for these policies' decisions
            manifest = b"{}"
        source = source_without_signatures(ref.transport)
    try:
        ctx.check(ref, sha256(manifest), manifest, source)
    except PolicyError as e:
        return False, str(e)
    return True, ""


def decide(world: World, name: str, doc: dict[str, Any], src: str) -> tuple[bool, str, str]:
    """(our decision, our message, skopeo 1.18's message), after checking both agree."""
    path = world.work / "policies" / f"{name}.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(doc))
    mine, message = ours(world, path, src)
    theirs, their_message = reference_decision(
        world.skopeo, path, world.registries_d, src, world.work
    )
    assert mine == theirs, (
        f"{name}: bootc-embed {'accepts' if mine else 'rejects'} {src}, skopeo 1.18 "
        f"{'accepts' if theirs else 'rejects'} it\nours: {message}\nskopeo: {their_message}"
    )
    return mine, message, their_message


def scope_policy(scope: str, *reqs: dict[str, Any]) -> dict[str, Any]:
    return {
        "default": [{"type": "reject"}],
        "transports": {"docker": {scope: list(reqs)}},
    }


def signed_by(key: Path, **extra: Any) -> dict[str, Any]:
    return {"type": "signedBy", "keyType": "GPGKeys", "keyPath": str(key), **extra}


def sigstore_signed(key: Path, **extra: Any) -> dict[str, Any]:
    return {"type": "sigstoreSigned", "keyPath": str(key), **extra}


KEY_DATA = "base64 of "  # + a key name: that key's file, inline

# name, repository:tag (or @image), requirement factory, accepted?, fragment of our message
GPG_CASES = [
    ("signed", "gpg/app:1", lambda k: signed_by(k["one"]), True, ""),
    ("signed-later", "gpg/later:1", lambda k: signed_by(k["one"]), True, ""),
    ("armored-key", "gpg/app:1", lambda k: signed_by(k["one.asc"]), True, ""),
    ("by-digest", "gpg/app@a", lambda k: signed_by(k["one"]), True, ""),
    (
        "by-digest-exact",
        "gpg/app@a",
        lambda k: signed_by(k["one"], signedIdentity={"type": "matchExact"}),
        False,
        "wrong identity",
    ),
    (
        "unsigned",
        "gpg/unsigned:1",
        lambda k: signed_by(k["one"]),
        False,
        "no signature: none exists",
    ),
    (
        "other-key",
        "gpg/other:1",
        lambda k: signed_by(k["one"]),
        False,
        "which is not one of the policy's keys",
    ),
    (
        "key-paths",
        "gpg/other:1",
        lambda k: {
            "type": "signedBy",
            "keyType": "GPGKeys",
            "keyPaths": [str(k["one"]), str(k["two"])],
        },
        True,
        "",
    ),
    ("tampered", "gpg/tampered:1", lambda k: signed_by(k["one"]), False, "bad signature"),
    (
        "other-digest",
        "gpg/moved:1",
        lambda k: signed_by(k["one"]),
        False,
        "wrong image: the signature is for manifest",
    ),
    (
        "other-tag",
        "gpg/app:2",
        lambda k: signed_by(k["one"]),
        False,
        "wrong identity: the signature claims",
    ),
    (
        "other-tag-match-repository",
        "gpg/app:2",
        lambda k: signed_by(k["one"], signedIdentity={"type": "matchRepository"}),
        True,
        "",
    ),
    (
        "exact-reference",
        "gpg/app:2",
        lambda k: signed_by(
            k["one"], signedIdentity={"type": "exactReference", "dockerReference": "HOST/gpg/app:1"}
        ),
        True,
        "",
    ),
    (
        "exact-repository-other",
        "gpg/app:1",
        lambda k: signed_by(
            k["one"],
            signedIdentity={"type": "exactRepository", "dockerRepository": "HOST/gpg/other"},
        ),
        False,
        "wrong identity",
    ),
    (
        "mirror-without-remap",
        "mirror/gpg/app:1",
        lambda k: signed_by(k["one"]),
        False,
        "wrong identity",
    ),
    (
        "mirror-remapped",
        "mirror/gpg/app:1",
        lambda k: signed_by(
            k["one"],
            signedIdentity={
                "type": "remapIdentity",
                "prefix": "HOST/mirror",
                "signedPrefix": "HOST",
            },
        ),
        True,
        "",
    ),
    ("subkey", "gpg/subkey:1", lambda k: signed_by(k["three"]), False, "made by the subkey"),
    # an index: as skopeo, the policy applies to the image used (the platform's), with the
    # identity the reference names; the index's own signature is not what is checked
    ("index", "gpg/multi:1", lambda k: signed_by(k["one"]), True, ""),
    ("index-by-digest", "gpg/multi@multi", lambda k: signed_by(k["one"]), True, ""),
    (
        "index-signed-but-not-its-images",
        "gpg/multi-bare:1",
        lambda k: signed_by(k["one"]),
        False,
        "no signature: none exists",
    ),
    (
        "sigstore-policy-on-gpg-image",
        "gpg/app:1",
        lambda k: sigstore_signed(k["k1"]),
        False,
        "no signature: none exists",
    ),
]

SIGSTORE_CASES = [
    ("signed", "sig/app:1", lambda k: sigstore_signed(k["k1"]), True, ""),
    ("by-digest", "sig/app@a", lambda k: sigstore_signed(k["k1"]), True, ""),
    (
        "key-datas",
        "sig/app:1",
        lambda k: {"type": "sigstoreSigned", "keyDatas": [KEY_DATA + "k1"]},
        True,
        "",
    ),
    (
        "unsigned",
        "sig/unsigned:1",
        lambda k: sigstore_signed(k["k1"]),
        False,
        "no signature: none exists",
    ),
    (
        "other-key",
        "sig/other:1",
        lambda k: sigstore_signed(k["k1"]),
        False,
        "bad signature: the cryptographic signature does not verify",
    ),
    (
        "key-paths",
        "sig/other:1",
        lambda k: {"type": "sigstoreSigned", "keyPaths": [str(k["k1"]), str(k["k2"])]},
        True,
        "",
    ),
    ("tampered", "sig/tampered:1", lambda k: sigstore_signed(k["k1"]), False, "does not verify"),
    (
        "other-digest",
        "sig/moved:1",
        lambda k: sigstore_signed(k["k1"]),
        False,
        "wrong image: the signature is for manifest",
    ),
    ("other-tag", "sig/app:2", lambda k: sigstore_signed(k["k1"]), False, "wrong identity"),
    (
        "other-tag-match-repository",
        "sig/app:2",
        lambda k: sigstore_signed(k["k1"], signedIdentity={"type": "matchRepository"}),
        True,
        "",
    ),
    (
        "gpg-policy-on-sigstore-image",
        "sig/app:1",
        lambda k: signed_by(k["one"]),
        False,
        "which signedBy does not use",
    ),
]


def _resolve(world: World, value: Any) -> Any:
    """HOST placeholders and inline keys in a requirement."""
    if isinstance(value, dict):
        return {k: _resolve(world, v) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(world, v) for v in value]
    if isinstance(value, str) and value.startswith(KEY_DATA):
        return base64.b64encode(world.keys[value[len(KEY_DATA) :]].read_bytes()).decode()
    if isinstance(value, str):
        return value.replace("HOST", world.host)
    return value


def _source(world: World, where: str) -> str:
    if "@" in where:
        repo, image = where.split("@")
        return f"docker://{world.host}/{repo}@{world.digests[image]}"
    return f"docker://{world.host}/{where}"


@pytest.mark.parametrize(
    ("name", "where", "req", "ok", "fragment"),
    [pytest.param(*c, id=f"gpg-{c[0]}") for c in GPG_CASES]
    + [pytest.param(*c, id=f"sigstore-{c[0]}") for c in SIGSTORE_CASES],
)
def test_registry_images_are_decided_as_skopeo_decides(
    world: World, name: str, where: str, req: Any, ok: bool, fragment: str
) -> None:
    scope = f"{world.host}/{where.split('/')[0]}"
    doc = scope_policy(scope, _resolve(world, req(world.keys)))
    src = _source(world, where)
    mine, message, _ = decide(world, name, doc, src)
    assert mine is ok, message
    if not ok:
        assert message.startswith(f"{src}: rejected by the signature policy ")
        assert f'scope transports.docker["{scope}"], requirement 1 (' in message
        assert fragment in message, message


def test_scope_precedence_as_skopeo(world: World) -> None:
    """The most specific scope decides: an accepting repository scope inside a rejecting
    namespace, and the other way round, for registry images and for layouts."""
    host = world.host
    deny_ns = {
        "default": [{"type": "insecureAcceptAnything"}],
        "transports": {
            "docker": {
                f"{host}/gpg": [{"type": "reject"}],
                f"{host}/gpg/unsigned": [{"type": "insecureAcceptAnything"}],
                f"{host}/gpg/app:2": [signed_by(world.keys["one"])],
            }
        },
    }
    assert decide(world, "ns-repo", deny_ns, f"docker://{host}/gpg/unsigned:1")[0]
    mine, message, _ = decide(world, "ns-deny", deny_ns, f"docker://{host}/gpg/other:1")
    assert not mine and f'scope transports.docker["{host}/gpg"]' in message
    mine, message, _ = decide(world, "ns-tag", deny_ns, f"docker://{host}/gpg/app:2")
    assert not mine and f'["{host}/gpg/app:2"]' in message and "wrong identity" in message
    assert decide(world, "other-ns", deny_ns, f"docker://{host}/sig/unsigned:1")[0]
    wildcard = {
        "default": [{"type": "reject"}],
        "transports": {"docker": {"*.0.1": [{"type": "insecureAcceptAnything"}]}},
    }
    assert decide(world, "wildcard", wildcard, f"docker://{host}/gpg/unsigned:1")[0]

    layout_dir = str(Path(world.layouts["b"].split(":")[1]).parent)
    layouts = {
        "default": [{"type": "insecureAcceptAnything"}],
        "transports": {
            "oci": {
                layout_dir: [{"type": "reject"}],
                f"{layout_dir}/b": [{"type": "insecureAcceptAnything"}],
            }
        },
    }
    assert decide(world, "oci-inner", layouts, world.layouts["b"])[0]
    mine, message, _ = decide(world, "oci-outer", layouts, world.layouts["c"])
    assert not mine and f'transports.oci["{layout_dir}"]' in message


def test_layouts_and_archives_have_no_signatures(world: World) -> None:
    """As skopeo: signedBy and sigstoreSigned reject an oci:, oci-archive: or docker-archive:
    input (it carries no signature); insecureAcceptAnything takes it."""
    archives = world.work / "archives"
    archives.mkdir()
    docker_archive = f"docker-archive:{archives}/a.tar"
    _copy(world.layouts["a"], f"{docker_archive}:localhost/a:1")
    oci_archive = f"oci-archive:{archives}/a-oci.tar:1"
    _copy(world.layouts["a"], oci_archive)
    for src in (world.layouts["a"], docker_archive, oci_archive):
        transport = src.split(":")[0]
        for kind, req in (
            ("signed-by", signed_by(world.keys["one"])),
            ("sigstore", sigstore_signed(world.keys["k1"])),
        ):
            mine, message, _ = decide(world, f"{transport}-{kind}", {"default": [req]}, src)
            assert not mine and "images carry no signatures" in message
        allow = {
            "default": [{"type": "reject"}],
            "transports": {transport: {"": [{"type": "insecureAcceptAnything"}]}},
        }
        assert decide(world, f"{transport}-allowed", allow, src)[0]


LOAD_CASES = [
    (
        "valid-everything",
        {
            "docker": {
                "x.io/a": [
                    {
                        "type": "signedBy",
                        "keyType": "GPGKeys",
                        "keyPaths": [],
                        "signedIdentity": {
                            "type": "remapIdentity",
                            "prefix": "x.io",
                            "signedPrefix": "y.io/z",
                        },
                    }
                ]
            }
        },
        True,
    ),
    ("valid-unknown-transport", {"whatever": {"relative": [{"type": "reject"}]}}, True),
    (
        "valid-x509-keytype",
        {"docker": {"x": [{"type": "signedBy", "keyType": "X509Certificates", "keyPath": "/x"}]}},
        True,
    ),
    (
        "valid-storage-scope",
        {
            "containers-storage": {
                "[overlay@/var/lib/containers/storage]docker.io/library/busybox": [
                    {"type": "reject"}
                ]
            }
        },
        True,
    ),
    (
        "valid-keyless",
        {
            "docker": {
                "x": [
                    {
                        "type": "sigstoreSigned",
                        "fulcio": {
                            "caPath": "/ca",
                            "oidcIssuer": "https://i",
                            "subjectEmail": "a@b",
                        },
                        "rekorPublicKeyPath": "/r",
                    }
                ]
            }
        },
        True,
    ),
    (
        "empty-key-path",
        {"docker": {"x": [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": ""}]}},
        False,
    ),
    (
        "two-key-sources",
        {
            "docker": {
                "x": [
                    {"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/a", "keyPaths": ["/b"]}
                ]
            }
        },
        False,
    ),
    ("no-key-type", {"docker": {"x": [{"type": "signedBy", "keyPath": "/a"}]}}, False),
    ("unknown-field", {"docker": {"x": [{"type": "reject", "extra": 1}]}}, False),
    ("unknown-type", {"docker": {"x": [{"type": "acceptAnything"}]}}, False),
    ("empty-requirements", {"docker": {"x": []}}, False),
    ("relative-oci-scope", {"oci": {"relative": [{"type": "reject"}]}}, False),
    ("non-canonical-oci-scope", {"oci": {"/a/../b": [{"type": "reject"}]}}, False),
    ("root-oci-scope", {"oci-archive": {"/": [{"type": "reject"}]}}, False),
    ("docker-archive-scope", {"docker-archive": {"/a.tar": [{"type": "reject"}]}}, False),
    (
        "storage-scope-without-store",
        {"containers-storage": {"busybox": [{"type": "reject"}]}},
        False,
    ),
    (
        "name-only-exact-reference",
        {
            "docker": {
                "x": [
                    {
                        "type": "signedBy",
                        "keyType": "GPGKeys",
                        "keyPath": "/a",
                        "signedIdentity": {"type": "exactReference", "dockerReference": "busybox"},
                    }
                ]
            }
        },
        False,
    ),
    (
        "bad-remap-prefix",
        {
            "docker": {
                "x": [
                    {
                        "type": "signedBy",
                        "keyType": "GPGKeys",
                        "keyPath": "/a",
                        "signedIdentity": {
                            "type": "remapIdentity",
                            "prefix": "x.io/a:tag",
                            "signedPrefix": "y.io",
                        },
                    }
                ]
            }
        },
        False,
    ),
    (
        "null-identity",
        {
            "docker": {
                "x": [
                    {
                        "type": "signedBy",
                        "keyType": "GPGKeys",
                        "keyPath": "/a",
                        "signedIdentity": None,
                    }
                ]
            }
        },
        False,
    ),
    (
        "sigstore-empty-key-paths",
        {"docker": {"x": [{"type": "sigstoreSigned", "keyPaths": []}]}},
        False,
    ),
    ("sigstore-no-key", {"docker": {"x": [{"type": "sigstoreSigned"}]}}, False),
    (
        "bad-key-data",
        {"docker": {"x": [{"type": "signedBy", "keyType": "GPGKeys", "keyData": "%%%"}]}},
        False,
    ),
]


@pytest.mark.parametrize(
    ("name", "transports", "valid"), LOAD_CASES, ids=[c[0] for c in LOAD_CASES]
)
def test_policy_files_load_as_in_skopeo(
    world: World, name: str, transports: dict[str, Any], valid: bool
) -> None:
    doc = {"default": [{"type": "insecureAcceptAnything"}], "transports": transports}
    path = world.work / "policies" / f"load-{name}.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(doc))
    theirs, their_message = policy_loads(world.skopeo, path, world.layouts["a"], world.work)
    try:
        parse_policy(path.read_bytes(), str(path))
        mine, message = True, ""
    except InvalidPolicyError as e:
        mine, message = False, str(e)
    assert mine is theirs is valid, f"ours: {mine} {message}\nskopeo 1.18: {theirs} {their_message}"
    if not valid:
        assert message.startswith(f"signature policy {path}: ")


def test_containers_storage_inputs_get_the_policy_through_skopeo(
    world: World, container_env: dict[str, str]
) -> None:
    """``containers-storage:`` images are read by skopeo, which applies the policy given by
    :meth:`PolicyContext.skopeo_args` (the storage scopes are skopeo's)."""
    root = world.work / "store"
    runroot = containers.short_runroot()
    name = "localhost/policy/app:1"
    spec = f"containers-storage:[overlay@{root}+{runroot}]{name}"
    try:
        run(
            ["skopeo", "--insecure-policy", "copy", "-q", world.layouts["a"], spec],
            env=container_env,
        )
        policies = world.work / "policies"
        policies.mkdir(exist_ok=True)
        reject = policies / "storage-reject.json"
        reject.write_text(json.dumps({"default": [{"type": "reject"}]}))
        scoped = policies / "storage-scoped.json"
        scoped.write_text(
            json.dumps(
                {
                    "default": [{"type": "reject"}],
                    "transports": {
                        "containers-storage": {
                            f"[overlay@{root}]localhost/policy/app": [
                                {"type": "insecureAcceptAnything"}
                            ]
                        }
                    },
                }
            )
        )

        def read(ctx: PolicyContext) -> subprocess.CompletedProcess[str]:
            out = world.work / f"storage-out-{len(ctx.skopeo_args())}-{id(ctx)}"
            argv = ["skopeo", *ctx.skopeo_args(), "copy", "-q", spec, f"oci:{out}:x"]
            return run(argv, env=container_env, check=False)

        p = read(PolicyContext.load(str(reject)))
        assert p.returncode != 0 and "Source image rejected" in p.stderr, p.stderr
        assert read(PolicyContext.load(str(scoped))).returncode == 0
        assert read(PolicyContext.load(None, insecure=True)).returncode == 0
    finally:
        containers.remove_tree(root)
        containers.remove_tree(runroot)
