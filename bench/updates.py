"""bootc-embed update benchmark: what a host downloads to update, recipe vs bootc-embed.

Builds, in one run, the three update scenarios of shared/docs/baseline.md with both the
Containerfile recipe (containerfiles/recipe.Containerfile) and bootc-embed:

1. no change: the same build again (recipe: ``buildah bud --no-cache`` again; bootc-embed: with
   its warm layer cache, with ``--no-cache``, and with ``--no-cache --previous OLD``);
2. base change: a new base with one more layer (containerfiles/base2.Containerfile,
   ``localhost/base:2``), app unchanged;
3. app top-layer change: the web app built with ``--build-arg VERSION=2`` (``localhost/web:2``:
   only its top layer differs), base unchanged;

and prints, side by side, the bytes a host running the old image downloads to move to the new
one: the compressed sizes of the new image's layers whose digests the old image lacks (for
bootc-embed outputs: ``bootc-embed diff OLD NEW --json``, cross-checked against the manifests).
Also times a rebuild with nothing changed (warm layer cache, and ``--previous``), PASS/FAIL per
target of issue 4, ``--json FILE``. Exit status 0 all targets met, 3 one missed, 1 error.

Image building, the private store, the cache and the loopback registry are bench/run.py's. See
docs/benchmarks.md, "Update cost".
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import run as bench
from run import CONTAINERFILES, MB, BenchError, log

#: Scenario 2: the base's new layer(s) plus, if it changed, the metadata layer (issue 4: 64 KB).
TARGET_BASE_CHANGE_BYTES = 64_000
#: Rebuild with nothing changed, warm layer cache or --previous (issue 4: under 2 s).
TARGET_REBUILD_S = 2.0

SCENARIOS = ("no_change", "base_change", "app_change")
TITLES = {
    "no_change": "1. no change (rebuild)",
    "base_change": "2. base change (+1 base layer)",
    "app_change": "3. app top-layer change",
}


# ------------------------------------------------------------------------------------------
# Images


def setup_update_images(cache: bench.Cache, images: bench.Images) -> dict[str, Path]:
    """localhost/base:2 (base:1 + one layer) and localhost/web:2 (web:1 with VERSION=2) as OCI
    layouts, next to base:1 and web:1; checked to differ from them as the scenarios need."""
    store = images.store
    base2_cf = CONTAINERFILES / "base2.Containerfile"
    web_cf = CONTAINERFILES / "web.Containerfile"
    base2_key = bench.key_of(images.keys["base"], base2_cf.read_bytes())
    web2_key = bench.key_of(images.keys["web"], "--build-arg VERSION=2")

    def base2() -> Path:
        bench.build_image(cache, store, "base2", base2_cf, "localhost/base:2", base2_key)
        return bench.export_layout(cache, store, "base2", "localhost/base:2", base2_key)

    def web2() -> Path:
        bench.build_image(cache, store, "web2", web_cf, "localhost/web:2", web2_key, ["VERSION=2"])
        return bench.export_layout(cache, store, "web2", "localhost/web:2", web2_key)

    def diff_ids(layout: Path) -> list[str]:
        return bench.read_config(layout)["rootfs"]["diff_ids"]

    def base_ok(layout: Path) -> bool:
        old, new = diff_ids(images.base_layout), diff_ids(layout)
        return len(new) == len(old) + 1 and new[: len(old)] == old

    def web_ok(layout: Path) -> bool:
        old, new = diff_ids(images.web_layout), diff_ids(layout)
        return len(new) == len(old) and new[:-1] == old[:-1] and new[-1] != old[-1]

    layouts = {"base1": images.base_layout, "web1": images.web_layout}
    layouts["base2"] = base2()
    if not base_ok(layouts["base2"]):
        # base:1 was rebuilt since base:2 was: build base:2 again on top of the current one.
        log("localhost/base:2 is not localhost/base:1 + 1 layer: rebuilding it")
        cache.forget("base2")
        layouts["base2"] = base2()
        if not base_ok(layouts["base2"]):
            raise BenchError("localhost/base:2 is not localhost/base:1 plus one layer")
    layouts["web2"] = web2()
    if not web_ok(layouts["web2"]):
        # buildah's layer cache of web:1 is gone (or web:1 was rebuilt): build both again, in a
        # row, so that web:2 takes web:1's first layers from the layer cache.
        log("localhost/web:2 differs from localhost/web:1 in more than its top layer: rebuilding")
        for name in ("web", "web2"):
            cache.forget(name)
        bench.build_image(cache, store, "web", web_cf, "localhost/web:1", images.keys["web"])
        bench.export_layout(cache, store, "web", "localhost/web:1", images.keys["web"])
        layouts["web2"] = web2()
        if not web_ok(layouts["web2"]):
            raise BenchError(
                "localhost/web:2 differs from localhost/web:1 in more than its top layer "
                f"(buildah's layer cache was not used); delete {cache.path} and run again"
            )
    return layouts


# ------------------------------------------------------------------------------------------
# Download arithmetic


def download(old: Path, old_tag: str, new: Path, new_tag: str) -> dict[str, Any]:
    """What a host holding image OLD downloads to get NEW: the new image's layer blobs whose
    digests OLD lacks (each blob once). ``same_content`` marks new blobs whose uncompressed
    content (diff_id) OLD has under another digest (recompression, not change)."""
    old_m, new_m = bench.read_manifest(old, old_tag), bench.read_manifest(new, new_tag)
    old_digests = {d["digest"] for d in old_m["layers"]}
    old_diff_ids = set(bench.read_config(old, old_tag)["rootfs"]["diff_ids"])
    new_diff_ids = bench.read_config(new, new_tag)["rootfs"]["diff_ids"]
    layers, seen = [], set()
    for desc, diff_id in zip(new_m["layers"], new_diff_ids, strict=True):
        if desc["digest"] in old_digests or desc["digest"] in seen:
            continue
        seen.add(desc["digest"])
        layers.append(
            {
                "digest": desc["digest"],
                "size": desc["size"],
                "diff_id": diff_id,
                "same_content": diff_id in old_diff_ids,
                "kind": desc.get("annotations", {}).get(bench.LAYER_ANNOTATION, "base"),
            }
        )
    return {
        "download_bytes": sum(x["size"] for x in layers),
        "new_layers": layers,
        "image_bytes": sum(d["size"] for d in new_m["layers"]),
    }


# ------------------------------------------------------------------------------------------
# The recipe


def recipe_scenarios(store: bench.Store, apps: dict[int, str], workdir: Path) -> dict[str, Any]:
    """The recipe's old image and one new image per scenario, all in one OCI layout (tags)."""
    layout = workdir / "recipe"
    builds = {
        "old": (apps[1], None),
        "no_change": (apps[1], None),
        "base_change": (apps[1], "localhost/base:2"),
        "app_change": (apps[2], None),
    }
    out: dict[str, Any] = {"layout": str(layout)}
    for tag, (app, base) in builds.items():
        m, cmd = bench.build_recipe(store, app, workdir, f"oci:{layout}:{tag}", base_image=base)
        out[tag] = {"seconds": m.seconds, "command": " ".join(cmd)}
        if tag != "old":
            out[tag]["download"] = download(layout, "old", layout, tag)
            log(f"recipe, {tag}: host downloads {out[tag]['download']['download_bytes']:,} bytes")
    return out


# ------------------------------------------------------------------------------------------
# bootc-embed


class Embedder:
    def __init__(self, tool: list[str], workdir: Path) -> None:
        self.tool = tool
        self.outputs = workdir / "embed"
        self.outputs.mkdir(parents=True)
        self.cache_home = workdir / "xdg-cache"  # bootc-embed's layer cache: private, cold
        shutil.rmtree(self.cache_home, ignore_errors=True)

    def build(
        self,
        label: str,
        base: Path,
        app: tuple[str, Path],
        extra: Sequence[str] = (),
        runs: int = 1,
    ) -> dict[str, Any]:
        """bootc-embed build on one core (as bench/run), best of *runs*, into outputs/LABEL."""
        out = self.outputs / label
        image_arg = f"{app[0]}=oci:{app[1]}:1"
        times, cpu, digests = [], [], set()
        summary: dict[str, Any] = {}
        for _ in range(runs):
            # The previous build's output may still be being written back to disk: flush it, so
            # that its writeback does not slow this build down.
            os.sync()
            m, summary = bench.embed_once(
                self.tool, base, image_arg, out, True, self.cache_home, extra
            )
            times.append(m.seconds)
            cpu.append(m.cpu_seconds)
            digests.add(summary["manifest_digest"])
        if len(digests) != 1:
            raise BenchError(f"{label}: repeated builds gave different outputs: {digests}")
        log(f"bootc-embed {label}: {min(times):.2f} s" + (f" (best of {runs})" if runs > 1 else ""))
        command = [*self.tool, "build", f"--base oci:{base}:1", f"--image {image_arg}"]
        return {
            "out": out,
            "seconds": min(times),
            "runs": times,
            "cpu_seconds": min(cpu),
            "manifest_digest": summary["manifest_digest"],
            "metadata_layer": summary["metadata_layer"],
            "command": " ".join(["taskset -c 0", *command, "--output oci:OUT:1", *extra]),
        }

    def diff(self, old: Path, new: Path) -> dict[str, Any]:
        """``bootc-embed diff OLD NEW --json``, grouped, and the manifest arithmetic beside it."""
        cmd = [*self.tool, "diff", f"oci:{old}:1", f"oci:{new}:1", "--json"]
        res = bench.run(cmd, capture=True, env=bench.embed_env(self.cache_home))
        d = json.loads(res.stdout)
        groups = {g["name"]: g for g in d["groups"]}
        apps = [g for name, g in groups.items() if name not in ("base", "metadata")]

        def new_in(g: dict[str, Any] | None, what: str) -> int:
            return g["new"][what] if g else 0

        own = download(old, "1", new, "1")
        return {
            "download_bytes": d["total"]["download_bytes"],
            "base_new_bytes": new_in(groups.get("base"), "bytes"),
            "base_new_layers": new_in(groups.get("base"), "layers"),
            "app_new_bytes": sum(new_in(g, "bytes") for g in apps),
            "app_new_layers": sum(new_in(g, "layers") for g in apps),
            "metadata_new_bytes": new_in(groups.get("metadata"), "bytes"),
            "metadata_new_layers": new_in(groups.get("metadata"), "layers"),
            "manifest_download_bytes": own["download_bytes"],
            "new_layers": own["new_layers"],
            "diff": d,
        }


def embed_scenarios(
    tool: list[str], layouts: dict[str, Path], apps: dict[int, str], runs: int, workdir: Path
) -> dict[str, Any]:
    e = Embedder(tool, workdir)
    web1, web2 = (apps[1], layouts["web1"]), (apps[2], layouts["web2"])
    base1, base2 = layouts["base1"], layouts["base2"]
    log("bootc-embed: the old image (cold layer cache), then every scenario")
    old = e.build("old", base1, web1)
    previous = ["--no-cache", "--previous", f"oci:{old['out']}:1"]
    variants: dict[str, dict[str, Any]] = {
        "no_change": {
            "warm_cache": e.build("no-change-warm-cache", base1, web1, runs=runs),
            "no_cache": e.build("no-change-no-cache", base1, web1, ["--no-cache"]),
            "previous": e.build("no-change-previous", base1, web1, previous, runs=runs),
        },
        "base_change": {
            "previous": e.build("base-change-previous", base2, web1, previous),
            "no_cache": e.build("base-change-no-cache", base2, web1, ["--no-cache"]),
        },
        "app_change": {
            "previous": e.build("app-change-previous", base1, web2, previous),
            "no_cache": e.build("app-change-no-cache", base1, web2, ["--no-cache"]),
        },
    }
    for scenario in variants.values():
        for v in scenario.values():
            v["download"] = e.diff(old["out"], v["out"])
    # What the base added in scenario 2, from the two base images themselves.
    base_delta = download(base1, "1", base2, "1")
    if [x["same_content"] for x in base_delta["new_layers"]] != [False]:
        raise BenchError(f"{base2} does not add exactly one new blob to {base1}: {base_delta}")
    result: dict[str, Any] = {"old": old, "base_delta": base_delta, **variants}
    for item in [old, *(v for s in variants.values() for v in s.values())]:
        item["out"] = str(item["out"])
    return result


def big_rebuilds(
    tool: list[str],
    cache: bench.Cache,
    images: bench.Images,
    python: str,
    runs: int,
    workdir: Path,
) -> dict[str, Any]:
    """Rebuild times with nothing changed for bench/run's synthetic 1 GiB-layer app (4.5 times
    the web app's bytes): issue 4 wants them independent of the app's size."""
    layout = bench.big_image(cache, images, python)
    e = Embedder(tool, workdir / "big")
    app = ("localhost/big:1", layout)
    log("bootc-embed: the 1 GiB-layer app, cold, then rebuilt with the cache and --previous")
    old = e.build("old", images.base_layout, app)
    warm = e.build("warm-cache", images.base_layout, app, runs=runs)
    previous = ["--no-cache", "--previous", f"oci:{old['out']}:1"]
    prev = e.build("previous", images.base_layout, app, previous, runs=runs)
    out = {
        "app_compressed_bytes": sum(d["size"] for d in bench.read_manifest(layout)["layers"]),
        "cold_seconds": old["seconds"],
        "warm_cache_seconds": warm["seconds"],
        "warm_cache_runs": warm["runs"],
        "previous_seconds": prev["seconds"],
        "previous_runs": prev["runs"],
        "same_output": old["manifest_digest"] == warm["manifest_digest"] == prev["manifest_digest"],
    }
    shutil.rmtree(workdir / "big")
    return out


# ------------------------------------------------------------------------------------------
# Targets and report


def checks(r: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every target (and consistency check) on bootc-embed's figures: ok plus why."""
    e = r["embed"]
    out: dict[str, dict[str, Any]] = {}
    nc = e["no_change"]
    out["no_change_bytes"] = {
        "ok": all(v["download"]["download_bytes"] == 0 for v in nc.values())
        and all(v["manifest_digest"] == e["old"]["manifest_digest"] for v in nc.values()),
        "target": "0 bytes, same manifest digest (cache, --no-cache, --previous)",
    }
    bc = e["base_change"]["previous"]["download"]
    delta = e["base_delta"]["download_bytes"]
    out["base_change_bytes"] = {
        "ok": bc["download_bytes"] == delta + bc["metadata_new_bytes"]
        and bc["base_new_bytes"] == delta
        and bc["app_new_layers"] == 0
        and bc["metadata_new_layers"] == 0
        and bc["download_bytes"] <= TARGET_BASE_CHANGE_BYTES,
        "target": f"base delta only, app + metadata kept, <= {TARGET_BASE_CHANGE_BYTES:,} B",
    }
    ac = e["app_change"]["previous"]["download"]
    changed = [x for x in ac["new_layers"] if x["kind"] == "app"]
    meta = e["app_change"]["previous"]["metadata_layer"]["size"]
    out["app_change_bytes"] = {
        "ok": ac["app_new_layers"] == 1
        and ac["metadata_new_layers"] == 1
        and ac["base_new_layers"] == 0
        and len(changed) == 1
        and ac["download_bytes"] == changed[0]["size"] + meta,
        "target": "1 app layer + metadata layer",
    }
    out["rebuild_warm_cache_s"] = {
        "ok": nc["warm_cache"]["seconds"] < TARGET_REBUILD_S,
        "target": f"< {TARGET_REBUILD_S:g} s",
    }
    out["rebuild_previous_s"] = {
        "ok": nc["previous"]["seconds"] < TARGET_REBUILD_S,
        "target": f"< {TARGET_REBUILD_S:g} s",
    }
    big = r.get("big")
    if big:
        out["rebuild_big_s"] = {
            "ok": big["same_output"]
            and max(big["warm_cache_seconds"], big["previous_seconds"]) < TARGET_REBUILD_S,
            "target": f"< {TARGET_REBUILD_S:g} s for an app 4.5x the web app (size-independent)",
        }
    every = [v for s in SCENARIOS for v in e[s].values()]
    out["diff_matches_manifests"] = {
        "ok": all(
            v["download"]["download_bytes"] == v["download"]["manifest_download_bytes"]
            for v in every
        ),
        "target": "bootc-embed diff total = manifest arithmetic",
    }
    return out


def human(n: int) -> str:
    return f"{n / MB:.1f} MB" if n >= 100_000 else f"{n:,} B"


def report(r: dict[str, Any]) -> str:
    c = r["checks"]
    recipe, e, big = r.get("recipe"), r["embed"], r.get("big")
    header = ("bytes a host downloads", "recipe", "bootc-embed", "target (bootc-embed)", "result")
    rows: list[tuple[str, ...]] = [header]

    def row(label: str, rec: str = "", emb: str = "", target: str = "", key: str = "") -> None:
        rows.append((label, rec, emb, target, bench.verdict(c[key]["ok"]) if key else ""))

    def rec(scenario: str) -> str:
        return human(recipe[scenario]["download"]["download_bytes"]) if recipe else "-"

    def dl(scenario: str, variant: str) -> int:
        return e[scenario][variant]["download"]["download_bytes"]

    nc = e["no_change"]
    worst = max(dl("no_change", v) for v in nc)
    row(TITLES["no_change"], rec("no_change"), human(worst), "0 B, same digest", "no_change_bytes")
    row(
        "  bootc-embed: layer cache / --no-cache / --previous",
        "",
        " / ".join(str(dl("no_change", v)) for v in ("warm_cache", "no_cache", "previous")) + " B",
    )

    bc = e["base_change"]["previous"]["download"]
    delta_ids = {x["diff_id"] for x in e["base_delta"]["new_layers"]}
    row(
        TITLES["base_change"],
        rec("base_change"),
        human(dl("base_change", "previous")),
        f"base delta only, <= {TARGET_BASE_CHANGE_BYTES // 1000} KB",
        "base_change_bytes",
    )
    rec_base = rec_app = "-"
    if recipe:
        new = recipe["base_change"]["download"]["new_layers"]
        rec_base = human(sum(x["size"] for x in new if x["diff_id"] in delta_ids))
        rec_app = human(sum(x["size"] for x in new if x["diff_id"] not in delta_ids))
    row("  of which the base's new layer", rec_base, human(bc["base_new_bytes"]))
    row("  of which the app", rec_app, human(bc["app_new_bytes"]))
    old_meta = human(e["old"]["metadata_layer"]["size"])
    kept = "kept" if bc["metadata_new_layers"] == 0 else "CHANGED"
    row(
        "  of which the metadata layer",
        "",
        f"{human(bc['metadata_new_bytes'])} ({kept}, {old_meta})",
    )
    row("  bootc-embed without --previous, --no-cache", "", human(dl("base_change", "no_cache")))

    ac = e["app_change"]["previous"]["download"]
    row(
        TITLES["app_change"],
        rec("app_change"),
        human(dl("app_change", "previous")),
        "1 app layer + metadata",
        "app_change_bytes",
    )
    changed = [x for x in ac["new_layers"] if x["kind"] == "app"]
    row(
        f"  of which app layers ({len(changed)}) / metadata",
        "",
        f"{human(ac['app_new_bytes'])} / {human(ac['metadata_new_bytes'])}",
    )
    row("  bootc-embed without --previous, --no-cache", "", human(dl("app_change", "no_cache")))

    row("build time, nothing changed:")
    if recipe:
        row("  recipe (buildah bud --no-cache)", f"{recipe['no_change']['seconds']:.1f} s")
    row(
        "  bootc-embed, warm layer cache, 1 core",
        "",
        f"{nc['warm_cache']['seconds']:.2f} s",
        f"< {TARGET_REBUILD_S:g} s",
        "rebuild_warm_cache_s",
    )
    row(
        "  bootc-embed, --no-cache --previous, 1 core",
        "",
        f"{nc['previous']['seconds']:.2f} s",
        f"< {TARGET_REBUILD_S:g} s",
        "rebuild_previous_s",
    )
    row("  bootc-embed, --no-cache, 1 core", "", f"{nc['no_cache']['seconds']:.2f} s")
    row("  bootc-embed, first build (cold cache), 1 core", "", f"{e['old']['seconds']:.2f} s")
    if big:
        row(
            f"  1 GiB-layer app ({big['app_compressed_bytes'] / MB:.0f} MB gzip), cold",
            "",
            f"{big['cold_seconds']:.2f} s",
        )
        row(
            "  1 GiB-layer app: warm cache / --previous",
            "",
            f"{big['warm_cache_seconds']:.2f} / {big['previous_seconds']:.2f} s",
            f"< {TARGET_REBUILD_S:g} s",
            "rebuild_big_s",
        )
        extra_mb = (big["app_compressed_bytes"] - big["web_app_compressed_bytes"]) / MB
        grow_warm = (big["warm_cache_seconds"] - nc["warm_cache"]["seconds"]) / extra_mb * 100
        grow_prev = (big["previous_seconds"] - nc["previous"]["seconds"]) / extra_mb * 100
        row(
            "    growth per 100 MB of app: cache / --previous",
            "",
            f"{grow_warm:+.2f} / {grow_prev:+.2f} s",
        )
    row(
        "bootc-embed diff total = manifest arithmetic",
        "",
        "yes" if c["diff_matches_manifests"]["ok"] else "NO",
        "",
        "diff_matches_manifests",
    )
    lines = bench.table_lines(rows, right=(1, 2))
    return bench.heading("bootc-embed update cost", r) + "\n" + "\n".join(lines)


# ------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/updates",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--python",
        default=sys.executable,
        help="Python with bootc_embed installed (default: this one)",
    )
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    p.add_argument(
        "--runs", type=int, default=3, help="timed rebuilds with nothing changed; the best counts"
    )
    p.add_argument(
        "--skip-recipe", action="store_true", help="do not build the recipe (saves ~3 min)"
    )
    p.add_argument(
        "--skip-big", action="store_true", help="do not time rebuilds of the 1 GiB-layer app"
    )
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=bench.DEFAULT_CACHE,
        help=f"image cache, shared with bench/run (default {bench.DEFAULT_CACHE})",
    )
    p.add_argument(
        "--mirror",
        default=os.environ.get("BENCH_DEBIAN_MIRROR", bench.DEFAULT_MIRROR),
        help="Debian mirror for debootstrap",
    )
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("bench/updates needs root (podman/buildah stores, debootstrap)", file=sys.stderr)
        return 1
    results: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": bench.machine(),
    }
    try:
        bench.check_tools(args.python, True)
        tool = bench.bootc_embed_cmd(args.python)
        args.cache_dir.mkdir(parents=True, exist_ok=True)
        cache = bench.Cache(args.cache_dir)
        with (
            cache.locked(),
            tempfile.TemporaryDirectory(prefix="bootc-embed-updates.", dir="/var/tmp") as tmp,
        ):
            workdir = Path(tmp)
            images = bench.setup_images(cache, args.mirror)
            layouts = setup_update_images(cache, images)
            with bench.registry(workdir) as addr:
                apps = {1: f"{addr}/web:1", 2: f"{addr}/web:2"}
                for version, app in apps.items():
                    log(f"registry on {addr}: skopeo copy → docker://{app}")
                    src = f"oci:{layouts[f'web{version}']}:1"
                    bench.run(
                        ["skopeo", "copy", "-q", "--dest-tls-verify=false", src, f"docker://{app}"]
                    )
                if not args.skip_recipe:
                    results["recipe"] = recipe_scenarios(images.store, apps, workdir)
                results["embed"] = embed_scenarios(tool, layouts, apps, args.runs, workdir)
            if not args.skip_big:
                results["big"] = big_rebuilds(tool, cache, images, args.python, args.runs, workdir)
                results["big"]["web_app_compressed_bytes"] = sum(
                    d["size"] for d in bench.read_manifest(images.web_layout)["layers"]
                )
            results["checks"] = checks(results)
    except BenchError as exc:
        print(f"bench/updates: {exc}", file=sys.stderr)
        return 1
    except (subprocess.SubprocessError, OSError, KeyError, ValueError) as exc:
        print(f"bench/updates: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    table = report(results)
    print(table)
    if args.json:
        Path(args.json).write_text(json.dumps({**results, "table": table}, indent=2) + "\n")
    return 0 if all(c["ok"] for c in results["checks"].values()) else 3


if __name__ == "__main__":
    sys.exit(main())
