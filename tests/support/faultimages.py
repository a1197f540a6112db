"""Small images for the fault suites, big enough to cut a transfer in the middle of a blob.

A base (two layers, one with a 512 KiB file of random bytes and an ``/etc/containers/
storage.conf``) and two apps (768 KiB and 384 KiB of random bytes, a whiteout), written as OCI
layouts by the standard library (``unit_support.oci``), gzip, fixed random seed: the same
bytes every run. Random content keeps each layer's blob about as large as its content (deflate
stores it). Text is compressed with Huffman codes, so a byte changed there breaks the gzip
stream itself: near the start of the base's first blob, and near the end of app1's first blob
(past the first MiB of its tar, where the error comes while an entry's content is read).
"""

from __future__ import annotations

import json
import random
import tarfile
from dataclasses import dataclass
from pathlib import Path

from unit_support.oci import info, tar_of, write_layout

from bootc_embed._demo import host_architecture

APP1 = "registry.example.com/faults/app1:1"
APP2 = "registry.example.com/faults/app2:1"
STORAGE_CONF = b'[storage]\ndriver = "overlay"\n\n[storage.options]\nmount_program = ""\n'


def _d(name: str) -> tuple[tarfile.TarInfo, bytes]:
    return info(name, tarfile.DIRTYPE), b""


def _f(name: str, data: bytes, mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    return info(name, mode=mode), data


@dataclass(frozen=True)
class FaultImages:
    dir: Path
    base: str  # oci:DIR:1
    app1: str
    app2: str

    def layout(self, which: str) -> Path:
        return self.dir / which

    def manifest(self, which: str) -> dict:
        index = json.loads((self.layout(which) / "index.json").read_bytes())
        digest = index["manifests"][0]["digest"]
        return json.loads(self.blob(which, digest).read_bytes())

    def blob(self, which: str, digest: str) -> Path:
        return self.layout(which) / "blobs/sha256" / digest.removeprefix("sha256:")

    def layers(self, which: str) -> list[str]:
        return [d["digest"] for d in self.manifest(which)["layers"]]

    def build_args(
        self, base: str | None = None, app1: str | None = None, app2: str | None = None
    ) -> list[str]:
        """``--base ... --image APP1=... --image APP2=...`` (apps left out when ``""``)."""
        args = ["--base", base or self.base]
        for name, ref, default in ((APP1, app1, self.app1), (APP2, app2, self.app2)):
            ref = default if ref is None else ref
            if ref:
                args += ["--image", f"{name}={ref}"]
        return args


def _text(rnd: random.Random, size: int) -> bytes:
    words = ["layer", "blob", "digest", "store", "image", "fault", "retry", "commit", "stage"]
    lines = []
    while sum(map(len, lines)) < size:
        lines.append(f"{len(lines):06d} " + " ".join(rnd.choices(words, k=9)) + "\n")
    return "".join(lines).encode()


def write_fault_images(d: Path) -> FaultImages:
    rnd = random.Random(14)
    arch = host_architecture()
    base = write_layout(
        d / "base",
        [
            tar_of(
                [
                    _d("etc/"),
                    _f("etc/notes.txt", _text(rnd, 64 << 10)),
                    _d("etc/containers/"),
                    _f("etc/containers/storage.conf", STORAGE_CONF),
                    _f("etc/os-release", b"ID=faults\n"),
                    _d("usr/"),
                    _d("usr/bin/"),
                    _f("usr/bin/tool", rnd.randbytes(512 << 10), 0o755),
                ]
            ),
            tar_of([_d("usr/"), _d("usr/share/"), _f("usr/share/readme", b"the base\n")]),
        ],
        architecture=arch,
    )
    app1 = write_layout(
        d / "app1",
        [
            tar_of(
                [
                    _d("app/"),
                    _f("app/data.bin", rnd.randbytes(768 << 10)),
                    _f("app/notes.txt", _text(rnd, 512 << 10)),
                    _f("app/run", b"#!/bin/sh\necho old\n", 0o755),
                ]
            ),
            tar_of(
                [
                    _d("app/"),
                    _f("app/.wh.run", b""),
                    _f("app/start", b"#!/bin/sh\necho new\n", 0o755),
                ]
            ),
        ],
        architecture=arch,
    )
    app2 = write_layout(
        d / "app2",
        [tar_of([_d("srv/"), _f("srv/blob", rnd.randbytes(384 << 10))])],
        architecture=arch,
    )
    return FaultImages(d, base, app1, app2)
