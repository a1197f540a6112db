"""The ``bootc-embed`` command: parses, shows progress, calls the library."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from . import _compress
from ._build import BuildOptions, BuildResult, build
from ._cache import parse_size
from ._storage import DEFAULT_STORE
from ._transports import TransportOptions
from ._version import __version__
from .errors import BootcEmbedError, UsageError

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_OVER_BUDGET = 3


def _levels() -> str:
    return "; ".join(
        f"{a}: {r.start}-{r.stop - 1} (default {_compress.DEFAULT_LEVEL[a]})"
        for a, r in _compress.LEVELS.items()
    )


def _run(fn: Callable[[], int | None]) -> None:
    """Errors become one clear line on stderr and an exit status, never a traceback."""
    try:
        code = fn() or 0
    except UsageError as e:
        click.echo(f"bootc-embed: error: {e}", err=True)
        sys.exit(EXIT_USAGE)
    except BootcEmbedError as e:
        click.echo(f"bootc-embed: error: {e}", err=True)
        sys.exit(EXIT_FAILURE)
    except KeyboardInterrupt:
        click.echo("bootc-embed: interrupted; nothing was written", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except OSError as e:
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        click.echo(f"bootc-embed: error: {e.strerror or e}{where}", err=True)
        sys.exit(EXIT_FAILURE)
    sys.exit(code)


def _transport_flags(fn: Callable[..., Any]) -> Callable[..., Any]:
    """skopeo's --authfile, --creds, --tls-verify, --cert-dir and --registries-conf, passed to
    the command as one ``transport`` argument (a :class:`TransportOptions`)."""

    @click.option(
        "--authfile",
        default=None,
        metavar="PATH",
        help="Registry credentials file (default: $REGISTRY_AUTH_FILE, then podman's and "
        "docker's auth files).",
    )
    @click.option("--creds", default=None, metavar="USER:PASSWORD", help="Registry credentials.")
    @click.option(
        "--tls-verify",
        type=click.BOOL,
        default=None,
        is_flag=False,
        flag_value=True,
        metavar="BOOL",
        help="Verify registry TLS certificates (default true; false also allows plain HTTP).",
    )
    @click.option(
        "--cert-dir",
        default=None,
        metavar="DIR",
        help="CA certificates (*.crt) and client certificates (*.cert + *.key) for registries.",
    )
    @click.option(
        "--registries-conf",
        default=None,
        metavar="FILE",
        help="containers-registries.conf(5) file for mirrors, insecure and blocked registries "
        "(default: $CONTAINERS_REGISTRIES_CONF, else podman's; drop-ins from "
        "registries.conf.d beside it).",
    )
    @functools.wraps(fn)
    def wrapper(
        *args: Any,
        authfile: str | None,
        creds: str | None,
        tls_verify: bool | None,
        cert_dir: str | None,
        registries_conf: str | None,
        **kwargs: Any,
    ) -> Any:
        transport = TransportOptions(
            authfile=authfile,
            creds=creds,
            tls_verify=tls_verify,
            cert_dir=cert_dir,
            registries_conf=registries_conf,
        )
        return fn(*args, transport=transport, **kwargs)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="bootc-embed")
def main() -> None:
    """Physically bind application container images into a bootc image."""


@main.command("build")
@_transport_flags
@click.option("--base", required=True, metavar="REF", help="The bootc base image.")
@click.option(
    "--image",
    "images",
    multiple=True,
    required=True,
    metavar="[NAME=]REF",
    help="An app image to embed, and the fully qualified name podman will show for it. Repeatable.",
)
@click.option("--output", required=True, metavar="REF", help="Where to write the result.")
@click.option(
    "--store-path",
    default=DEFAULT_STORE,
    show_default=True,
    help="The additional image store's path on the host (must be under /usr).",
)
@click.option(
    "--whiteouts",
    type=click.Choice(["xattr", "chardev", "ostree"]),
    default="xattr",
    show_default=True,
    help="How deletions inside app layers are written (see docs/cli.md).",
)
@click.option(
    "--compression", type=click.Choice(["gzip", "zstd"]), default="gzip", show_default=True
)
@click.option(
    "--compression-level",
    type=int,
    default=None,
    help="Compression level. Allowed: " + _levels() + ".",
)
@click.option(
    "--platform",
    default=None,
    metavar="OS/ARCH[/VARIANT]",
    help="Platform to take from multi-platform images (default: the base's, else the host's).",
)
@click.option("--jobs", type=click.IntRange(1, 64), default=None, help="Layers worked on at once.")
@click.option("--tmpdir", default=None, help="Directory for temporary spool files.")
@click.option(
    "--previous",
    default=None,
    metavar="REF",
    help="A previous output: layers with the same content keep its blobs (and digests).",
)
@click.option(
    "--cache-dir",
    default=None,
    help="Layer cache directory (default: $XDG_CACHE_HOME/bootc-embed).",
)
@click.option("--no-cache", is_flag=True, help="Neither use nor fill the layer cache.")
@click.option(
    "--no-storage-conf",
    is_flag=True,
    help="Leave the base's storage.conf alone (by default the store is added to it).",
)
@click.option(
    "--from-bound-images",
    is_flag=True,
    help="Also embed every image the base declares as a bootc logically bound image.",
)
@click.option(
    "--quadlet",
    "quadlets",
    multiple=True,
    metavar="FILE",
    type=click.Path(dir_okay=False),
    help="Install a Quadlet file in /usr/share/containers/systemd and embed its Image=.",
)
@click.option(
    "--replace",
    "replace",
    multiple=True,
    metavar="NAME",
    help="Let NAME, already embedded in the base, name the new image instead. Repeatable.",
)
@click.option(
    "--cache-max-size",
    default="10G",
    show_default=True,
    help="Cache size bound; least recently used entries go first.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
def build_cmd(
    base: str,
    images: tuple[str, ...],
    output: str,
    store_path: str,
    whiteouts: str,
    compression: str,
    compression_level: int | None,
    platform: str | None,
    jobs: int | None,
    tmpdir: str | None,
    previous: str | None,
    cache_dir: str | None,
    no_cache: bool,
    cache_max_size: str,
    no_storage_conf: bool,
    from_bound_images: bool,
    quadlets: tuple[str, ...],
    replace: tuple[str, ...],
    as_json: bool,
    transport: TransportOptions,
) -> None:
    """Embed app images into a bootc base image.

    REF is oci:DIR[:TAG], oci-archive:FILE[:TAG], docker://HOST/REPO[:TAG|@DIGEST],
    containers-storage:NAME or (input only) docker-archive:FILE[:NAME]. Each app layer becomes
    one output layer holding its files under STORE/overlay/<layer-id>/diff/; a final layer holds
    the store's metadata. Base layers pass through untouched.
    """
    options = BuildOptions(
        base=base,
        images=images,
        output=output,
        store_path=store_path,
        whiteouts=whiteouts,
        compression=compression,
        compression_level=compression_level,
        platform=platform,
        jobs=jobs,
        tmpdir=tmpdir,
        previous=previous,
        cache=not no_cache,
        cache_dir=cache_dir,
        cache_max_size=_size(cache_max_size),
        transport=transport,
        storage_conf=not no_storage_conf,
        replace=replace,
        from_bound_images=from_bound_images,
        quadlets=quadlets,
    )

    def go() -> int:
        result = _build_with_progress(options)
        if as_json:
            click.echo(json.dumps(result.to_json(), indent=2))
        elif sys.stderr.isatty():  # quiet in pipes: the exit status says it worked
            _print_summary(result)
        return 0

    _run(go)


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--cache-max-size") from None


def _build_with_progress(options: BuildOptions) -> BuildResult:
    if sys.stderr.isatty():
        from ._progress import RichReporter

        with RichReporter() as reporter:
            return build(options, reporter)
    return build(options)


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _print_summary(result: BuildResult) -> None:
    """Human summary on stderr (stdout stays clean for --json users and pipes)."""
    out: list[str] = []
    for img in result.images:
        new = [layer for layer in img.layers if layer.emitted]
        reused = [layer for layer in new if layer.reused_from]
        out.append(
            f"embedded {img.name} ({img.manifest_digest[:19]}): {len(img.layers)} layers, "
            f"{len(new)} new, {_human(sum(layer.size for layer in new))}"
            + (f", {len(reused)} reused without work" if reused else "")
        )
    out.append(
        f"wrote {result.output} ({result.manifest_digest}): {result.base_layers} base layers + "
        f"{sum(len([x for x in i.layers if x.emitted]) for i in result.images)} app layers + "
        f"1 metadata layer, {_human(result.bytes_added)} added"
    )
    if result.storage_conf:
        conf = result.storage_conf
        out.append(
            f"storage.conf: {conf['path']} {conf['action']} in a layer of its own, "
            f"listing the store as an additional image store"
        )
    if result.whiteouts_converted:
        out.append(f"whiteouts converted: {result.whiteouts_converted}")
    if result.entries_left_out:
        shown = ", ".join(result.left_out_paths[:5])
        more = " ..." if len(result.left_out_paths) > 5 else ""
        out.append(
            f"device nodes/fifos left out of the store: {result.entries_left_out} "
            f"({shown}{more}); exports stay exact through tar-split"
        )
    for line in out:
        click.echo(line, err=True)


@main.command("diff")
@_transport_flags
@click.argument("old", metavar="OLD")
@click.argument("new", metavar="NEW")
@click.option("--platform", default=None, metavar="OS/ARCH[/VARIANT]")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@click.option(
    "--max-bytes",
    type=click.IntRange(0),
    default=None,
    help="Exit with status 3 when a host would download more than this many bytes.",
)
def diff_cmd(
    old: str,
    new: str,
    platform: str | None,
    as_json: bool,
    max_bytes: int | None,
    transport: TransportOptions,
) -> None:
    """What a host running OLD downloads to move to NEW, per embedded image and for the base."""
    from ._diff import diff_images

    def go() -> int:
        result = diff_images(old, new, platform, transport)
        if as_json:
            click.echo(json.dumps(result.to_json(), indent=2))
        else:
            _print_diff(result)
        if max_bytes is not None and result.download_bytes > max_bytes:
            click.echo(
                f"bootc-embed: update costs {result.download_bytes} bytes, over the budget of "
                f"{max_bytes}",
                err=True,
            )
            return EXIT_OVER_BUDGET
        return 0

    _run(go)


def _print_diff(result: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{result.old} → {result.new}")
    table.add_column("", overflow="fold")
    for col in ("new layers", "new bytes", "reused", "reused bytes", "removed"):
        table.add_column(col, justify="right")
    for g in result.groups:
        table.add_row(
            g.name,
            str(len(g.new)),
            _human(sum(d.size for d in g.new)),
            str(len(g.reused)),
            _human(sum(d.size for d in g.reused)),
            str(len(g.removed)),
        )
    table.add_row("[b]download[/]", "", f"[b]{_human(result.download_bytes)}[/]", "", "", "")
    Console().print(table)


@main.command("demo")
@click.argument("workdir", required=False, type=click.Path(file_okay=False, path_type=Path))
def demo_cmd(workdir: Path | None) -> None:
    """Make small sample images (no network), embed them, and show what happened."""
    from . import _demo

    def go() -> int:
        return _demo_main(_demo, workdir)

    _run(go)


def _demo_main(module: Any, workdir: Path | None) -> int:
    from rich.console import Console

    return int(module.run_demo(workdir, Console()) or 0)


@main.command("verify")
@click.argument("ref", metavar="REF")
@click.option("--platform", default=None, metavar="OS/ARCH[/VARIANT]")
@click.option(
    "--store-path",
    default=None,
    help="The store to check (default: the image's io.bootc-embed.store annotation, else "
    f"{DEFAULT_STORE}).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON on stdout.")
@_transport_flags
def verify_cmd(
    ref: str,
    platform: str | None,
    store_path: str | None,
    as_json: bool,
    transport: TransportOptions,
) -> None:
    """Check an image as a bootc host would see it: the embedded store's consistency, bootc's
    import rules and host readiness. Reads only the image.

    Exit status: 0 clean, 1 on any error, 4 on warnings only.
    """
    from ._verify import verify_image

    def go() -> int:
        if sys.stderr.isatty() and not as_json:
            from rich.console import Console

            with Console(stderr=True).status("verifying") as status:
                result = verify_image(
                    ref,
                    platform,
                    store_path,
                    lambda msg: status.update(f"verify: {msg}"),
                    transport,
                )
        else:
            result = verify_image(ref, platform, store_path, options=transport)
        if as_json:
            click.echo(json.dumps(result.to_json(), indent=2))
        else:
            _print_verify(result)
        return result.exit_code

    _run(go)


def _print_verify(result: Any) -> None:
    colors = {"error": "red", "warning": "yellow", "info": "blue"}
    for f in result.findings:
        where = [
            f"{k} {v}"
            for k, v in (("image", f.image), ("layer", f.layer and f.layer[:19]), ("path", f.path))
            if v
        ]
        label = click.style(f"{f.severity}:", fg=colors.get(f.severity), bold=True)
        click.echo(f"{label} [{f.check}] {f.message}" + (f" ({', '.join(where)})" if where else ""))
    stores = ", ".join(f"{s.path} ({s.driver})" for s in result.stores) or "none"
    click.echo(
        f"{result.reference}: {result.count('error')} errors, {result.count('warning')} "
        f"warnings; {len(result.images)} images, {result.store_layers} layers in "
        f"{result.store}; stores found: {stores}"
    )


@main.command("inspect")
@click.argument("ref", metavar="REF")
@click.option("--platform", default=None, metavar="OS/ARCH[/VARIANT]")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@_transport_flags
def inspect_cmd(ref: str, platform: str | None, as_json: bool, transport: TransportOptions) -> None:
    """The images embedded in REF: names, digests, layers, sizes, shared layers, whiteouts.

    Reads the manifest and the store metadata layer only.
    """
    from ._inspect import inspect_image

    def go() -> int:
        result = inspect_image(ref, platform, transport)
        if as_json:
            click.echo(json.dumps(result.to_json(), indent=2))
        else:
            _print_inspect(result)
        return 0

    _run(go)


def _print_inspect(result: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(
        f"[b]{result.reference}[/] ({result.manifest_digest})\n"
        f"store {result.store}: {len(result.images)} images, {len(result.layers)} layers "
        f"({len(result.shared_layers)} shared), {_human(result.bytes_added)} added to "
        f"{result.base_layers} base layers",
        highlight=False,
        soft_wrap=True,
    )
    for img in result.images:
        extra = f" (also {', '.join(img.names[1:])})" if len(img.names) > 1 else ""
        console.print(
            f"\n[b]{img.name}[/]{extra}\n  manifest {img.manifest_digest}\n  image id "
            f"{img.image_id}",
            highlight=False,
            soft_wrap=True,
        )
        table = Table()
        table.add_column("layer id")
        table.add_column("size", justify="right")
        table.add_column("blob", justify="right")
        table.add_column("whiteouts", justify="right")
        table.add_column("shared with", overflow="fold")
        for layer in img.layers:
            others = [n for n in layer.images if n != img.name]
            table.add_row(
                layer.layer_id[:12],
                _human(layer.diff_size) if layer.diff_size is not None else "?",
                _human(layer.size) if layer.size is not None else "-",
                str(layer.whiteouts) if layer.whiteouts is not None else "-",
                ", ".join(others),
            )
        console.print(table)
