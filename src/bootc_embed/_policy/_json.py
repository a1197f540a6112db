"""Strict JSON for security data, read the way containers/image reads it: a duplicated key, an
unknown field or a value of the wrong type is an error, never silently ignored."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable
from typing import Any


class ShapeError(ValueError):
    """Data that is not of the expected shape; the message names where (a JSON path)."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ShapeError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise ShapeError(f"{name} is not valid JSON")


def loads(data: bytes | str) -> Any:
    """JSON text with duplicate keys (and NaN, Infinity) refused."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise ShapeError("not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise ShapeError(f"not valid JSON: {e}") from None


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ShapeError(f"{where} must be a JSON object, not {_kind(value)}")
    return value


def fields(
    value: Any, where: str, allowed: Iterable[str], required: Iterable[str] = ()
) -> dict[str, Any]:
    """An object whose keys are all ``allowed`` and include every ``required`` one."""
    d = obj(value, where)
    allowed = tuple(allowed)
    for key in d:
        if key not in allowed:
            raise ShapeError(f"{where}: unknown field {key!r} (allowed: {', '.join(allowed)})")
    for key in required:
        if key not in d:
            raise ShapeError(f"{where}: the field {key!r} is missing")
    return d


def string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ShapeError(f"{where} must be a string, not {_kind(value)}")
    return value


def strings(value: Any, where: str) -> list[str]:
    if not isinstance(value, list):
        raise ShapeError(f"{where} must be a list of strings, not {_kind(value)}")
    return [string(v, f"{where}[{i}]") for i, v in enumerate(value)]


def b64bytes(value: Any, where: str) -> bytes:
    """A JSON string holding base64 (standard alphabet, padded; line breaks ignored), as Go
    decodes a ``[]byte`` field."""
    text = string(value, where).replace("\r", "").replace("\n", "")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ShapeError(f"{where} is not valid base64") from None


def integer_valued(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ShapeError(f"{where} must be a number, not {_kind(value)}")
    if isinstance(value, float) and not value.is_integer():
        raise ShapeError(f"{where} is not an integer")
    return int(value)
