"""containers-registries.d(5): where the signatures of ``docker://`` images are (a lookaside
URL for simple signing, whether to read sigstore attachments), read as containers/image reads
it.

Directory: ``--registries.d DIR``, else ``$HOME/.config/containers/registries.d`` when it exists,
else ``/etc/containers/registries.d`` (a missing directory is empty). Every ``*.yaml`` file in it
is read; a ``default-docker`` section, or one ``docker`` namespace, defined in two files is an
error. The section for an image is the most specific ``docker`` namespace that sets the value
(the image's ``REPO:TAG`` or ``REPO@DIGEST``, its repository, parent namespaces, the registry,
``*.domain`` wildcards), else ``default-docker``. Without any lookaside, the built-in one is
``file:///var/lib/containers/sigstore`` (root) or ``~/.local/share/containers/sigstore``.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import PolicyError
from ._names import Named, docker_namespaces

SYSTEM_DIR = Path("/etc/containers/registries.d")
USER_DIR = Path(".config/containers/registries.d")  # under $HOME
ROOT_LOOKASIDE = "file:///var/lib/containers/sigstore"
USER_LOOKASIDE = Path(".local/share/containers/sigstore")  # under $HOME


class InvalidRegistriesD(PolicyError):
    """A registries.d file that cannot be read; the message names the file."""


@dataclass(frozen=True)
class Section:
    """One configuration section (``default-docker`` or a ``docker`` namespace)."""

    origin: Path
    lookaside: str = ""
    lookaside_staging: str = ""
    sigstore: str = ""  # the old names of lookaside / lookaside-staging
    sigstore_staging: str = ""
    use_sigstore_attachments: bool | None = None

    def top_level(self, write: bool) -> tuple[str, str]:
        """(URL, the key it came from), or ("", "") when the section sets none."""
        pairs = (
            [
                ("lookaside-staging", self.lookaside_staging),
                ("sigstore-staging", self.sigstore_staging),
            ]
            if write
            else []
        )
        pairs += [("lookaside", self.lookaside), ("sigstore", self.sigstore)]
        for key, value in pairs:
            if value:
                return value, key
        return "", ""


@dataclass(frozen=True)
class Lookaside:
    """Where the simple signatures of one repository are: ``base`` + ``@ALGO=HEX/signature-N``."""

    base: str  # the configured URL with the repository path appended
    origin: str  # which section (and file) chose it, for messages

    def url(self, manifest_digest: str, index: int) -> str:
        """The URL of the ``index``-th signature (from 1) of the manifest digest."""
        algo, _, hexpart = manifest_digest.partition(":")
        parts = urllib.parse.urlsplit(self.base)
        path = f"{parts.path}@{algo}={hexpart}/signature-{index}"
        return urllib.parse.urlunsplit(parts._replace(path=path))


@dataclass(frozen=True)
class RegistriesD:
    directory: Path
    default_docker: Section | None = None
    docker: Mapping[str, Section] = field(default_factory=dict)
    home: Path = Path("/root")
    root: bool = True

    def _sections(self, ref: Named) -> list[tuple[str, Section]]:
        """The sections that apply, most specific first (each tried in turn for a value)."""
        out = [
            (f'docker["{key}"]', self.docker[key]) for key in self._keys(ref) if key in self.docker
        ]
        if self.default_docker is not None:
            out.append(("default-docker", self.default_docker))
        return out

    @staticmethod
    def _keys(ref: Named) -> list[str]:
        return [str(ref), *docker_namespaces(ref.name)]

    def lookaside(self, ref: Named, write: bool = False) -> Lookaside:
        """The lookaside for ``ref`` (``REPO:TAG`` or ``REPO@DIGEST``, as the registry has it)."""
        for label, section in self._sections(ref):
            url, key = section.top_level(write)
            if url:
                return Lookaside(_join(url, ref.path), f"{key} of {label} in {section.origin}")
        if self.root:
            base = ROOT_LOOKASIDE
        else:
            base = "file://" + urllib.parse.quote(str(self.home / USER_LOOKASIDE))
        return Lookaside(
            _join(base, ref.path), f"the built-in default, none set in {self.directory}"
        )

    def use_sigstore_attachments(self, ref: Named) -> tuple[bool, str]:
        """(whether to read sigstore attachments for ``ref``, which section said so)."""
        for label, section in self._sections(ref):
            if section.use_sigstore_attachments is not None:
                value = "true" if section.use_sigstore_attachments else "false"
                return section.use_sigstore_attachments, (
                    f"use-sigstore-attachments: {value} in {label} of {section.origin}"
                )
        return False, f"use-sigstore-attachments is not set in {self.directory}"


def _join(url: str, repo_path: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path=f"{parts.path}/{repo_path}"))


# --------------------------------------------------------------------------------------------
# reading


class _StrictLoader(yaml.SafeLoader):
    """YAML with duplicate mapping keys refused (as Go's yaml does)."""


def _mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    out: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node)
        if key in out:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        out[key] = loader.construct_object(value_node)
    return out


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)

_STRING_KEYS = {
    "lookaside": "lookaside",
    "lookaside-staging": "lookaside_staging",
    "sigstore": "sigstore",
    "sigstore-staging": "sigstore_staging",
}


def _section(path: Path, where: str, value: Any) -> Section:
    if value is None:
        return Section(path)
    if not isinstance(value, dict):
        raise InvalidRegistriesD(f"registries.d file {path}: {where} must be a mapping")
    kwargs: dict[str, Any] = {}
    for key, item in value.items():  # other keys are ignored, as containers/image does
        if key in _STRING_KEYS:
            if not isinstance(item, str):
                raise InvalidRegistriesD(f"registries.d file {path}: {where}.{key} must be a URL")
            kwargs[_STRING_KEYS[key]] = item
        elif key == "use-sigstore-attachments":
            if not isinstance(item, bool):
                raise InvalidRegistriesD(
                    f"registries.d file {path}: {where}.{key} must be true or false"
                )
            kwargs["use_sigstore_attachments"] = item
    return Section(path, **kwargs)


def registries_d_dir(explicit: str | None, env: Mapping[str, str]) -> Path:
    if explicit:
        return Path(explicit)
    user = _home(env) / USER_DIR
    return user if user.exists() else SYSTEM_DIR


def _home(env: Mapping[str, str]) -> Path:
    return Path(env.get("HOME") or os.path.expanduser("~"))


def load(explicit: str | None = None, env: Mapping[str, str] | None = None) -> RegistriesD:
    """The merged configuration of the directory (see the module's docstring)."""
    env = os.environ if env is None else env
    directory = registries_d_dir(explicit, env)
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        if explicit:
            raise InvalidRegistriesD(f"--registries.d {directory}: no such directory") from None
        names = []
    except OSError as e:
        raise InvalidRegistriesD(
            f"registries.d {directory}: cannot be listed: {e.strerror}"
        ) from None
    default: Section | None = None
    docker: dict[str, Section] = {}
    for name in names:
        path = directory / name
        if not name.endswith(".yaml") or path.is_dir():
            continue
        try:
            doc = yaml.load(path.read_bytes(), Loader=_StrictLoader)  # a SafeLoader
        except FileNotFoundError:
            continue
        except OSError as e:
            raise InvalidRegistriesD(
                f"registries.d file {path}: cannot be read: {e.strerror}"
            ) from None
        except yaml.YAMLError as e:
            raise InvalidRegistriesD(f"registries.d file {path}: not valid YAML: {e}") from None
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise InvalidRegistriesD(f"registries.d file {path}: must be a YAML mapping")
        if doc.get("default-docker") is not None:
            if default is not None:
                raise InvalidRegistriesD(
                    f'registries.d: "default-docker" is defined both in {default.origin} and {path}'
                )
            default = _section(path, "default-docker", doc["default-docker"])
        namespaces = doc.get("docker") or {}
        if not isinstance(namespaces, dict):
            raise InvalidRegistriesD(f"registries.d file {path}: docker must be a mapping")
        for key, value in namespaces.items():
            key = str(key)
            if key in docker:
                raise InvalidRegistriesD(
                    f'registries.d: the docker namespace "{key}" is defined both in '
                    f"{docker[key].origin} and {path}"
                )
            docker[key] = _section(path, f'docker["{key}"]', value)
    return RegistriesD(directory, default, docker, _home(env), os.geteuid() == 0)
