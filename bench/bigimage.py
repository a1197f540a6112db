"""A synthetic app image with one big layer, written in pure Python as an OCI layout.

The layer is a tar holding a few small files and one file of ``size`` bytes (1 GiB by default)
whose content compresses like real data rather than trivially: 64 KiB blocks picked
pseudo-randomly from a pool of random hex text, word text and random binary blocks. A block is
longer than deflate's 32 KiB window, so repeating blocks from the pool does not make the data
compress away. The tar is streamed through ``bootc_embed._compress.CompressingWriter`` (gzip,
level 1) straight to the blob file: nothing close to the layer's size is ever held in memory.

Everything is deterministic (fixed seed, fixed timestamps), so the image is the same on every run.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import tarfile
from pathlib import Path
from typing import BinaryIO

from bootc_embed._compress import CompressingWriter

#: Bump when the generated content changes (part of the cache key).
VERSION = "1"
BLOCK = 64 << 10
MTIME = 1704067200  # 2024-01-01T00:00:00Z
WORDS = (
    b"bootc container image layer store overlay podman registry digest manifest config "
    b"the of and to in is that for it as with was on be by this are or from at which an "
    b"nginx python debian package library module function value error request response"
).split()


class _HashingSink:
    """Counts and hashes what passes through on its way to *out*."""

    def __init__(self, out: BinaryIO | CompressingWriter) -> None:
        self.out = out
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self.sha.update(data)
        self.size += len(data)
        self.out.write(data)
        return len(data)

    @property
    def digest(self) -> str:
        return "sha256:" + self.sha.hexdigest()


def _pool(rng: random.Random) -> list[bytes]:
    hex_table = bytes.maketrans(bytes(range(256)), b"0123456789abcdef" * 16)
    blocks = [rng.randbytes(BLOCK).translate(hex_table) for _ in range(6)]
    for _ in range(6):
        lines = []
        size = 0
        n = 0
        while size < BLOCK:
            words = b" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 14)))
            line = b"%d: %s\n" % (n, words)
            lines.append(line)
            size += len(line)
            n += 1
        blocks.append(b"".join(lines)[:BLOCK])
    blocks += [rng.randbytes(BLOCK) for _ in range(2)]
    return blocks


def _header(name: str, type_: bytes, size: int = 0, mode: int = 0o644, link: str = "") -> bytes:
    info = tarfile.TarInfo(name)
    info.type = type_
    info.size = size
    info.mode = mode
    info.mtime = MTIME
    info.linkname = link
    info.uname = info.gname = "root"
    return info.tobuf(format=tarfile.USTAR_FORMAT)


def _write_layer(tar: _HashingSink, size: int, seed: int) -> None:
    rng = random.Random(seed)
    pool = _pool(rng)
    tar.write(_header("opt/", tarfile.DIRTYPE, mode=0o755))
    tar.write(_header("opt/big/", tarfile.DIRTYPE, mode=0o755))
    for i in range(3):
        body = b"small file %d\n" % i * (i + 1) * 50
        tar.write(_header(f"opt/big/small-{i}.txt", tarfile.REGTYPE, len(body)))
        tar.write(body + b"\0" * (-len(body) % 512))
    tar.write(_header("opt/big/link", tarfile.SYMTYPE, link="data.bin", mode=0o777))
    tar.write(_header("opt/big/data.bin", tarfile.REGTYPE, size))
    left = size
    weights = [3] * 6 + [3] * 6 + [1] * 2
    chunk_blocks = (1 << 20) // BLOCK
    while left:
        picks = rng.choices(pool, weights, k=chunk_blocks)
        chunk = b"".join(picks)[:left]
        tar.write(chunk)
        left -= len(chunk)
    tar.write(b"\0" * (-size % 512))
    tar.write(b"\0" * 1024)


def _blob(layout: Path, data: bytes) -> dict[str, object]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest[7:]).write_bytes(data)
    return {"digest": digest, "size": len(data)}


def write_image(
    layout: Path, *, size: int = 1 << 30, os_name: str = "linux", arch: str = "amd64"
) -> dict[str, object]:
    """Write the image as an OCI layout at *layout* (tag ``1``); returns facts about its layer."""
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    tmp = blobs / "layer.tmp"
    with open(tmp, "wb") as raw:
        blob = _HashingSink(raw)
        with CompressingWriter("gzip", 1, blob) as gz:  # type: ignore[arg-type]
            tar = _HashingSink(gz)
            _write_layer(tar, size, seed=20240101)
    os.replace(tmp, blobs / blob.digest[7:])
    config = {
        "created": "2024-01-01T00:00:00Z",
        "architecture": arch,
        "os": os_name,
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [tar.digest]},
        "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "bench/bigimage.py"}],
    }
    config_desc = _blob(layout, json.dumps(config, sort_keys=True).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config_desc},
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": blob.digest,
                "size": blob.size,
            }
        ],
    }
    manifest_desc = _blob(layout, json.dumps(manifest, sort_keys=True).encode())
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                **manifest_desc,
                "annotations": {"org.opencontainers.image.ref.name": "1"},
            }
        ],
    }
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (layout / "index.json").write_text(json.dumps(index))
    return {"compressed": blob.size, "uncompressed": tar.size, "diff_id": tar.digest}
