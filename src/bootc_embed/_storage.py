"""The containers-storage format (overlay driver) as pure functions: ids, links, lower chains,
big-data file names. The paths and records of a store are the output contract (``_contract``).

Facts from containers/storage (``layers.go``, ``images.go``, ``drivers/overlay``) and
containers/image (``storage/storage_dest.go``); see docs/store-format.md.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable, Sequence

DEFAULT_STORE = "/usr/lib/containers/storage"
MAX_LOWER_CHAIN = 500

# layers.json "compression" values (containers/storage pkg/archive.Compression)
COMPRESSION_NONE = 0
COMPRESSION_GZIP = 2
COMPRESSION_ZSTD = 4

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_BIGDATA_PLAIN = re.compile(r"^[.0-9a-z]+$")


def digest_hex(digest: str) -> str:
    algo, _, hexpart = digest.partition(":")
    if algo != "sha256" or not _HEX64.match(hexpart):
        raise ValueError(f"not a sha256 digest: {digest!r}")
    return hexpart


def layer_id(parent_id: str | None, diff_id: str) -> str:
    """containers/image's layer id: hex(diffID) for a base layer, else
    sha256_hex(parent_id + "+" + hex(diffID)). Not the OCI ChainID."""
    hexpart = digest_hex(diff_id)
    if parent_id is None:
        return hexpart
    return hashlib.sha256(f"{parent_id}+{hexpart}".encode()).hexdigest()


def layer_ids(diff_ids: Sequence[str]) -> list[str]:
    """Layer ids of a whole chain, bottom-up."""
    ids: list[str] = []
    parent: str | None = None
    for d in diff_ids:
        parent = layer_id(parent, d)
        ids.append(parent)
    return ids


def link_id(layer: str) -> str:
    """26 characters of base32 (A-Z2-7) of sha256 over the layer id's hex string.

    podman draws link ids at random; ours are derived so that builds are reproducible and
    distinct layers get distinct links."""
    return base64.b32encode(hashlib.sha256(layer.encode("ascii")).digest()).decode("ascii")[:26]


def lower_chain(ancestors_nearest_first: Sequence[str]) -> str:
    """Contents of a layer's ``lower`` file: ``l/<link>`` of each ancestor, nearest first."""
    if len(ancestors_nearest_first) > MAX_LOWER_CHAIN:
        raise ValueError(f"a layer chain may hold at most {MAX_LOWER_CHAIN} layers")
    return lower_of_links(link_id(a) for a in ancestors_nearest_first)


def lower_of_links(links: Iterable[str]) -> str:
    """A ``lower`` file naming these link ids (``l/<link>``, ``:``-separated)."""
    return ":".join("l/" + link for link in links)


def bigdata_filename(key: str) -> str:
    """``makeBigDataBaseName``: keys of ``.``, ``0-9``, ``a-z`` only are used as they are,
    any other key becomes ``=`` + standard base64 of the key."""
    if _BIGDATA_PLAIN.match(key):
        return key
    return "=" + base64.b64encode(key.encode("utf-8")).decode("ascii")


def manifest_key(digest: str) -> str:
    return "manifest-" + digest


def sorted_ids(values: Iterable[int]) -> tuple[int, ...]:
    return tuple(sorted(set(values)))
