"""Registry credentials, looked up the way podman and skopeo do (containers/image
``pkg/docker/config``).

Order: ``--creds USER:PASS``; else one auth file, ``--authfile`` or ``$REGISTRY_AUTH_FILE``,
when either is given; else ``$XDG_RUNTIME_DIR/containers/auth.json`` (``/run/containers/UID/``
without it), ``$XDG_CONFIG_HOME/containers/auth.json`` (``~/.config``),
``$DOCKER_CONFIG/config.json`` (``~/.docker/config.json``) and ``~/.dockercfg``. In each file,
``credHelpers`` for the registry come first (``docker-credential-NAME get``), then the most
specific ``auths`` entry (``host/ns/repo`` before ``host``), then ``credsStore``.

Secrets never appear in messages or reprs: :class:`Credentials` says only the user name and
where the credentials came from.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ImageReferenceError, UsageError

_HELPER_TIMEOUT = 60
_DOCKER_HUB_KEYS = ("docker.io", "index.docker.io", "registry-1.docker.io")


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)
    origin: str  # where they came from: "--creds", "/path/auth.json", "docker-credential-x"
    identity_token: str | None = field(default=None, repr=False)

    def describe(self) -> str:
        who = "an identity token" if self.identity_token else f"user {self.username!r}"
        return f"{who} from {self.origin}"


@dataclass
class Lookup:
    """The credentials found for a registry (or None) and every place that was searched."""

    credentials: Credentials | None
    searched: list[str]

    def describe(self) -> str:
        if self.credentials is not None:
            return self.credentials.describe()
        return "no credentials (anonymous; searched: " + "; ".join(self.searched) + ")"


def _normalize_key(key: str) -> str:
    """An auth file key as containers/image compares it: no scheme, no ``/v1/`` suffix,
    Docker Hub's aliases as ``docker.io``."""
    k = key
    for prefix in ("https://", "http://"):
        if k.startswith(prefix):
            k = k[len(prefix) :]
            # a URL key names a registry only (docker's legacy ``https://host/v1/``)
            k = k.partition("/")[0]
            break
    k = k.rstrip("/")
    first, sep, rest = k.partition("/")
    if first in _DOCKER_HUB_KEYS:
        first = "docker.io"
    return first + sep + rest


def _candidate_keys(host: str, repository: str) -> list[str]:
    """``host/a/b/c``, ``host/a/b``, ``host/a``, ``host``: the most specific first."""
    parts = [p for p in repository.split("/") if p]
    keys = [host + "/" + "/".join(parts[:i]) for i in range(len(parts), 0, -1)]
    return [*keys, host]


def _decode_auth(value: str, where: str) -> tuple[str, str]:
    try:
        text = base64.b64decode(value, validate=False).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise ImageReferenceError(f"{where}: an 'auth' value is not valid base64") from None
    user, sep, password = text.partition(":")
    if not sep:
        raise ImageReferenceError(f"{where}: an 'auth' value is not base64 of USER:PASSWORD")
    return user, password


def run_helper(name: str, server: str) -> tuple[Credentials | None, str]:
    """``docker-credential-NAME get``; (credentials or None, what happened, for messages)."""
    program = f"docker-credential-{name}"
    exe = shutil.which(program)
    if exe is None:
        return None, f"{program} (not installed)"
    try:
        proc = subprocess.run(
            [exe, "get"],
            input=server.encode(),
            capture_output=True,
            timeout=_HELPER_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"{program} (failed: {type(e).__name__})"
    if proc.returncode != 0:
        out = (proc.stdout or proc.stderr).decode(errors="replace").strip()
        if "credentials not found" in out.lower():
            return None, f"{program} (no entry for {server})"
        return None, f"{program} (exit status {proc.returncode})"
    try:
        obj = json.loads(proc.stdout)
        user = str(obj.get("Username") or "")
        secret = str(obj.get("Secret") or "")
    except (ValueError, AttributeError):
        return None, f"{program} (unreadable answer)"
    if not secret:
        return None, f"{program} (no entry for {server})"
    if user == "<token>":
        return Credentials("", "", program, identity_token=secret), program
    return Credentials(user, secret, program), program


class _AuthFile:
    def __init__(self, path: Path, legacy: bool) -> None:
        self.path = path
        self.legacy = legacy

    def load(self) -> dict[str, Any] | None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise ImageReferenceError(f"cannot read auth file {self.path}: {e.strerror}") from None
        try:
            obj = json.loads(data) if data.strip() else {}
        except ValueError as e:
            raise ImageReferenceError(f"auth file {self.path} is not valid JSON: {e}") from None
        if not isinstance(obj, dict):
            raise ImageReferenceError(f"auth file {self.path} is not a JSON object")
        if self.legacy:
            return {"auths": obj}
        return obj


def _auth_files(authfile: str | None, env: Mapping[str, str]) -> list[_AuthFile]:
    if authfile:
        return [_AuthFile(Path(authfile), False)]
    if env.get("REGISTRY_AUTH_FILE"):
        return [_AuthFile(Path(env["REGISTRY_AUTH_FILE"]), False)]
    home = Path(env.get("HOME") or os.path.expanduser("~"))
    runtime = env.get("XDG_RUNTIME_DIR")
    files = [
        _AuthFile(
            Path(runtime) / "containers" / "auth.json"
            if runtime
            else Path(f"/run/containers/{os.getuid()}/auth.json"),
            False,
        ),
        _AuthFile(
            Path(env.get("XDG_CONFIG_HOME") or home / ".config") / "containers" / "auth.json",
            False,
        ),
        _AuthFile(
            Path(env["DOCKER_CONFIG"]) / "config.json"
            if env.get("DOCKER_CONFIG")
            else home / ".docker" / "config.json",
            False,
        ),
        _AuthFile(home / ".dockercfg", True),
    ]
    return files


def _from_file(f: _AuthFile, host: str, repository: str, searched: list[str]) -> Credentials | None:
    obj = f.load()
    if obj is None:
        searched.append(f"{f.path} (absent)")
        return None
    server = "docker.io" if host == "docker.io" else host
    helpers = obj.get("credHelpers") or {}
    if isinstance(helpers, dict):
        for key, helper in helpers.items():
            if _normalize_key(str(key)) == server and isinstance(helper, str):
                helper_server = "https://index.docker.io/v1/" if host == "docker.io" else host
                creds, note = run_helper(helper, helper_server)
                searched.append(f"{f.path} credHelpers: {note}")
                return creds
    auths = obj.get("auths") or {}
    if isinstance(auths, dict):
        normalized = {_normalize_key(str(k)): v for k, v in auths.items() if isinstance(v, dict)}
        for key in _candidate_keys(server, repository):
            entry = normalized.get(key)
            if entry is None:
                continue
            token = entry.get("identitytoken")
            if isinstance(token, str) and token:
                return Credentials("", "", f"{f.path} ({key})", identity_token=token)
            if isinstance(entry.get("auth"), str) and entry["auth"]:
                user, password = _decode_auth(entry["auth"], str(f.path))
                return Credentials(user, password, f"{f.path} ({key})")
            if entry.get("username") and entry.get("password"):
                return Credentials(
                    str(entry["username"]), str(entry["password"]), f"{f.path} ({key})"
                )
    store = obj.get("credsStore")
    if isinstance(store, str) and store:
        helper_server = "https://index.docker.io/v1/" if host == "docker.io" else host
        creds, note = run_helper(store, helper_server)
        searched.append(f"{f.path} credsStore: {note}")
        return creds
    searched.append(f"{f.path} (no entry for {server})")
    return None


def parse_creds(creds: str) -> Credentials:
    user, sep, password = creds.partition(":")
    if not user or not sep:
        raise UsageError("--creds must be USER:PASSWORD")
    return Credentials(user, password, "--creds")


def find_credentials(
    host: str,
    repository: str,
    *,
    authfile: str | None = None,
    creds: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Lookup:
    """The credentials for ``host`` (and ``repository``, for per-repository entries)."""
    if creds:
        return Lookup(parse_creds(creds), ["--creds"])
    env = os.environ if env is None else env
    searched: list[str] = []
    for f in _auth_files(authfile, env):
        found = _from_file(f, host, repository, searched)
        if found is not None:
            return Lookup(found, searched)
    return Lookup(None, searched)
