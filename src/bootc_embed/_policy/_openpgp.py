"""Simple signing's OpenPGP side: the policy's public keys as a keyring, and signatures checked
with Debian's ``gpgv`` (package gpgv; GnuPG's verify-only tool, which apt itself uses).

``gpgv`` is run with a private, empty home directory and a keyring holding only the keys the
policy requirement names; as in containers/image, the signature must be by one of those primary
keys (not by a signing subkey). Its machine-readable status lines decide, never its exit text.
Armored keys are converted to binary here (GnuPG 2.2's gpgv reads binary keyrings only).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

GPGV_TIMEOUT = 60.0
MAX_SIGNATURE_BYTES = 4 << 20  # containers/image's limit for one signature


class KeyringError(Exception):
    """Keys that cannot be used (unreadable, not OpenPGP, none at all)."""


class SignatureInvalid(Exception):
    """A signature that does not verify; the message says why."""


class GpgvMissing(Exception):
    pass


# --------------------------------------------------------------------------------------------
# keys


def _crc24(data: bytes) -> int:
    crc = 0xB704CE
    for byte in data:
        crc ^= byte << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
    return crc & 0xFFFFFF


def dearmor(data: bytes, what: str) -> bytes:
    """Binary OpenPGP data: ASCII-armored blocks decoded (their checksums checked), binary data
    returned as it is."""
    if not data.lstrip().startswith(b"-----BEGIN PGP"):
        return data
    out = bytearray()
    lines = data.decode("ascii", errors="replace").splitlines()
    i = 0
    while i < len(lines):
        if not lines[i].strip().startswith("-----BEGIN PGP"):
            i += 1
            continue
        i += 1
        while i < len(lines) and ":" in lines[i] and lines[i].strip():  # armor headers
            i += 1
        body: list[str] = []
        checksum = None
        while i < len(lines) and not lines[i].strip().startswith("-----END PGP"):
            line = lines[i].strip()
            if line.startswith("=") and len(line) == 5:
                checksum = line[1:]
            elif line:
                body.append(line)
            i += 1
        if i >= len(lines):
            raise KeyringError(f"{what}: an armored block has no END line")
        try:
            block = base64.b64decode("".join(body), validate=True)
            if checksum is not None:
                want = int.from_bytes(base64.b64decode(checksum, validate=True), "big")
                if _crc24(block) != want:
                    raise KeyringError(f"{what}: the armor checksum does not match")
        except (binascii.Error, ValueError):
            raise KeyringError(f"{what}: the armored block is not valid base64") from None
        out += block
        i += 1
    return bytes(out)


def packets(data: bytes, what: str) -> Iterator[tuple[int, bytes]]:
    """(tag, body) of each OpenPGP packet (RFC 4880 / 9580 framing)."""
    pos = 0
    while pos < len(data):
        head = data[pos]
        if not head & 0x80:
            raise KeyringError(f"{what}: not OpenPGP data (byte {pos} is not a packet header)")
        pos += 1
        if head & 0x40:  # new format
            tag = head & 0x3F
            if pos >= len(data):
                raise KeyringError(f"{what}: truncated OpenPGP packet")
            first = data[pos]
            if first < 192:
                length, pos = first, pos + 1
            elif first < 224:
                if pos + 1 >= len(data):
                    raise KeyringError(f"{what}: truncated OpenPGP packet")
                length, pos = ((first - 192) << 8) + data[pos + 1] + 192, pos + 2
            elif first == 255:
                length, pos = int.from_bytes(data[pos + 1 : pos + 5], "big"), pos + 5
            else:
                raise KeyringError(f"{what}: partial-length packets do not belong in a keyring")
        else:  # old format
            tag = (head >> 2) & 0x0F
            kind = head & 0x03
            if kind == 3:
                length = len(data) - pos
            else:
                n = (1, 2, 4)[kind]
                length, pos = int.from_bytes(data[pos : pos + n], "big"), pos + n
        if pos + length > len(data):
            raise KeyringError(f"{what}: truncated OpenPGP packet")
        yield tag, data[pos : pos + length]
        pos += length


def fingerprint(body: bytes) -> str:
    """The fingerprint of a public key packet body (versions 4, 5 and 6)."""
    version = body[0] if body else 0
    if version == 4:
        return hashlib.sha1(b"\x99" + len(body).to_bytes(2, "big") + body).hexdigest().upper()
    if version in (5, 6):
        prefix = b"\x9a" if version == 5 else b"\x9b"
        return hashlib.sha256(prefix + len(body).to_bytes(4, "big") + body).hexdigest().upper()
    return ""


@dataclass(frozen=True)
class Keyring:
    """Public keys, as one binary keyring."""

    data: bytes
    fingerprints: tuple[str, ...]  # of the primary keys

    @classmethod
    def from_parts(cls, parts: list[tuple[str, bytes]]) -> Keyring:
        """``parts``: (what, bytes) of each keyPath file or keyData value."""
        data = bytearray()
        fprs: list[str] = []
        for what, raw in parts:
            binary = dearmor(raw, what)
            found = [fingerprint(body) for tag, body in packets(binary, what) if tag == 6]
            if not found:
                raise KeyringError(f"{what}: holds no OpenPGP public key")
            fprs += found
            data += binary
        if not fprs:
            raise KeyringError("no keys are given")
        return cls(bytes(data), tuple(fprs))


# --------------------------------------------------------------------------------------------
# verification


@dataclass(frozen=True)
class Verified:
    payload: bytes
    signing_key: str  # fingerprint of the (sub)key that made the signature
    primary_key: str  # fingerprint of its primary key


def _statuses(text: str) -> list[list[str]]:
    return [line.split()[1:] for line in text.splitlines() if line.startswith("[GNUPG:] ")]


def verify(keyring: Keyring, signature: bytes) -> Verified:
    """The signed payload of ``signature`` (an OpenPGP signed message), when it is one valid
    signature by a key of ``keyring``; raises :class:`SignatureInvalid` saying why not."""
    exe = shutil.which("gpgv")
    if exe is None:
        raise GpgvMissing()
    if len(signature) > MAX_SIGNATURE_BYTES:
        raise SignatureInvalid(f"the signature is larger than {MAX_SIGNATURE_BYTES} bytes")
    with tempfile.TemporaryDirectory(prefix="bootc-embed-gpgv-") as tmp:
        home = Path(tmp) / "home"
        home.mkdir(mode=0o700)
        (Path(tmp) / "keyring.gpg").write_bytes(keyring.data)
        (Path(tmp) / "signature").write_bytes(signature)
        argv = [
            exe,
            "--homedir",
            str(home),
            "--status-fd",
            "1",
            "--keyring",
            str(Path(tmp) / "keyring.gpg"),
            "--output",
            str(Path(tmp) / "payload"),
            str(Path(tmp) / "signature"),
        ]
        try:
            proc = subprocess.run(
                argv,
                capture_output=True,
                stdin=subprocess.DEVNULL,
                timeout=GPGV_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise SignatureInvalid(f"gpgv did not finish within {GPGV_TIMEOUT:g} s") from None
        except OSError as e:
            raise SignatureInvalid(f"cannot run gpgv: {e.strerror}") from None
        statuses = _statuses(proc.stdout.decode("utf-8", errors="replace"))
        verified = _judge(statuses, proc, keyring)
        payload = (Path(tmp) / "payload").read_bytes()
    return Verified(payload, *verified)


def _judge(
    statuses: list[list[str]], proc: subprocess.CompletedProcess[bytes], keyring: Keyring
) -> tuple[str, str]:
    """(signing key, primary key) from gpgv's status lines, or SignatureInvalid."""
    by_kw: dict[str, list[list[str]]] = {}
    for s in statuses:
        if s:
            by_kw.setdefault(s[0], []).append(s[1:])
    count = len(by_kw.get("NEWSIG", []))
    if count > 1:
        raise SignatureInvalid(f"it holds {count} signatures; exactly one is expected")
    for kw, why in (
        ("BADSIG", "the signature does not match the signed data (tampered or corrupt)"),
        ("EXPKEYSIG", "the signing key {0} has expired"),
        ("REVKEYSIG", "the signing key {0} has been revoked"),
        ("EXPSIG", "the signature has expired"),
    ):
        if kw in by_kw:
            raise SignatureInvalid(why.format(*(by_kw[kw][0] or ["?"])))
    if "ERRSIG" in by_kw:
        args = by_kw["ERRSIG"][0]
        keyid, rc = (args[0] if args else "?"), (args[5] if len(args) > 5 else "")
        fpr = args[6] if len(args) > 6 and args[6] != "-" else ""
        if rc == "9":
            who = f"key {fpr or keyid}"
            raise SignatureInvalid(f"it was made by {who}, which is not one of the policy's keys")
        if rc == "4":
            raise SignatureInvalid(f"it uses an algorithm gpgv does not support (key {keyid})")
        raise SignatureInvalid(f"gpgv cannot check it (error code {rc or '?'}, key {keyid})")
    if "NODATA" in by_kw or not count:
        raise SignatureInvalid("it is not an OpenPGP signed message")
    if "PLAINTEXT" not in by_kw:
        raise SignatureInvalid("it carries no signed payload (a detached signature?)")
    valid = by_kw.get("VALIDSIG", [])
    if proc.returncode != 0 or "GOODSIG" not in by_kw or len(valid) != 1 or not valid[0]:
        err = proc.stderr.decode("utf-8", errors="replace").strip().splitlines()
        raise SignatureInvalid(
            f"gpgv did not accept it (exit {proc.returncode}"
            + (f": {err[-1]}" if err else "")
            + ")"
        )
    signing = valid[0][0]
    primary = valid[0][9] if len(valid[0]) > 9 else signing
    if signing not in keyring.fingerprints:
        # containers/image (GPGME) accepts only signatures whose signing key is one of the
        # primary keys given; a signing subkey's signature is refused there too
        raise SignatureInvalid(
            f"it was made by the subkey {signing} of key {primary}; only signatures by the "
            f"primary keys the policy names are accepted (as by skopeo and podman)"
        )
    return signing, primary
