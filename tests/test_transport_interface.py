"""Every transport implements the whole interface of :mod:`bootc_embed._transports._base`.

The interface is a structural Protocol: nothing inherits from it, so a method a transport
lacks (``interrupt`` once was one) shows only when the build calls it. Type checkers see the
same thing through ``open_source``/``open_destination``; this test checks it at run time, with
the parameter names and defaults callers rely on.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from bootc_embed._transports import ImageDestination, ImageSource
from bootc_embed._transports._docker_archive import DockerArchiveSource
from bootc_embed._transports._storage_skopeo import StorageDestination, StorageSource
from bootc_embed._transports.oci import (
    OCIArchiveDestination,
    OCIArchiveSource,
    OCILayoutDestination,
    OCILayoutSource,
)
from bootc_embed._transports.registry import RegistryDestination, RegistrySource

SOURCES = [OCILayoutSource, OCIArchiveSource, DockerArchiveSource, StorageSource, RegistrySource]
DESTINATIONS = [
    OCILayoutDestination,
    OCIArchiveDestination,
    StorageDestination,
    RegistryDestination,
]


def _methods(protocol: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(value)
        for name, value in vars(protocol).items()
        if inspect.isfunction(value) and not name.startswith("_")
    }


def _shape(sig: inspect.Signature) -> list[tuple[str, Any, Any]]:
    """Names, kinds and defaults: what a caller depends on (annotations may be wider)."""
    return [(p.name, p.kind, p.default) for p in sig.parameters.values()]


def test_the_interface_lists_what_the_build_calls() -> None:
    assert set(_methods(ImageSource)) == {
        "default_name",
        "top_descriptor",
        "open_raw",
        "blob_path",
        "interrupt",
        "close",
    }
    assert set(_methods(ImageDestination)) == {
        "has_blob",
        "staging_dir",
        "add_blob_file",
        "add_blob_bytes",
        "try_reuse",
        "commit",
        "interrupt",
        "abort",
    }
    assert "reference" in ImageSource.__annotations__
    assert "reference" in ImageDestination.__annotations__


@pytest.mark.parametrize(
    ("cls", "protocol"),
    [(c, ImageSource) for c in SOURCES] + [(c, ImageDestination) for c in DESTINATIONS],
    ids=lambda v: v.__name__,
)
def test_each_transport_implements_every_method(cls: type, protocol: type) -> None:
    for name, want in _methods(protocol).items():
        method = getattr(cls, name, None)
        assert callable(method), f"{cls.__name__} has no {name}()"
        assert _shape(inspect.signature(method)) == _shape(want), f"{cls.__name__}.{name}"


def test_interrupting_a_local_transport_does_nothing(tmp_path: Any) -> None:
    """Local transports have nothing to stop: interrupt() is a no-op, the image still commits
    and reads back afterwards."""
    from bootc_embed._reference import parse_reference
    from bootc_embed._transports import open_destination, open_source, read_blob

    ref = parse_reference(f"oci:{tmp_path / 'layout'}:t")
    dest = open_destination(ref)
    dest.interrupt()
    config = dest.add_blob_bytes(b"{}")
    manifest = (
        b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",'
        b'"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"'
        + config.encode()
        + b'","size":2},"layers":[]}'
    )
    dest.commit(manifest, "application/vnd.oci.image.manifest.v1+json")
    src = open_source(ref)
    src.interrupt()
    try:
        top = src.top_descriptor()
        assert read_blob(src, top, "manifest") == manifest
    finally:
        src.close()
