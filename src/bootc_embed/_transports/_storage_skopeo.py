"""``containers-storage:[STORE-SPEC]NAME``: the local podman store, through skopeo.

Reading copies the image out with ``skopeo copy containers-storage:... oci:TMP`` and reads that
OCI layout (skopeo compresses the store's uncompressed layers with gzip, as ``podman push``
does). Writing fills an OCI layout in a temporary directory and, at commit only, runs
``skopeo copy oci:TMP containers-storage:...``: nothing appears in the store before the build
has succeeded. The store specification (``[overlay@GRAPHROOT+RUNROOT:OPTIONS]``) and the
environment (``CONTAINERS_STORAGE_CONF``...) are skopeo's.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import BinaryIO

from .._model import Descriptor
from .._reference import Reference, normalize_docker_name
from ..errors import ImageReferenceError, UsageError
from ._base import ImageSource
from .oci import OCILayoutDestination, OCILayoutSource

_TAG = "image"
_ID_RE = re.compile(r"^@?[0-9a-f]{64}$")


def _skopeo(ref: Reference) -> str:
    exe = shutil.which("skopeo")
    if exe is None:
        raise ImageReferenceError(
            f"{ref}: containers-storage: images are read and written through skopeo, which is "
            f"not installed (install the 'skopeo' package, or copy the image to an oci: "
            f"layout with podman push first)"
        )
    return exe


def _image_part(ref: Reference) -> str:
    spec = ref.path
    return spec[spec.index("]") + 1 :] if spec.startswith("[") else spec


def _name(ref: Reference) -> str | None:
    """The image name the reference gives (normalised), or None for an image id."""
    image = _image_part(ref)
    if _ID_RE.match(image):
        return None
    name = (
        image.split("@", 1)[0] if "@" in image and _ID_RE.match(image.split("@", 1)[1]) else image
    )
    try:
        return str(normalize_docker_name(name, str(ref)))
    except UsageError:
        return None


def _workdir(prefix: str) -> Path:
    base = os.environ.get("TMPDIR") or "/var/tmp"
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base))


def _copy(ref: Reference, src: str, dst: str) -> None:
    argv = [_skopeo(ref), "copy", "--quiet", src, dst]
    try:
        proc = subprocess.run(argv, capture_output=True, stdin=subprocess.DEVNULL, check=False)
    except OSError as e:
        raise ImageReferenceError(f"{ref}: cannot run skopeo: {e.strerror}") from None
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()
        err = err if len(err) < 2000 else "..." + err[-2000:]
        raise ImageReferenceError(
            f"{ref}: skopeo copy {src} {dst} failed (exit {proc.returncode}): {err}"
        )


class StorageSource:
    """An image of the local store, copied out once to a temporary OCI layout."""

    def __init__(self, ref: Reference) -> None:
        self.reference = ref
        _skopeo(ref)
        self._tmp = _workdir("bootc-embed-storage-")
        try:
            layout = self._tmp / "layout"
            _copy(ref, f"containers-storage:{ref.path}", f"oci:{layout}:{_TAG}")
            self._inner: ImageSource = OCILayoutSource(Reference("oci", str(layout), _TAG))
        except BaseException:
            shutil.rmtree(self._tmp, ignore_errors=True)
            raise

    def default_name(self) -> str | None:
        return _name(self.reference)

    def top_descriptor(self) -> Descriptor:
        return self._inner.top_descriptor()

    def open_raw(self, desc: Descriptor) -> BinaryIO:
        return self._inner.open_raw(desc)

    def blob_path(self, desc: Descriptor) -> tuple[Path, int] | None:
        return self._inner.blob_path(desc)

    def interrupt(self) -> None:
        self._inner.interrupt()

    def close(self) -> None:
        self._inner.close()
        shutil.rmtree(self._tmp, ignore_errors=True)


class StorageDestination:
    """Writes an OCI layout in a temporary directory; skopeo stores it at commit."""

    def __init__(self, ref: Reference) -> None:
        self.reference = ref
        _skopeo(ref)
        if _name(ref) is None:
            raise UsageError(
                f"{ref}: an output in containers-storage needs an image name "
                f"(e.g. containers-storage:localhost/app:1), not an image id"
            )
        self._tmp = _workdir("bootc-embed-storage-out-")
        self._layout = self._tmp / "layout"
        self._inner = OCILayoutDestination(Reference("oci", str(self._layout), _TAG))

    def has_blob(self, digest: str) -> bool:
        return self._inner.has_blob(digest)

    def staging_dir(self) -> Path:
        return self._inner.staging_dir()

    def add_blob_file(self, path: Path, digest: str) -> None:
        self._inner.add_blob_file(path, digest)

    def add_blob_bytes(self, data: bytes) -> str:
        return self._inner.add_blob_bytes(data)

    def try_reuse(self, source: ImageSource, desc: Descriptor, stream: bool = True) -> bool:
        return False

    def commit(self, manifest: bytes, media_type: str) -> None:
        try:
            self._inner.commit(manifest, media_type)
            _copy(
                self.reference,
                f"oci:{self._layout}:{_TAG}",
                f"containers-storage:{self.reference.path}",
            )
        finally:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def interrupt(self) -> None:
        self._inner.interrupt()

    def abort(self) -> None:
        self._inner.abort()
        shutil.rmtree(self._tmp, ignore_errors=True)
