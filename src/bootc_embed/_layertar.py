"""A layer blob as a tar stream: the one way every reader of layers opens one.

The blob is read once, through its digest and size check (:func:`~._transports.open_blob`,
optionally teed to ``copy_to``); its first bytes name the compression (gzip, zstd or none, as
containers/image sniffs it), the rest is decompressed into a :class:`~._tar.TarReader`
(optionally hashing the tar stream for its diff_id). The blob's digest is checked at the end:
:func:`open_layer_tar` does it when its block ends normally; a caller that manages a
:class:`LayerTar` itself calls :meth:`LayerTar.verify`.

Errors are left to the caller to word: a corrupt tar stream raises
:class:`~._tar.TarFormatError`, corrupt compressed data :class:`~.errors.CompressionError`,
and a blob that does not match its descriptor :class:`~.errors.DigestMismatchError`.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator
from typing import BinaryIO

from . import _compress
from ._digest import Prefixed, Readable, Reader
from ._model import Descriptor
from ._tar import TarEntry, TarReader
from ._transports import ImageSource, open_blob


class _Counting(Reader):
    """``raw``'s bytes, with their count reported as they are read (progress)."""

    def __init__(self, raw: Readable, advance: Callable[[int], None]) -> None:
        self._raw = raw
        self._advance = advance

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        if data:
            self._advance(len(data))
        return data


class LayerTar:
    """One layer blob opened as a tar stream (see the module documentation).

    ``advance`` is called with the number of compressed bytes read (progress); ``diff_hash``
    makes :attr:`diff_digest` available once the tar stream has been read to its end;
    ``crc`` and ``capture`` are passed to the :class:`~._tar.TarReader` (tar-split).
    """

    def __init__(
        self,
        source: ImageSource,
        desc: Descriptor,
        what: str,
        *,
        copy_to: BinaryIO | None = None,
        advance: Callable[[int], None] | None = None,
        diff_hash: bool = False,
        crc: Callable[..., int] | None = None,
        capture: bool = False,
    ) -> None:
        self.what = what
        self.descriptor = desc
        self.blob = open_blob(source, desc, what, copy_to)
        try:
            counted: Readable = self.blob if advance is None else _Counting(self.blob, advance)
            head = counted.read(4)
            self.compression: _compress.Kind = _compress.detect(head)
            stream = _compress.open_decompressed(Prefixed(head, counted), self.compression)
        except BaseException:
            self.blob.close()
            raise
        self._diff = hashlib.sha256() if diff_hash else None
        self.reader = TarReader(
            stream, self._diff.update if self._diff is not None else None, crc=crc, capture=capture
        )

    def __iter__(self) -> Iterator[TarEntry]:
        return iter(self.reader)

    @property
    def diff_digest(self) -> str:
        """The sha256 digest of the whole tar stream (the layer's diff_id), once it was read
        to its end."""
        if self._diff is None:
            raise ValueError(f"{self.what}: opened without diff_hash")
        return "sha256:" + self._diff.hexdigest()

    def verify(self) -> None:
        """Read what is left of the blob and check it against its digest and size."""
        self.blob.verify()

    def close(self) -> None:
        self.blob.close()

    def __enter__(self) -> LayerTar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def open_layer_tar(
    source: ImageSource,
    desc: Descriptor,
    what: str,
    *,
    copy_to: BinaryIO | None = None,
    advance: Callable[[int], None] | None = None,
    diff_hash: bool = False,
) -> Iterator[LayerTar]:
    """The layer ``desc`` of ``source`` as a :class:`LayerTar`; when the block ends normally
    (whether or not every entry was read), the rest of the blob is read and its digest and
    size checked."""
    layer = LayerTar(source, desc, what, copy_to=copy_to, advance=advance, diff_hash=diff_hash)
    with layer:
        yield layer
        layer.verify()
