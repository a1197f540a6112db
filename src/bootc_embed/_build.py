"""Plan, transform, assemble: the ``bootc-embed build`` pipeline."""

from __future__ import annotations

import concurrent.futures
import contextlib
import copy
import datetime
import errno
import functools
import os
import posixpath
import tempfile
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from . import _compress, _storage
from ._basescan import QUADLET_DIRS, BaseScanner, BaseView, LayerScan, Node
from ._basescan import merge as merge_views
from ._bound import Quadlet, bound_images, check_quadlet_name, parse_quadlet
from ._cache import LayerCache, default_cache_dir
from ._contract import (
    A_BASE_DIGEST,
    A_FORMAT,
    A_IMAGE,
    A_IMAGES,
    A_LAYER,
    A_LEFT_OUT_COUNT,
    A_STORE,
    A_WHITEOUT_COUNT,
    A_WHITEOUTS,
    FORMAT_VERSION,
    AnnotatedImage,
    BigData,
    ImageRecord,
    LayerKind,
    LayerRecord,
    ReuseKey,
    ReuseOrigin,
    StorePaths,
    dumps,
    images_annotation,
)
from ._digest import VerifyingReader, sha256_digest
from ._existing import ExistingStore
from ._model import LAYER_TYPES, OCI_CONFIG, OCI_MANIFEST, Descriptor, Platform
from ._progress import NullReporter, Progress, Reporter
from ._reference import ImageName, Reference, parse_image_name, parse_reference, split_image_arg
from ._reuse import Previous, Reusable, input_compression
from ._storageconf import DEFAULT_PATH as DEFAULT_CONF_PATH
from ._storageconf import add_store, default_conf
from ._tar import DIR, END_OF_ARCHIVE, REG, padding, tar_header
from ._transform import (
    WHITEOUT_FORMS,
    LayerJob,
    LayerResult,
    Observer,
    check_layer_descriptor,
    transform_layer,
)
from ._transports import (
    ImageDestination,
    ImageSource,
    ResolvedImage,
    TransportOptions,
    open_blob,
    open_destination,
    open_source,
    resolve,
)
from .errors import (
    CompressionError,
    DigestMismatchError,
    ImageFormatError,
    OutputError,
    UsageError,
)

_COPY_CHUNK = 1 << 20
_ZERO_TIME = "1970-01-01T00:00:00Z"


@dataclass(frozen=True)
class BuildOptions:
    """What ``bootc-embed build`` does; see the command's help for each field."""

    base: str
    images: Sequence[str]
    output: str
    store_path: str = _storage.DEFAULT_STORE
    whiteouts: str = "xattr"
    compression: str = "gzip"
    compression_level: int | None = None
    platform: str | None = None
    jobs: int | None = None
    tmpdir: str | None = None
    source_date_epoch: int | None = None
    previous: str | None = None
    cache: bool = True
    cache_dir: str | None = None
    cache_max_size: int = 10 << 30
    transport: TransportOptions = field(default_factory=TransportOptions)
    storage_conf: bool = True
    replace: Sequence[str] = ()
    from_bound_images: bool = False
    quadlets: Sequence[str] = ()  # local Quadlet files to install and embed the images of


@dataclass
class EmbeddedLayer:
    layer_id: str
    source_digest: str
    source_diff_id: str
    digest: str
    diff_id: str
    size: int
    emitted: bool  # False when an earlier image already brought this layer
    whiteouts: int = 0
    left_out: int = 0
    reused_from: str | None = None  # a ReuseOrigin ("previous", "cache", "base"), or None

    def to_json(self) -> dict[str, Any]:
        return {
            "layer_id": self.layer_id,
            "source_digest": self.source_digest,
            "source_diff_id": self.source_diff_id,
            "digest": self.digest,
            "diff_id": self.diff_id,
            "size": self.size,
            "shared": not self.emitted,
            "whiteouts": self.whiteouts,
            "left_out": self.left_out,
            "reused_from": self.reused_from,
        }


@dataclass
class EmbeddedImage:
    name: str
    reference: str
    manifest_digest: str
    image_id: str
    layers: list[EmbeddedLayer] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "reference": self.reference,
            "manifest_digest": self.manifest_digest,
            "image_id": self.image_id,
            "layers": [layer.to_json() for layer in self.layers],
        }


@dataclass
class BuildResult:
    output: str
    manifest_digest: str
    config_digest: str
    base_layers: int
    images: list[EmbeddedImage]
    metadata_layer: dict[str, Any]
    bytes_added: int
    whiteouts_converted: int
    entries_left_out: int
    left_out_paths: list[str]
    storage_conf: dict[str, str] | None = None  # {"path", "action"} when a layer was added
    quadlets: list[str] = field(default_factory=list)  # installed Quadlet files
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "output": self.output,
            "manifest_digest": self.manifest_digest,
            "config_digest": self.config_digest,
            "base_layers": self.base_layers,
            "images": [i.to_json() for i in self.images],
            "metadata_layer": self.metadata_layer,
            "bytes_added": self.bytes_added,
            "whiteouts_converted": self.whiteouts_converted,
            "entries_left_out": self.entries_left_out,
            "left_out_paths": self.left_out_paths,
            "storage_conf": self.storage_conf,
            "quadlets": self.quadlets,
            "warnings": self.warnings,
        }


@dataclass
class _App:
    name: ImageName
    ref: Reference
    source: ImageSource
    image: ResolvedImage
    layer_ids: list[str]


def check_store_path(path: str) -> str:
    if not path.startswith("/"):
        raise UsageError(f"--store-path {path!r} must be an absolute path")
    norm = posixpath.normpath(path)
    if norm != path.rstrip("/") or "//" in path:
        raise UsageError(f"--store-path {path!r} is not a normalised path (try {norm!r})")
    if not norm.startswith("/usr/"):
        raise UsageError(
            f"--store-path {path!r} must be under /usr: bootc hosts only update /usr (and /etc); "
            f"content under /var is applied at first install only"
        )
    return norm


def _rfc3339(epoch: int) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build(options: BuildOptions, reporter: Reporter | None = None) -> BuildResult:
    """Embed ``options.images`` into ``options.base`` and write ``options.output``.

    Nothing appears at the output reference unless the whole build succeeds.
    """
    reporter = reporter or NullReporter()
    if options.whiteouts not in WHITEOUT_FORMS:
        raise UsageError(f"--whiteouts must be one of {', '.join(WHITEOUT_FORMS)}")
    if options.compression not in _compress.LEVELS:
        raise UsageError(f"--compression must be one of {', '.join(_compress.LEVELS)}")
    try:
        level = _compress.check_level(options.compression, options.compression_level)
    except CompressionError as e:
        raise UsageError(str(e)) from None
    store = check_store_path(options.store_path)
    if not options.images:
        raise UsageError("nothing to embed: give at least one --image")
    platform = Platform.parse(options.platform) if options.platform else None
    out_ref = parse_reference(options.output)
    base_ref = parse_reference(options.base)
    specs = [split_image_arg(arg) for arg in options.images]

    sources: list[ImageSource] = []
    try:
        base_src = open_source(base_ref, options.transport)
        sources.append(base_src)
        base = resolve(base_src, platform)
        view: BaseView | None = None
        if options.from_bound_images:  # which images to embed depends on the base: read it now
            with reporter.task("reading the base image") as progress:
                progress.start("scanning", sum(d.size for d in base.manifest.layers))
                view = _scanner(options).scan(base_src, base.manifest.layers, store, progress)
        warnings: list[str] = []
        quadlets = _quadlets(options, specs, view, warnings)
        apps = []
        for name, ref in specs:
            src = open_source(ref, options.transport)
            sources.append(src)
            if name is None:
                carried = src.default_name()
                if carried is None:
                    raise UsageError(
                        f"{ref}: an OCI layout tag is not a full image name; say what podman "
                        f"should call the image with NAME={ref} (e.g. quay.io/org/app:1={ref})"
                    )
                name = parse_image_name(carried)
            want = platform or base.platform
            image = resolve(src, want)
            if image.platform.architecture and not want.matches(image.platform):
                raise ImageFormatError(
                    f"{name} ({ref}) is a {image.platform} image but the output is for {want}; "
                    f"an image of another platform cannot run on the host"
                )
            for i, desc in enumerate(image.manifest.layers):
                check_layer_descriptor(desc, f"{name}: layer {i + 1}/{len(image.manifest.layers)}")
            apps.append(_App(name, ref, src, image, _storage.layer_ids(image.diff_ids)))
        _check_names(apps)
        for w in warnings:
            reporter.warn(w)
        return _run(
            options,
            reporter,
            store,
            level,
            out_ref,
            base_src,
            base,
            apps,
            view,
            quadlets,
            warnings,
        )
    except OSError as e:
        if e.errno not in _NO_ROOM:
            raise
        temp = options.tmpdir or tempfile.gettempdir()
        cache = options.cache_dir or default_cache_dir()
        raise OutputError(
            f"{out_ref}: {os.strerror(e.errno)} while writing the output or the build's "
            f"temporary files (blobs are staged where the output goes; spool files go to "
            f"{temp}, --tmpdir moves them"
            + (f"; the layer cache is in {cache}" if options.cache else "")
            + "); nothing was written at the output"
        ) from None
    finally:
        for s in sources:
            s.close()


_NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


def _quadlets(
    options: BuildOptions,
    specs: list[tuple[ImageName | None, Reference]],
    view: BaseView | None,
    warnings: list[str],
) -> list[tuple[Quadlet, bytes]]:
    """Images the base's bound images and the given Quadlet files need: added to ``specs``
    (pulled from their registry) unless an --image already embeds them. Returns the Quadlet
    files to install."""
    wanted: list[tuple[str, str]] = []  # (image, why)
    if options.from_bound_images and view is not None:
        found = bound_images(view)
        if not found:
            warnings.append("--from-bound-images: the base declares no bound images")
        wanted += [(q.image or "", f"bound image /{link}") for link, q in found]
    files: list[tuple[Quadlet, bytes]] = []
    for file in options.quadlets:
        path = Path(file)
        check_quadlet_name(path.name)
        try:
            data = path.read_bytes()
        except OSError as e:
            raise UsageError(f"--quadlet {file}: {e.strerror}") from None
        q = parse_quadlet(path.name, data.decode("utf-8", "replace"), file)
        files.append((q, data))
        if q.image is None:
            continue
        wanted.append((q.image, f"Quadlet {path.name}"))
        if (q.pull or "").lower() != "never":
            warnings.append(
                f"Quadlet {path.name} has no Pull=never: podman may still pull {q.image} when "
                f"the unit starts"
            )
    given = {str(name) for name, _ in specs if name is not None}
    for image, why in wanted:
        try:
            name = parse_image_name(image)
        except UsageError as e:
            raise UsageError(f"{why}: {e}") from None
        if str(name) in given:
            continue
        given.add(str(name))
        specs.append((name, parse_reference(f"docker://{name}")))
    return files


def _check_names(apps: list[_App]) -> None:
    seen: dict[str, str] = {}
    for app in apps:
        key = str(app.name)
        if key in seen and seen[key] != app.image.manifest.config.digest:
            raise UsageError(f"image name {key!r} is given to two different images")
        seen[key] = app.image.manifest.config.digest


def _run(
    options: BuildOptions,
    reporter: Reporter,
    store: str,
    level: int,
    out_ref: Reference,
    base_src: ImageSource,
    base: ResolvedImage,
    apps: list[_App],
    view: BaseView | None,
    quadlets: list[tuple[Quadlet, bytes]],
    warnings: list[str],
) -> BuildResult:
    cache_root = Path(options.cache_dir) if options.cache_dir else default_cache_dir()
    # Plan: one job per distinct layer id, in --image order, bottom-up. (Layers the base's own
    # store already holds are dropped once the base has been read, below.)
    jobs: list[LayerJob] = []
    planned: set[str] = set()
    layer_created: dict[str, str] = {}
    layer_parent: dict[str, str | None] = {}
    for app in apps:
        m = app.image.manifest
        created = str(app.image.config.get("created") or _ZERO_TIME)
        for i, (desc, diff_id, lid) in enumerate(
            zip(m.layers, app.image.diff_ids, app.layer_ids, strict=True)
        ):
            if lid in planned:
                continue
            planned.add(lid)
            layer_created[lid] = created
            layer_parent[lid] = app.layer_ids[i - 1] if i else None
            jobs.append(
                LayerJob(
                    source=app.source,
                    image=str(app.name),
                    index=i + 1,
                    count=len(m.layers),
                    descriptor=desc,
                    diff_id=diff_id,
                    layer_id=lid,
                    ancestors=tuple(reversed(app.layer_ids[:i])),
                    store=store,
                    whiteouts=options.whiteouts,
                    compression=options.compression,
                    level=level,
                )
            )

    previous = (
        Previous(parse_reference(options.previous), base.platform, options.transport)
        if options.previous
        else None
    )
    cache = LayerCache(cache_root, options.cache_max_size) if options.cache else None
    dest = open_destination(out_ref, options.transport)
    results: dict[str, LayerResult] = {}
    try:
        staging = dest.staging_dir()
        cancel = threading.Event()
        ctx = _Context(dest, staging, options.tmpdir, reporter, cancel, previous, cache)
        # Each base layer is read once: checked against its digest, scanned for what the
        # build must respect (storage.conf, a store already there), linked or copied into
        # the output. Scans are cached by layer digest. This runs beside the app layers.
        # A base layer that is also an app's input layer (an app built FROM the same
        # distribution) is read once, by the app layer's transform, which scans it for the
        # base on the way; the output gets the app's copy, which that read checks.
        scanner = _scanner(options)
        scan = view is None  # else the base was scanned before the plan (bound images)
        app_digests = {job.descriptor.digest for job in jobs}
        sharing: dict[str, int] = {}
        for i, desc in enumerate(base.manifest.layers):
            if desc.digest in app_digests:
                sharing.setdefault(desc.digest, i)
        tasks: list[Callable[[], object]] = [
            functools.partial(
                _base_layer, i, base_src, desc, ctx, scanner, store, None if scan else {}
            )
            for i, desc in enumerate(base.manifest.layers)
            if sharing.get(desc.digest) != i
        ]
        for job in jobs:
            i = sharing.pop(job.descriptor.digest, -1)
            if i < 0:
                tasks.append(functools.partial(_produce, job, ctx))
            else:
                desc = base.manifest.layers[i]
                tasks.append(
                    functools.partial(
                        _shared_layer, job, i, base_src, desc, ctx, scanner, store, scan
                    )
                )
        found: dict[int, dict[str, Node]] = {}
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
        workers = min(options.jobs or cores, max(len(tasks), 1))
        if workers == 1:
            _collect((task() for task in tasks), results, found)
        else:
            with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
                futures = [pool.submit(task) for task in tasks]
                try:
                    _collect(
                        (f.result() for f in concurrent.futures.as_completed(futures)),
                        results,
                        found,
                    )
                except BaseException:
                    cancel.set()
                    for f in futures:
                        f.cancel()
                    # transfers blocked in other threads stop now, not at their stall timeout
                    _interrupt(base_src, dest, previous, *(app.source for app in apps))
                    raise
        if view is None:
            view = merge_views(found[i] for i in reversed(range(len(base.manifest.layers))))
        existing = ExistingStore.from_view(view, store, str(base_src.reference))
        replace = [str(parse_image_name(n)) for n in options.replace]
        in_base = {
            str(app.name): existing.claim(
                str(app.name), _storage.digest_hex(app.image.manifest.config.digest), replace
            )
            for app in apps
        }
        kept_jobs = []
        for job in jobs:  # a layer the base's store already holds is kept once: the base's
            if job.layer_id in existing.layer_ids:
                made = results.pop(job.layer_id, None)
                if made is not None and made.blob_path is not None:
                    made.blob_path.unlink(missing_ok=True)
            else:
                kept_jobs.append(job)
        jobs = kept_jobs
        return _assemble(
            options,
            level,
            store,
            out_ref,
            base,
            apps,
            jobs,
            results,
            ctx,
            layer_created,
            layer_parent,
            existing,
            in_base,
            view,
            quadlets,
            warnings,
        )
    except BaseException:
        for r in results.values():
            if r.blob_path is not None:
                r.blob_path.unlink(missing_ok=True)
        dest.abort()
        raise
    finally:
        if previous is not None:
            previous.close()


def _interrupt(*endpoints: ImageSource | ImageDestination | Previous | None) -> None:
    for endpoint in endpoints:
        if endpoint is not None:
            with contextlib.suppress(Exception):
                endpoint.interrupt()


def _collect(
    outcomes: Iterable[object],
    results: dict[str, LayerResult],
    found: dict[int, dict[str, Node]],
) -> None:
    for outcome in outcomes:
        for res in outcome if isinstance(outcome, tuple) else (outcome,):
            if isinstance(res, LayerResult):
                results[res.layer_id] = res
            elif isinstance(res, _BaseFound):
                found[res.index] = res.nodes


@dataclass(frozen=True)
class _BaseFound:
    index: int
    nodes: dict[str, Node]


def _scanner(options: BuildOptions) -> BaseScanner:
    root = Path(options.cache_dir) if options.cache_dir else default_cache_dir()
    return BaseScanner(root if options.cache else None)


def _shared_layer(
    job: LayerJob,
    index: int,
    source: ImageSource,
    desc: Descriptor,
    ctx: _Context,
    scanner: BaseScanner,
    store: str,
    scan: bool,
) -> tuple[LayerResult | None, _BaseFound | None]:
    """An app layer that is also base layer ``index`` (same blob digest), read once: the app
    layer's transform scans it for the base (when ``scan`` and no cached scan), and the app's
    copy of the blob, which this build checks against its digest either way (by the transform,
    or on its own when the layer is reused), is what the output gets: linked when it is a
    local file, else staged by the transform's own read. The base's own copy is not read. (If
    the app layer is reused instead of made, a needed scan reads the app's copy on its own.)"""
    if ctx.cancel.is_set():
        return None, None
    nodes = scanner.cached(desc, store) if scan else {}
    held = ctx.dest.has_blob(desc.digest) or ctx.dest.try_reuse(source, desc, stream=False)
    linked = None if held else _link_blob(job.source, desc, ctx.staging)
    copy: BinaryIO | None = None
    if not held and linked is None:  # not a local file: the transform's read stages a copy
        fd, name = tempfile.mkstemp(dir=ctx.staging, prefix="blob-")
        linked, copy = Path(name), os.fdopen(fd, "wb")
    layer_scan = LayerScan(store) if nodes is None else None
    try:
        try:
            made = _produce(job, ctx, layer_scan.observe if layer_scan is not None else None, copy)
        finally:
            if copy is not None:
                copy.close()
        if copy is not None and (made is None or not made.input_read):
            linked.unlink(missing_ok=True)  # reused, not read: the base's copy is placed
            linked = None
        if made is not None and made.input_read and layer_scan is not None:
            nodes = layer_scan.finish()
            scanner.remember(desc, store, nodes)
        if linked is None:  # placed from the base's copy (streamed, staged or linked)
            needed = None if not held else False
            return made, _base_layer(index, source, desc, ctx, scanner, store, nodes, needed)
        if made is None:
            linked.unlink(missing_ok=True)
            return None, None
        if nodes is None:  # the app layer was reused: scan (and check) the copy on its own
            nodes = scanner.scan_blob(job.source, desc, store)
        elif not made.input_read:  # the copy goes into the output: check it
            _check_blob(job.source, desc, job.what, Progress())
    except BaseException:
        if linked is not None:
            linked.unlink(missing_ok=True)
        raise
    ctx.dest.add_blob_file(linked, desc.digest)
    return made, _BaseFound(index, nodes)


def _base_layer(
    index: int,
    source: ImageSource,
    desc: Descriptor,
    ctx: _Context,
    scanner: BaseScanner,
    store: str,
    nodes: dict[str, Node] | None = None,
    needed: bool | None = None,
) -> _BaseFound | None:
    """One base layer: scanned (or its scan taken from the cache or given: ``{}`` when no scan
    is wanted) and placed in the output (``needed``: the output lacks it, when known)."""
    if ctx.cancel.is_set():
        return None
    if nodes is None:
        nodes = scanner.cached(desc, store)
    if needed is None:
        # with a scan to make, a blob that cannot be mounted is staged by the scan's read
        stream = nodes is not None
        needed = not ctx.dest.has_blob(desc.digest) and not ctx.dest.try_reuse(
            source, desc, stream=stream
        )
    if nodes is not None and not needed:
        return _BaseFound(index, nodes)
    what = f"{source.reference}: base layer {desc.digest}"
    with ctx.reporter.task(f"base layer {desc.digest[7:19]}") as progress:
        path = _link_blob(source, desc, ctx.staging) if needed else None
        try:
            if nodes is None:
                progress.start("reading", desc.size)
                if needed and path is None:  # one read: scanned and copied
                    fd, name = tempfile.mkstemp(dir=ctx.staging, prefix="blob-")
                    path = Path(name)
                    with os.fdopen(fd, "wb") as copy:
                        nodes = scanner.scan_blob(source, desc, store, progress, copy)
                else:  # the digest check covers a linked file: the same inode
                    nodes = scanner.scan_blob(source, desc, store, progress)
            elif path is not None:
                _check_blob(source, desc, what, progress)
            elif needed:
                path = _copy_verified(
                    source.open_raw(desc), desc.digest, desc.size, what, ctx.staging, progress
                )
        except BaseException:
            if path is not None:
                path.unlink(missing_ok=True)
            raise
        if path is not None:
            ctx.dest.add_blob_file(path, desc.digest)
    return _BaseFound(index, nodes)


@dataclass(frozen=True)
class _Context:
    dest: ImageDestination
    staging: Path
    tmpdir: str | None
    reporter: Reporter
    cancel: threading.Event
    previous: Previous | None
    cache: LayerCache | None


def _key(job: LayerJob) -> ReuseKey:
    return ReuseKey(job.layer_id, job.diff_id, job.store, job.whiteouts, FORMAT_VERSION)


def _produce(
    job: LayerJob,
    ctx: _Context,
    observe: Observer | None = None,
    copy_to: BinaryIO | None = None,
) -> LayerResult | None:
    """One app layer's output: reused from the previous image or the cache, else made (with
    ``observe`` seeing its input entries and ``copy_to`` receiving its input blob)."""
    if ctx.cancel.is_set():
        return None
    label = f"{job.image} layer {job.index}/{job.count}"
    key = _key(job)
    # A reused layer's input blob is not read at all (as skopeo skips a blob the destination
    # has): the reuse key comes from the digest-checked config, and the reused blob is checked
    # against its own digest wherever it is copied.
    if ctx.previous is not None and (found := ctx.previous.lookup(key)) is not None:
        return _fetch(found, job, ctx, label, ReuseOrigin.PREVIOUS)
    if ctx.cache is not None and (found := ctx.cache.get(key, job.compression, job.level)):
        try:
            return _fetch(found, job, ctx, label, ReuseOrigin.CACHE)
        except DigestMismatchError:
            ctx.cache.drop(key, job.compression, job.level)  # corrupt entry: rebuild it
    with ctx.reporter.task(label) as progress:
        made = transform_layer(job, ctx.staging, ctx.tmpdir, progress, observe, copy_to)
    if ctx.previous is not None and (same := ctx.previous.by_diff_id(made.diff_id)) is not None:
        # same content as a previous layer without our annotations: keep its blob
        reused = _fetch(same, job, ctx, label, ReuseOrigin.PREVIOUS, made)
        if made.blob_path is not None:
            made.blob_path.unlink(missing_ok=True)
        return reused
    if ctx.cache is not None and made.blob_path is not None:
        meta = {
            "media_type": made.media_type,
            "digest": made.digest,
            "size": made.size,
            "diff_id": made.diff_id,
            "uids": list(made.uids),
            "gids": list(made.gids),
            "input_diff_size": made.input_diff_size,
            "input_compression": made.input_compression,
            "input_digest": job.descriptor.digest,
            "whiteouts": made.whiteouts,
            "left_out": made.left_out,
            "left_out_paths": made.left_out_paths,
        }
        try:
            ctx.cache.put(key, job.compression, job.level, made.blob_path, meta)
        except OSError as e:
            ctx.reporter.warn(f"could not write the layer cache: {e}")
    return made


def _check_blob(source: ImageSource, desc: Descriptor, what: str, progress: Progress) -> None:
    """Read a blob only to check it against its digest and size."""
    progress.start("checking", desc.size)
    with open_blob(source, desc, what) as r:
        while chunk := r.read(_COPY_CHUNK):
            progress.advance(len(chunk))
        r.verify()


def _fetch(
    found: Reusable,
    job: LayerJob,
    ctx: _Context,
    label: str,
    origin: ReuseOrigin,
    made: LayerResult | None = None,
) -> LayerResult:
    """A finished layer from elsewhere, copied (digest verified) unless the output has it."""
    path: Path | None = None
    if not ctx.dest.has_blob(found.digest):
        with ctx.reporter.task(f"{label} (from {origin})") as progress:
            path = _copy_verified(
                found.open(),
                found.digest,
                found.size,
                f"{label}: {found.origin}",
                ctx.staging,
                progress,
            )
    if made is not None:
        facts = (made.uids, made.gids, made.input_diff_size, made.input_compression)
    else:
        compression = found.input_compression
        if compression is None or found.input_digest != job.descriptor.digest:
            compression = input_compression(job.descriptor.media_type)
        facts = (found.uids, found.gids, found.input_diff_size, compression)
    return LayerResult(
        layer_id=job.layer_id,
        digest=found.digest,
        size=found.size,
        diff_id=found.diff_id,
        media_type=found.media_type,
        blob_path=path,
        input_diff_size=facts[2],
        input_compression=facts[3],
        uids=facts[0],
        gids=facts[1],
        whiteouts=made.whiteouts if made else found.whiteouts,
        left_out=made.left_out if made else found.left_out,
        left_out_paths=made.left_out_paths if made else list(found.left_out_paths),
        reused_from=origin,
        input_read=made is not None,
    )


def _copy_verified(
    raw: BinaryIO, digest: str, size: int, what: str, staging: Path, progress: Progress
) -> Path:
    fd, name = tempfile.mkstemp(dir=staging, prefix="blob-")
    path = Path(name)
    try:
        progress.start("copying", size)
        with os.fdopen(fd, "wb") as out, VerifyingReader(raw, digest, size, what) as r:
            while chunk := r.read(_COPY_CHUNK):
                out.write(chunk)
                progress.advance(len(chunk))
            r.verify()
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def _link_blob(source: ImageSource, desc: Descriptor, staging: Path) -> Path | None:
    """A base blob that is a whole local file on the output's filesystem, hard-linked into the
    staging area instead of copied (None when that is not possible)."""
    where = source.blob_path(desc)
    if where is None or where[1] != 0:
        return None
    target = staging / f"link-{desc.digest[7:]}"
    try:
        os.link(where[0], target)
    except OSError:
        return None
    return target


def _metadata_tar(
    store: str,
    images_json: bytes,
    ours: list[ImageRecord],
    layers_json: bytes,
) -> bytes:
    paths = StorePaths.of(store)
    out: list[bytes] = []

    def d(path: str) -> None:
        out.append(tar_header(path + "/", DIR, mode=0o755))

    def f(path: str, data: bytes) -> None:
        out.append(tar_header(path, REG, mode=0o644, size=len(data)))
        out.append(data)
        out.append(padding(len(data)))

    for p in paths.ancestors():
        d(p)
    d(paths.overlay_images)
    f(paths.images_json, images_json)
    f(paths.images_lock, b"")
    for img in ours:
        d(paths.image_dir(img.id))
        for bd in sorted(img.big_data, key=lambda b: b.filename):
            f(paths.big_data(img.id, bd.key), bd.content)
    d(paths.overlay_layers)
    f(paths.layers_json, layers_json)
    f(paths.layers_lock, b"")
    out.append(END_OF_ARCHIVE)
    return b"".join(out)


@dataclass(frozen=True)
class _Small:
    media_type: str
    digest: str
    size: int
    diff_id: str


def _small_layer(
    tar: bytes, options: BuildOptions, level: int, ctx: _Context, label: str
) -> _Small:
    """A layer bootc-embed writes whole (metadata, configuration): the previous image's blob
    when its content is unchanged, whatever the compression now, else compressed here."""
    diff_id = sha256_digest(tar)
    found = ctx.previous.by_diff_id(diff_id) if ctx.previous is not None else None
    if found is not None:
        if not ctx.dest.has_blob(found.digest):
            with ctx.reporter.task(f"{label} (from previous)") as progress:
                path = _copy_verified(
                    found.open(),
                    found.digest,
                    found.size,
                    f"previous {label}",
                    ctx.staging,
                    progress,
                )
            ctx.dest.add_blob_file(path, found.digest)
        return _Small(found.media_type, found.digest, found.size, diff_id)
    blob = _compress.compress_bytes(options.compression, level, tar)
    return _Small(
        _compress.MEDIA_TYPES[options.compression],
        ctx.dest.add_blob_bytes(blob),
        len(blob),
        diff_id,
    )


def _config_layer(
    view: BaseView,
    store: str,
    options: BuildOptions,
    level: int,
    ctx: _Context,
    quadlets: list[tuple[Quadlet, bytes]],
) -> tuple[_Small, str, str, str] | None:
    """The configuration layer, when one is needed: storage.conf listing the store (every other
    setting kept as the base has it) and the Quadlet files to install. Returns (layer,
    storage.conf path or "", "appended" or "created", what it does)."""
    files: list[tuple[str, bytes, Node | None]] = []
    conf_path, action = "", ""
    if options.storage_conf:
        found = view.storage_conf()
        if found is None:
            conf_path, action = DEFAULT_CONF_PATH, "created"
            files.append((conf_path, default_conf(store), None))
        else:
            path, old, node = found
            new = add_store(old, store, "/" + path)
            if new is not None:
                conf_path, action = path, "appended"
                files.append((path, new, node))
    for q, data in quadlets:
        files.append((f"{QUADLET_DIRS[1]}/{q.name}", data, None))
    if not files:
        return None
    out: list[bytes] = []
    written: set[str] = set()
    for path, data, node in sorted(files, key=lambda f: f[0]):
        parts = path.split("/")
        for i in range(1, len(parts)):
            d = "/".join(parts[:i])
            if d in written:
                continue
            written.add(d)
            n = view.get(d)  # the base's directory metadata, so the merged view keeps it
            is_dir = n is not None and n.kind == "dir"
            out.append(
                tar_header(
                    d + "/",
                    DIR,
                    mode=n.mode if n is not None and is_dir else 0o755,
                    uid=n.uid if n is not None and is_dir else 0,
                    gid=n.gid if n is not None and is_dir else 0,
                )
            )
        out.append(
            tar_header(
                path,
                REG,
                mode=node.mode if node is not None else 0o644,
                uid=node.uid if node is not None else 0,
                gid=node.gid if node is not None else 0,
                size=len(data),
            )
        )
        out += [data, padding(len(data))]
    out.append(END_OF_ARCHIVE)
    what = []
    if conf_path:
        what.append(f"add {store} to /{conf_path}")
    if quadlets:
        what.append("install " + ", ".join(q.name for q, _ in quadlets))
    layer = _small_layer(b"".join(out), options, level, ctx, "configuration layer")
    return layer, conf_path, action, "; ".join(what)


def _assemble(
    options: BuildOptions,
    level: int,
    store: str,
    out_ref: Reference,
    base: ResolvedImage,
    apps: list[_App],
    jobs: list[LayerJob],
    results: dict[str, LayerResult],
    ctx: _Context,
    layer_created: dict[str, str],
    layer_parent: dict[str, str | None],
    existing: ExistingStore,
    in_base: dict[str, bool],
    view: BaseView,
    quadlets: list[tuple[Quadlet, bytes]],
    warnings: list[str],
) -> BuildResult:
    # containers-storage records
    layer_records = []
    for job in jobs:
        r = results[job.layer_id]
        layer_records.append(
            LayerRecord(
                id=job.layer_id,
                parent=layer_parent[job.layer_id],
                created=layer_created[job.layer_id],
                compressed_digest=job.descriptor.digest,
                compressed_size=job.descriptor.size,
                diff_digest=job.diff_id,
                diff_size=r.input_diff_size,
                compression=r.input_compression,
                uids=r.uids,
                gids=r.gids,
            )
        )
    image_records: list[ImageRecord] = []
    by_id: dict[str, int] = {}
    for app in apps:
        if in_base[str(app.name)]:
            continue  # the base's store holds this image already: its record now has the name
        img = app.image
        image_id = _storage.digest_hex(img.manifest.config.digest)
        big = [
            BigData(img.manifest.config.digest, img.config_raw),
            BigData(_storage.manifest_key(img.manifest.digest), img.manifest.raw),
            BigData("manifest", img.manifest.raw),
        ]
        if img.index_digest and img.index_raw is not None:
            big.append(BigData(_storage.manifest_key(img.index_digest), img.index_raw))
        if image_id in by_id:  # the same image under another name
            prev = image_records[by_id[image_id]]
            keys = {b.key for b in prev.big_data}
            extra = tuple(b for b in big if b.key not in keys)
            image_records[by_id[image_id]] = ImageRecord(
                prev.id,
                prev.digest,
                (*prev.names, str(app.name)),
                prev.top_layer,
                prev.created,
                prev.big_data + extra,
            )
            continue
        by_id[image_id] = len(image_records)
        image_records.append(
            ImageRecord(
                id=image_id,
                digest=img.manifest.digest,
                names=(str(app.name),),
                top_layer=app.layer_ids[-1] if app.layer_ids else None,
                created=str(img.config.get("created") or _ZERO_TIME),
                big_data=tuple(big),
            )
        )
    images_json = dumps([*existing.images, *(r.to_json() for r in image_records)])
    layers_json = dumps([*existing.layers, *(r.to_json() for r in layer_records)])
    meta_tar = _metadata_tar(store, images_json, image_records, layers_json)
    dest = ctx.dest
    meta = _small_layer(meta_tar, options, level, ctx, "metadata layer")
    conf = _config_layer(view, store, options, level, ctx, quadlets)
    # config: the base's, with our layers and history appended
    config = copy.deepcopy(base.config)
    epoch = options.source_date_epoch
    if epoch is None and os.environ.get("SOURCE_DATE_EPOCH", "").strip():
        try:
            epoch = int(os.environ["SOURCE_DATE_EPOCH"])
        except ValueError:
            raise UsageError("SOURCE_DATE_EPOCH must be an integer (seconds)") from None
    created = _rfc3339(epoch) if epoch is not None else config.get("created")
    if epoch is not None:
        config["created"] = created
    rootfs = config.setdefault("rootfs", {"type": "layers", "diff_ids": []})
    rootfs["diff_ids"] = list(rootfs.get("diff_ids") or [])
    history = list(config.get("history") or [])
    common = {
        A_STORE: store,
        A_WHITEOUTS: options.whiteouts,
        A_FORMAT: FORMAT_VERSION,
    }
    new_layers: list[Descriptor] = []
    for job in jobs:
        r = results[job.layer_id]
        rootfs["diff_ids"].append(r.diff_id)
        entry: dict[str, Any] = {}
        if created:
            entry["created"] = created
        entry["created_by"] = (
            f"bootc-embed: {job.image} layer {job.index}/{job.count} ({job.diff_id})"
        )
        entry["comment"] = f"containers-storage layer {job.layer_id}"
        history.append(entry)
        new_layers.append(
            Descriptor(
                r.media_type,
                r.digest,
                r.size,
                {
                    **_key(job).annotations(),
                    A_IMAGE: job.image,
                    A_WHITEOUT_COUNT: str(r.whiteouts),
                    A_LEFT_OUT_COUNT: str(r.left_out),
                },
            )
        )
    small = [(meta, LayerKind.METADATA, f"containers-storage metadata ({len(apps)} images)")]
    if conf is not None:
        small.append((conf[0], LayerKind.CONFIG, conf[3]))
    for layer, kind, what in small:
        rootfs["diff_ids"].append(layer.diff_id)
        entry = {"created": created} if created else {}
        entry["created_by"] = f"bootc-embed: {what}"
        history.append(entry)
        new_layers.append(
            Descriptor(layer.media_type, layer.digest, layer.size, {A_LAYER: kind, **common})
        )
    config["history"] = history
    config_raw = dumps(config)
    config_digest = dest.add_blob_bytes(config_raw)

    base_layers = [
        Descriptor(LAYER_TYPES.get(d.media_type, d.media_type), d.digest, d.size, d.annotations)
        for d in base.manifest.layers
    ]
    embedded_names = [AnnotatedImage(str(app.name), app.image.manifest.digest) for app in apps]
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config_raw)},
        "layers": [d.to_json() for d in (*base_layers, *new_layers)],
        "annotations": {
            A_FORMAT: FORMAT_VERSION,
            A_IMAGES: images_annotation(embedded_names),
            A_STORE: store,
            A_BASE_DIGEST: base.manifest.digest,
        },
    }
    manifest_raw = dumps(manifest)
    for job in jobs:
        r = results[job.layer_id]
        if r.blob_path is not None:
            dest.add_blob_file(r.blob_path, r.digest)
    dest.commit(manifest_raw, OCI_MANIFEST)

    embedded: list[EmbeddedImage] = []
    emitted: set[str] = set()
    for app in apps:
        e = EmbeddedImage(
            str(app.name),
            str(app.ref),
            app.image.manifest.digest,
            _storage.digest_hex(app.image.manifest.config.digest),
        )
        for desc, diff_id, lid in zip(
            app.image.manifest.layers, app.image.diff_ids, app.layer_ids, strict=True
        ):
            r = results.get(lid)
            if r is None:  # the base's store holds this layer already
                e.layers.append(
                    EmbeddedLayer(
                        lid, desc.digest, diff_id, "", "", 0, False, reused_from=ReuseOrigin.BASE
                    )
                )
                continue
            e.layers.append(
                EmbeddedLayer(
                    lid,
                    desc.digest,
                    diff_id,
                    r.digest,
                    r.diff_id,
                    r.size,
                    lid not in emitted,
                    r.whiteouts,
                    r.left_out,
                    r.reused_from,
                )
            )
            emitted.add(lid)
        embedded.append(e)
    all_results = [results[j.layer_id] for j in jobs]
    return BuildResult(
        output=str(out_ref),
        manifest_digest=sha256_digest(manifest_raw),
        config_digest=config_digest,
        base_layers=len(base_layers),
        images=embedded,
        metadata_layer={"digest": meta.digest, "diff_id": meta.diff_id, "size": meta.size},
        bytes_added=sum(r.size for r in all_results) + sum(layer.size for layer, _, _ in small),
        whiteouts_converted=sum(r.whiteouts for r in all_results),
        entries_left_out=sum(r.left_out for r in all_results),
        left_out_paths=[p for r in all_results for p in r.left_out_paths],
        storage_conf=(
            None if conf is None or not conf[1] else {"path": "/" + conf[1], "action": conf[2]}
        ),
        quadlets=[q.name for q, _ in quadlets],
        warnings=warnings,
    )
