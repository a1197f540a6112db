"""Errors raised by bootc-embed.

Every error is a :class:`BootcEmbedError`; its message is written for the user and names the
image, layer or entry at fault. The command line prints the message and exits with status 1.
"""

from __future__ import annotations


class BootcEmbedError(Exception):
    """Base class of every error bootc-embed raises on purpose."""


class UsageError(BootcEmbedError):
    """Bad arguments: a reference, name or option that cannot be used (exit status 2)."""


class ImageReferenceError(BootcEmbedError):
    """An image reference that cannot be resolved (missing layout, tag, file)."""


class ImageFormatError(BootcEmbedError):
    """A manifest, index, config or layer that is malformed or of an unsupported kind."""


class DigestMismatchError(BootcEmbedError):
    """Bytes that do not match the digest (or size) that describes them."""


class LayerContentError(BootcEmbedError):
    """A layer entry that cannot be embedded (path escape, non-UTF-8 name, bad hardlink...)."""


class CompressionError(BootcEmbedError):
    """Corrupt or truncated compressed data, or an unsupported compression setting."""


class OutputError(BootcEmbedError):
    """The output, or the temporary files of the build, cannot be written (no space left,
    over quota, a read-only filesystem)."""


class PolicyError(BootcEmbedError):
    """An image that the signature policy (containers-policy.json) does not accept, or a policy
    that cannot be used."""


__all__ = [
    "BootcEmbedError",
    "CompressionError",
    "DigestMismatchError",
    "ImageFormatError",
    "ImageReferenceError",
    "LayerContentError",
    "OutputError",
    "PolicyError",
    "UsageError",
]
