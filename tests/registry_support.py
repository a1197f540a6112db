"""Registries for the transport tests: the distribution registry on loopback in every auth mode
(plain HTTP, TLS with a CA made here, client certificates, htpasswd, bearer tokens from a small
token server started here), and a tiny fake registry that misbehaves on purpose.

Everything binds 127.0.0.1 on a free port, keeps its files in a directory the test gives, and
records what it was asked (the registry's access log, the token server's requests).
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import http.server
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(cmd: list[str], env: dict[str, str] | None = None, check: bool = True):
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
    if check and p.returncode != 0:
        raise AssertionError(
            f"command failed (exit {p.returncode}): {' '.join(cmd)}\n{p.stdout}\n{p.stderr}"
        )
    return p


# --------------------------------------------------------------------------------------------
# certificates (openssl, as an admin would make them)


@dataclass(frozen=True)
class Certs:
    ca: Path  # ca.crt
    server_cert: Path
    server_key: Path
    client_cert: Path  # client.cert (podman's name in a cert dir)
    client_key: Path


def make_certs(d: Path) -> Certs:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate."""
    d.mkdir(parents=True, exist_ok=True)

    def ossl(*args: str) -> None:
        run(["openssl", *args])

    ossl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=test CA",
        "-keyout",
        str(d / "ca.key"),
        "-out",
        str(d / "ca.crt"),
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=keyCertSign,cRLSign",
    )
    for name, ext in (
        ("server", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth"),
        ("client", "extendedKeyUsage=clientAuth"),
    ):
        ossl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            f"/CN={name}",
            "-keyout",
            str(d / f"{name}.key"),
            "-out",
            str(d / f"{name}.csr"),
        )
        (d / f"{name}.ext").write_text(ext + "\n")
        ossl(
            "x509",
            "-req",
            "-in",
            str(d / f"{name}.csr"),
            "-CA",
            str(d / "ca.crt"),
            "-CAkey",
            str(d / "ca.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            str(d / f"{name}.ext"),
            "-out",
            str(d / f"{name}.crt"),
        )
    return Certs(
        d / "ca.crt", d / "server.crt", d / "server.key", d / "client.crt", d / "client.key"
    )


def cert_dir(d: Path, certs: Certs, client: bool = False) -> Path:
    """A directory laid out like /etc/containers/certs.d/HOST: ca.crt, client.cert/.key."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "ca.crt").write_bytes(certs.ca.read_bytes())
    if client:
        (d / "client.cert").write_bytes(certs.client_cert.read_bytes())
        (d / "client.key").write_bytes(certs.client_key.read_bytes())
    return d


def htpasswd(path: Path, users: dict[str, str]) -> Path:
    path.write_text(
        "".join(
            f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(rounds=5)).decode()}\n"
            for u, p in users.items()
        )
    )
    return path


# --------------------------------------------------------------------------------------------
# token server


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    """The docker token protocol: ``GET /token?service=&scope=`` with basic auth, answering a
    JWT signed RS256 whose ``x5c`` certificate is in the registry's root bundle.

    Known users get every action they ask for; anonymous callers get ``pull`` on repositories
    in ``public``. ``expired_first`` makes the first token already expired (the registry then
    answers 401 and the client must ask again).
    """

    def __init__(self, d: Path, users: dict[str, str], public: tuple[str, ...] = ()) -> None:
        d.mkdir(parents=True, exist_ok=True)
        self.dir = d
        self.users = users
        self.public = public
        self.issuer = "bootc-embed-test-issuer"
        self.service = "bootc-embed-test-registry"
        self.expires_in = 300
        self.expired_first = False
        self.requests: list[dict[str, Any]] = []
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "token signer")])
        now = datetime.datetime.now(datetime.UTC)
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self.bundle = d / "token-bundle.crt"
        self.bundle.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))
        self.port = free_port()
        self._server: http.server.ThreadingHTTPServer | None = None

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def jwt(self, account: str, access: list[dict[str, Any]], lifetime: int) -> str:
        der = self._cert.public_bytes(serialization.Encoding.DER)
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(der).decode()]}
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": account,
            "aud": self.service,
            "exp": now + lifetime,
            "nbf": now - 10,
            "iat": now - 10,
            "jti": _b64url(os.urandom(12)),
            "access": access,
        }
        signing = _b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(claims).encode())
        sig = self._key.sign(signing.encode(), padding.PKCS1v15(), hashes.SHA256())
        return signing + "." + _b64url(sig)

    def _answer(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        url = urllib.parse.urlsplit(handler.path)
        query = urllib.parse.parse_qs(url.query)
        user = ""
        auth = handler.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            if self.users.get(user) != password:
                self.requests.append({"user": user, "scopes": query.get("scope", []), "ok": False})
                handler.send_response(401)
                handler.send_header("Content-Type", "application/json")
                body = b'{"details":"incorrect username or password"}'
                handler.send_header("Content-Length", str(len(body)))
                handler.end_headers()
                handler.wfile.write(body)
                return
        access = []
        for scope in query.get("scope", []):
            kind, name_actions = scope.split(":", 1)
            name, _, actions = name_actions.rpartition(":")
            wanted = actions.split(",")
            granted = wanted if user else (["pull"] if name in self.public else [])
            granted = [a for a in wanted if a in granted]
            if granted:
                access.append({"type": kind, "name": name, "actions": granted})
        self.requests.append({"user": user, "scopes": query.get("scope", []), "ok": True})
        lifetime = self.expires_in
        if self.expired_first and len(self.requests) == 1:
            lifetime = -600  # beyond the registry's 60 s leeway
        token = self.jwt(user, access, lifetime)
        body = json.dumps(
            {"token": token, "access_token": token, "expires_in": self.expires_in}
        ).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def start(self) -> TokenServer:
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner._answer(self)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


# --------------------------------------------------------------------------------------------
# the distribution registry

_LOG_RE = re.compile(r'"([A-Z]+) (\S+) HTTP/[\d.]+" (\d{3})')


@dataclass
class Registry:
    """``docker-registry serve`` on 127.0.0.1 with the given auth mode."""

    workdir: Path
    certs: Certs | None = None
    client_certs: bool = False
    htpasswd: Path | None = None
    token: TokenServer | None = None
    port: int = 0
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    log_offset: int = 0

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def data(self) -> Path:
        return self.workdir / "data"

    @property
    def log(self) -> Path:
        return self.workdir / "registry.log"

    def _config(self) -> str:
        lines = [
            "version: 0.1",
            "log:",
            "  level: warn",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {self.data}",
            "  delete:",
            "    enabled: true",
            "http:",
            f"  addr: 127.0.0.1:{self.port}",
        ]
        if self.certs is not None:
            lines += [
                "  tls:",
                f"    certificate: {self.certs.server_cert}",
                f"    key: {self.certs.server_key}",
            ]
            if self.client_certs:
                lines += ["    clientcas:", f"      - {self.certs.ca}"]
        if self.htpasswd is not None:
            lines += [
                "auth:",
                "  htpasswd:",
                "    realm: bootc-embed-test",
                f"    path: {self.htpasswd}",
            ]
        if self.token is not None:
            lines += [
                "auth:",
                "  token:",
                f"    realm: {self.token.realm}",
                f"    service: {self.token.service}",
                f"    issuer: {self.token.issuer}",
                f"    rootcertbundle: {self.token.bundle}",
            ]
        return "\n".join(lines) + "\n"

    def start(self) -> Registry:
        self.workdir.mkdir(parents=True, exist_ok=True)
        for _attempt in range(5):
            self.port = free_port()
            cfg = self.workdir / "config.yml"
            cfg.write_text(self._config())
            with open(self.log, "ab") as log:
                self.proc = subprocess.Popen(
                    ["docker-registry", "serve", str(cfg)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and self.proc.poll() is None:
                with (
                    contextlib.suppress(OSError),
                    socket.create_connection(("127.0.0.1", self.port), timeout=1),
                ):
                    return self
                time.sleep(0.05)
            self.stop()
        raise RuntimeError("docker-registry did not start:\n" + self.log.read_text()[-3000:])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.proc = None

    # -- what it was asked ------------------------------------------------------------------

    def mark(self) -> None:
        """Forget the requests so far: :meth:`requests` returns the ones after this."""
        self.log_offset = self.log.stat().st_size if self.log.exists() else 0

    def requests(self) -> list[tuple[str, str, int]]:
        """(method, path, status) of every request since :meth:`mark`, from the access log.

        The access log is written asynchronously; wait until it stops growing."""
        size = -1
        for _ in range(50):
            now = self.log.stat().st_size
            if now == size:
                break
            size = now
            time.sleep(0.05)
        with open(self.log, "rb") as f:
            f.seek(self.log_offset)
            text = f.read().decode(errors="replace")
        return [(m.group(1), m.group(2), int(m.group(3))) for m in _LOG_RE.finditer(text)]

    def uploads(self) -> list[str]:
        """Repository of every blob upload started since :meth:`mark` (mounts excluded)."""
        return [
            p.split("/blobs/")[0][len("/v2/") :]
            for m, p, s in self.requests()
            if m == "POST" and "/blobs/uploads/" in p and "mount=" not in p
        ]

    def mounts(self) -> list[tuple[str, int]]:
        return [(p, s) for m, p, s in self.requests() if m == "POST" and "mount=" in p]

    # -- content ------------------------------------------------------------------------------

    def blob_file(self, digest: str) -> Path:
        hexpart = digest.removeprefix("sha256:")
        return self.data / "docker/registry/v2/blobs/sha256" / hexpart[:2] / hexpart / "data"

    def has_tag(self, repo: str, tag: str) -> bool:
        link = self.data / "docker/registry/v2/repositories" / repo / "_manifests/tags" / tag
        return link.exists()


def skopeo_push(
    src: str,
    registry: Registry,
    repo_tag: str,
    *extra: str,
    env: dict[str, str] | None = None,
) -> str:
    """Copy ``src`` into the registry unchanged (``--preserve-digests``); the full name."""
    name = f"{registry.host}/{repo_tag}"
    args = ["skopeo", "copy", "-q", "--preserve-digests", *extra]
    if registry.certs is None:
        args.append("--dest-tls-verify=false")
    run([*args, src, f"docker://{name}"], env=env)
    return name


# --------------------------------------------------------------------------------------------
# a registry that misbehaves on purpose


@dataclass
class FakeBlob:
    data: bytes
    fail_first: int = 0  # answer 503 to this many GETs first
    drop_after: int | None = None  # cut the first GET's connection after this many bytes
    stall_after: int | None = None  # stop sending (connection kept open) after this many bytes
    ranges: bool = True  # honour Range
    gets: list[str | None] = field(default_factory=list)  # Range header of every GET


class FakeRegistry:
    """Serves ``/v2/``, ``/v2/REPO/manifests/REF`` (``manifests``: REF → (bytes, media type))
    and ``/v2/REPO/blobs/DIGEST`` of the blobs given, with faults."""

    def __init__(
        self, blobs: dict[str, FakeBlob], manifests: dict[str, tuple[bytes, str]] | None = None
    ) -> None:
        self.blobs = blobs
        self.manifests = manifests or {}
        self.port = free_port()
        self._server: http.server.ThreadingHTTPServer | None = None
        self._stop = threading.Event()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _serve(self, h: http.server.BaseHTTPRequestHandler) -> None:
        if h.path == "/v2/":
            h.send_response(200)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        digest = h.path.rsplit("/", 1)[-1]
        if "/manifests/" in h.path and digest in self.manifests:
            body, media_type = self.manifests[digest]
            h.send_response(200)
            h.send_header("Content-Type", media_type)
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)
            return
        blob = self.blobs.get(digest)
        if blob is None:
            h.send_response(404)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        rng = h.headers.get("Range")
        blob.gets.append(rng)
        if blob.fail_first:
            blob.fail_first -= 1
            h.send_response(503)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        start = 0
        if rng and blob.ranges:
            start = int(rng.removeprefix("bytes=").split("-")[0])
            h.send_response(206)
            h.send_header("Content-Range", f"bytes {start}-{len(blob.data) - 1}/{len(blob.data)}")
        else:
            h.send_response(200)
        body = blob.data[start:]
        h.send_header("Content-Length", str(len(body)))
        h.send_header("Accept-Ranges", "bytes")
        h.end_headers()
        if blob.stall_after is not None:
            h.wfile.write(body[: blob.stall_after])
            h.wfile.flush()
            self._stop.wait(30)
            return
        if blob.drop_after is not None and len(blob.gets) == 1:
            h.wfile.write(body[: blob.drop_after])
            h.wfile.flush()
            h.close_connection = True
            with contextlib.suppress(OSError):
                h.connection.shutdown(socket.SHUT_RDWR)
            return
        h.wfile.write(body)

    def start(self) -> FakeRegistry:
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                owner._serve(self)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def wait_for(pred: Callable[[], bool], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()
