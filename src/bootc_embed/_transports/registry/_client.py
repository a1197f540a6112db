"""``docker://HOST[:PORT]/REPO[:TAG|@DIGEST]``: a registry client over httpx (OCI distribution
spec, HTTP/1.1).

Reading: manifests are negotiated (OCI and Docker schema 2 manifests, indexes and lists) and
blobs streamed; the caller's :class:`~bootc_embed._digest.VerifyingReader` checks each digest. A
dropped download resumes with ``Range`` where the registry allows it; 429/5xx and broken
connections are retried with backoff.

Writing: blobs are uploaded (POST, PATCH in chunks, PUT ``?digest=``) in a small thread pool as
soon as they are staged, skipping those the repository has; base blobs of another repository of
the same registry are mounted (``?mount=&from=``). The manifest is PUT last, at
:meth:`RegistryDestination.commit`: an error or Ctrl-C before that leaves no new tag.

Auth: anonymous, HTTP basic and bearer tokens (``WWW-Authenticate: Bearer realm=...``, pull and
push scopes, refreshed on expiry and on 401); credentials from :mod:`._auth`. TLS: the system's
CAs plus ``--cert-dir`` (or ``/etc/containers/certs.d/HOST``...), ``--tls-verify=false``; plain
HTTP only when TLS verification is off or the registry is on this machine (localhost, loopback).

registries.conf (:mod:`._registries_conf`): a pull tries the mirrors, then the primary location
(rewritten by ``location``), and keeps the first that serves the manifest; ``insecure`` acts as
``--tls-verify=false`` for that location unless ``--tls-verify`` is given; ``blocked`` refuses.
"""

from __future__ import annotations

import base64
import collections
import concurrent.futures
import contextlib
import dataclasses
import functools
import io
import ipaddress
import os
import re
import shutil
import socket
import ssl
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import httpx

from ..._digest import Reader, VerifyingReader, check_algorithm, sha256_digest
from ..._model import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    INDEX_TYPES,
    MANIFEST_TYPES,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    load_json,
    sniff_media_type,
)
from ..._reference import Reference
from ..._version import __version__
from ...errors import DigestMismatchError, ImageFormatError, ImageReferenceError, UsageError
from .._auth import Lookup, find_credentials
from .._base import MAX_METADATA_BYTES, ImageSource, TransportOptions, open_blob
from .._registries_conf import Endpoint
from .._registries_conf import load as load_registries_conf

MANIFEST_ACCEPT = ", ".join((OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST))
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
MAX_ATTEMPTS = 5
MAX_RESUMES = 5
UPLOAD_WORKERS = 4
UPLOAD_CHUNK = 64 << 20  # one PATCH carries at most this much
_IO_CHUNK = 1 << 20
_DEFAULT_TIMEOUT = 60.0


def _timeout() -> float:
    """Seconds without progress after which a transfer is called stalled
    (``BOOTC_EMBED_REGISTRY_TIMEOUT``, default 60)."""
    text = os.environ.get("BOOTC_EMBED_REGISTRY_TIMEOUT", "").strip()
    if not text:
        return _DEFAULT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        raise UsageError("BOOTC_EMBED_REGISTRY_TIMEOUT must be a number of seconds") from None
    if value <= 0:
        raise UsageError("BOOTC_EMBED_REGISTRY_TIMEOUT must be positive")
    return value


def _backoff(attempt: int, resp: httpx.Response | None = None) -> float:
    base = float(os.environ.get("BOOTC_EMBED_REGISTRY_BACKOFF", "0.5") or 0.5)
    delay = base * (2**attempt)
    if resp is not None:
        after = resp.headers.get("Retry-After", "")
        if after.isdigit():
            delay = max(delay, min(float(after), 30.0))
    return delay


def is_local(host: str) -> bool:
    """``localhost`` or a loopback address (with or without a port)."""
    name = host
    if name.startswith("["):
        name = name[1 : name.find("]")]
    elif name.count(":") == 1:
        name = name.partition(":")[0]
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _api_host(host: str) -> str:
    return "registry-1.docker.io" if host == "docker.io" else host


# --------------------------------------------------------------------------------------------
# TLS


def cert_dirs(host: str, cert_dir: str | None) -> list[Path]:
    """Where client certificates and extra CAs for ``host`` are, as podman looks for them."""
    if cert_dir:
        d = Path(cert_dir)
        if not d.is_dir():
            raise UsageError(f"--cert-dir {cert_dir!r} is not a directory")
        return [d]
    home = Path(os.environ.get("HOME") or os.path.expanduser("~"))
    config = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
    return [
        d
        for d in (
            config / "containers" / "certs.d" / host,
            Path("/etc/containers/certs.d") / host,
            Path("/etc/docker/certs.d") / host,
        )
        if d.is_dir()
    ]


@functools.lru_cache(maxsize=16)
def _ssl_context(dirs: tuple[Path, ...], verify: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context()  # the system's CAs
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    for d in dirs:
        names = sorted(os.listdir(d))
        for name in names:
            path = d / name
            try:
                if name.endswith(".crt"):
                    ctx.load_verify_locations(cafile=str(path))
                elif name.endswith(".cert"):
                    key = d / (name[: -len(".cert")] + ".key")
                    if not key.is_file():
                        raise UsageError(f"{path}: client certificate without its key {key.name}")
                    ctx.load_cert_chain(str(path), str(key))
                elif name.endswith(".key"):
                    cert = d / (name[: -len(".key")] + ".cert")
                    if not cert.is_file():
                        raise UsageError(f"{path}: client key without its certificate {cert.name}")
            except ssl.SSLError as e:
                raise UsageError(f"{path}: not a usable certificate or key: {e}") from None
    return ctx


# --------------------------------------------------------------------------------------------
# auth challenges

_TOKEN_RE = re.compile(
    r"""[\s,]*([A-Za-z0-9_.!#$%&'*+^`|~-]+)(?:\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*))?"""
)


class Challenge:
    def __init__(self, scheme: str, params: dict[str, str]) -> None:
        self.scheme = scheme
        self.params = params


def parse_challenges(header: str) -> list[Challenge]:
    """``Bearer realm="...",service="..."``, possibly several challenges in one header."""
    out: list[Challenge] = []
    for m in _TOKEN_RE.finditer(header):
        key, value = m.group(1), m.group(2)
        if value is None:
            out.append(Challenge(key.lower(), {}))
        elif out:
            if value.startswith('"'):
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            out[-1].params[key.lower()] = value
    return out


def _errors(resp: httpx.Response) -> tuple[str, str]:
    """(first error code, its message) from a registry error body, or ("", "")."""
    try:
        body = resp.read()
        obj = load_json(body, "error") if body else {}
        errs = obj.get("errors")
        if isinstance(errs, list) and errs and isinstance(errs[0], dict):
            return str(errs[0].get("code") or ""), str(errs[0].get("message") or "")
    except Exception:
        pass
    return "", ""


class RegistryClient:
    """One repository of one registry: connection, scheme, credentials, tokens, retries.

    ``insecure`` (registries.conf) skips TLS verification and allows plain HTTP unless
    ``--tls-verify`` was given either way, as in skopeo."""

    def __init__(
        self, host: str, repository: str, options: TransportOptions, insecure: bool = False
    ) -> None:
        self.host = host
        self.repository = repository
        self.name = f"{host}/{repository}"
        self.options = options
        self.lookup: Lookup = find_credentials(
            host, repository, authfile=options.authfile, creds=options.creds
        )
        self.skip_verify = options.tls_verify is False or (options.tls_verify is None and insecure)
        self._ctx = _ssl_context(tuple(cert_dirs(host, options.cert_dir)), not self.skip_verify)
        timeout = _timeout()
        self._http = httpx.Client(
            verify=self._ctx,
            http1=True,
            http2=False,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 30.0)),
            follow_redirects=True,
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
            headers={"User-Agent": f"bootc-embed/{__version__}"},
            event_hooks={"response": [self._track]},
        )
        self._streams: weakref.WeakSet[object] = weakref.WeakSet()  # connections seen
        self.interrupted = False
        self._base: str | None = None
        self._challenge: Challenge | None = None
        self._tokens: dict[tuple[str, ...], tuple[str, float]] = {}
        self._lock = threading.RLock()  # base_url (held while pinging) → _set_challenge
        self._token_lock = threading.Lock()
        self.counts: dict[str, int] = {}

    # -- connection ---------------------------------------------------------------------------

    def _count(self, key: str) -> None:
        with self._lock:
            self.counts[key] = self.counts.get(key, 0) + 1

    @property
    def scheme(self) -> str:
        return self.base_url.partition(":")[0]

    @property
    def base_url(self) -> str:
        with self._lock:
            if self._base is None:
                self._base = self._ping()
            return self._base

    def _ping(self) -> str:
        """Find the scheme (https, or http where allowed) and the auth challenge at /v2/."""
        api = _api_host(self.host)
        insecure_ok = self.skip_verify or (self.options.tls_verify is None and is_local(self.host))
        try:
            resp = self._get_with_retries(f"https://{api}/v2/")
        except httpx.TransportError as https_error:
            if _is_tls_error(https_error) and "WRONG_VERSION_NUMBER" not in str(https_error):
                # it speaks TLS, with a certificate we do not accept: plain HTTP will not help
                raise ImageReferenceError(
                    f"{self.host}: TLS with the registry failed: {_why(https_error)}; give its "
                    f"CA (or a client certificate) with --cert-dir, or --tls-verify=false"
                ) from None
            if isinstance(https_error, httpx.TimeoutException) or not insecure_ok:
                hint = (
                    ""
                    if insecure_ok
                    else "; if it serves plain HTTP or an untrusted certificate, "
                    "--tls-verify=false (or insecure = true in registries.conf) allows that "
                    "(or --cert-dir for its CA)"
                )
                raise ImageReferenceError(
                    f"{self.host}: cannot reach the registry over HTTPS: {_why(https_error)}{hint}"
                ) from None
            try:
                resp = self._get_with_retries(f"http://{api}/v2/")
            except httpx.TransportError:
                raise ImageReferenceError(
                    f"{self.host}: cannot reach the registry over HTTPS ({_why(https_error)}) "
                    f"nor plain HTTP"
                ) from None
            if resp.status_code not in (200, 401):
                raise ImageReferenceError(
                    f"{self.host}: cannot reach the registry over HTTPS: {_why(https_error)}"
                ) from None
        self._check_ping(resp)
        return f"{resp.url.scheme}://{api}"

    def _get_with_retries(self, url: str) -> httpx.Response:
        for attempt in range(MAX_ATTEMPTS):
            try:
                resp = self._http.get(url)
            except (httpx.ConnectTimeout, httpx.ReadError, httpx.RemoteProtocolError) as e:
                if attempt == MAX_ATTEMPTS - 1 or _is_tls_error(e):
                    raise
                time.sleep(_backoff(attempt))
                continue
            if resp.status_code in RETRY_STATUS and attempt < MAX_ATTEMPTS - 1:
                time.sleep(_backoff(attempt, resp))
                continue
            return resp
        raise AssertionError("unreachable")

    def _check_ping(self, resp: httpx.Response) -> None:
        if resp.status_code == 200:
            return
        if resp.status_code == 401:
            self._set_challenge(resp)
            return
        raise ImageReferenceError(
            f"{self.host}: not a container registry (HTTP {resp.status_code} on /v2/)"
        )

    def _set_challenge(self, resp: httpx.Response) -> bool:
        """Take the server's WWW-Authenticate; True when it is something we can answer."""
        challenges = parse_challenges(resp.headers.get("WWW-Authenticate", ""))
        chosen = next((c for c in challenges if c.scheme == "bearer"), None) or next(
            (c for c in challenges if c.scheme == "basic"), None
        )
        if chosen is None:
            return False
        with self._lock:
            self._challenge = chosen
        return True

    def close(self) -> None:
        self._http.close()

    def _track(self, resp: httpx.Response) -> None:
        stream = resp.extensions.get("network_stream")
        if stream is not None:
            with self._lock:
                self._streams.add(stream)

    def interrupt(self) -> None:
        """Stop every transfer now (Ctrl-C): shut down the sockets of the connections in use,
        so that a read or write blocked in another thread returns at once instead of waiting
        for the stall timeout; no request is started or retried afterwards."""
        self.interrupted = True
        with self._lock:
            streams = list(self._streams)
        for stream in streams:
            sock = stream.get_extra_info("socket")  # type: ignore[attr-defined]
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def _check_interrupted(self, what: str) -> None:
        if self.interrupted:
            raise ImageReferenceError(f"{what}: interrupted")

    def same_registry(self, other: RegistryClient) -> bool:
        return self.host == other.host and self.base_url == other.base_url

    # -- auth ---------------------------------------------------------------------------------

    def scopes(self, push: bool = False, also_pull: str | None = None) -> tuple[str, ...]:
        own = f"repository:{self.repository}:{'pull,push' if push else 'pull'}"
        return (own, f"repository:{also_pull}:pull") if also_pull else (own,)

    def _authorization(self, scopes: tuple[str, ...]) -> str | None:
        ch = self._challenge
        if ch is None:
            return None
        creds = self.lookup.credentials
        if ch.scheme == "basic":
            if creds is None or creds.identity_token:
                return None
            raw = f"{creds.username}:{creds.password}".encode()
            return "Basic " + base64.b64encode(raw).decode()
        return "Bearer " + self._token(scopes)

    def _token(self, scopes: tuple[str, ...]) -> str:
        with self._token_lock:
            cached = self._tokens.get(scopes)
            if cached is not None and cached[1] > time.monotonic():
                return cached[0]
            token, lifetime = self._fetch_token(scopes)
            margin = min(10.0, lifetime / 4)
            self._tokens[scopes] = (token, time.monotonic() + lifetime - margin)
            self._count("token")
            return token

    def _drop_token(self, scopes: tuple[str, ...]) -> None:
        with self._token_lock:
            self._tokens.pop(scopes, None)

    def _fetch_token(self, scopes: tuple[str, ...]) -> tuple[str, float]:
        ch = self._challenge
        assert ch is not None
        realm = ch.params.get("realm")
        if not realm:
            raise ImageReferenceError(
                f"{self.host}: the registry asks for a token but names no realm"
            )
        service = ch.params.get("service")
        creds = self.lookup.credentials
        resp: httpx.Response | None = None
        for attempt in range(MAX_ATTEMPTS):
            try:
                if creds is not None and creds.identity_token:
                    form = {
                        "grant_type": "refresh_token",
                        "refresh_token": creds.identity_token,
                        "client_id": "bootc-embed",
                        "scope": " ".join(scopes),
                    }
                    if service:
                        form["service"] = service
                    resp = self._http.post(realm, data=form)
                else:
                    params: list[tuple[str, str | int | float | bool | None]] = (
                        [("service", service)] if service else []
                    )
                    params += [("scope", s) for s in scopes]
                    if creds is not None:
                        params.append(("account", creds.username))
                    auth = (creds.username, creds.password) if creds is not None else None
                    resp = self._http.get(realm, params=params, auth=auth)
            except httpx.TimeoutException:
                raise ImageReferenceError(
                    f"{self.host}: the token server {realm} did not answer within {_timeout():g} s"
                ) from None
            except httpx.TransportError as e:
                if attempt == MAX_ATTEMPTS - 1:
                    raise ImageReferenceError(
                        f"{self.host}: cannot reach the token server {realm}: {_why(e)}"
                    ) from None
                time.sleep(_backoff(attempt))
                continue
            if resp.status_code in RETRY_STATUS and attempt < MAX_ATTEMPTS - 1:
                time.sleep(_backoff(attempt, resp))
                continue
            break
        assert resp is not None
        if resp.status_code in (401, 403):
            raise ImageReferenceError(
                f"{self.name}: the token server {realm} refused "
                f"{self._tried()} (HTTP {resp.status_code})" + _login_hint(self.lookup)
            )
        if resp.status_code != 200:
            raise ImageReferenceError(
                f"{self.name}: the token server {realm} answered HTTP {resp.status_code}"
            )
        try:
            obj = resp.json()
            token = obj.get("token") or obj.get("access_token")
            lifetime = float(obj.get("expires_in") or 60)
        except (ValueError, AttributeError, TypeError):
            token = None
            lifetime = 0.0
        if not isinstance(token, str) or not token:
            raise ImageReferenceError(f"{self.name}: the token server {realm} gave no token")
        return token, max(lifetime, 1.0)

    def _tried(self) -> str:
        return self.lookup.describe()

    # -- requests -----------------------------------------------------------------------------

    def url(self, path: str) -> str:
        return path if "://" in path else self.base_url + path

    def request(
        self,
        method: str,
        path: str,
        *,
        scopes: tuple[str, ...],
        what: str,
        headers: dict[str, str] | None = None,
        content: bytes | Callable[[], Iterator[bytes]] | None = None,
        stream: bool = False,
        replayable: bool = True,
        reauthorize: bool = True,
    ) -> httpx.Response:
        """Send with auth. A 401 gets one new token (or the first basic credentials) and the
        request again; 429/5xx and broken connections are retried with backoff when
        ``replayable``. ``content`` may be a function giving the body, called per attempt."""
        url = self.url(path)
        reauthorized = False
        attempt = 0
        while True:
            self._check_interrupted(what)
            hdrs = dict(headers or {})
            auth = self._authorization(scopes)
            if auth:
                hdrs["Authorization"] = auth
            self._count(method)
            body = content() if callable(content) else content
            try:
                req = self._http.build_request(method, url, headers=hdrs, content=body)
                resp = self._http.send(req, stream=stream)
            except httpx.TimeoutException:
                self._check_interrupted(what)
                raise ImageReferenceError(
                    f"{what}: {self.host} did not answer within {_timeout():g} s "
                    f"(stalled {method} request; BOOTC_EMBED_REGISTRY_TIMEOUT sets the limit)"
                ) from None
            except httpx.TransportError as e:
                self._check_interrupted(what)
                if replayable and attempt < MAX_ATTEMPTS - 1 and not _is_tls_error(e):
                    time.sleep(_backoff(attempt))
                    attempt += 1
                    continue
                raise ImageReferenceError(
                    f"{what}: connection to {self.host} failed: {_why(e)}"
                ) from None
            if (
                resp.status_code == 401
                and reauthorize
                and not reauthorized
                and self._reauthorize(resp, scopes)
            ):
                reauthorized = True
                resp.close()
                continue
            if resp.status_code in RETRY_STATUS and replayable and attempt < MAX_ATTEMPTS - 1:
                resp.close()
                time.sleep(_backoff(attempt, resp))
                attempt += 1
                continue
            return resp

    def _reauthorize(self, resp: httpx.Response, scopes: tuple[str, ...]) -> bool:
        """After a 401: True when asking again can succeed (a new token; basic credentials
        that were not sent yet)."""
        had = self._challenge
        if not self._set_challenge(resp):
            return False
        now = self._challenge
        assert now is not None
        if now.scheme == "bearer":
            self._drop_token(scopes)
            return True
        sent_basic = had is not None and had.scheme == "basic"
        creds = self.lookup.credentials
        return not sent_basic and creds is not None and not creds.identity_token

    def error(
        self, resp: httpx.Response, what: str, missing: str | None = None, hint: str = ""
    ) -> Exception:
        """The error for an unexpected answer: auth (with the credentials tried), not found
        (naming the repository, tag or blob), or the registry's own message."""
        code, message = _errors(resp)
        status = resp.status_code
        detail = f": {message}" if message else ""
        if status in (401, 403):
            verb = "denied access to" if status == 403 else "requires authentication for"
            return ImageReferenceError(
                f"{what}: {self.host} {verb} {self.name} (HTTP {status}{detail}); tried "
                f"{self._tried()}" + _login_hint(self.lookup)
            )
        if status == 404:
            if code == "NAME_UNKNOWN":
                return ImageReferenceError(f"{what}: repository {self.name} does not exist")
            if missing:
                return ImageReferenceError(f"{what}: {missing} not found in {self.name}{hint}")
            return ImageReferenceError(f"{what}: not found in {self.name}{detail}")
        return ImageReferenceError(
            f"{what}: {self.host} answered HTTP {status} {resp.reason_phrase}{detail}"
        )


def _is_tls_error(e: BaseException) -> bool:
    """A TLS failure (certificate, handshake): trying again does not help."""
    seen: BaseException | None = e
    for _ in range(10):
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _why(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    return text if len(text) < 300 else text[:300] + "..."


def _login_hint(lookup: Lookup) -> str:
    if lookup.credentials is None:
        return "; give --creds USER:PASSWORD or --authfile, or log in with podman login"
    return ""


# --------------------------------------------------------------------------------------------
# source


class _BlobReader(Reader):
    """A blob's bytes as they arrive, resumed with Range when the connection drops."""

    def __init__(self, client: RegistryClient, desc: Descriptor, what: str) -> None:
        self._client = client
        self._desc = desc
        self._what = what
        self._pos = 0  # bytes received so far
        self._parts: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._resp: httpx.Response | None = None
        self._chunks: Iterator[bytes] | None = None
        self._eof = False
        self._resumes = 0
        self._open()

    def _open(self) -> None:
        headers = {"Accept-Encoding": "identity"}
        if self._pos:
            headers["Range"] = f"bytes={self._pos}-"
        c = self._client
        resp = c.request(
            "GET",
            f"/v2/{c.repository}/blobs/{self._desc.digest}",
            scopes=c.scopes(),
            what=self._what,
            headers=headers,
            stream=True,
        )
        if resp.status_code == 206 and self._pos:
            start = resp.headers.get("Content-Range", "").removeprefix("bytes ").partition("-")[0]
            if start != str(self._pos):
                resp.close()
                raise ImageReferenceError(
                    f"{self._what}: the registry resumed blob {self._desc.digest} at the wrong "
                    f"offset ({start or '?'} instead of {self._pos})"
                )
        elif resp.status_code == 200:
            skip = self._pos  # no Range support: read again from the start, drop what we have
            self._resp, self._chunks = resp, resp.iter_raw()
            while skip:
                chunk = self._next_chunk()
                if chunk is None:
                    break
                if len(chunk) > skip:
                    self._parts.append(chunk[skip:])
                    self._buffered += len(chunk) - skip
                skip -= min(skip, len(chunk))
            return
        else:
            try:
                raise c.error(resp, self._what, f"blob {self._desc.digest}")
            finally:
                resp.close()
        self._resp, self._chunks = resp, resp.iter_raw()

    def _next_chunk(self) -> bytes | None:
        assert self._chunks is not None
        try:
            return next(self._chunks)
        except StopIteration:
            return None

    def _fill(self, want: int) -> None:
        while not self._eof and self._buffered < want:
            try:
                chunk = self._next_chunk()
            except httpx.TimeoutException:
                self.close()
                self._client._check_interrupted(self._what)
                raise ImageReferenceError(
                    f"{self._what}: download of blob {self._desc.digest} stalled: no data for "
                    f"{_timeout():g} s after {self._pos} of {self._desc.size} bytes "
                    f"(BOOTC_EMBED_REGISTRY_TIMEOUT sets the limit)"
                ) from None
            except httpx.TransportError as e:
                self.close()
                self._client._check_interrupted(self._what)
                if self._pos >= self._desc.size or self._resumes >= MAX_RESUMES:
                    raise ImageReferenceError(
                        f"{self._what}: download of blob {self._desc.digest} failed after "
                        f"{self._pos} of {self._desc.size} bytes: {_why(e)}"
                    ) from None
                time.sleep(_backoff(self._resumes))
                self._resumes += 1
                self._client._count("resume")
                self._open()
                continue
            if chunk is None:
                self._eof = True
                break
            self._pos += len(chunk)
            self._parts.append(chunk)
            self._buffered += len(chunk)

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = max(self._desc.size - self._pos, 0) + self._buffered + 1
        self._fill(n)
        out: list[bytes] = []
        have = 0
        parts = self._parts
        while parts and have < n:
            part = parts.popleft()
            if have + len(part) > n:
                k = n - have
                out.append(part[:k])
                parts.appendleft(part[k:])
                have = n
            else:
                out.append(part)
                have += len(part)
        self._buffered -= have
        return out[0] if len(out) == 1 else b"".join(out)

    def close(self) -> None:
        if self._resp is not None:
            self._resp.close()


class RegistrySource:
    """Reads an image from a registry repository, or from where registries.conf sends the
    reference: its mirrors in order, then its primary location. The first that serves the
    manifest is used for everything (as containers/image chooses); ``reference`` stays the one
    the user gave, and every blob is checked against its digest wherever it comes from."""

    def __init__(self, ref: Reference, options: TransportOptions) -> None:
        self.reference = ref
        self.options = options
        self.endpoints: list[Endpoint] = load_registries_conf(
            options.registries_conf
        ).pull_endpoints(ref)
        self.endpoint: Endpoint | None = None  # the one in use, once chosen
        self._client: RegistryClient | None = None
        self._trying: RegistryClient | None = None
        self._interrupted = False
        self._choosing = threading.Lock()
        self._manifests: dict[str, bytes] = {}
        self._top: Descriptor | None = None
        if all(e.blocked for e in self.endpoints):
            raise self._no_endpoint([(e, e.blocked or "") for e in self.endpoints])
        if len(self.endpoints) == 1:  # no mirror: errors come as they are, not as a list
            self.endpoint = self.endpoints[0]
            self._client = self._new_client(self.endpoint)

    @property
    def client(self) -> RegistryClient:
        """The client of the location in use (chosen on first use when there are mirrors)."""
        if self._client is None:
            with self._choosing:
                if self._client is None:
                    self._choose()
        assert self._client is not None
        return self._client

    def _new_client(self, endpoint: Endpoint) -> RegistryClient:
        physical = endpoint.reference
        options = self.options
        if options.creds and physical.host != self.reference.host:
            # --creds are for the registry the user named, never sent to another one
            options = dataclasses.replace(options, creds=None)
        return RegistryClient(physical.host, physical.repository, options, endpoint.insecure)

    def _choose(self) -> None:
        """Try each location in order; keep the first that serves the reference's manifest.
        A location that fails (unreachable, 401, 404, a bad manifest) is skipped and its reason
        kept for the error when none serves it."""
        failed: list[tuple[Endpoint, str]] = []
        for endpoint in self.endpoints:
            if endpoint.blocked:
                failed.append((endpoint, endpoint.blocked))
                continue
            if self._interrupted:
                raise ImageReferenceError(f"{self.reference}: interrupted")
            client = self._new_client(endpoint)
            self._trying = client
            try:
                self._top = self._fetch_top(client)
                self.endpoint, self._client = endpoint, client
                return
            except (ImageReferenceError, ImageFormatError, DigestMismatchError) as e:
                if self._interrupted:
                    raise
                failed.append((endpoint, str(e).removeprefix(f"{self.reference}: ")))
            finally:
                self._trying = None
                if self._client is not client:
                    client.close()
        raise self._no_endpoint(failed)

    def _no_endpoint(self, failed: list[tuple[Endpoint, str]]) -> ImageReferenceError:
        if len(failed) == 1:
            return ImageReferenceError(f"{self.reference}: {failed[0][1]}")
        tried = "; ".join(f"{e.describe()}: {why}" for e, why in failed)
        return ImageReferenceError(
            f"{self.reference}: no location configured in registries.conf could supply the "
            f"image (tried {len(failed)}): {tried}"
        )

    def default_name(self) -> str | None:
        r = self.reference
        return r.path + (f":{r.tag}" if r.tag else "") + (f"@{r.digest}" if r.digest else "")

    def _get_manifest(
        self, ref: str, what: str, client: RegistryClient | None = None
    ) -> tuple[bytes, str]:
        c = client or self.client
        resp = c.request(
            "GET",
            f"/v2/{c.repository}/manifests/{ref}",
            scopes=c.scopes(),
            what=what,
            headers={"Accept": MANIFEST_ACCEPT},
            stream=True,
        )
        try:
            if resp.status_code != 200:
                missing = f"manifest {ref}" if ref.startswith("sha256:") else f"tag {ref!r}"
                hint = self._tags_hint(c, what) if resp.status_code == 404 else ""
                raise c.error(resp, what, missing, hint)
            length = resp.headers.get("Content-Length", "")
            if length.isdigit() and int(length) > MAX_METADATA_BYTES:
                raise ImageReferenceError(f"{what}: the manifest is too large ({length} bytes)")
            raw = bytearray()
            try:
                for chunk in resp.iter_bytes():
                    raw += chunk
                    if len(raw) > MAX_METADATA_BYTES:
                        raise ImageReferenceError(f"{what}: the manifest is too large")
            except httpx.TransportError as e:
                raise ImageReferenceError(
                    f"{what}: reading the manifest failed: {_why(e)}"
                ) from None
            media_type = resp.headers.get("Content-Type", "").partition(";")[0].strip()
            return bytes(raw), media_type
        finally:
            resp.close()

    def _tags_hint(self, c: RegistryClient, what: str) -> str:
        """After a 404: raise when the repository does not exist; else list some tags."""
        try:
            resp = c.request(
                "GET", f"/v2/{c.repository}/tags/list?n=20", scopes=c.scopes(), what=what
            )
        except ImageReferenceError:
            return ""
        if resp.status_code == 404 and _errors(resp)[0] == "NAME_UNKNOWN":
            raise ImageReferenceError(f"{what}: repository {c.name} does not exist")
        if resp.status_code != 200:
            return ""
        try:
            tags = resp.json().get("tags") or []
        except (ValueError, AttributeError):
            return ""
        shown = ", ".join(str(t) for t in tags[:20]) or "none"
        return f" (tags: {shown}{', ...' if len(tags) > 20 else ''})"

    def top_descriptor(self) -> Descriptor:
        if self._top is None:
            client = self.client  # choosing a location fetches the manifest
            if self._top is None:
                self._top = self._fetch_top(client)
        assert self._top is not None
        return self._top

    def _fetch_top(self, client: RegistryClient) -> Descriptor:
        """The reference's manifest from one location (its tag or digest are the same at every
        location), checked against the reference's digest."""
        ref = self.reference
        what = str(ref)
        raw, media_type = self._get_manifest(ref.digest or ref.tag or "latest", what, client)
        digest = sha256_digest(raw)
        if ref.digest and digest != ref.digest:
            raise DigestMismatchError(
                f"{what}: {client.host} sent a manifest with digest {digest}, not {ref.digest}"
            )
        if media_type not in (*INDEX_TYPES, *MANIFEST_TYPES):
            media_type = sniff_media_type(load_json(raw, f"{what}: manifest")) or media_type
        self._manifests[digest] = raw
        return Descriptor(media_type, digest, len(raw))

    def open_raw(self, desc: Descriptor) -> BinaryIO:
        check_algorithm(desc.digest, str(self.reference))
        raw = self._manifests.get(desc.digest)
        if raw is not None:
            return io.BytesIO(raw)
        what = f"{self.reference}: {desc.digest}"
        if desc.media_type in (*INDEX_TYPES, *MANIFEST_TYPES):
            raw, _ = self._get_manifest(desc.digest, what)
            if sha256_digest(raw) == desc.digest:
                self._manifests[desc.digest] = raw
            return io.BytesIO(raw)
        return _BlobReader(self.client, desc, what)  # type: ignore[return-value]

    def blob_path(self, desc: Descriptor) -> tuple[Path, int] | None:
        return None

    def interrupt(self) -> None:
        self._interrupted = True
        for client in (self._client, self._trying):
            if client is not None:
                client.interrupt()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


# --------------------------------------------------------------------------------------------
# destination


class _Cancelled(Exception):
    pass


class RegistryDestination:
    """Pushes an image: blobs first (skipping what exists, mounting what another repository of
    the registry has), the manifest last."""

    def __init__(self, ref: Reference, options: TransportOptions) -> None:
        self.reference = ref
        # registries.conf: blocked and insecure apply; location rewrites and mirrors are for
        # pulls only, as in containers/image
        insecure = load_registries_conf(options.registries_conf).push_insecure(ref)
        self.client = RegistryClient(ref.host, ref.repository, options, insecure)
        self.client.base_url  # noqa: B018 - reach the registry now: fail before any work
        tmp = os.environ.get("TMPDIR") or "/var/tmp"
        self._staging = Path(tempfile.mkdtemp(prefix="bootc-embed-push-", dir=tmp))
        self._known: dict[str, bool] = {}
        self._pending: set[str] = set()
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=UPLOAD_WORKERS, thread_name_prefix="bootc-embed-push"
        )
        self._futures: list[concurrent.futures.Future[None]] = []
        self.uploaded: list[str] = []
        self.mounted: list[str] = []
        self._unmountable: set[str] = set()  # digests a mount was refused for
        self._what = str(ref)

    # -- blobs --------------------------------------------------------------------------------

    def has_blob(self, digest: str) -> bool:
        with self._lock:
            if digest in self._pending or self._known.get(digest):
                return True
            if digest in self._known:
                return False
        found = self._head(digest)
        with self._lock:
            if found:
                self._known[digest] = True
            else:
                self._known.setdefault(digest, False)
            return found or digest in self._pending

    def _head(self, digest: str) -> bool:
        c = self.client
        resp = c.request(
            "HEAD",
            f"/v2/{c.repository}/blobs/{digest}",
            scopes=c.scopes(push=True),
            what=self._what,
        )
        if resp.status_code == 200:
            return True
        if resp.status_code == 404:
            return False
        raise c.error(resp, f"{self._what}: checking blob {digest}")

    def staging_dir(self) -> Path:
        return self._staging

    def add_blob_file(self, path: Path, digest: str) -> None:
        check_algorithm(digest, self._what)
        with self._lock:
            skip = digest in self._pending or self._known.get(digest, False)
            if not skip:
                self._pending.add(digest)
        if skip:
            path.unlink(missing_ok=True)
            return
        target = self._staging / ("blob-" + digest.replace(":", "-"))
        if path != target:
            os.replace(path, target)
        self._futures.append(self._pool.submit(self._upload_task, target, digest))

    def add_blob_bytes(self, data: bytes) -> str:
        digest = sha256_digest(data)
        if self.has_blob(digest):
            return digest
        fd, tmp = tempfile.mkstemp(dir=self._staging, prefix="bytes-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        self.add_blob_file(Path(tmp), digest)
        return digest

    def try_reuse(self, source: ImageSource, desc: Descriptor, stream: bool = True) -> bool:
        """Held already, mounted from another repository of this registry, or else (with
        ``stream``) streamed from the source into an upload without a staged copy: then always
        True (errors raise). A failed mount is not tried again."""
        if self.has_blob(desc.digest):
            return True
        if self._cancel.is_set():
            raise _Cancelled()
        with self._lock:
            tried = desc.digest in self._unmountable
        if not tried:
            if self._mount(source, desc):
                return True
            with self._lock:
                self._unmountable.add(desc.digest)
        if not stream:
            return False
        self._stream(source, desc)
        return True

    def _mount(self, source: ImageSource, desc: Descriptor) -> bool:
        if not isinstance(source, RegistrySource):
            return False
        src = source.client
        if src.repository == self.client.repository or not src.same_registry(self.client):
            return False
        c = self.client
        resp = c.request(
            "POST",
            f"/v2/{c.repository}/blobs/uploads/?mount={desc.digest}&from={src.repository}",
            scopes=c.scopes(push=True, also_pull=src.repository),
            what=self._what,
            headers={"Content-Length": "0"},
        )
        if resp.status_code == 201:
            with self._lock:
                self._known[desc.digest] = True
                self.mounted.append(desc.digest)
            return True
        if resp.status_code == 202:  # not mounted: an upload session was opened instead
            location = resp.headers.get("Location")
            if location:
                with contextlib.suppress(httpx.HTTPError, ImageReferenceError):
                    c.request(
                        "DELETE",
                        str(resp.url.join(location)),
                        scopes=c.scopes(push=True),
                        what=self._what,
                    ).close()
            return False
        if resp.status_code in (401, 403, 404):
            return False  # no right to read the other repository: copy instead
        raise c.error(resp, f"{self._what}: mounting blob {desc.digest} from {src.name}")

    def _stream(self, source: ImageSource, desc: Descriptor) -> None:
        """Copy a source's blob straight into an upload, checked against its digest on the way
        (no staged file: the download and the upload overlap)."""
        what = f"{source.reference}: base layer {desc.digest}"

        def opener() -> BinaryIO:
            return open_blob(source, desc, what)  # type: ignore[return-value]

        self._upload_retrying(opener, desc.digest, desc.size, what, seekable=False)
        with self._lock:
            self._known[desc.digest] = True
            self.uploaded.append(desc.digest)

    def _upload_task(self, path: Path, digest: str) -> None:
        try:
            if self._cancel.is_set():
                raise _Cancelled()
            with self._lock:
                known = self._known.get(digest)
            if known is None and self._head(digest):
                with self._lock:
                    self._known[digest] = True
                return
            self._upload(path, digest)
            with self._lock:
                self._known[digest] = True
                self.uploaded.append(digest)
        finally:
            path.unlink(missing_ok=True)

    def _upload(self, path: Path, digest: str) -> None:
        size = path.stat().st_size
        what = f"{self._what}: uploading blob {digest}"

        def opener() -> BinaryIO:
            return path.open("rb")

        self._upload_retrying(opener, digest, size, what, seekable=True)

    def _upload_retrying(
        self,
        opener: Callable[[], BinaryIO],
        digest: str,
        size: int,
        what: str,
        seekable: bool,
    ) -> None:
        """Upload, starting over (a new upload session, the bytes read again) when the
        connection breaks or the registry answers 5xx."""
        last: Exception | None = None
        for attempt in range(3):
            try:
                with contextlib.closing(opener()) as f:
                    self._upload_once(f, digest, size, what, seekable)
                return
            except _Retry as e:
                last = e.error
                time.sleep(_backoff(attempt))
        assert last is not None
        raise last

    def _upload_once(self, f: BinaryIO, digest: str, size: int, what: str, seekable: bool) -> None:
        c = self.client
        scopes = c.scopes(push=True)
        resp = c.request(
            "POST",
            f"/v2/{c.repository}/blobs/uploads/",
            scopes=scopes,
            what=what,
            headers={"Content-Length": "0"},
        )
        if resp.status_code != 202:
            raise c.error(resp, what)
        location = _location(resp, what)
        offset = 0
        while offset < size:
            n = min(UPLOAD_CHUNK, size - offset)
            try:
                resp = c.request(
                    "PATCH",
                    location,
                    scopes=scopes,
                    what=what,
                    headers={
                        "Content-Type": "application/octet-stream",
                        "Content-Length": str(n),
                        "Content-Range": f"{offset}-{offset + n - 1}",
                    },
                    content=functools.partial(self._chunk, f, offset if seekable else None, n),
                    replayable=False,
                    reauthorize=seekable,  # a stream cannot be sent twice
                )
            except ImageReferenceError as e:
                raise _Retry(e) from None
            if resp.status_code in RETRY_STATUS or resp.status_code == 401:
                if resp.status_code == 401:
                    c._drop_token(scopes)
                raise _Retry(c.error(resp, what))
            if resp.status_code != 202:
                raise c.error(resp, what)
            location = _location(resp, what)
            offset += n
        if isinstance(f, VerifyingReader):
            f.verify()  # our own message naming the blob, before the registry's
        sep = "&" if "?" in location else "?"
        resp = c.request(
            "PUT",
            f"{location}{sep}digest={digest}",
            scopes=scopes,
            what=what,
            headers={"Content-Length": "0"},
        )
        if resp.status_code == 400 and _errors(resp)[0] == "DIGEST_INVALID":
            raise DigestMismatchError(
                f"{what}: the registry computed another digest for the uploaded bytes"
            )
        if resp.status_code not in (201, 204):
            raise c.error(resp, what)
        got = resp.headers.get("Docker-Content-Digest")
        if got and got != digest:
            raise DigestMismatchError(f"{what}: the registry stored it as {got}")

    def _chunk(self, f: BinaryIO, offset: int | None, n: int) -> Iterator[bytes]:
        if offset is not None:
            f.seek(offset)
        left = n
        while left:
            if self._cancel.is_set():
                raise _Cancelled()
            data = f.read(min(_IO_CHUNK, left))
            if not data:
                raise DigestMismatchError(
                    f"{self._what}: blob ended {left} bytes before its descriptor's size"
                )
            left -= len(data)
            yield data

    # -- commit -------------------------------------------------------------------------------

    def _wait_uploads(self) -> None:
        for fut in self._futures:
            fut.result()

    def commit(self, manifest: bytes, media_type: str) -> None:
        try:
            self._wait_uploads()
            ref = self.reference
            digest = sha256_digest(manifest)
            if ref.digest and ref.digest != digest:
                raise DigestMismatchError(
                    f"{self._what}: the image's manifest digest is {digest}, not the "
                    f"{ref.digest} the output reference names"
                )
            target = ref.digest or ref.tag or "latest"
            c = self.client
            resp = c.request(
                "PUT",
                f"/v2/{c.repository}/manifests/{target}",
                scopes=c.scopes(push=True),
                what=f"{self._what}: pushing the manifest",
                headers={"Content-Type": media_type},
                content=manifest,
            )
            if resp.status_code not in (200, 201, 202):
                raise c.error(resp, f"{self._what}: pushing the manifest")
            got = resp.headers.get("Docker-Content-Digest")
            if got and got != digest:
                raise DigestMismatchError(
                    f"{self._what}: the registry stored the manifest as {got}, not {digest}"
                )
        except BaseException:
            self.abort()
            raise
        self._pool.shutdown(wait=True)
        shutil.rmtree(self._staging, ignore_errors=True)
        self.client.close()

    def interrupt(self) -> None:
        self._cancel.set()
        self.client.interrupt()

    def abort(self) -> None:
        self._cancel.set()
        self._pool.shutdown(wait=False, cancel_futures=True)
        shutil.rmtree(self._staging, ignore_errors=True)


class _Retry(Exception):
    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def _location(resp: httpx.Response, what: str) -> str:
    loc = resp.headers.get("Location")
    if not loc:
        raise ImageReferenceError(f"{what}: the registry gave no upload location")
    return str(resp.url.join(loc))
