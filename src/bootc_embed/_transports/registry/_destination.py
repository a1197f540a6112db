"""Pushing an image to a registry: blobs uploaded in a small thread pool as they are staged
(POST, PATCH in chunks, PUT ``?digest=``), skipped when the repository has them, mounted from
another repository of the same registry, or streamed from the source; the manifest last, at
commit."""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import httpx

from ..._digest import VerifyingReader, check_algorithm, sha256_digest
from ..._model import Descriptor
from ..._reference import Reference
from ...errors import DigestMismatchError, ImageReferenceError
from .._base import ImageSource, TransportOptions, open_blob
from .._registries_conf import load as load_registries_conf
from ._client import RETRY_STATUS, RegistryClient, backoff, error_body
from ._source import RegistrySource

UPLOAD_WORKERS = 4
UPLOAD_CHUNK = 64 << 20  # one PATCH carries at most this much
_IO_CHUNK = 1 << 20


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
                time.sleep(backoff(attempt))
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
                    c.drop_token(scopes)
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
        if resp.status_code == 400 and error_body(resp)[0] == "DIGEST_INVALID":
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
