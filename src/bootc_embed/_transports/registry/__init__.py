"""``docker://``: the registry transport (see :mod:`._client`)."""

from ._client import (
    Challenge,
    RegistryClient,
    RegistryDestination,
    RegistrySource,
    cert_dirs,
    is_local,
    parse_challenges,
)

__all__ = [
    "Challenge",
    "RegistryClient",
    "RegistryDestination",
    "RegistrySource",
    "cert_dirs",
    "is_local",
    "parse_challenges",
]
