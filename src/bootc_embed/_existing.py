"""A store the base image already holds at the store path: its records are kept and merged.

Images embedded by an earlier bootc-embed run (or another tool writing the same format) stay
listed; ours are added. A layer both have is kept once (the base's copy). A name both use is
refused unless the user asks to replace it. The base's records are kept as the JSON objects
they are (every key, in its order), not as ``_contract`` records: they are written back as read.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ._basescan import BaseView
from ._contract import IMAGES_JSON, LAYERS_JSON, StorePaths
from .errors import ImageFormatError, UsageError


@dataclass
class ExistingStore:
    layers: list[dict[str, Any]] = field(default_factory=list)
    images: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_view(cls, view: BaseView, store: str, where: str) -> ExistingStore:
        paths = StorePaths.of(store)
        out = cls()
        for attr, name, path in (
            ("layers", LAYERS_JSON, paths.layers_json),
            ("images", IMAGES_JSON, paths.images_json),
        ):
            data = view.file(path)
            if data is None:
                continue
            try:
                records = json.loads(data)
                if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
                    raise ValueError("not a list of records")
            except ValueError as e:
                raise ImageFormatError(
                    f"{where}: the store already at {store} has an unreadable {name}: {e}"
                ) from None
            setattr(out, attr, records)
        return out

    @property
    def layer_ids(self) -> set[str]:
        return {str(r.get("id")) for r in self.layers}

    def names(self) -> set[str]:
        return {str(n) for r in self.images for n in (r.get("names") or ())}

    def claim(self, name: str, image_id: str, replace: Iterable[str]) -> bool:
        """Make room for ``name`` on ``image_id``; True when the base already holds that image
        (it then carries the name too, and needs no record of ours)."""
        replace = set(replace)
        for rec in list(self.images):
            names = [str(n) for n in (rec.get("names") or ())]
            if name not in names or rec.get("id") == image_id:
                continue
            if name not in replace:
                raise UsageError(
                    f"{name} is already embedded in the base image (image "
                    f"{str(rec.get('id'))[:12]}); use --replace {name} to point the name at the "
                    f"new image"
                )
            names.remove(name)
            if names:
                rec["names"] = names
                if "names-history" in rec:
                    rec["names-history"] = names
            else:
                self.images.remove(rec)  # nothing names it any more: drop the record
        for rec in self.images:
            if rec.get("id") == image_id:
                names = [str(n) for n in (rec.get("names") or ())]
                if name not in names:
                    rec["names"] = [*names, name]
                    if "names-history" in rec:
                        rec["names-history"] = rec["names"]
                return True
        return False
