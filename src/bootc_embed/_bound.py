"""bootc's logically bound images and Quadlet files: which images a base declares it needs.

bootc reads ``/usr/lib/bootc/bound-images.d/*.image`` and ``*.container``: symlinks to Quadlet
files, of which only ``Image=`` matters; systemd specifiers other than ``%%`` are refused.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

from ._basescan import BOUND_DIR, BaseView
from .errors import ImageFormatError, UsageError

QUADLET_KINDS = (".container", ".image", ".pod", ".kube")
_SECTION = re.compile(r"^\s*\[([^\]]+)\]\s*$")


@dataclass(frozen=True)
class Quadlet:
    name: str  # file name
    image: str | None  # Image= with %% unescaped
    pull: str | None  # Pull=


def parse_quadlet(name: str, text: str, where: str) -> Quadlet:
    """``Image=`` and ``Pull=`` of a Quadlet unit (the last assignment wins, as in systemd)."""
    image = pull = None
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        m = _SECTION.match(line)
        if m:
            section = m.group(1)
            continue
        key, sep, value = line.partition("=")
        if not sep or section not in ("Container", "Image", "Pod", "Kube"):
            continue
        key, value = key.strip(), value.strip()
        if key == "Image":
            image = value
        elif key == "Pull":
            pull = value
    if image is not None:
        spec = re.search(r"%[^%]", image.replace("%%", ""))
        if spec:
            raise ImageFormatError(
                f"{where}: Image={image} uses the systemd specifier {spec.group(0)!r}; bootc "
                f"refuses specifiers in bound images other than %%"
            )
        image = image.replace("%%", "%")
    return Quadlet(name, image, pull)


def bound_images(view: BaseView) -> list[tuple[str, Quadlet]]:
    """The base's bound images: (link path, parsed Quadlet) in name order."""
    out: list[tuple[str, Quadlet]] = []
    for link in view.children(BOUND_DIR):
        if not link.endswith((".image", ".container")):
            continue
        node = view.get(link)
        if node is None:
            continue
        target = link
        if node.kind == "symlink":
            target = posixpath.normpath(
                node.target.lstrip("/")
                if node.target.startswith("/")
                else posixpath.join(posixpath.dirname(link), node.target)
            )
        data = view.file(target)
        if data is None:
            raise ImageFormatError(
                f"/{link} points to /{target}, which the base image does not hold as a Quadlet "
                f"file bootc-embed can read (in /usr/share/containers/systemd or "
                f"/etc/containers/systemd)"
            )
        q = parse_quadlet(posixpath.basename(target), data.decode("utf-8", "replace"), "/" + link)
        if q.image is None:
            raise ImageFormatError(f"/{link} -> /{target} has no Image= line")
        out.append((link, q))
    return out


def check_quadlet_name(name: str) -> None:
    if not name.endswith(QUADLET_KINDS) or "/" in name:
        raise UsageError(f"--quadlet {name!r}: expected a .container, .image, .pod or .kube file")
