"""``bootc-embed diff``: what a host running OLD downloads to move to NEW.

bootc fetches an image's layers by digest and skips those it already has, so the update cost
is the size of NEW's layers whose digests OLD does not have. Layers are grouped by what they
hold (as the output reader, ``_output``, classifies them): the base image, each embedded image
(annotation ``io.bootc-embed.image``), the store metadata layer and the configuration layer
(storage.conf, Quadlet files).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ._contract import LayerKind
from ._model import Descriptor, Platform
from ._output import OutputLayer, open_output
from ._transports import TransportOptions

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


def _group_of(layer: OutputLayer) -> str:
    kind = layer.kind
    if kind is LayerKind.METADATA:
        return METADATA
    if kind is LayerKind.CONFIG:
        return CONFIG
    if kind is LayerKind.APP:
        return layer.image or "embedded images"
    return BASE


def _layers(
    ref_text: str, platform: Platform | None, options: TransportOptions | None
) -> tuple[OutputLayer, ...]:
    with open_output(ref_text, platform, options) as out:
        return out.layers


def diff_images(
    old: str, new: str, platform: str | None = None, options: TransportOptions | None = None
) -> DiffResult:
    plat = Platform.parse(platform) if platform else None
    old_layers = _layers(old, plat, options)
    new_layers = _layers(new, plat, options)
    old_digests = {layer.descriptor.digest for layer in old_layers}
    new_digests = {layer.descriptor.digest for layer in new_layers}
    groups: dict[str, Group] = {}

    def group(name: str) -> Group:
        return groups.setdefault(name, Group(name))

    group(BASE)
    for layer in new_layers:
        g = group(_group_of(layer))
        d = layer.descriptor
        (g.reused if d.digest in old_digests else g.new).append(d)
    for layer in old_layers:
        if layer.descriptor.digest not in new_digests:
            group(_group_of(layer)).removed.append(layer.descriptor)
    order = [BASE, *(n for n in groups if n not in (BASE, METADATA, CONFIG)), METADATA, CONFIG]
    return DiffResult(old, new, [groups[n] for n in order if n in groups])
