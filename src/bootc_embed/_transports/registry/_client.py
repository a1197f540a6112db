"""The HTTP client of one registry repository: the scheme (HTTPS, or plain HTTP where
allowed), retries with backoff, stall timeouts, the auth challenge with basic credentials or
bearer tokens, and the errors that name the repository, the credentials tried and the
registry's own message."""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import os
import re
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterator

import httpx

from ..._model import load_json
from ..._version import __version__
from ...errors import ImageReferenceError, UsageError
from .._auth import Lookup, find_credentials
from .._base import TransportOptions
from ._tls import cert_dirs, is_tls_error, ssl_context

RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
MAX_ATTEMPTS = 5
_DEFAULT_TIMEOUT = 60.0


def stall_timeout() -> float:
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


def backoff(attempt: int, resp: httpx.Response | None = None) -> float:
    """Seconds to wait before attempt ``attempt + 1``: doubling from
    ``BOOTC_EMBED_REGISTRY_BACKOFF`` (default 0.5), or the server's Retry-After (up to 30)."""
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


def error_body(resp: httpx.Response) -> tuple[str, str]:
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
        self._ctx = ssl_context(tuple(cert_dirs(host, options.cert_dir)), not self.skip_verify)
        timeout = stall_timeout()
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

    def count(self, key: str) -> None:
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
            if is_tls_error(https_error) and "WRONG_VERSION_NUMBER" not in str(https_error):
                # it speaks TLS, with a certificate we do not accept: plain HTTP will not help
                raise ImageReferenceError(
                    f"{self.host}: TLS with the registry failed: {why(https_error)}; give its "
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
                    f"{self.host}: cannot reach the registry over HTTPS: {why(https_error)}{hint}"
                ) from None
            try:
                resp = self._get_with_retries(f"http://{api}/v2/")
            except httpx.TransportError:
                raise ImageReferenceError(
                    f"{self.host}: cannot reach the registry over HTTPS ({why(https_error)}) "
                    f"nor plain HTTP"
                ) from None
            if resp.status_code not in (200, 401):
                raise ImageReferenceError(
                    f"{self.host}: cannot reach the registry over HTTPS: {why(https_error)}"
                ) from None
        self._check_ping(resp)
        return f"{resp.url.scheme}://{api}"

    def _get_with_retries(self, url: str) -> httpx.Response:
        for attempt in range(MAX_ATTEMPTS):
            try:
                resp = self._http.get(url)
            except (httpx.ConnectTimeout, httpx.ReadError, httpx.RemoteProtocolError) as e:
                if attempt == MAX_ATTEMPTS - 1 or is_tls_error(e):
                    raise
                time.sleep(backoff(attempt))
                continue
            if resp.status_code in RETRY_STATUS and attempt < MAX_ATTEMPTS - 1:
                time.sleep(backoff(attempt, resp))
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
        if stream is None:
            return
        with self._lock:
            self._streams.add(stream)
            late = self.interrupted
        if late:  # the answer arrived after interrupt() looked at the streams: stop it too
            _shut_down(stream)

    def interrupt(self) -> None:
        """Stop every transfer now (Ctrl-C): shut down the sockets of the connections in use,
        so that a read or write blocked in another thread returns at once instead of waiting
        for the stall timeout; no request is started or retried afterwards."""
        with self._lock:  # under the lock: a stream _track adds later sees the flag
            self.interrupted = True
            streams = list(self._streams)
        for stream in streams:
            _shut_down(stream)

    def check_interrupted(self, what: str) -> None:
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
            self.count("token")
            return token

    def drop_token(self, scopes: tuple[str, ...]) -> None:
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
                    f"{self.host}: the token server {realm} did not answer within "
                    f"{stall_timeout():g} s"
                ) from None
            except httpx.TransportError as e:
                if attempt == MAX_ATTEMPTS - 1:
                    raise ImageReferenceError(
                        f"{self.host}: cannot reach the token server {realm}: {why(e)}"
                    ) from None
                time.sleep(backoff(attempt))
                continue
            if resp.status_code in RETRY_STATUS and attempt < MAX_ATTEMPTS - 1:
                time.sleep(backoff(attempt, resp))
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
            self.check_interrupted(what)
            hdrs = dict(headers or {})
            auth = self._authorization(scopes)
            if auth:
                hdrs["Authorization"] = auth
            self.count(method)
            body = content() if callable(content) else content
            try:
                req = self._http.build_request(method, url, headers=hdrs, content=body)
                resp = self._http.send(req, stream=stream)
            except httpx.TimeoutException:
                self.check_interrupted(what)
                raise ImageReferenceError(
                    f"{what}: {self.host} did not answer within {stall_timeout():g} s "
                    f"(stalled {method} request; BOOTC_EMBED_REGISTRY_TIMEOUT sets the limit)"
                ) from None
            except httpx.TransportError as e:
                self.check_interrupted(what)
                if replayable and attempt < MAX_ATTEMPTS - 1 and not is_tls_error(e):
                    time.sleep(backoff(attempt))
                    attempt += 1
                    continue
                raise ImageReferenceError(
                    f"{what}: connection to {self.host} failed: {why(e)}"
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
                time.sleep(backoff(attempt, resp))
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
            self.drop_token(scopes)
            return True
        sent_basic = had is not None and had.scheme == "basic"
        creds = self.lookup.credentials
        return not sent_basic and creds is not None and not creds.identity_token

    def error(
        self, resp: httpx.Response, what: str, missing: str | None = None, hint: str = ""
    ) -> Exception:
        """The error for an unexpected answer: auth (with the credentials tried), not found
        (naming the repository, tag or blob), or the registry's own message."""
        code, message = error_body(resp)
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


def why(e: BaseException) -> str:
    """An exception's text for a message (at most 300 characters)."""
    text = str(e) or type(e).__name__
    return text if len(text) < 300 else text[:300] + "..."


def _login_hint(lookup: Lookup) -> str:
    if lookup.credentials is None:
        return "; give --creds USER:PASSWORD or --authfile, or log in with podman login"
    return ""


def _shut_down(stream: object) -> None:
    """Shut down a connection's socket, so that a read or write blocked on it returns now."""
    get_extra_info = getattr(stream, "get_extra_info", None)  # httpcore's NetworkStream
    sock = get_extra_info("socket") if get_extra_info is not None else None
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
