"""storage.conf: list the store in ``additionalimagestores`` without touching anything else.

The file is edited as text (comments, order and formatting stay), then parsed again to prove
that the only change is the one added path.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from typing import Any

from .errors import ImageFormatError

DEFAULT_PATH = "etc/containers/storage.conf"

_TABLE = re.compile(r"^\s*\[\s*([^\]\s]+(?:\s*\.\s*[^\]\s]+)*)\s*\]\s*(#.*)?$")
_KEY = re.compile(r"^\s*additionalimagestores\s*=")


def default_conf(store: str) -> bytes:
    """What a base without any storage.conf gets: the distribution defaults plus the store."""
    return (
        "# Written by bootc-embed: the base image had no storage.conf. These are the\n"
        "# containers-storage defaults, plus the store bootc-embed embedded.\n"
        "[storage]\n"
        'driver = "overlay"\n'
        'runroot = "/run/containers/storage"\n'
        'graphroot = "/var/lib/containers/storage"\n'
        "\n"
        "[storage.options]\n"
        f"additionalimagestores = [{_quote(store)}]\n"
    ).encode()


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def stores_of(conf: dict[str, Any]) -> list[str]:
    storage = conf.get("storage")
    options = storage.get("options") if isinstance(storage, dict) else None
    value = options.get("additionalimagestores") if isinstance(options, dict) else None
    return [str(v) for v in value] if isinstance(value, list) else []


def _chars(text: str, start: int = 0) -> Iterator[tuple[int, str, bool]]:
    """(index, character, inside a string) of TOML text from ``start``, comments left out."""
    quote = ""
    i = start
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\" and quote == '"':
                yield i, c, True
                if i + 1 < len(text):
                    yield i + 1, text[i + 1], True
                i += 2
                continue
            if c == quote:
                quote = ""
            yield i, c, True
        elif c == "#":
            nl = text.find("\n", i)
            i = len(text) if nl < 0 else nl
            continue
        else:
            if c in "\"'":
                quote = c
            yield i, c, c in "\"'"
        i += 1


def _array_end(text: str, start: int) -> int:
    """Index of the ``]`` closing the array that opens at or after ``start``."""
    depth = 0
    for i, c, quoted in _chars(text, text.index("[", start)):
        if quoted:
            continue
        if c == "[":
            depth += 1
        elif c == "]":
            depth -= 1
            if depth == 0:
                return i
    raise ValueError("unterminated array")


def _without_comments(text: str) -> str:
    """``text`` (TOML values) with its comments removed; ``#`` inside strings is kept."""
    return "".join(c for _, c, _ in _chars(text))


def add_store(data: bytes, store: str, where: str) -> bytes | None:
    """``data`` with ``store`` appended to additionalimagestores; None when already listed."""
    try:
        text = data.decode("utf-8")
        before = tomllib.loads(text)
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError) as e:
        raise ImageFormatError(
            f"the base image's {where} cannot be parsed ({e}); fix it or use --no-storage-conf"
        ) from None
    if store in stores_of(before):
        return None
    storage = before.get("storage", {})
    if not isinstance(storage, dict) or not isinstance(storage.get("options", {}), dict):
        raise ImageFormatError(
            f"the base image's {where}: storage or storage.options is not a table; "
            f"fix it or use --no-storage-conf"
        )
    failed = ImageFormatError(
        f"could not add {store} to the base image's {where} without changing other "
        f"settings; edit it in the base image or use --no-storage-conf"
    )
    try:
        new = _edit(text, store)
        after = tomllib.loads(new)
    except (ValueError, RecursionError):  # the edit went wrong: TOMLDecodeError is a ValueError
        raise failed from None
    expected = tomllib.loads(text)
    options = expected.setdefault("storage", {}).setdefault("options", {})
    options["additionalimagestores"] = [*stores_of(before), store]
    if after != expected:
        raise failed
    return new.encode("utf-8")


def _edit(text: str, store: str) -> str:
    """``text`` with ``store`` appended to additionalimagestores, edited as text (checked by
    the caller); ValueError when the text is not laid out as expected."""
    lines = text.splitlines(keepends=True)
    header = next(
        (
            i
            for i, line in enumerate(lines)
            if (m := _TABLE.match(line)) and re.sub(r"\s", "", m.group(1)) == "storage.options"
        ),
        None,
    )
    if header is None:
        tail = "" if text.endswith("\n") or not text else "\n"
        new = f"{text}{tail}\n[storage.options]\nadditionalimagestores = [{_quote(store)}]\n"
    else:
        key = None
        for i in range(header + 1, len(lines)):
            if _TABLE.match(lines[i]):
                break
            if _KEY.match(lines[i]):
                key = i
                break
        if key is None:
            lines.insert(header + 1, f"additionalimagestores = [{_quote(store)}]\n")
            new = "".join(lines)
        else:
            offset = sum(len(line) for line in lines[:key])
            end = _array_end(text, offset + lines[key].index("="))
            inside = text[text.index("[", offset + lines[key].index("=")) + 1 : end]
            bare = _without_comments(inside)
            if not bare.strip():
                addition = _quote(store)
            elif bare.rstrip().endswith(","):
                addition = " " + _quote(store)
            else:
                addition = ", " + _quote(store)
            new = text[:end].rstrip(" ") + addition + text[end:]
    return new
