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
push scopes, refreshed on expiry and on 401); credentials from :mod:`.._auth`. TLS: the system's
CAs plus ``--cert-dir`` (or ``/etc/containers/certs.d/HOST``...), ``--tls-verify=false``; plain
HTTP only when TLS verification is off or the registry is on this machine (localhost, loopback).

registries.conf (:mod:`.._registries_conf`): a pull tries the mirrors, then the primary location
(rewritten by ``location``), and keeps the first that serves the manifest; ``insecure`` acts as
``--tls-verify=false`` for that location unless ``--tls-verify`` is given; ``blocked`` refuses.
"""

from ._client import Challenge, RegistryClient, is_local, parse_challenges
from ._destination import RegistryDestination
from ._source import RegistrySource
from ._tls import cert_dirs

__all__ = [
    "Challenge",
    "RegistryClient",
    "RegistryDestination",
    "RegistrySource",
    "cert_dirs",
    "is_local",
    "parse_challenges",
]
