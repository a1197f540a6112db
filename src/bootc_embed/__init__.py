"""bootc-embed: physically bind application container images into a bootc image.

>>> from bootc_embed import BuildOptions, build
>>> result = build(BuildOptions(
...     base="oci:/src/os:latest",
...     images=["quay.io/org/app:1=oci:/src/app:1"],
...     output="oci:/out/os:latest",
... ))  # doctest: +SKIP
>>> result.manifest_digest  # doctest: +SKIP
"""

from __future__ import annotations

from ._build import (
    BuildOptions,
    BuildResult,
    EmbeddedImage,
    EmbeddedLayer,
    build,
)
from ._storage import DEFAULT_STORE
from ._version import __version__
from .errors import (
    BootcEmbedError,
    CompressionError,
    DigestMismatchError,
    ImageFormatError,
    ImageReferenceError,
    LayerContentError,
    OutputError,
    UsageError,
)

__all__ = [
    "DEFAULT_STORE",
    "BootcEmbedError",
    "BuildOptions",
    "BuildResult",
    "CompressionError",
    "DigestMismatchError",
    "EmbeddedImage",
    "EmbeddedLayer",
    "ImageFormatError",
    "ImageReferenceError",
    "LayerContentError",
    "OutputError",
    "UsageError",
    "__version__",
    "build",
]
