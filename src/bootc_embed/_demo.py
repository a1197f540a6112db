"""Sample images for ``bootc-embed demo`` and the tests, made in pure Python.

:func:`write_sample_images` writes three small OCI image layouts (a bootc-like base and two app
images) without network, podman or any system tool. Their bytes depend only on this module and
the host's architecture (recorded in the image configs): the tar streams are written here field
by field rather than with :mod:`tarfile`, whose output has changed between Python releases, and
the layers are compressed with bootc-embed's own pinned gzip.

The app layers hold every kind of entry an embedder has to get right: hardlinks, symlinks, a
setuid file, a non-root owner, an empty file and directory, long names (ustar prefix and PAX),
a device node, a fifo and a hardlink to the device node, the root entry ``./``, whiteouts of a
file and of a directory (one in a directory that has no entry of its own in the layer), an opaque
directory, a redundant whiteout inside that opaque directory, and names written as ``./name``.

:func:`run_demo` is the ``bootc-embed demo`` command: it writes the samples, embeds the two apps
into the base with :func:`bootc_embed.build`, prints what happened and, when podman is installed,
shows podman listing the embedded images from the unpacked store.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import tarfile
import tempfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._build import BuildOptions, build
from ._compress import compress_bytes
from ._contract import A_LAYER, A_STORE
from ._storage import DEFAULT_STORE
from .errors import BootcEmbedError

if TYPE_CHECKING:
    from rich.console import Console

__all__ = [
    "APP1_NAME",
    "APP2_NAME",
    "SampleImages",
    "host_architecture",
    "run_demo",
    "write_sample_images",
]

APP1_NAME = "localhost/demo/app1:1"
APP2_NAME = "localhost/demo/app2:1"

CREATED = "2024-01-01T00:00:00Z"
MTIME = 1704067200  # CREATED as a Unix time

_MT_INDEX = "application/vnd.oci.image.index.v1+json"
_MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
_MT_CONFIG = "application/vnd.oci.image.config.v1+json"
_MT_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
_REF_NAME = "org.opencontainers.image.ref.name"
_GZIP_LEVEL = 2  # ISA-L level 2: same bytes on every x86-64 CPU (docs: consumers.md)
_PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_ARCHITECTURES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def host_architecture() -> str:
    """The OCI architecture name of this machine (``amd64``, ``arm64``, ...)."""
    machine = platform.machine().lower()
    return _ARCHITECTURES.get(machine, machine)


@dataclass(frozen=True, slots=True)
class SampleImages:
    """Where :func:`write_sample_images` put the samples, and the names to embed the apps under."""

    directory: Path
    base: str  # oci:/abs/dir/base:latest
    app1: str  # oci:/abs/dir/app1:1
    app2: str  # oci:/abs/dir/app2:1
    app1_name: str = APP1_NAME
    app2_name: str = APP2_NAME

    @property
    def image_args(self) -> list[str]:
        """The ``--image NAME=REF`` values that embed both apps, in order."""
        return [f"{self.app1_name}={self.app1}", f"{self.app2_name}={self.app2}"]


# --------------------------------------------------------------------------------------------
# Tar entries and a byte-exact tar writer
# --------------------------------------------------------------------------------------------

_REG, _LINK, _SYMLINK, _CHAR, _DIR, _FIFO = b"0", b"1", b"2", b"3", b"5", b"6"


@dataclass(frozen=True, slots=True)
class _Entry:
    name: str
    typeflag: bytes
    mode: int
    data: bytes = b""
    linkname: str = ""
    uid: int = 0
    gid: int = 0
    devmajor: int = 0
    devminor: int = 0


def _dir(name: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> _Entry:
    return _Entry(name if name.endswith("/") else name + "/", _DIR, mode, uid=uid, gid=gid)


def _file(name: str, data: bytes, mode: int = 0o644, uid: int = 0, gid: int = 0) -> _Entry:
    return _Entry(name, _REG, mode, data, uid=uid, gid=gid)


def _symlink(name: str, target: str) -> _Entry:
    return _Entry(name, _SYMLINK, 0o777, linkname=target)


def _hardlink(name: str, target: str, mode: int = 0o644) -> _Entry:
    return _Entry(name, _LINK, mode, linkname=target)


def _whiteout(name: str) -> _Entry:
    return _Entry(name, _REG, 0o644)


def _octal(value: int, width: int) -> bytes:
    digits = format(value, "o")
    if len(digits) > width - 1:
        raise ValueError(f"{value} does not fit a {width}-byte tar field")
    return digits.rjust(width - 1, "0").encode("ascii") + b"\0"


def _field(value: bytes, width: int) -> bytes:
    if len(value) > width:
        raise ValueError(f"{value!r} does not fit a {width}-byte tar field")
    return value.ljust(width, b"\0")


def _split_ustar(name: str) -> tuple[str, str] | None:
    """Go ``archive/tar``'s splitUSTARPath: (prefix, name) for a name longer than 100 bytes."""
    if len(name) <= 100 or not name.isascii():
        return None
    length = len(name)
    if length > 156:
        length = 156
    elif name[length - 1] == "/":
        length -= 1
    i = name.rfind("/", 0, length)
    suffix = len(name) - i - 1
    if i <= 0 or suffix > 100 or suffix == 0 or i > 155:
        return None
    return name[:i], name[i + 1 :]


def _pax_records(records: Mapping[str, str]) -> bytes:
    out = bytearray()
    for key, value in records.items():
        body = f" {key}={value}\n".encode()
        length = len(body) + 1
        while len(str(length)) + len(body) != length:
            length = len(str(length)) + len(body)
        out += str(length).encode("ascii") + body
    return bytes(out)


def _header(
    name: str, typeflag: bytes, mode: int, size: int, e: _Entry | None, linkname: str = ""
) -> bytes:
    block = b"".join(
        [
            _field(name.encode(), 100),
            _octal(mode, 8),
            _octal(e.uid if e else 0, 8),
            _octal(e.gid if e else 0, 8),
            _octal(size, 12),
            _octal(MTIME, 12),
            b" " * 8,  # checksum, computed below
            typeflag,
            _field(linkname.encode(), 100),
            b"ustar\x0000",
            _field(b"", 32),  # uname: owners are numeric only
            _field(b"", 32),  # gname
            _octal(e.devmajor if e else 0, 8),
            _octal(e.devminor if e else 0, 8),
            _field(b"", 155),
            bytes(12),
        ]
    )
    assert len(block) == 512
    checksum = f"{sum(block):06o}\0 ".encode("ascii")
    return block[:148] + checksum + block[156:]


def _pad(data: bytes) -> bytes:
    return data + bytes(-len(data) % 512)


def _entry_bytes(e: _Entry) -> bytes:
    """Header(s) and padded content of one entry: ustar, PAX only when a value does not fit."""
    name, prefix, pax = e.name, "", {}
    if len(e.name.encode()) > 100:
        split = _split_ustar(e.name)
        if split is None:
            pax["path"] = e.name
            name = e.name[:100]
        else:
            prefix, name = split
    linkname = e.linkname
    if len(linkname.encode()) > 100:
        pax["linkpath"] = linkname
        linkname = linkname[:100]
    out = bytearray()
    if pax:
        records = _pax_records(pax)
        out += _header("././@PaxHeader", b"x", 0o644, len(records), None)
        out += _pad(records)
    header = _header(name, e.typeflag, e.mode, len(e.data), e, linkname)
    if prefix:
        header = _with_prefix(header, prefix)
    out += header
    out += _pad(e.data)
    return bytes(out)


def _with_prefix(header: bytes, prefix: str) -> bytes:
    block = bytearray(header)
    block[345:500] = _field(prefix.encode(), 155)
    block[148:156] = b" " * 8
    block[148:156] = f"{sum(block):06o}\0 ".encode("ascii")
    return bytes(block)


def _tar(entries: Sequence[_Entry]) -> bytes:
    """A tar stream of ``entries`` in the given order, ended by two zero blocks (like Go)."""
    return b"".join(_entry_bytes(e) for e in entries) + bytes(1024)


# --------------------------------------------------------------------------------------------
# The sample layers
# --------------------------------------------------------------------------------------------

_LONG_DIR = "usr/share/app/a-directory-with-a-name-long-enough/to-push-this-path-beyond-100-bytes"
# 100 < len <= 255 and splittable: stored with the ustar prefix field.
_LONG_FILE = _LONG_DIR + "/stored-with-the-ustar-prefix-field.txt"
_DEEP_DIR = (
    _LONG_DIR + "/and-deeper-still-so-that-neither-the-name-nor-the-prefix-field-can-hold-it"
)
# len > 255: stored with a PAX path record.
_DEEP_FILE = (
    _DEEP_DIR
    + "/this-file-needs-a-pax-extended-header-because-its-whole-path"
    + "-is-longer-than-255-bytes-in-total.txt"
)


def _base_layers() -> list[list[_Entry]]:
    os_release = (
        b'NAME="bootc-embed demo base"\nID=bootc-embed-demo\nVERSION_ID=1\n'
        b'PRETTY_NAME="bootc-embed demo base 1"\n'
    )
    return [
        [
            _dir("etc"),
            _symlink("etc/os-release", "../usr/lib/os-release"),
            _dir("usr"),
            _dir("usr/bin"),
            _file("usr/bin/hello", b"#!/bin/sh\necho 'hello from the demo bootc base'\n", 0o755),
            _dir("usr/lib"),
            _file("usr/lib/os-release", os_release),
        ],
        [
            _dir("etc"),
            _file("etc/motd", b"Welcome to the bootc-embed demo base.\n"),
        ],
    ]


def _app1_layers() -> list[list[_Entry]]:
    data = b"demo data shared by a symlink and a hardlink\n"
    layer1 = [
        _dir("./"),
        _dir("bin"),
        _file("bin/app", b"#!/bin/sh\necho 'hello from demo app1'\n", 0o755),
        _file("bin/old-tool", b"#!/bin/sh\necho 'removed in layer 2'\n", 0o755),
        _file("bin/su-demo", b"#!/bin/sh\nid\n", 0o4755),  # setuid
        _dir("dev"),
        _Entry("dev/null", _CHAR, 0o666, devmajor=1, devminor=3),
        _hardlink("dev/null-hardlink", "dev/null", 0o666),  # a hardlink to a device node
        _dir("etc"),
        _symlink("etc/app-data", "/usr/share/app/data.txt"),  # absolute symlink
        _file("etc/app.conf", b"greeting=hello\n"),
        _dir("etc/app.d"),
        _file("etc/app.d/old.conf", b"hidden by the opaque directory in layer 2\n"),
        _file("etc/app.d/other.conf", b"hidden by the opaque directory in layer 2\n"),
        _dir("home"),
        _dir("home/app", 0o750, uid=1000, gid=1000),
        _file("home/app/notes.txt", b"owned by uid 1000, gid 1000\n", 0o640, uid=1000, gid=1000),
        _dir("run"),
        _Entry("run/app.fifo", _FIFO, 0o600),
        _dir("usr"),
        _dir("usr/share"),
        _dir("usr/share/app"),
        _file("usr/share/app/data.txt", data),
        _hardlink("usr/share/app/data-hardlink.txt", "usr/share/app/data.txt"),
        _symlink("usr/share/app/current", "data.txt"),  # relative symlink
        _dir("usr/share/app/empty-dir"),
        _file("usr/share/app/empty-file", b""),
        _dir("usr/share/app/old-dir"),
        _file("usr/share/app/old-dir/file.txt", b"removed with its directory in layer 2\n"),
        _file("usr/share/app/remove-me.txt", b"removed in layer 2\n"),
        _dir("usr/share/app/a-directory-with-a-name-long-enough"),
        _dir(_LONG_DIR),
        _file(_LONG_FILE, b"a path longer than 100 bytes\n"),
        _dir(_DEEP_DIR),
        _file(_DEEP_FILE, b"a path longer than 255 bytes\n"),
        _symlink("usr/share/app/deep-link", "/" + _DEEP_FILE),  # PAX linkpath
    ]
    layer2 = [
        _whiteout("bin/.wh.old-tool"),  # no entry for bin/ itself in this layer
        _dir("etc/app.d"),
        _whiteout("etc/app.d/.wh..wh..opq"),
        _whiteout("etc/app.d/.wh.old.conf"),  # inside an opaque directory: hides nothing
        _file("etc/app.d/new.conf", b"the only file left in etc/app.d\n"),
        _dir("usr/share/app"),
        _file("usr/share/app/added.txt", b"added in layer 2\n"),
        _whiteout("usr/share/app/.wh.old-dir"),  # deletes a directory
        _whiteout("usr/share/app/.wh.remove-me.txt"),  # deletes a file
    ]
    layer3 = [_file("etc/app-version", b"1\n")]
    return [layer1, layer2, layer3]


def _app2_layer() -> list[_Entry]:
    # Names as `tar -C dir .` writes them, with a leading "./".
    return [
        _dir("./"),
        _dir("./etc"),
        _file("./etc/app2.conf", b"app=2\n"),
        _dir("./usr"),
        _dir("./usr/share"),
        _dir("./usr/share/app2"),
        _file("./usr/share/app2/README", b"demo app2 shares its first layer with app1\n"),
    ]


# --------------------------------------------------------------------------------------------
# OCI layouts
# --------------------------------------------------------------------------------------------


def _json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class _Layout:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.blobs = path / "blobs" / "sha256"
        self.blobs.mkdir(parents=True, exist_ok=True)
        (path / "oci-layout").write_bytes(_json({"imageLayoutVersion": "1.0.0"}))

    def blob(self, media_type: str, data: bytes) -> dict[str, Any]:
        digest = _sha256(data)
        target = self.blobs / digest.removeprefix("sha256:")
        if not target.exists() or target.read_bytes() != data:
            target.write_bytes(data)
        return {"mediaType": media_type, "digest": digest, "size": len(data)}

    def image(
        self,
        tag: str,
        layers: Sequence[Sequence[_Entry]],
        history: Sequence[str],
        config: Mapping[str, Any],
        architecture: str,
        extra_history: Sequence[str] = (),
    ) -> str:
        descriptors, diff_ids = [], []
        for entries in layers:
            tar = _tar(entries)
            diff_ids.append(_sha256(tar))
            descriptors.append(self.blob(_MT_LAYER_GZIP, compress_bytes("gzip", _GZIP_LEVEL, tar)))
        hist: list[dict[str, Any]] = [{"created": CREATED, "created_by": h} for h in history]
        hist += [{"created": CREATED, "created_by": h, "empty_layer": True} for h in extra_history]
        image_config = {
            "architecture": architecture,
            "os": "linux",
            "created": CREATED,
            "config": dict(config),
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": hist,
        }
        manifest = {
            "schemaVersion": 2,
            "mediaType": _MT_MANIFEST,
            "config": self.blob(_MT_CONFIG, _json(image_config)),
            "layers": descriptors,
        }
        descriptor = self.blob(_MT_MANIFEST, _json(manifest))
        descriptor["annotations"] = {_REF_NAME: tag}
        index = {"schemaVersion": 2, "mediaType": _MT_INDEX, "manifests": [descriptor]}
        (self.path / "index.json").write_bytes(_json(index))
        return f"oci:{self.path}:{tag}"


def write_sample_images(directory: Path, *, architecture: str | None = None) -> SampleImages:
    """Write the ``base``, ``app1`` and ``app2`` OCI layouts under ``directory``.

    Each is its own layout (``directory/base``, ``directory/app1``, ``directory/app2``), tagged
    ``latest``, ``1`` and ``1``. Existing layouts there are overwritten. The bytes written depend
    only on ``architecture`` (default: the host's, see :func:`host_architecture`).
    """
    directory = Path(directory).absolute()
    arch = architecture or host_architecture()
    base_layers = _base_layers()
    base = _Layout(directory / "base").image(
        "latest",
        base_layers,
        ["bootc-embed demo: base file system", "bootc-embed demo: /etc/motd"],
        {
            "Env": [_PATH_ENV],
            "Cmd": ["/usr/bin/hello"],
            "Labels": {"containers.bootc": "1", "ostree.bootable": "1"},
        },
        arch,
    )
    app1_layers = _app1_layers()
    app1 = _Layout(directory / "app1").image(
        "1",
        app1_layers,
        [
            "bootc-embed demo: app1 root file system",
            "bootc-embed demo: app1 deletions, opaque directory, additions",
            "bootc-embed demo: app1 version file",
        ],
        {
            "Env": [_PATH_ENV],
            "Cmd": ["/bin/app"],
            "Labels": {"org.opencontainers.image.title": "bootc-embed demo app1"},
        },
        arch,
        extra_history=['CMD ["/bin/app"]'],
    )
    app2 = _Layout(directory / "app2").image(
        "1",
        [app1_layers[0], _app2_layer()],
        ["bootc-embed demo: app1 root file system", "bootc-embed demo: app2 files"],
        {
            "Env": [_PATH_ENV],
            "Cmd": ["/bin/app"],
            "Labels": {"org.opencontainers.image.title": "bootc-embed demo app2"},
        },
        arch,
    )
    return SampleImages(directory=directory, base=base, app1=app1, app2=app2)


# --------------------------------------------------------------------------------------------
# bootc-embed demo
# --------------------------------------------------------------------------------------------


def _read_layout(path: Path, tag: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(manifest, config) of ``tag`` in the OCI layout at ``path``."""
    blobs = path / "blobs" / "sha256"

    def load(digest: str) -> dict[str, Any]:
        value: dict[str, Any] = json.loads((blobs / digest.split(":", 1)[1]).read_bytes())
        return value

    index = json.loads((path / "index.json").read_bytes())
    for descriptor in index.get("manifests", []):
        if descriptor.get("annotations", {}).get(_REF_NAME) == tag:
            manifest = load(descriptor["digest"])
            return manifest, load(manifest["config"]["digest"])
    raise LookupError(f"no tag {tag!r} in {path}")


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _short(digest: str, n: int = 12) -> str:
    return digest.split(":", 1)[-1][:n]


def run_demo(workdir: Path | None, console: Console) -> int:
    """``bootc-embed demo``: make sample images, embed them, show the result. Returns exit status.

    ``workdir`` receives ``samples/`` (the input layouts) and ``output/`` (the built image,
    tag ``latest``); it may exist already (the samples are rewritten identically and the
    ``latest`` tag of the output is replaced). ``None`` makes a fresh directory under the
    system's temporary directory, which is kept so that the result can be inspected.
    """
    if workdir is None:
        workdir = Path(tempfile.mkdtemp(prefix="bootc-embed-demo-"))
    workdir = Path(workdir).absolute()
    workdir.mkdir(parents=True, exist_ok=True)

    samples = write_sample_images(workdir / "samples")
    output_dir = workdir / "output"
    output_ref = f"oci:{output_dir}:latest"
    console.print(
        f"[bold]Sample images[/] written to {samples.directory} (pure Python, no network)"
    )

    options = BuildOptions(base=samples.base, images=samples.image_args, output=output_ref)
    console.print(f"Embedding {samples.app1_name} and {samples.app2_name} into the base ...")
    try:
        result = build(options)
    except BootcEmbedError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        return 1
    summary: dict[str, Any] = result.to_json()
    left_out_paths: list[str] = list(getattr(result, "left_out_paths", []))

    try:
        manifest, config = _read_layout(output_dir, "latest")
    except (OSError, LookupError, ValueError, KeyError) as exc:
        console.print(f"[bold red]error:[/] cannot read the output image {output_ref}: {exc}")
        return 1
    _print_summary(console, samples, summary, manifest, config, left_out_paths)
    _show_with_podman(console, output_dir, manifest, [samples.app1_name, samples.app2_name])
    return 0


def _print_summary(
    console: Console,
    samples: SampleImages,
    summary: Mapping[str, Any],
    manifest: Mapping[str, Any],
    config: Mapping[str, Any],
    left_out_paths: Sequence[str],
) -> None:
    from rich import box
    from rich.padding import Padding
    from rich.table import Table

    output_ref = str(summary.get("output", ""))
    layers: list[dict[str, Any]] = manifest.get("layers", [])
    appended = [d for d in layers if A_LAYER in d.get("annotations", {})]
    base_layers = len(layers) - len(appended)
    store = manifest.get("annotations", {}).get(A_STORE, DEFAULT_STORE)
    sources = {samples.app1_name: samples.app1, samples.app2_name: samples.app2}

    console.print()
    console.print("[bold]Embedded images[/]")
    app_layers = 0
    for image in summary.get("images", []):
        name = str(image.get("name", ""))
        source = sources.get(name, str(image.get("reference", "")))
        console.print(
            f"  [bold]{name}[/]  from {source}\n  manifest {image.get('manifest_digest', '')}",
            highlight=False,
            soft_wrap=True,
        )
        table = Table(box=box.SIMPLE, padding=(0, 1), pad_edge=False)
        table.add_column("layer id")
        table.add_column("source diff_id")
        table.add_column("appended", justify="right")
        table.add_column("whiteouts", justify="right")
        table.add_column("left out", justify="right")
        for layer in image.get("layers", []):
            layer_id = _short(str(layer.get("layer_id", "")))
            diff_id = _short(str(layer.get("source_diff_id", "")))
            if layer.get("shared"):
                table.add_row(layer_id, diff_id, "[dim]shared[/]", "", "")
                continue
            app_layers += 1
            table.add_row(
                layer_id,
                diff_id,
                _size(int(layer.get("size", 0))),
                str(layer.get("whiteouts", 0) or ""),
                str(layer.get("left_out", 0) or ""),
            )
        console.print(Padding(table, (0, 0, 0, 4)))

    metadata = summary.get("metadata_layer") or {}
    left_out = int(summary.get("entries_left_out", 0))
    left_out_text = f"{left_out} device nodes, fifos and hardlinks to them"
    if left_out_paths:
        shown = ", ".join(left_out_paths[:4]) + (" ..." if len(left_out_paths) > 4 else "")
        left_out_text += f" ({shown})"
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold", no_wrap=True)
    facts.add_column(overflow="fold")
    facts.add_row("base layers", f"{base_layers} kept byte-for-byte ({_labels(config)})")
    conf = summary.get("storage_conf") or None
    appended = (
        f"{app_layers} app layers under {store}/overlay/ + 1 metadata layer "
        f"({_size(int(metadata.get('size', 0)))}: layers.json, images.json, manifests, configs)"
    )
    if conf:
        appended += " + 1 configuration layer"
    facts.add_row("appended layers", appended)
    if conf:
        how = "written with podman's defaults" if conf.get("action") == "created" else "edited"
        facts.add_row(
            "host configuration",
            f"{conf.get('path')} {how}: {store} listed in additionalimagestores",
        )
    facts.add_row("bytes added", _size(int(summary.get("bytes_added", 0))))
    facts.add_row(
        "whiteouts converted",
        f"{summary.get('whiteouts_converted', 0)} (.wh. entries rewritten for overlayfs)",
    )
    facts.add_row("left out of the store", left_out_text)
    facts.add_row("output", output_ref)
    facts.add_row("output manifest", str(summary.get("manifest_digest", "")))
    console.print(facts)

    console.print()
    console.print("[bold]Next steps[/]")
    console.print(f"  skopeo inspect {output_ref}", highlight=False, soft_wrap=True)
    console.print(
        f"  skopeo copy {output_ref} docker://registry.example.com/my-os:latest",
        highlight=False,
        soft_wrap=True,
    )
    console.print(
        "  then, on a bootc host (the image's storage.conf lists the store):\n"
        "    bootc switch registry.example.com/my-os:latest   # and after the reboot:\n"
        f"    podman images   # lists {samples.app1_name} and {samples.app2_name}",
        highlight=False,
        soft_wrap=True,
    )
    console.print(
        "  with your own images: bootc-embed build --base REF --image NAME=REF --output REF",
        highlight=False,
        soft_wrap=True,
    )


def _labels(config: Mapping[str, Any]) -> str:
    labels = config.get("config", {}).get("Labels") or {}
    return ", ".join(f"{k}={v}" for k, v in sorted(labels.items())) or "none"


# --------------------------------------------------------------------------------------------
# Showing the result with podman (best effort: failures are warnings)
# --------------------------------------------------------------------------------------------


def _decompressed(path: Path, media_type: str) -> Iterator[bytes]:
    with path.open("rb") as f:
        if media_type.endswith("+gzip"):
            inflater = zlib.decompressobj(wbits=47)
            while chunk := f.read(1 << 20):
                yield inflater.decompress(chunk)
            yield inflater.flush()
        elif media_type.endswith("+zstd"):
            import zstandard

            reader = zstandard.ZstdDecompressor().stream_reader(f)
            while chunk := reader.read(1 << 20):
                yield chunk
        else:
            while chunk := f.read(1 << 20):
                yield chunk


def _gnu_tar() -> str | None:
    tar = shutil.which("tar")
    if tar is None:
        return None
    try:
        version = subprocess.run(
            [tar, "--version"], capture_output=True, text=True, timeout=30, check=False
        ).stdout
    except OSError:
        return None
    return tar if "GNU tar" in version else None


def _unpack(blob: Path, media_type: str, root: Path, scratch: Path, gnu_tar: str | None) -> None:
    plain = scratch / "layer.tar"
    with plain.open("wb") as f:
        for chunk in _decompressed(blob, media_type):
            f.write(chunk)
    if gnu_tar is not None:
        command = [gnu_tar, "-x", "-p", "--xattrs", "--xattrs-include=*", "--numeric-owner"]
        subprocess.run(
            [*command, "-C", str(root), "-f", str(plain)],
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
    else:
        with tarfile.open(plain) as archive:
            if hasattr(tarfile, "fully_trusted_filter"):
                archive.extractall(root, numeric_owner=True, filter="fully_trusted")
            else:  # pragma: no cover - Python without extraction filters
                archive.extractall(root, numeric_owner=True)
    plain.unlink()


def _unmount_below(path: Path) -> None:
    """Undo the bind mount podman's overlay driver makes of its own home under ``path``."""
    prefix = str(path) + "/"
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return
    points = sorted(
        (line.split()[1] for line in mounts if line.split()[1].startswith(prefix)), reverse=True
    )
    for point in points:
        subprocess.run(["umount", point], capture_output=True, timeout=60, check=False)


def _show_with_podman(
    console: Console, output_dir: Path, manifest: Mapping[str, Any], names: Sequence[str]
) -> None:
    podman = shutil.which("podman")
    console.print()
    if podman is None:
        console.print("[dim]podman is not installed: skipping the check with podman.[/]")
        return
    appended = [d for d in manifest.get("layers", []) if A_LAYER in d.get("annotations", {})]
    store = manifest.get("annotations", {}).get(A_STORE, DEFAULT_STORE)
    gnu_tar = _gnu_tar()
    how = "GNU tar, with xattrs" if gnu_tar else "Python's tarfile, without xattrs"
    console.print(
        f"[bold]Checking with podman[/]: unpacking the {len(appended)} appended layers ({how}) "
        f"and listing {store} as an additional image store"
    )
    # podman refuses a runroot longer than 50 characters: keep the path short.
    short = "/tmp" if os.path.isdir("/tmp") and os.access("/tmp", os.W_OK) else None
    tmp = Path(tempfile.mkdtemp(prefix="bce-demo-", dir=short))
    try:
        root = tmp / "rootfs"
        root.mkdir()
        for descriptor in appended:
            blob = output_dir / "blobs" / "sha256" / descriptor["digest"].split(":", 1)[1]
            _unpack(blob, descriptor.get("mediaType", ""), root, tmp, gnu_tar)
        store_dir = root / store.lstrip("/")
        command = [
            podman,
            "--root",
            str(tmp / "podman-root"),
            "--runroot",
            str(tmp / "podman-runroot"),
            "--storage-driver",
            "overlay",
            "--storage-opt",
            f"additionalimagestore={store_dir}",
            "images",
        ]
        env = dict(os.environ)
        env.pop("CONTAINERS_STORAGE_CONF", None)
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=300, check=False, env=env
        )
        console.print(
            f"$ podman --root ... --storage-opt additionalimagestore={store_dir} images",
            highlight=False,
            soft_wrap=True,
        )
        console.print(done.stdout.rstrip(), markup=False, highlight=False)
        if done.returncode != 0:
            console.print(
                f"[yellow]warning:[/] podman exited with {done.returncode}: {done.stderr.strip()}",
                highlight=False,
            )
        else:
            missing = [n for n in names if n.rsplit(":", 1)[0] not in done.stdout]
            if missing:
                console.print(f"[yellow]warning:[/] podman does not list {', '.join(missing)}")
            else:
                console.print("[green]podman sees every embedded image.[/]")
    except (OSError, subprocess.SubprocessError, tarfile.TarError, zlib.error) as exc:
        detail = getattr(exc, "stderr", None) or exc
        console.print(f"[yellow]warning:[/] could not check the result with podman: {detail}")
    finally:
        _unmount_below(tmp)
        shutil.rmtree(tmp, ignore_errors=True)
