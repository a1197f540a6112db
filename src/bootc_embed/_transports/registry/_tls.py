"""TLS with a registry: the system's CAs plus the certificates podman would use for the host
(``--cert-dir``, or ``certs.d/HOST`` under the user's and the system's containers and docker
configuration), and telling a TLS failure (not worth retrying) from a broken connection."""

from __future__ import annotations

import functools
import os
import ssl
from pathlib import Path

from ...errors import UsageError


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
def ssl_context(dirs: tuple[Path, ...], verify: bool) -> ssl.SSLContext:
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


def is_tls_error(e: BaseException) -> bool:
    """A TLS failure (certificate, handshake): trying again does not help."""
    seen: BaseException | None = e
    for _ in range(10):
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
