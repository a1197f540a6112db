"""Keys, signatures and reference verifiers for the signature policy tests.

- :class:`Gpg`: GPG keys made with ``gpg --batch --quick-gen-key`` in a private GNUPGHOME, and
  simple signing blobs made with ``gpg --sign`` (what gpgme makes for skopeo).
- Debian 12's skopeo 1.9.3 signs with ``--sign-by`` (GPG) into a lookaside.
- :class:`Skopeo118`: the trixie tree's skopeo 1.18 (``debootstrap --variant=minbase
  --include=skopeo,netavark trixie``, cached like the bookworm root filesystem), run in a private
  mount namespace with the tree as root and the test's work directory bound at the same path,
  so that policies, keys and ``file://`` lookasides name the same files for it and for us. It
  makes sigstore keys and signatures (Debian 12's skopeo has sigstore disabled) and is the
  reference verifier.
- :class:`RegistryAttachments`: the :class:`~bootc_embed._policy.AttachmentFetcher` the tests
  give :class:`~bootc_embed._policy.RegistrySignatures` for the loopback registry (plain HTTP,
  no auth); the build's own adapter comes with the registry transport.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
from support.containers import remove_tree, run
from support.images import DEBIAN_MIRROR, locked, log, with_retry

TRIXIE_KEY = "trixie-skopeo-v1"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
SIGSTORE_SIGNATURE = "application/vnd.dev.cosign.simplesigning.v1+json"


def cache_dir() -> Path:
    return Path(os.environ.get("BOOTC_EMBED_TEST_CACHE", "/var/tmp/bootc-embed-test-cache"))


# --------------------------------------------------------------------------------------------
# GPG


class Gpg:
    """``gpg`` on a private home directory (its agent is stopped by :meth:`close`)."""

    def __init__(self, home: Path) -> None:
        self.home = Path(home)
        self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.env = dict(os.environ, GNUPGHOME=str(self.home))

    def __call__(self, *args: str, input: bytes | None = None) -> bytes:
        p = subprocess.run(
            [
                "gpg",
                "--batch",
                "--no-tty",
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
                *args,
            ],
            input=input,
            capture_output=True,
            env=self.env,
            timeout=120,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
        if p.returncode != 0:
            raise AssertionError(
                f"gpg {' '.join(args)} failed: {p.stderr.decode(errors='replace')}"
            )
        return p.stdout

    def fingerprints(self, uid: str) -> list[str]:
        """The primary key's fingerprint, then its subkeys'."""
        out = self("--with-colons", "--list-keys", uid).decode()
        return [line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:")]

    def gen_key(
        self, uid: str, algo: str = "ed25519", expire: str = "never", *time_args: str
    ) -> str:
        self(*time_args, "--quick-gen-key", uid, algo, "sign", expire)
        return self.fingerprints(uid)[0]

    def add_signing_subkey(self, fpr: str) -> str:
        self("--quick-add-key", fpr, "ed25519", "sign", "never")
        return self.fingerprints(fpr)[-1]

    def export(self, fpr: str, armor: bool = False) -> bytes:
        return self("--export", *(["--armor"] if armor else []), fpr)

    def sign(self, data: bytes, key: str, *extra: str) -> bytes:
        """An OpenPGP signed message (binary, compressed), as gpgme's normal mode makes."""
        return self(*extra, "--local-user", key, "--sign", input=data)

    def close(self) -> None:
        subprocess.run(["gpgconf", "--kill", "all"], env=self.env, capture_output=True, check=False)


def payload(digest: str, reference: str, kind: str = "atomic container signature") -> bytes:
    """A signature payload as containers/image writes it (Go's map order: sorted keys)."""
    doc = {
        "critical": {
            "identity": {"docker-reference": reference},
            "image": {"docker-manifest-digest": digest},
            "type": kind,
        },
        "optional": {"creator": "bootc-embed tests", "timestamp": 1700000000},
    }
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


# --------------------------------------------------------------------------------------------
# skopeo 1.18 from the trixie tree


def ensure_trixie(cache: Path) -> Path:
    """The root of a trixie tree holding skopeo 1.18 (made once per machine, under a lock)."""
    final = cache / TRIXIE_KEY
    if (final / "complete").exists():
        return final / "root"
    with locked(cache / "trixie.lock"):
        if (final / "complete").exists():
            return final / "root"
        work = cache / f"{TRIXIE_KEY}.tmp"
        remove_tree(work)
        work.mkdir(parents=True)
        t0 = time.monotonic()
        log("debootstrap --variant=minbase --include=skopeo,netavark trixie (about 2 min)")
        try:
            # netavark provides container-network-stack, which the containers-common package
            # needs and debootstrap does not resolve (a virtual package)
            with_retry(
                lambda: run(
                    [
                        "debootstrap",
                        "--variant=minbase",
                        "--include=skopeo,netavark",
                        "trixie",
                        work / "root",
                        DEBIAN_MIRROR,
                    ],
                    timeout=1800,
                ),
                before_retry=lambda: remove_tree(work / "root"),
            )
            for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
                for p in (work / "root" / junk).glob("*"):
                    if p.is_file():
                        p.unlink()
            (work / "complete").write_text("")
            remove_tree(final)
            work.rename(final)
        finally:
            remove_tree(work)
        log(f"trixie tree ready in {time.monotonic() - t0:.0f} s")
    return final / "root"


_NAMESPACE_SCRIPT = """
set -e
root=$1; shift
mount -t tmpfs tmpfs "$root/var/tmp"
mkdir -p "$root$BIND"
mount --bind "$BIND" "$root$BIND"
mount -t proc proc "$root/proc"
exec chroot "$root" "$@"
"""


class Skopeo118:
    """skopeo 1.18 in the trixie tree, seeing ``bind`` (a directory under /var/tmp) at the
    same path."""

    def __init__(self, root: Path, bind: Path) -> None:
        self.root = Path(root)
        self.bind = Path(bind).resolve()
        assert str(self.bind).startswith("/var/tmp/"), self.bind

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": "/root",
            "TMPDIR": "/tmp",
            "BIND": str(self.bind),
        }
        argv = [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            _NAMESPACE_SCRIPT,
            "sh",
            str(self.root),
            "skopeo",
            *args,
        ]
        p = subprocess.run(
            argv, capture_output=True, text=True, env=env, timeout=300, stdin=subprocess.DEVNULL
        )
        if check and p.returncode != 0:
            raise AssertionError(
                f"skopeo 1.18 {' '.join(args)} failed (exit {p.returncode}):\n{p.stderr}"
            )
        return p

    def version(self) -> str:
        return self("--version").stdout.strip()


def _copy_decision(
    skopeo: Skopeo118, options: list[str], src: str, work: Path, failure: str
) -> tuple[bool, str]:
    """(whether ``skopeo [options] copy SRC oci:TMP`` succeeded, its message); a failure whose
    message lacks ``failure`` fails the test."""
    out = work / f"copy-{time.monotonic_ns()}"
    p = skopeo(
        *options,
        "copy",
        "-q",
        "--remove-signatures",
        "--src-tls-verify=false",
        src,
        f"oci:{out}:x",
        check=False,
    )
    remove_tree(out)
    if p.returncode == 0:
        return True, ""
    if failure not in p.stderr:
        raise AssertionError(f"skopeo 1.18 failed on {src} for another reason:\n{p.stderr}")
    return False, p.stderr.strip()


def reference_decision(
    skopeo: Skopeo118, policy: Path, registries_d: Path, src: str, work: Path
) -> tuple[bool, str]:
    """skopeo 1.18's decision on ``src`` under ``policy``: (accepted, its message). A failure
    other than a policy rejection fails the test."""
    options = ["--policy", str(policy), "--registries.d", str(registries_d)]
    return _copy_decision(skopeo, options, src, work, "rejected")


def policy_loads(skopeo: Skopeo118, policy: Path, src: str, work: Path) -> tuple[bool, str]:
    """Whether skopeo 1.18 loads ``policy`` (copying ``src``, which the policy must accept)."""
    return _copy_decision(
        skopeo, ["--policy", str(policy)], src, work, "Error loading trust policy"
    )


# --------------------------------------------------------------------------------------------
# the loopback registry


class RegistryAttachments:
    """Sigstore attachments of one repository of a plain-HTTP loopback registry."""

    def __init__(self, host: str, repository: str) -> None:
        self.base = f"http://{host}/v2/{repository}"

    def get_manifest(self, tag: str) -> tuple[bytes, str] | None:
        r = httpx.get(f"{self.base}/manifests/{tag}", headers={"Accept": OCI_MANIFEST})
        if r.status_code == 404:
            return None
        r.raise_for_status()
        return r.content, r.headers.get("Content-Type", "")

    def get_blob(self, digest: str, size: int) -> bytes:
        r = httpx.get(f"{self.base}/blobs/{digest}", follow_redirects=True)
        r.raise_for_status()
        return r.content


def registry_manifest(host: str, repository: str, ref: str) -> bytes:
    r = httpx.get(
        f"http://{host}/v2/{repository}/manifests/{ref}",
        headers={"Accept": f"{OCI_MANIFEST}, {OCI_INDEX}"},
    )
    r.raise_for_status()
    return r.content


def put_manifest(host: str, repository: str, ref: str, manifest: dict[str, Any]) -> bytes:
    raw = json.dumps(manifest, separators=(",", ":")).encode()
    r = httpx.put(
        f"http://{host}/v2/{repository}/manifests/{ref}",
        content=raw,
        headers={"Content-Type": manifest.get("mediaType", OCI_MANIFEST)},
    )
    r.raise_for_status()
    return raw


def put_blob(host: str, repository: str, data: bytes) -> str:
    import hashlib

    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    r = httpx.post(f"http://{host}/v2/{repository}/blobs/uploads/")
    r.raise_for_status()
    location = str(r.url.join(r.headers["Location"]))
    sep = "&" if "?" in location else "?"
    r = httpx.put(
        f"{location}{sep}digest={digest}",
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    r.raise_for_status()
    return digest
