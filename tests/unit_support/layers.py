"""Run one layer through ``transform_layer`` from a real OCI layout, and read layers back.

Layouts are written with tests/support/ocilayout.py (the standard library only); the output
layer is read back twice, with Python's tarfile and with bootc_embed's own TarReader, and the
two readings must agree.
"""

from __future__ import annotations

import base64
import hashlib
import io
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from support.ocilayout import LayerSpec, decompressed_stream, write_image

from bootc_embed._model import Descriptor
from bootc_embed._reference import parse_reference
from bootc_embed._tar import TarReader
from bootc_embed._transform import LayerJob, LayerResult, transform_layer
from bootc_embed._transports import ImageSource, open_source, resolve
from bootc_embed.errors import ImageReferenceError

STORE = "/usr/lib/containers/storage"
S = STORE.strip("/")
XATTR = "SCHILY.xattr."


def layer_ids(diff_ids: Sequence[str]) -> list[str]:
    """containers/image's layer ids, computed here independently of bootc_embed."""
    ids: list[str] = []
    for d in diff_ids:
        hexpart = d.removeprefix("sha256:")
        ids.append(hashlib.sha256(f"{ids[-1]}+{hexpart}".encode()).hexdigest() if ids else hexpart)
    return ids


def link_id(layer_id: str) -> str:
    """The link name bootc-embed derives for a layer (base32 of its id's sha256, 26 letters)."""
    return base64.b32encode(hashlib.sha256(layer_id.encode()).digest()).decode()[:26]


class CountingSource:
    """An image source that counts how often each blob is opened (a layer read twice shows)."""

    def __init__(self, inner: ImageSource) -> None:
        self.inner = inner
        self.reference = inner.reference
        self.opened: dict[str, int] = {}

    def open_raw(self, desc: Descriptor) -> BinaryIO:
        self.opened[desc.digest] = self.opened.get(desc.digest, 0) + 1
        return self.inner.open_raw(desc)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@dataclass
class Input:
    """One image of a layout opened as a bootc_embed source, ready to make layer jobs."""

    source: CountingSource
    layers: tuple[Descriptor, ...]
    diff_ids: list[str]
    name: str

    def job(
        self,
        index: int = 0,
        *,
        whiteouts: str = "xattr",
        compression: str = "gzip",
        level: int = 1,
        store: str = STORE,
        diff_id: str | None = None,
        descriptor: Descriptor | None = None,
    ) -> LayerJob:
        ids = layer_ids(self.diff_ids)
        return LayerJob(
            source=self.source,  # type: ignore[arg-type]
            image=self.name,
            index=index + 1,
            count=len(self.layers),
            descriptor=descriptor or self.layers[index],
            diff_id=diff_id or self.diff_ids[index],
            layer_id=ids[index],
            ancestors=tuple(reversed(ids[:index])),
            store=store,
            whiteouts=whiteouts,
            compression=compression,
            level=level,
        )


def open_input(
    root: Path, tars: Sequence[bytes], compression: str = "gzip", name: str = "localhost/t/app:1"
) -> Input:
    """An OCI layout at ``root`` holding one image of ``tars`` (uncompressed layer tars)."""
    image = write_image(root, [LayerSpec(tar=t, compression=compression) for t in tars])
    source = CountingSource(open_source(parse_reference(image.ref)))
    resolved = resolve(source, None)  # type: ignore[arg-type]
    return Input(source, resolved.manifest.layers, resolved.diff_ids, name)


@dataclass
class Made:
    """A transform's result and its output layer, read back."""

    job: LayerJob
    result: LayerResult
    blob: bytes
    tar: bytes

    @property
    def layer_dir(self) -> str:
        return f"{self.job.store.strip('/')}/overlay/{self.job.layer_id}"

    @property
    def diff(self) -> str:
        return f"{self.layer_dir}/diff"

    def members(self) -> list[tuple[tarfile.TarInfo, bytes | None]]:
        return read_tar(self.tar)

    def by_name(self) -> dict[str, tarfile.TarInfo]:
        out: dict[str, tarfile.TarInfo] = {}
        for m, _ in self.members():
            assert m.name not in out, f"{m.name} written twice"
            out[m.name] = m
        return out

    def entries(self) -> dict[str, tarfile.TarInfo]:
        """``diff/`` (as "") and the entries under it, by their path relative to it."""
        prefix = self.diff + "/"
        return {
            "" if n == self.diff else n[len(prefix) :]: m
            for n, m in self.by_name().items()
            if n == self.diff or n.startswith(prefix)
        }

    def contents(self) -> dict[str, bytes]:
        """Regular files under ``diff/``: path relative to it -> content."""
        prefix = self.diff + "/"
        return {
            m.name[len(prefix) :]: data
            for m, data in self.members()
            if m.name.startswith(prefix) and data is not None
        }

    def tarsplit(self) -> bytes:
        name = f"{self.job.store.strip('/')}/overlay-layers/{self.job.layer_id}.tar-split.gz"
        (data,) = [d for m, d in self.members() if m.name == name]
        assert data is not None
        return data


def refuses_non_archives(transport: str, directory: Path, member: str, words: list[str]) -> None:
    """``TRANSPORT:FILE`` is refused, with an ImageReferenceError saying ``words`` in turn, for a
    missing file, a file that is not a tar, and a tar holding only ``member``."""
    missing, garbage, other = (directory / n for n in ("missing.tar", "garbage.tar", "other.tar"))
    garbage.write_bytes(b"\x01" * 2048)
    with tarfile.open(other, "w") as tf:
        tf.addfile(tarfile.TarInfo(member), io.BytesIO(b""))
    for path, expected in zip((missing, garbage, other), words, strict=True):
        try:
            open_source(parse_reference(f"{transport}:{path}"))
        except ImageReferenceError as e:
            assert expected in str(e), str(e)
        else:
            raise AssertionError(f"{transport}:{path} was not refused")


def run(job: LayerJob, staging: Path, **kw: Any) -> Made:
    """``transform_layer`` into ``staging``; the output checked against what it claims."""
    staging.mkdir(parents=True, exist_ok=True)
    result = transform_layer(job, staging, **kw)
    assert result.blob_path is not None and result.blob_path.parent == staging
    blob = result.blob_path.read_bytes()
    tar = b"".join(decompressed_stream(result.blob_path))
    assert (result.size, result.digest) == (len(blob), sha256(blob))
    assert result.diff_id == sha256(tar)
    assert own_entries(tar) == tarfile_entries(tar), "TarReader and tarfile read it differently"
    return Made(job, result, blob, tar)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def read_tar(data: bytes) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    out = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tf:
        for m in tf:
            f = tf.extractfile(m) if m.isreg() else None
            out.append((m, f.read() if f else None))
    return out


Entry = tuple[str, bytes, int, int, int, int, str, dict[str, bytes], bytes]


def tarfile_entries(data: bytes) -> list[Entry]:
    """(name, typeflag, mode, uid, gid, mtime, linkname, xattrs, content) as tarfile reads them."""
    out: list[Entry] = []
    for m, content in read_tar(data):
        xattrs = {
            k[len(XATTR) :]: v.encode("utf-8", "surrogateescape")
            for k, v in m.pax_headers.items()
            if k.startswith(XATTR)
        }
        name = m.name + "/" if m.isdir() else m.name
        out.append(
            (name, m.type, m.mode, m.uid, m.gid, int(m.mtime), m.linkname, xattrs, content or b"")
        )
    return out


def own_entries(data: bytes) -> list[Entry]:
    """The same, as bootc_embed's TarReader reads them."""
    out: list[Entry] = []
    reader = TarReader(io.BytesIO(data))
    for e in reader:
        chunks: list[bytes] = []
        reader.read_content(lambda p, c=chunks: c.append(bytes(p)))
        out.append(
            (
                e.name.decode(),
                e.typeflag,
                e.mode,
                e.uid,
                e.gid,
                e.mtime,
                e.linkname.decode(),
                dict(e.xattrs),
                b"".join(chunks),
            )
        )
    return out
