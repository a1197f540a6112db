"""``docker-archive:FILE[:NAME|:@INDEX]``: images in ``docker save`` / ``podman save`` format.

The archive holds ``manifest.json`` (``[{"Config", "RepoTags", "Layers"}]``), the config and
one uncompressed tar per layer, read in place without unpacking. The image manifest is made
the way containers/image makes it for this transport (Docker schema 2, each layer described by
its diff_id and uncompressed size, compact JSON), except for the layer media type: podman 4
labels these uncompressed layers ``...diff.tar.gzip``; we say ``...diff.tar``, so a base layer
passed through stays correctly described (and the manifest digest differs from the one
``podman load`` records). Layer files are named by their hash in the formats podman and newer
docker write, but a name is never trusted: every blob is verified as it is read, and a layer
stored compressed is hashed once (decompressed) to describe it.
"""

from __future__ import annotations

import io
import json
import os
import posixpath
import tarfile
from pathlib import Path
from typing import Any, BinaryIO

from .. import _compress
from .._digest import sha256_digest
from .._model import DOCKER_CONFIG, DOCKER_LAYER, DOCKER_MANIFEST, Descriptor, load_json
from .._reference import Reference, normalize_docker_name
from ..errors import ImageFormatError, ImageReferenceError, UsageError
from .oci import _Slice

_CHUNK = 1 << 20
_MAX_JSON = 64 << 20


class DockerArchiveSource:
    """Reads one image of a docker-archive tar file."""

    def __init__(self, ref: Reference) -> None:
        self.reference = ref
        path = Path(ref.path)
        if not path.is_file():
            raise ImageReferenceError(f"{ref}: no such archive {ref.path!r}")
        self._path = path.absolute()
        self._file = open(path, "rb")  # noqa: SIM115 - closed in close()
        try:
            self._members = self._index_members()
            self._load()
        except BaseException:
            self._file.close()
            raise

    # -- archive ------------------------------------------------------------------------------

    def _index_members(self) -> dict[str, tuple[int, int]]:
        files: dict[str, tuple[int, int]] = {}
        links: dict[str, str] = {}
        try:
            with tarfile.open(fileobj=self._file, mode="r:") as tf:
                for m in tf:
                    name = posixpath.normpath(m.name).lstrip("/")
                    if m.isfile():
                        files[name] = (m.offset_data, m.size)
                    elif m.issym():
                        target = posixpath.join(posixpath.dirname(name), m.linkname)
                        links[name] = posixpath.normpath(target).lstrip("/")
                    elif m.islnk():
                        links[name] = posixpath.normpath(m.linkname).lstrip("/")
        except tarfile.TarError as e:
            raise ImageReferenceError(
                f"{self.reference}: not a readable docker archive: {e}"
            ) from None
        for name, target in links.items():
            seen = {name}
            while target in links and target not in seen:
                seen.add(target)
                target = links[target]
            if target in files:
                files[name] = files[target]
        return files

    def _member(self, name: str, what: str) -> tuple[int, int]:
        key = posixpath.normpath(name).lstrip("/")
        if key not in self._members:
            raise ImageFormatError(f"{self.reference}: {what} {name!r} is missing from the archive")
        return self._members[key]

    def _read_member(self, name: str, what: str) -> bytes:
        offset, size = self._member(name, what)
        if size > _MAX_JSON:
            raise ImageFormatError(f"{self.reference}: {what} {name!r} is too large")
        return os.pread(self._file.fileno(), size, offset)

    # -- image --------------------------------------------------------------------------------

    def _choose(self, entries: list[dict[str, Any]]) -> tuple[dict[str, Any], str | None]:
        """The manifest.json entry the reference names, and the image's name (or None)."""
        ref = self.reference
        tags = [[str(t) for t in (e.get("RepoTags") or [])] for e in entries]

        def names(i: int) -> list[str]:
            out = []
            for t in tags[i]:
                try:
                    out.append(str(normalize_docker_name(t, str(ref))))
                except UsageError:
                    continue
            return out

        if ref.tag is not None and ref.tag.startswith("@"):
            i = int(ref.tag[1:])
            if i >= len(entries):
                raise ImageReferenceError(
                    f"{ref}: the archive holds {len(entries)} image(s); there is no @{i}"
                )
            found = names(i)
            return entries[i], found[0] if len(found) == 1 else None
        if ref.tag is not None:
            for i in range(len(entries)):
                if ref.tag in names(i):
                    return entries[i], ref.tag
            have = ", ".join(t for i in range(len(entries)) for t in names(i)) or "none"
            raise ImageReferenceError(f"{ref}: no image named {ref.tag} (names: {have})")
        if len(entries) != 1:
            have = "; ".join(", ".join(names(i)) or f"@{i} (untagged)" for i in range(len(entries)))
            raise ImageReferenceError(
                f"{ref}: the archive holds {len(entries)} images; name one with :NAME or :@INDEX "
                f"({have})"
            )
        found = names(0)
        return entries[0], found[0] if len(found) == 1 else None

    def _load(self) -> None:
        ref = self.reference
        if "manifest.json" not in self._members:
            raise ImageReferenceError(
                f"{ref}: the archive has no manifest.json (not a docker save archive, or an old "
                f"format from before docker 1.10)"
            )
        try:
            entries = json.loads(self._read_member("manifest.json", "manifest.json"))
        except ValueError as e:
            raise ImageFormatError(f"{ref}: manifest.json is not valid JSON: {e}") from None
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise ImageFormatError(f"{ref}: manifest.json is not a list of images")
        entry, self._name = self._choose(entries)
        config_name = entry.get("Config")
        layer_names = entry.get("Layers")
        if not isinstance(config_name, str) or not isinstance(layer_names, list):
            raise ImageFormatError(f"{ref}: manifest.json entry lacks Config or Layers")
        config_raw = self._read_member(config_name, "config")
        config = load_json(config_raw, f"{ref}: config")
        diff_ids = (config.get("rootfs") or {}).get("diff_ids")
        if not isinstance(diff_ids, list) or len(diff_ids) != len(layer_names):
            raise ImageFormatError(
                f"{ref}: manifest.json lists {len(layer_names)} layers but the config has "
                f"{len(diff_ids) if isinstance(diff_ids, list) else 'no'} diff_ids"
            )
        self._config = config_raw
        config_desc = Descriptor(DOCKER_CONFIG, sha256_digest(config_raw), len(config_raw))
        # digest → (archive offset, stored size, compression of the stored bytes)
        self._layers: dict[str, tuple[int, int, _compress.Kind]] = {}
        layers = []
        for i, (name, diff_id) in enumerate(zip(layer_names, diff_ids, strict=True)):
            if not isinstance(name, str) or not isinstance(diff_id, str):
                raise ImageFormatError(f"{ref}: malformed layer {i + 1} in manifest.json")
            offset, stored = self._member(name, f"layer {i + 1}")
            kind = _compress.detect(os.pread(self._file.fileno(), 4, offset))
            size = stored if kind == "none" else self._uncompressed_size(offset, stored, kind)
            self._layers[diff_id] = (offset, stored, kind)
            layers.append({"mediaType": DOCKER_LAYER, "size": size, "digest": diff_id})
        # compact JSON, keys in containers/image's order
        manifest = {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {
                "mediaType": DOCKER_CONFIG,
                "size": config_desc.size,
                "digest": config_desc.digest,
            },
            "layers": layers,
        }
        self._manifest = json.dumps(manifest, separators=(",", ":")).encode()
        self._config_digest = config_desc.digest

    def _uncompressed_size(self, offset: int, stored: int, kind: _compress.Kind) -> int:
        """The uncompressed size of a layer stored compressed (its digest is checked later)."""
        raw = _Slice(self._file, offset, stored)
        stream = _compress.open_decompressed(raw, kind)  # type: ignore[arg-type]
        size = 0
        while chunk := stream.read(_CHUNK):
            size += len(chunk)
        return size

    # -- ImageSource ---------------------------------------------------------------------------

    def default_name(self) -> str | None:
        return self._name

    def top_descriptor(self) -> Descriptor:
        return Descriptor(DOCKER_MANIFEST, sha256_digest(self._manifest), len(self._manifest))

    def open_raw(self, desc: Descriptor) -> BinaryIO:
        if desc.digest == sha256_digest(self._manifest):
            return io.BytesIO(self._manifest)
        if desc.digest == self._config_digest:
            return io.BytesIO(self._config)
        layer = self._layers.get(desc.digest)
        if layer is None:
            raise ImageFormatError(f"{self.reference}: blob {desc.digest} is not in the archive")
        offset, stored, kind = layer
        raw = _Slice(self._file, offset, stored)
        if kind == "none":
            return raw  # type: ignore[return-value]
        return _compress.open_decompressed(raw, kind)  # type: ignore[arg-type]

    def blob_path(self, desc: Descriptor) -> tuple[Path, int] | None:
        layer = self._layers.get(desc.digest)
        if layer is None or layer[2] != "none":
            return None
        return self._path, layer[0]

    def interrupt(self) -> None:
        pass  # local files: no transfer to stop

    def close(self) -> None:
        self._file.close()
