"""OCI image layouts: ``oci:DIR[:TAG]`` and ``oci-archive:FILE[:TAG]``."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from .._contract import dumps
from .._digest import check_algorithm, sha256_digest
from .._model import (
    OCI_INDEX,
    OCI_LAYOUT_VERSION,
    Descriptor,
    index_manifests,
    load_json,
)
from .._reference import Reference
from .._tar import DIR, END_OF_ARCHIVE, REG, padding, tar_header
from ..errors import ImageFormatError, ImageReferenceError

REF_NAME = "org.opencontainers.image.ref.name"
_COPY_CHUNK = 1 << 20


def _choose(entries: list[Descriptor], tag: str | None, where: str) -> Descriptor:
    if tag is not None:
        for e in entries:
            if e.annotations.get(REF_NAME) == tag:
                return e
        tags = sorted({e.annotations[REF_NAME] for e in entries if REF_NAME in e.annotations})
        raise ImageReferenceError(
            f"{where}: no image tagged {tag!r} (tags: {', '.join(tags) or 'none'})"
        )
    if len(entries) == 1:
        return entries[0]
    if not entries:
        raise ImageReferenceError(f"{where}: the layout holds no image")
    tags = sorted({e.annotations.get(REF_NAME, "(untagged)") for e in entries})
    raise ImageReferenceError(
        f"{where}: the layout holds {len(entries)} images; name one with :TAG "
        f"(tags: {', '.join(tags)})"
    )


class _Slice:
    """A read-only window of a file."""

    def __init__(self, f: BinaryIO, offset: int, size: int) -> None:
        self._f = f
        self._pos = offset
        self._end = offset + size

    def read(self, n: int = -1) -> bytes:
        left = self._end - self._pos
        if n is None or n < 0 or n > left:
            n = left
        if n <= 0:
            return b""
        data = os.pread(self._f.fileno(), n, self._pos)
        self._pos += len(data)
        return data

    def close(self) -> None:
        pass


class _LayoutSource:
    """What both layout sources share: the tag lookup in index.json and blob naming."""

    reference: Reference
    _index: bytes

    def default_name(self) -> str | None:
        return None  # a layout tag is not a full image name

    def top_descriptor(self) -> Descriptor:
        entries = index_manifests(self._index, f"{self.reference}: index.json")
        return _choose(entries, self.reference.tag, str(self.reference))

    def interrupt(self) -> None:
        pass  # local files: no transfer to stop

    def _blob_name(self, desc: Descriptor) -> str:
        check_algorithm(desc.digest, str(self.reference))
        algo, _, hexpart = desc.digest.partition(":")
        return f"blobs/{algo}/{hexpart}"


class OCILayoutSource(_LayoutSource):
    """Reads an image from an OCI layout directory."""

    def __init__(self, ref: Reference) -> None:
        self.reference = ref
        self.root = Path(ref.path)
        if not self.root.is_dir():
            raise ImageReferenceError(f"{ref}: no OCI layout directory at {ref.path!r}")
        index = self.root / "index.json"
        if not index.is_file():
            raise ImageReferenceError(f"{ref}: {ref.path!r} is not an OCI layout (no index.json)")
        self._index = index.read_bytes()

    def _path(self, desc: Descriptor) -> Path:
        return self.root / self._blob_name(desc)

    def open_raw(self, desc: Descriptor) -> BinaryIO:
        try:
            return open(self._path(desc), "rb")
        except FileNotFoundError:
            raise ImageFormatError(
                f"{self.reference}: blob {desc.digest} is missing from the layout"
            ) from None

    def blob_path(self, desc: Descriptor) -> tuple[Path, int] | None:
        return self._path(desc), 0

    def close(self) -> None:
        pass


class OCIArchiveSource(_LayoutSource):
    """Reads an image from an OCI layout packed in a tar file, without unpacking it."""

    def __init__(self, ref: Reference) -> None:
        self.reference = ref
        path = Path(ref.path)
        if not path.is_file():
            raise ImageReferenceError(f"{ref}: no such archive {ref.path!r}")
        self._file = open(path, "rb")  # noqa: SIM115 - closed in close()
        self._members: dict[str, tuple[int, int]] = {}
        try:
            with tarfile.open(fileobj=self._file, mode="r:") as tf:
                for m in tf:
                    if m.isfile():
                        name = os.path.normpath(m.name).lstrip("/")
                        self._members[name] = (m.offset_data, m.size)
        except tarfile.TarError as e:
            self._file.close()
            raise ImageReferenceError(f"{ref}: not a readable OCI archive: {e}") from None
        if "index.json" not in self._members:
            self._file.close()
            raise ImageReferenceError(f"{ref}: the archive holds no OCI layout (no index.json)")
        offset, size = self._members["index.json"]
        self._index = os.pread(self._file.fileno(), size, offset)

    def open_raw(self, desc: Descriptor) -> BinaryIO:
        member = self._members.get(self._blob_name(desc))
        if member is None:
            raise ImageFormatError(
                f"{self.reference}: blob {desc.digest} is missing from the archive"
            )
        return _Slice(self._file, *member)  # type: ignore[return-value]

    def blob_path(self, desc: Descriptor) -> tuple[Path, int] | None:
        return None

    def close(self) -> None:
        self._file.close()


def _read_layout_index(root: Path, where: str) -> dict[str, Any]:
    index = root / "index.json"
    if not index.exists():
        return {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    obj = load_json(index.read_bytes(), f"{where}: index.json")
    if not isinstance(obj.get("manifests", []), list):
        raise ImageFormatError(f"{where}: index.json 'manifests' is not a list")
    return obj


class _StagedLayout:
    """Blobs staged in a private directory, moved into a layout at commit."""

    def __init__(self, ref: Reference, layout: Path, staging: Path) -> None:
        self.reference = ref
        self._layout = layout
        self._staging = staging
        self._staged: dict[str, Path] = {}

    def try_reuse(self, source: object, desc: Descriptor, stream: bool = True) -> bool:
        return False

    def interrupt(self) -> None:
        pass  # local files: no transfer to stop

    def has_blob(self, digest: str) -> bool:
        if digest in self._staged:
            return True
        algo, _, hexpart = digest.partition(":")
        return (self._layout / "blobs" / algo / hexpart).is_file()

    def staging_dir(self) -> Path:
        return self._staging

    def add_blob_file(self, path: Path, digest: str) -> None:
        if digest in self._staged or self.has_blob(digest):
            path.unlink()
            return
        target = self._staging / ("blob-" + digest.replace(":", "-"))
        os.replace(path, target)
        self._staged[digest] = target

    def add_blob_bytes(self, data: bytes) -> str:
        digest = sha256_digest(data)
        if not self.has_blob(digest):
            fd, tmp = tempfile.mkstemp(dir=self._staging, prefix="bytes-")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            self.add_blob_file(Path(tmp), digest)
        return digest

    def _write_into_layout(
        self, manifest: bytes, media_type: str, layout: Path | None = None
    ) -> None:
        """Move the staged blobs into ``layout`` (default: the one being filled) and tag the
        manifest there; the caller holds the layout's lock when others may write to it."""
        digest = self.add_blob_bytes(manifest)
        layout = layout or self._layout
        (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        index = _read_layout_index(layout, str(self.reference))
        for d, path in sorted(self._staged.items()):
            algo, _, hexpart = d.partition(":")
            os.replace(path, layout / "blobs" / algo / hexpart)
        self._staged.clear()
        tag = self.reference.tag
        desc: dict[str, Any] = {"mediaType": media_type, "digest": digest, "size": len(manifest)}
        if tag:
            desc["annotations"] = {REF_NAME: tag}

        def keep(m: Any) -> bool:
            name = (m.get("annotations") or {}).get(REF_NAME) if isinstance(m, dict) else None
            if tag:
                return name != tag
            return not (name is None and isinstance(m, dict) and m.get("digest") == digest)

        index["manifests"] = [m for m in index.get("manifests", []) if keep(m)] + [desc]
        layout_file = layout / "oci-layout"
        if not layout_file.exists():
            layout_file.write_bytes(dumps({"imageLayoutVersion": OCI_LAYOUT_VERSION}))
        fd, tmp = tempfile.mkstemp(dir=layout, prefix=".index.json.bootc-embed-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(dumps(index))
            os.replace(tmp, layout / "index.json")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """An exclusive lock on a directory (flock on its descriptor: no file is added to it).
    Where a filesystem cannot lock (some network filesystems), the write goes ahead unlocked,
    as it would with skopeo."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


class OCILayoutDestination(_StagedLayout):
    """Writes into an OCI layout directory (new or existing; other tags are kept)."""

    def __init__(self, ref: Reference) -> None:
        root = Path(ref.path).absolute()
        self._new = not root.exists()
        if not self._new:
            if not root.is_dir():
                raise ImageReferenceError(f"{ref}: {ref.path!r} exists and is not a directory")
            if any(root.iterdir()) and not (root / "index.json").is_file():
                raise ImageReferenceError(
                    f"{ref}: {ref.path!r} is a non-empty directory that is not an OCI layout"
                )
            staging = Path(tempfile.mkdtemp(prefix=".bootc-embed-staging-", dir=root))
            super().__init__(ref, root, staging)
        else:
            if not root.parent.is_dir():
                raise ImageReferenceError(f"{ref}: directory {str(root.parent)!r} does not exist")
            tmp_layout = Path(
                tempfile.mkdtemp(prefix=f".{root.name}.bootc-embed-", dir=root.parent)
            )
            staging = tmp_layout / ".staging"
            staging.mkdir()
            super().__init__(ref, tmp_layout, staging)
        self._root = root

    def commit(self, manifest: bytes, media_type: str) -> None:
        """Tag the image in the layout, under a lock, so that builds writing other tags into the
        same layout at the same time all keep theirs (index.json is read and rewritten)."""
        if not self._new:
            with _locked(self._root):
                self._write_into_layout(manifest, media_type)
            shutil.rmtree(self._staging, ignore_errors=True)
            return
        with _locked(self._root.parent):  # creating the layout, or another build just did
            if self._root.is_dir() and (self._root / "index.json").is_file():
                with _locked(self._root):
                    self._write_into_layout(manifest, media_type, self._root)
                shutil.rmtree(self._layout, ignore_errors=True)
                return
            self._write_into_layout(manifest, media_type)
            shutil.rmtree(self._staging, ignore_errors=True)
            try:
                os.rename(self._layout, self._root)
            except OSError as e:
                raise ImageReferenceError(
                    f"{self.reference}: cannot create {str(self._root)!r}: {e.strerror}"
                ) from None

    def abort(self) -> None:
        shutil.rmtree(self._layout if self._new else self._staging, ignore_errors=True)


class OCIArchiveDestination(_StagedLayout):
    """Writes an OCI layout into a tar file (replaced atomically; other tags are kept)."""

    def __init__(self, ref: Reference) -> None:
        target = Path(ref.path).absolute()
        if target.exists() and not target.is_file():
            raise ImageReferenceError(f"{ref}: {ref.path!r} exists and is not a file")
        if not target.parent.is_dir():
            raise ImageReferenceError(f"{ref}: directory {str(target.parent)!r} does not exist")
        work = Path(tempfile.mkdtemp(prefix=f".{target.name}.bootc-embed-", dir=target.parent))
        layout = work / "layout"
        layout.mkdir()
        staging = work / "staging"
        staging.mkdir()
        super().__init__(ref, layout, staging)
        self._target = target
        self._work = work
        if target.exists():
            self._unpack_existing(target)

    def _unpack_existing(self, target: Path) -> None:
        try:
            with tarfile.open(target, mode="r:") as tf:
                for m in tf:
                    name = os.path.normpath(m.name).lstrip("/")
                    if m.isdir() or name in (".", ""):
                        continue
                    if not m.isfile() or not (
                        name in ("index.json", "oci-layout") or name.startswith("blobs/")
                    ):
                        continue
                    if ".." in name.split("/"):
                        continue
                    out = self._layout / name
                    out.parent.mkdir(parents=True, exist_ok=True)
                    src = tf.extractfile(m)
                    assert src is not None
                    with open(out, "wb") as f:
                        shutil.copyfileobj(src, f, _COPY_CHUNK)
        except tarfile.TarError as e:
            self.abort()
            raise ImageReferenceError(
                f"{self.reference}: existing file is not a readable OCI archive: {e}"
            ) from None

    def commit(self, manifest: bytes, media_type: str) -> None:
        self._write_into_layout(manifest, media_type)
        tmp = self._work / "archive.tar"
        with open(tmp, "wb") as out:
            _write_layout_tar(self._layout, out)
        os.replace(tmp, self._target)
        shutil.rmtree(self._work, ignore_errors=True)

    def abort(self) -> None:
        shutil.rmtree(self._work, ignore_errors=True)


def _write_layout_tar(layout: Path, out: BinaryIO) -> None:
    """A deterministic tar of a layout: sorted names, root-owned, mtime 0."""
    names: list[str] = []
    for dirpath, dirnames, filenames in os.walk(layout):
        dirnames.sort()
        rel = os.path.relpath(dirpath, layout)
        if rel != ".":
            names.append(rel + "/")
        names.extend((f if rel == "." else f"{rel}/{f}") for f in sorted(filenames))
    order = {"oci-layout": 0, "index.json": 1}
    names.sort(key=lambda n: (order.get(n, 2), n))
    for name in names:
        if name.endswith("/"):
            out.write(tar_header(name, DIR, mode=0o755))
            continue
        path = layout / name
        size = path.stat().st_size
        out.write(tar_header(name, REG, mode=0o644, size=size))
        with open(path, "rb") as f:
            shutil.copyfileobj(f, out, _COPY_CHUNK)
        out.write(padding(size))
    out.write(END_OF_ARCHIVE)


def open_source(ref: Reference) -> OCILayoutSource | OCIArchiveSource:
    if ref.transport == "oci":
        return OCILayoutSource(ref)
    return OCIArchiveSource(ref)


def open_destination(ref: Reference) -> OCILayoutDestination | OCIArchiveDestination:
    if ref.transport == "oci":
        return OCILayoutDestination(ref)
    return OCIArchiveDestination(ref)
