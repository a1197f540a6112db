"""Fuzz tests of the parsers that read what images and hosts hand us (issue 14): the tar reader,
the manifest/index/config model, registries.conf, the storage.conf editor and Quadlet files.

Each property: any input gives a result or the module's own error, never another exception, a
hang or unbounded memory. Inputs are valid documents mutated structurally (header fields
rewritten with their checksum fixed, values swapped for other JSON/TOML values, lines cut and
spliced) and raw byte mutations. Hypothesis runs derandomized (a fixed seed per test, no example
database): every run tries the same inputs. ``BOOTC_EMBED_FUZZ_EXAMPLES`` multiplies the
number of examples for a longer run (docs/faults.md); CI runs the default, under a minute here.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import tarfile
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from unit_support.oci import info, tar_of

from bootc_embed._basescan import BOUND_DIR, BaseView, Node
from bootc_embed._bound import bound_images, parse_quadlet
from bootc_embed._model import (
    Descriptor,
    Manifest,
    Platform,
    index_manifests,
    load_json,
    sniff_media_type,
)
from bootc_embed._reference import parse_reference
from bootc_embed._storageconf import add_store, stores_of
from bootc_embed._tar import TarFormatError, TarReader, tar_header
from bootc_embed._tarsplit import crc64
from bootc_embed._transports._registries_conf import RegistriesConf
from bootc_embed._transports._registries_conf import parse as parse_registries_conf
from bootc_embed.errors import ImageFormatError, ImageReferenceError, UsageError

SCALE = max(1, int(os.environ.get("BOOTC_EMBED_FUZZ_EXAMPLES", "1") or 1))
TIME_LIMIT = 30.0  # seconds for one example: far beyond any honest parse of these inputs


def fuzz(examples: int) -> Callable[[Callable[..., None]], Callable[..., None]]:
    return settings(
        max_examples=examples * SCALE,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@contextlib.contextmanager
def bounded(seconds: float = TIME_LIMIT) -> Iterator[None]:
    """Fail (instead of hanging) when the block runs longer than ``seconds``."""

    def expired(*_: object) -> None:
        raise AssertionError(f"no result within {seconds} s: a hang")

    old = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# --------------------------------------------------------------------------------------------
# byte mutations


@st.composite
def mutated(draw: st.DrawFn, seed: bytes, max_ops: int = 4) -> bytes:
    """``seed`` with a few byte-level changes: flips, overwrites, cuts, insertions."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(0, max_ops))):
        op = draw(st.sampled_from(["flip", "set", "truncate", "insert", "delete", "dup"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[at] = draw(st.integers(0, 255))
        elif op == "truncate":
            del data[at:]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 600))]
        elif op == "dup":
            n = draw(st.integers(1, 1024))
            data[at:at] = data[at : at + n]
    return bytes(data)


# --------------------------------------------------------------------------------------------
# the tar reader


def _seed_tars() -> list[bytes]:
    """Valid tars of every kind of header the reader parses (ustar, PAX, GNU, V7)."""
    pax = tar_of(
        [
            (info("dir/", tarfile.DIRTYPE), b""),
            (info("dir/file", pax_headers={"SCHILY.xattr.user.a": "x" * 40}), b"content\n" * 70),
            (info("dir/" + "long-name-" * 20), b"long"),
            (info("dir/link", tarfile.SYMTYPE, linkname="file" * 40), b""),
            (info("dir/hard", tarfile.LNKTYPE, linkname="dir/file"), b""),
            (info("dev", tarfile.CHRTYPE, devmajor=1, devminor=3), b""),
            (info("big-ids", uid=3_000_000, gid=3_000_000), b"ids"),
            (info("dir/.wh.gone"), b""),
        ]
    )
    gnu = tar_of(
        [
            (info("g/" + "n" * 150), b"gnu long name\n"),
            (info("g/l", tarfile.SYMTYPE, linkname="t" * 150), b""),
            (info("g/fifo", tarfile.FIFOTYPE), b""),
        ],
        fmt=tarfile.GNU_FORMAT,
    )
    v7 = tar_of([(info("v7file"), b"old\n")], fmt=tarfile.USTAR_FORMAT)
    ours = (
        tar_header("usr/", b"5", mode=0o755)
        + tar_header("usr/" + "é" * 60, b"0", size=3, xattrs={"user.k": b"\x00v"})
        + b"abc"
        + bytes(509)
        + tar_header("usr/ts", b"0", pax_mtime="1700000000.123456789")
        + bytes(1024)
    )
    glob = tar_header("pax_global_header", b"g", size=22) + b"22 comment=global hdr\n"
    glob += bytes(-22 % 512) + tar_of([(info("after-global"), b"y")])
    return [pax, gnu, v7, ours, glob, bytes(1024)]


SEED_TARS = _seed_tars()


def _header_offsets(data: bytes) -> list[int]:
    """Where each member's first header block starts (extension headers included)."""
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return [m.offset for m in tf.getmembers()] or [0]


HEADERS = [_header_offsets(t) for t in SEED_TARS]
FIELDS = {  # ustar header fields: offset, length
    "name": (0, 100),
    "mode": (100, 8),
    "uid": (108, 8),
    "gid": (116, 8),
    "size": (124, 12),
    "mtime": (136, 12),
    "typeflag": (156, 1),
    "linkname": (157, 100),
    "magic": (257, 8),
    "devmajor": (329, 8),
    "devminor": (337, 8),
    "prefix": (345, 155),
}
NUMBERS = st.one_of(
    st.integers(0, 8**11).map(lambda n: b"%011o\x00" % n),
    st.integers(0, 2**88 - 1).map(lambda n: bytes([0x80]) + n.to_bytes(11, "big")),  # base-256
    st.integers(-(2**60), 0).map(lambda n: bytes([0xFF]) + (n % 2**88).to_bytes(11, "big")),
    st.binary(min_size=1, max_size=12),
    st.sampled_from([b"77777777777\x00", b"   ", b"\x00" * 12, b"8", b"-1", b"0x10"]),
)
PAX_RECORDS = st.lists(
    st.tuples(
        st.sampled_from(
            [
                *("path", "linkpath", "uid", "gid", "size", "mtime", "SCHILY.xattr.user.x"),
                *("GNU.sparse.major", "comment", "", "=", "atime"),
            ]
        ),
        st.one_of(
            st.binary(max_size=40),
            st.integers(-(10**20), 10**20).map(lambda n: str(n).encode()),
            st.sampled_from([b"9" * 5000, b"1." + b"9" * 5000, b"-1", b"1e9", b"\n"]),
        ),
    ),
    max_size=4,
)


def pax_record(key: str, value: bytes) -> bytes:
    """``LENGTH KEY=VALUE\n``, LENGTH counting itself."""
    body = b" " + key.encode() + b"=" + value + b"\n"
    n = len(body) + 1
    while len(str(n)) + len(body) != n:
        n = len(str(n)) + len(body)
    return str(n).encode() + body


def _checksummed(block: bytearray) -> None:
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\x00 " % sum(block)


@st.composite
def mutated_tar(draw: st.DrawFn) -> bytes:
    """A seed tar with header fields rewritten (checksum fixed, so parsing goes on), a PAX or
    GNU long-name header of odd records spliced in, and byte mutations."""
    which = draw(st.integers(0, len(SEED_TARS) - 1))
    data = bytearray(SEED_TARS[which])
    blocks = len(data) // 512
    for _ in range(draw(st.integers(0, 3))):
        b = draw(st.integers(0, max(blocks - 1, 0))) * 512
        off, n = FIELDS[draw(st.sampled_from(sorted(FIELDS)))]
        value = draw(st.one_of(NUMBERS, st.binary(min_size=1, max_size=n)))[:n]
        block = data[b : b + 512]
        if len(block) < 512:
            continue
        block[off : off + len(value)] = value
        if draw(st.booleans()):
            _checksummed(block)
        data[b : b + 512] = block
    if draw(st.booleans()):
        kind = draw(st.sampled_from([b"x", b"g", b"L", b"K"]))
        records = b"".join(pax_record(k, v) for k, v in draw(PAX_RECORDS))
        if draw(st.booleans()):
            records = draw(st.binary(max_size=80))
        head = bytearray(tar_header("././@Header", kind, size=len(records)))
        spliced = bytes(head) + records + bytes(-len(records) % 512)
        at = draw(st.sampled_from(HEADERS[which]))  # before a member: its header follows
        data[at:at] = spliced
    return draw(mutated(bytes(data), max_ops=2))


def read_tar(data: bytes, chunk: int) -> int:
    """Read every entry and its content the way the transform does; the entries read."""
    reader = TarReader(io.BytesIO(data), chunk_size=chunk, crc=crc64, capture=True)
    n = 0
    for entry in reader:
        assert isinstance(entry.name, bytes) and entry.size >= 0
        reader.read_content(lambda _p: None)
        n += 1
    return n


@fuzz(3000)
@given(mutated_tar(), st.sampled_from([512, 4096, 1 << 20]))
def test_the_tar_reader_gives_entries_or_tar_format_error(data: bytes, chunk: int) -> None:
    with bounded(), contextlib.suppress(TarFormatError):
        read_tar(data, chunk)


@fuzz(1500)
@given(PAX_RECORDS, st.sampled_from([b"x", b"g"]), st.sampled_from([b"0", b"5", b"2", b"1"]))
def test_pax_records_give_an_entry_or_tar_format_error(
    records: list[tuple[str, bytes]], kind: bytes, typeflag: bytes
) -> None:
    """Extended headers of any records, then an entry: the PAX parser alone."""
    body = b"".join(pax_record(k, v) for k, v in records)
    data = tar_header("././@PaxHeader", kind, size=len(body)) + body + bytes(-len(body) % 512)
    data += tar_header("entry", typeflag, size=0) + bytes(1024)
    with bounded(), contextlib.suppress(TarFormatError):
        read_tar(data, 512)


def test_the_seed_tars_are_read_whole() -> None:
    for data in SEED_TARS:
        with tarfile.open(fileobj=io.BytesIO(data)) as tf:
            members = len(tf.getmembers())
        globals_ = 1 if data[156:157] == b"g" else 0  # Go returns a global header as an entry
        assert read_tar(data, 512) == members + globals_


class Endless(io.RawIOBase):
    """``limit`` bytes after ``head`` (zeros), read lazily; fails past ``budget`` bytes."""

    def __init__(self, head: bytes, limit: int, budget: int) -> None:
        self.head, self.limit, self.budget, self.pos = head, limit, budget, 0

    def read(self, n: int = -1) -> bytes:
        if self.pos >= self.limit:
            return b""
        n = min(n if n is not None and n >= 0 else 1 << 20, self.limit - self.pos)
        assert self.pos + n <= self.budget, f"the reader asked for {self.pos + n} bytes"
        out = self.head[self.pos : self.pos + n]
        out += bytes(n - len(out))
        self.pos += n
        return out


@pytest.mark.parametrize("kind", [b"x", b"g", b"L", b"K"])
def test_an_extension_header_larger_than_1_mib_is_refused_before_it_is_read(kind: bytes) -> None:
    """Go's reader refuses PAX and GNU long-name headers over 1 MiB (maxSpecialFileSize):
    a header claiming 4 GiB must not make the reader hold 4 GiB."""
    head = tar_header("././@Header", kind, size=4 << 30)
    reader = TarReader(Endless(head, limit=(4 << 30) + 4096, budget=8 << 20))  # type: ignore[arg-type]
    with bounded(), pytest.raises(TarFormatError, match="1 MiB"):
        for _ in reader:
            reader.read_content(None)


# --------------------------------------------------------------------------------------------
# manifests, indexes, descriptors


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
GOOD_DESCRIPTOR = {
    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
    "digest": "sha256:" + "a" * 64,
    "size": 123,
    "annotations": {"io.bootc-embed.layer": "app"},
    "platform": {"os": "linux", "architecture": "amd64", "variant": "v8"},
    "urls": ["https://example.com/blob"],
}
GOOD_MANIFEST = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {**GOOD_DESCRIPTOR, "mediaType": "application/vnd.oci.image.config.v1+json"},
    "layers": [GOOD_DESCRIPTOR, GOOD_DESCRIPTOR],
    "annotations": {"a": "b"},
}
GOOD_INDEX = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.index.v1+json",
    "manifests": [GOOD_DESCRIPTOR, GOOD_DESCRIPTOR],
}


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, (*prefix, i))
    return out


@st.composite
def mutated_json(draw: st.DrawFn, good: dict[str, Any]) -> bytes:
    """``good`` with values replaced by other JSON, keys dropped, then serialised and maybe
    mutated as bytes."""
    obj = json.loads(json.dumps(good))
    for _ in range(draw(st.integers(0, 3))):
        path = draw(st.sampled_from(_paths(obj)))
        if not path:
            obj = draw(JSON)
            continue
        parent = obj
        try:
            for k in path[:-1]:
                parent = parent[k]
            if draw(st.booleans()) and isinstance(parent, dict):
                parent.pop(path[-1], None)
            else:
                parent[path[-1]] = draw(JSON)
        except (KeyError, IndexError, TypeError):
            continue
    raw = json.dumps(obj).encode()
    return draw(mutated(raw, max_ops=2)) if draw(st.booleans()) else raw


def parse_model(raw: bytes) -> None:
    for parse in (
        lambda: Manifest.parse(raw, "sha256:" + "0" * 64, "manifest"),
        lambda: index_manifests(raw, "index"),
        lambda: sniff_media_type(load_json(raw, "doc")),
    ):
        with contextlib.suppress(ImageFormatError):
            parse()
    with contextlib.suppress(ImageFormatError, ValueError):
        obj = json.loads(raw)
        layers = obj.get("layers") if isinstance(obj, dict) else None
        for m in [obj, *(layers if isinstance(layers, list) else [])]:
            with contextlib.suppress(ImageFormatError):
                d = Descriptor.from_json(m, "descriptor")
                json.dumps(d.to_json())
                if d.platform is not None:
                    assert str(d.platform) and d.platform.matches(d.platform)
                    d.platform.matches(Platform.host())


@fuzz(2000)
@given(st.one_of(mutated_json(GOOD_MANIFEST), mutated_json(GOOD_INDEX)))
def test_the_model_parses_or_raises_image_format_error(raw: bytes) -> None:
    with bounded():
        parse_model(raw)


@pytest.mark.parametrize("depth", [10_000, 200_000])
def test_deeply_nested_json_is_an_image_format_error(depth: int) -> None:
    for raw in (b"[" * depth + b"]" * depth, b'{"layers":' * depth + b"1" + b"}" * depth):
        with pytest.raises(ImageFormatError):
            Manifest.parse(raw, "sha256:" + "0" * 64, "manifest")
        with pytest.raises(ImageFormatError):
            index_manifests(raw, "index")


# --------------------------------------------------------------------------------------------
# TOML documents from structured pieces


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return '"?"'


TOML_VALUES = st.one_of(
    st.booleans(),
    st.integers(-10, 10),
    st.sampled_from(["", "quay.io", "*.example.com", "http://x", "mirror.local:5000/a", "a@b"]),
    st.text(max_size=15),
    st.lists(st.sampled_from(["a", "b", "/usr/x"]), max_size=3),
)


@st.composite
def registries_conf(draw: st.DrawFn) -> bytes:
    keys = ["prefix", "location", "insecure", "blocked", "mirror-by-digest-only"]
    keys += ["pull-from-mirror", "other"]
    lines: list[str] = []
    if draw(st.booleans()):
        lines.append('unqualified-search-registries = ["docker.io"]')
    for _ in range(draw(st.integers(0, 4))):
        lines.append("[[registry]]")
        for k in draw(st.lists(st.sampled_from(keys), max_size=4, unique=True)):
            lines.append(f"{k} = {_toml_value(draw(TOML_VALUES))}")
        for _ in range(draw(st.integers(0, 2))):
            lines.append("[[registry.mirror]]")
            for k in draw(st.lists(st.sampled_from(keys), max_size=3, unique=True)):
                lines.append(f"{k} = {_toml_value(draw(TOML_VALUES))}")
    if draw(st.booleans()):
        lines.insert(
            0, draw(st.sampled_from(["[registries.search]", "registry = 1", "[registry]"]))
        )
    text = "\n".join(lines) + "\n"
    return draw(mutated(text.encode(), max_ops=2)) if draw(st.booleans()) else text.encode()


REFERENCES = [
    "docker://quay.io/a/b:1",
    "docker://mirror.local:5000/a/b@sha256:" + "c" * 64,
    "docker://x.example.com/y",
    "docker://docker.io/library/busybox",
]


@fuzz(2000)
@given(registries_conf())
def test_registries_conf_parses_or_raises_a_clear_error(data: bytes) -> None:
    with bounded():
        try:
            entries = parse_registries_conf(Path("/fuzz/registries.conf"), data)
        except ImageReferenceError:
            return
        conf = RegistriesConf(tuple(entries))
        for text in REFERENCES:
            ref = parse_reference(text)
            with contextlib.suppress(ImageReferenceError, UsageError):
                for endpoint in conf.pull_endpoints(ref):
                    endpoint.describe()
            with contextlib.suppress(ImageReferenceError):
                conf.push_insecure(ref)


@pytest.mark.parametrize("nesting", ["[", "{a="])
def test_deeply_nested_toml_is_a_clear_error(nesting: str) -> None:
    closing = "]" if nesting == "[" else "}"
    doc = ("x = " + nesting * 5000 + "1" + closing * 5000 + "\n").encode()
    with pytest.raises(ImageReferenceError, match=r"registries\.conf"):
        parse_registries_conf(Path("/fuzz/registries.conf"), doc)
    with pytest.raises(ImageFormatError, match=r"storage\.conf"):
        add_store(doc, STORE, "/etc/containers/storage.conf")


STORE = "/usr/lib/containers/storage"


@st.composite
def storage_conf(draw: st.DrawFn) -> bytes:
    """storage.conf texts as distributions and admins write them, and worse."""
    arrays = [
        "[]",
        '["/a"]',
        '[\n  "/a",\n  "/b", # comment ]\n]',
        '[\'/lit]\', "/q\\"x"]',
        '["/a",]',
        "[ # only a comment\n]",
        '"/not/an/array"',
        '[["/nested"]]',
        '["' + STORE + '"]',
    ]
    pieces = [
        "[storage]",
        'driver = "overlay"',
        "[storage.options]",
        "[ storage . options ]",
        "[storage.options.overlay]",
        'mountopt = "nodev"',
        "# additionalimagestores = []",
        "additionalimagestores = ARRAY",
        "storage.options.additionalimagestores = ARRAY",
        "options.additionalimagestores = ARRAY",
        "options = { additionalimagestores = ARRAY }",
        '[storage.options.thinpool]\nautoextend_percent = "20"',
        'pull_options = {enable_partial_images = "false"}',
        "",
    ]
    lines = [
        draw(st.sampled_from(pieces)).replace("ARRAY", draw(st.sampled_from(arrays)))
        for _ in range(draw(st.integers(0, 8)))
    ]
    text = "\n".join(lines) + draw(st.sampled_from(["\n", "", "\r\n"]))
    return draw(mutated(text.encode(), max_ops=2)) if draw(st.booleans()) else text.encode()


@fuzz(3000)
@given(storage_conf(), st.sampled_from([STORE, '/usr/lib/odd "quoted" store', "/usr/x\\y"]))
def test_the_storage_conf_edit_succeeds_and_parses_or_fails_cleanly(
    data: bytes, store: str
) -> None:
    with bounded():
        try:
            new = add_store(data, store, "/etc/containers/storage.conf")
        except ImageFormatError:
            return
        before = tomllib.loads(data.decode())
        if new is None:
            assert store in stores_of(before)
            return
        after = tomllib.loads(new.decode())
        assert stores_of(after) == [*stores_of(before), store]


# --------------------------------------------------------------------------------------------
# Quadlet files and bound images


QUADLET_LINES = st.lists(
    st.one_of(
        st.sampled_from(
            [
                "[Container]",
                "[Image]",
                "[Unit]",
                "[Service]",
                "Image=quay.io/org/app:1",
                "Image=%%h",
                "Image=quay.io/%n:1",
                "Image=",
                "Pull=never",
                "# comment",
                "; comment",
                "Image = spaced:1",
                "[Container",
                "Image=a\\",
            ]
        ),
        st.text(max_size=30),
    ),
    max_size=8,
)


@fuzz(1500)
@given(QUADLET_LINES)
def test_a_quadlet_parses_or_raises_image_format_error(lines: list[str]) -> None:
    with contextlib.suppress(ImageFormatError):
        q = parse_quadlet("app.container", "\n".join(lines), "/fuzz/app.container")
        assert q.image is None or isinstance(q.image, str)


@st.composite
def bound_view(draw: st.DrawFn) -> BaseView:
    nodes: dict[str, Node] = {}
    targets = st.sampled_from(
        [
            "/usr/share/containers/systemd/app.container",
            "../../../share/containers/systemd/app.container",
            "../../../../../../etc/containers/systemd/x.image",
            "",
            ".",
            "/",
            "app.container",
        ]
    )
    for i in range(draw(st.integers(0, 4))):
        name = f"{BOUND_DIR}/b{i}" + draw(st.sampled_from([".container", ".image", ".txt"]))
        kind = draw(st.sampled_from(["symlink", "file", "dir", "deleted"]))
        data = "\n".join(draw(QUADLET_LINES)).encode() if kind == "file" else None
        nodes[name] = Node(kind, target=draw(targets) if kind == "symlink" else "", data=data)
    for path in ("usr/share/containers/systemd/app.container", "etc/containers/systemd/x.image"):
        if draw(st.booleans()):
            nodes[path] = Node("file", data="\n".join(draw(QUADLET_LINES)).encode())
    return BaseView(nodes)


@fuzz(1500)
@given(bound_view())
def test_bound_images_are_read_or_refused_with_image_format_error(view: BaseView) -> None:
    with contextlib.suppress(ImageFormatError):
        for link, q in bound_images(view):
            assert link.startswith(BOUND_DIR) and q.image is not None
