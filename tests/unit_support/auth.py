"""Registry auth files for the tests, written with the standard library."""

from __future__ import annotations

import base64
import json
from pathlib import Path


def write_auth_json(path: Path, entries: dict[str, tuple[str, str]], **extra: object) -> Path:
    """An auth file with an ``auth`` entry (base64 of USER:PASSWORD) per key, and ``extra``
    top-level fields (``credHelpers``, ``credsStore``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    auths = {
        k: {"auth": base64.b64encode(f"{u}:{p}".encode()).decode()} for k, (u, p) in entries.items()
    }
    path.write_text(json.dumps({"auths": auths, **extra}))
    return path
