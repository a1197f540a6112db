"""Reading an image from a registry: the location chosen among the mirrors and the primary,
manifests negotiated and fetched, blobs streamed and resumed with ``Range``."""

from __future__ import annotations

import collections
import dataclasses
import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import httpx

from ..._digest import Reader, check_algorithm, sha256_digest
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
from ...errors import DigestMismatchError, ImageFormatError, ImageReferenceError
from .._base import MAX_METADATA_BYTES, TransportOptions
from .._registries_conf import Endpoint
from .._registries_conf import load as load_registries_conf
from ._client import RegistryClient, backoff, error_body, stall_timeout, why

MANIFEST_ACCEPT = ", ".join((OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST))
MAX_RESUMES = 5


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
                self._client.check_interrupted(self._what)
                raise ImageReferenceError(
                    f"{self._what}: download of blob {self._desc.digest} stalled: no data for "
                    f"{stall_timeout():g} s after {self._pos} of {self._desc.size} bytes "
                    f"(BOOTC_EMBED_REGISTRY_TIMEOUT sets the limit)"
                ) from None
            except httpx.TransportError as e:
                self.close()
                self._client.check_interrupted(self._what)
                if self._pos >= self._desc.size or self._resumes >= MAX_RESUMES:
                    raise ImageReferenceError(
                        f"{self._what}: download of blob {self._desc.digest} failed after "
                        f"{self._pos} of {self._desc.size} bytes: {why(e)}"
                    ) from None
                time.sleep(backoff(self._resumes))
                self._resumes += 1
                self._client.count("resume")
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
                    f"{what}: reading the manifest failed: {why(e)}"
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
        if resp.status_code == 404 and error_body(resp)[0] == "NAME_UNKNOWN":
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
