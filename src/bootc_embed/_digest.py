"""Digests: verifying readers and hashing writers. Bytes are checked where they enter, once."""

from __future__ import annotations

import hashlib
from typing import BinaryIO, Protocol

from .errors import DigestMismatchError


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def check_algorithm(digest: str, what: str) -> None:
    algo, _, hexpart = digest.partition(":")
    if algo != "sha256" or len(hexpart) != 64 or any(c not in "0123456789abcdef" for c in hexpart):
        raise DigestMismatchError(f"{what}: unsupported or malformed digest {digest!r}")


class Readable(Protocol):
    """What the stream readers (decompression, tar) need of their input: ``read``. Files,
    :class:`Reader` and its subclasses all have it."""

    def read(self, n: int = -1, /) -> bytes: ...


class Reader:
    """A minimal readable binary stream: subclasses define ``read``."""

    def read(self, n: int = -1) -> bytes:
        raise NotImplementedError

    def readinto(self, buf: bytearray | memoryview) -> int:
        data = self.read(len(buf))
        buf[: len(data)] = data
        return len(data)

    def readable(self) -> bool:
        return True


class Tee(Reader):
    """``raw``'s bytes, also written to ``copy_to`` as they are read."""

    def __init__(self, raw: BinaryIO, copy_to: BinaryIO) -> None:
        self._raw = raw
        self._copy_to = copy_to

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        self._copy_to.write(data)
        return data

    def close(self) -> None:
        self._raw.close()


class Prefixed(Reader):
    """``head`` followed by the rest of ``raw`` (after sniffing a stream's first bytes)."""

    def __init__(self, head: bytes, raw: Readable) -> None:
        self._head = head
        self._raw = raw

    def read(self, n: int = -1) -> bytes:
        if self._head:
            if n is None or n < 0:
                data, self._head = self._head + self._raw.read(), b""
                return data
            data, self._head = self._head[:n], self._head[n:]
            return data
        return self._raw.read(n)


class VerifyingReader(Reader):
    """Reads ``raw`` and checks, at the end, that it had ``size`` bytes hashing to ``digest``.

    Call :meth:`verify` after the last read (it drains what is left): a mismatch raises
    :class:`DigestMismatchError` naming ``what``.
    """

    def __init__(self, raw: BinaryIO, digest: str, size: int, what: str) -> None:
        check_algorithm(digest, what)
        self._raw = raw
        self._digest = digest
        self._size = size
        self._what = what
        self._hash = hashlib.sha256()
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = max(self._size - self.count, 0) + 1
        data = self._raw.read(n)
        if data:
            self._hash.update(data)
            self.count += len(data)
            if self.count > self._size:
                raise DigestMismatchError(
                    f"{self._what}: blob {self._digest} is larger than its descriptor says "
                    f"({self._size} bytes)"
                )
        return data

    def verify(self) -> None:
        while self.read(1 << 20):
            pass
        if self.count != self._size:
            raise DigestMismatchError(
                f"{self._what}: blob {self._digest} is truncated: {self.count} of "
                f"{self._size} bytes"
            )
        actual = "sha256:" + self._hash.hexdigest()
        if actual != self._digest:
            raise DigestMismatchError(
                f"{self._what}: blob content does not match its digest: expected "
                f"{self._digest}, got {actual}"
            )

    def close(self) -> None:
        self._raw.close()

    def __enter__(self) -> VerifyingReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
