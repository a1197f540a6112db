"""containers-registries.conf(5), version 2, for ``docker://`` references, read the way
containers/image (``pkg/sysregistriesv2``) reads it for skopeo and podman.

Files: ``--registries-conf FILE``, else ``$CONTAINERS_REGISTRIES_CONF``, then the drop-ins
``registries.conf.d/*.conf`` in the same directory. Without either: ``~/.config/containers/
registries.conf`` when it exists (with ``~/.config/containers/registries.conf.d``), else
``/etc/containers/registries.conf`` (missing is fine) with ``/etc/containers/registries.conf.d``
and ``~/.config/containers/registries.conf.d``. Drop-ins are read in name order; a
``[[registry]]`` of a later file replaces the one with the same ``prefix``.

``[[registry]]`` tables are chosen by ``prefix`` (default: ``location``): the longest prefix that
the image name starts with, followed by ``/``, ``:``, ``@`` or nothing; ``*.example.com`` matches
any subdomain. ``location`` replaces the prefix for pulls; ``insecure`` allows plain HTTP and
any certificate; ``blocked`` refuses the registry. Pulls try the ``[[registry.mirror]]``
locations in order (subject to ``pull-from-mirror`` and ``mirror-by-digest-only``), then the
primary location. Pushes use neither the rewrite nor mirrors.

Only ``[[registry]]`` is read; short-name settings (``unqualified-search-registries``,
``[aliases]``, ``short-name-mode``), ``credential-helpers`` and ``proxy`` are not used (a
``docker://`` name is always complete). The version 1 format is refused.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._reference import Reference, normalize_docker_name
from ..errors import ImageReferenceError, UsageError

SYSTEM_CONF = Path("/etc/containers/registries.conf")
USER_CONF = Path(".config/containers/registries.conf")  # under $HOME
DROP_IN_DIR = "registries.conf.d"
PULL_FROM_MIRROR = ("all", "digest-only", "tag-only")


@dataclass(frozen=True)
class Mirror:
    location: str
    insecure: bool = False
    pull_from_mirror: str = ""  # "" (all), "all", "digest-only", "tag-only"


@dataclass(frozen=True)
class RegistryEntry:
    """One ``[[registry]]`` table, normalised (``prefix`` set, no trailing ``/``)."""

    prefix: str
    location: str  # "" only with a wildcard prefix: names are used as they are
    insecure: bool = False
    blocked: bool = False
    mirror_by_digest_only: bool = False
    mirrors: tuple[Mirror, ...] = ()
    origin: Path = SYSTEM_CONF  # the file it came from

    def blocked_message(self) -> str:
        return f"registry {self.prefix} is blocked in {self.origin}"


@dataclass(frozen=True)
class Endpoint:
    """One place a pull may read from: the reference as rewritten for it."""

    reference: Reference  # physical: a mirror's or the primary location's
    insecure: bool
    mirror: bool
    blocked: str | None = None  # why it may not be used

    def describe(self) -> str:
        name = self.reference.path + (
            f"@{self.reference.digest}" if self.reference.digest else f":{self.reference.tag}"
        )
        return f"mirror {name}" if self.mirror else name


def match_length(name: str, prefix: str) -> int:
    """How much of ``name`` (``host[:port]/repo...``) the prefix covers, or -1 when it does not
    match: the prefix followed by ``/``, ``:``, ``@`` or the end; ``*.example.com`` matches the
    host's subdomains (any depth), with or without a port."""
    if prefix.startswith("*."):
        head = name.partition("/")[0]
        domain = re.split(r"[:@]", head, maxsplit=1)[0]
        suffix = prefix[1:]
        return len(domain) if domain.endswith(suffix) and len(domain) > len(suffix) else -1
    if name == prefix:
        return len(prefix)
    if name.startswith(prefix) and name[len(prefix)] in "/:@":
        return len(prefix)
    return -1


@dataclass(frozen=True)
class RegistriesConf:
    registries: tuple[RegistryEntry, ...] = ()
    files: tuple[Path, ...] = ()  # every file read, in order

    def find(self, name: str) -> RegistryEntry | None:
        """The entry with the longest prefix matching ``name`` (containers/image's
        FindRegistry)."""
        best: RegistryEntry | None = None
        for entry in self.registries:
            if match_length(name, entry.prefix) >= 0 and (
                best is None or len(entry.prefix) > len(best.prefix)
            ):
                best = entry
        return best

    def _rewrite(self, ref: Reference, entry: RegistryEntry, location: str) -> Reference:
        if not location:
            return ref
        n = match_length(ref.path, entry.prefix)
        new = location + ref.path[n:]
        try:
            parsed = normalize_docker_name(new, "")
        except UsageError:
            parsed = None
        if parsed is None or parsed.repository != new:
            raise ImageReferenceError(
                f"{ref}: location {location!r} of the [[registry]] with prefix {entry.prefix!r} "
                f"in {entry.origin} makes {new!r}, which is not a fully qualified image name"
            )
        return Reference("docker", new, ref.tag, ref.digest)

    def _blocked(self, ref: Reference, *also: RegistryEntry) -> str | None:
        for entry in (*also, self.find(ref.path)):
            if entry is not None and entry.blocked:
                return entry.blocked_message()
        return None

    def pull_endpoints(self, ref: Reference) -> list[Endpoint]:
        """Where to try pulling ``ref`` from, in order: the mirrors that apply, then the primary
        location (containers/image's PullSourcesFromReference). A blocked location stays in
        the list with the reason, so that the final error can name it."""
        entry = self.find(ref.path)
        if entry is None:
            return [Endpoint(ref, False, False)]
        by_digest = ref.digest is not None
        out: list[Endpoint] = []
        for m in entry.mirrors:
            if entry.mirror_by_digest_only and not by_digest:
                continue
            if m.pull_from_mirror == "digest-only" and not by_digest:
                continue
            if m.pull_from_mirror == "tag-only" and by_digest:
                continue
            physical = self._rewrite(ref, entry, m.location)
            out.append(Endpoint(physical, m.insecure, True, self._blocked(physical)))
        physical = self._rewrite(ref, entry, entry.location)
        out.append(Endpoint(physical, entry.insecure, False, self._blocked(physical, entry)))
        return out

    def push_insecure(self, ref: Reference) -> bool:
        """For a push to ``ref`` (no rewrite, no mirrors): whether the registry is insecure;
        raises when it is blocked."""
        entry = self.find(ref.path)
        if entry is None:
            return False
        if entry.blocked:
            raise ImageReferenceError(f"{ref}: {entry.blocked_message()}")
        return entry.insecure


# --------------------------------------------------------------------------------------------
# reading the files


def _bad(path: Path, problem: str) -> ImageReferenceError:
    return ImageReferenceError(f"registries configuration {path}: {problem}")


def _location(path: Path, where: str, key: str, value: str) -> str:
    trimmed = value.rstrip("/")
    if trimmed.startswith(("http://", "https://")):
        raise _bad(path, f"{where}: {key} {value!r}: URI schemes are not supported")
    return trimmed


def _get(path: Path, where: str, table: dict[str, Any], key: str, kind: type) -> Any:
    value = table.get(key, kind())
    if type(value) is not kind:
        want = "true or false" if kind is bool else "a string"
        raise _bad(path, f"{where}: {key} must be {want}, not {value!r}")
    return value


def _tables(path: Path, value: Any, key: str) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise _bad(path, f"{key} must be an array of tables: write [[{key}]]")
    return value


def _mirror(path: Path, where: str, table: dict[str, Any], by_digest_only: bool) -> Mirror:
    location = _location(path, where, "location", _get(path, where, table, "location", str))
    if not location:
        raise _bad(path, f"{where}: the mirror has no location")
    pull_from = _get(path, where, table, "pull-from-mirror", str)
    if pull_from and pull_from not in PULL_FROM_MIRROR:
        raise _bad(
            path,
            f"{where}: pull-from-mirror {pull_from!r} is not one of {', '.join(PULL_FROM_MIRROR)}",
        )
    if pull_from and by_digest_only:
        raise _bad(
            path,
            f"{where}: pull-from-mirror cannot be set when the registry has mirror-by-digest-only",
        )
    return Mirror(location, _get(path, where, table, "insecure", bool), pull_from)


def _entry(path: Path, number: int, table: dict[str, Any]) -> RegistryEntry:
    where = f"[[registry]] number {number}"
    location = _location(path, where, "location", _get(path, where, table, "location", str))
    prefix = _get(path, where, table, "prefix", str)
    if not prefix:
        if not location:
            raise _bad(path, f"{where}: neither prefix nor location is set")
        prefix = location
    else:
        prefix = _location(path, where, "prefix", prefix)
        if not location and not prefix.startswith("*."):
            raise _bad(
                path, f"{where}: location is unset and prefix {prefix!r} is not *.example.com"
            )
    if prefix.startswith("*.") and any(c in prefix for c in "/@:"):
        raise _bad(
            path,
            f"{where}: a wildcard prefix is a domain only, as *.example.com (not {prefix!r})",
        )
    if "pull-from-mirror" in table:
        raise _bad(path, f"{where}: pull-from-mirror belongs in [[registry.mirror]] tables")
    by_digest_only = _get(path, where, table, "mirror-by-digest-only", bool)
    mirrors = tuple(
        _mirror(path, f"{where}, mirror {j}", m, by_digest_only)
        for j, m in enumerate(_tables(path, table.get("mirror", []), "registry.mirror"), 1)
    )
    return RegistryEntry(
        prefix=prefix,
        location=location,
        insecure=_get(path, where, table, "insecure", bool),
        blocked=_get(path, where, table, "blocked", bool),
        mirror_by_digest_only=by_digest_only,
        mirrors=mirrors,
        origin=path,
    )


def parse(path: Path, data: bytes) -> list[RegistryEntry]:
    """One file's ``[[registry]]`` tables, checked; the first of equal prefixes wins."""
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise _bad(path, "not UTF-8 text") from None
    except tomllib.TOMLDecodeError as e:
        raise _bad(path, f"not valid TOML: {e}") from None
    except RecursionError:
        raise _bad(path, "not usable TOML: nested too deeply") from None
    if "registries" in doc:
        raise _bad(
            path,
            "this is the version 1 format ([registries.search], [registries.insecure], "
            "[registries.block]), which bootc-embed does not read; write [[registry]] tables "
            "(version 2, see containers-registries.conf(5))",
        )
    entries = [
        _entry(path, i, t)
        for i, t in enumerate(_tables(path, doc.get("registry", []), "registry"), 1)
    ]
    seen: dict[str, RegistryEntry] = {}
    for e in entries:  # one registry under several prefixes must be set up alike
        key = e.location or e.prefix
        other = seen.setdefault(key, e)
        for setting in ("insecure", "blocked"):
            if getattr(other, setting) != getattr(e, setting):
                raise _bad(
                    path,
                    f"registry {key!r} is defined several times with conflicting "
                    f"{setting!r} settings",
                )
    unique: dict[str, RegistryEntry] = {}
    for e in entries:
        unique.setdefault(e.prefix, e)
    return list(unique.values())


def config_files(
    explicit: str | None, env: Mapping[str, str]
) -> tuple[Path, str | None, list[Path]]:
    """(the main file, what named it when it must exist, the drop-in directories in order)."""
    for named, what in (
        (explicit, "--registries-conf"),
        (env.get("CONTAINERS_REGISTRIES_CONF"), "$CONTAINERS_REGISTRIES_CONF"),
    ):
        if named:
            path = Path(named)
            return path, what, [path.parent / DROP_IN_DIR]
    home = Path(env.get("HOME") or os.path.expanduser("~"))
    user = home / USER_CONF
    user_dir = user.parent / DROP_IN_DIR
    if user.exists():
        return user, None, [user_dir]
    return SYSTEM_CONF, None, [SYSTEM_CONF.parent / DROP_IN_DIR, user_dir]


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise
    except IsADirectoryError:
        raise _bad(path, "is a directory, not a file") from None
    except OSError as e:
        raise _bad(path, f"cannot be read: {e.strerror}") from None


def load(explicit: str | None = None, env: Mapping[str, str] | None = None) -> RegistriesConf:
    """The merged configuration (see the module's docstring for which files)."""
    env = os.environ if env is None else env
    main, named_by, dirs = config_files(explicit, env)
    merged: dict[str, RegistryEntry] = {}
    files: list[Path] = []
    try:
        data = _read(main)
    except FileNotFoundError:
        if named_by is not None:
            raise UsageError(f"{named_by} {main}: no such file") from None
    else:
        files.append(main)
        merged.update((e.prefix, e) for e in parse(main, data))
    for d in dirs:
        try:
            names = sorted(os.listdir(d))
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as e:
            raise _bad(d, f"cannot be listed: {e.strerror}") from None
        for name in names:
            path = d / name
            if not name.endswith(".conf") or path.is_dir():
                continue
            try:
                data = _read(path)
            except FileNotFoundError:  # removed since the listing
                continue
            files.append(path)
            merged.update((e.prefix, e) for e in parse(path, data))
    return RegistriesConf(tuple(merged[p] for p in sorted(merged)), tuple(files))
