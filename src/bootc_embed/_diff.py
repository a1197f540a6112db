"""``bootc-embed diff``: what a host running OLD downloads to move to NEW.

bootc fetches an image's layers by digest and skips those it already has, so the update cost
is the size of NEW's layers whose digests OLD does not have. Layers are grouped by what they
hold: the base image, each embedded image (annotation ``io.bootc-embed.image``), the store
metadata layer and the configuration layer (storage.conf, Quadlet files).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ._contract import A_IMAGE, A_LAYER
from ._model import Descriptor, Platform
from ._reference import parse_reference
from ._transports import TransportOptions, open_source, resolve

BASE = "base"
METADATA = "metadata"
CONFIG = "configuration"


@dataclass
class Group:
    name: str
    new: list[Descriptor] = field(default_factory=list)
    reused: list[Descriptor] = field(default_factory=list)
    removed: list[Descriptor] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        def part(items: list[Descriptor]) -> dict[str, Any]:
            return {
                "layers": len(items),
                "bytes": sum(d.size for d in items),
                "digests": [d.digest for d in items],
            }

        return {
            "name": self.name,
            "new": part(self.new),
            "reused": part(self.reused),
            "removed": part(self.removed),
        }


@dataclass
class DiffResult:
    old: str
    new: str
    groups: list[Group]

    @property
    def download_bytes(self) -> int:
        seen: dict[str, int] = {}
        for g in self.groups:
            for d in g.new:
                seen[d.digest] = d.size
        return sum(seen.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "old": self.old,
            "new": self.new,
            "groups": [g.to_json() for g in self.groups],
            "total": {
                "download_bytes": self.download_bytes,
                "new_layers": len({d.digest for g in self.groups for d in g.new}),
                "reused_layers": len({d.digest for g in self.groups for d in g.reused}),
                "removed_layers": len({d.digest for g in self.groups for d in g.removed}),
            },
        }


def _group_of(desc: Descriptor) -> str:
    kind = desc.annotations.get(A_LAYER)
    if kind == "metadata":
        return METADATA
    if kind == "config":
        return CONFIG
    if kind == "app":
        return desc.annotations.get(A_IMAGE) or "embedded images"
    return BASE


def _layers(
    ref_text: str, platform: Platform | None, options: TransportOptions | None
) -> tuple[Descriptor, ...]:
    source = open_source(parse_reference(ref_text), options)
    try:
        return resolve(source, platform).manifest.layers
    finally:
        source.close()


def diff_images(
    old: str, new: str, platform: str | None = None, options: TransportOptions | None = None
) -> DiffResult:
    plat = Platform.parse(platform) if platform else None
    old_layers = _layers(old, plat, options)
    new_layers = _layers(new, plat, options)
    old_digests = {d.digest for d in old_layers}
    new_digests = {d.digest for d in new_layers}
    groups: dict[str, Group] = {}

    def group(name: str) -> Group:
        return groups.setdefault(name, Group(name))

    group(BASE)
    for d in new_layers:
        g = group(_group_of(d))
        (g.reused if d.digest in old_digests else g.new).append(d)
    for d in old_layers:
        if d.digest not in new_digests:
            group(_group_of(d)).removed.append(d)
    order = [BASE, *(n for n in groups if n not in (BASE, METADATA, CONFIG)), METADATA, CONFIG]
    return DiffResult(old, new, [groups[n] for n in order if n in groups])
