"""Run ``bootc-embed ARGS`` under cProfile, every thread included, and print where time goes.

Usage: ``taskset -c 0 python profile_build.py [--top N] [--out FILE] [--no-cprofile] -- build ...``

Prints, per app layer, the wall time bootc-embed spent on it and how many passes over the input
it made (a layer that contradicts what was already written is analysed and written again; this
relies on private functions of ``bootc_embed._transform`` and is skipped if they are gone), then
unless ``--no-cprofile`` the top functions by own time and by cumulative time. The profiles of the
main thread and of every worker thread are merged; time a thread spends waiting for another
shows up as lock ``acquire`` calls.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import io
import pstats
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

_profiles: list[cProfile.Profile] = []
_lock = threading.Lock()
_thread_run = threading.Thread.run
_layers: dict[tuple[str, int], dict[str, Any]] = {}


def _profiled_run(self: threading.Thread) -> None:
    prof = cProfile.Profile()
    with _lock:
        _profiles.append(prof)
    prof.enable()
    try:
        _thread_run(self)
    finally:
        prof.disable()


def _record(kind: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(job: Any, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(job, *args, **kwargs)
        finally:
            key = (str(job.image), int(job.index))
            with _lock:
                rec = _layers.setdefault(
                    key,
                    {"size": job.descriptor.size, "count": job.count, "total": 0.0, "writes": 0},
                )
                if kind == "total":
                    rec["total"] += time.perf_counter() - t0
                else:
                    rec["writes"] += 1

    return wrapper


def _instrument() -> bool:
    try:
        from bootc_embed import _build, _transform
    except ImportError:
        return False
    if not (hasattr(_transform, "_attempt") and hasattr(_build, "transform_layer")):
        return False
    _transform._attempt = _record("write", _transform._attempt)
    _build.transform_layer = _record("total", _build.transform_layer)
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--out", help="also dump the merged stats (pstats format) here")
    parser.add_argument("--no-cprofile", action="store_true", help="only the per-layer times")
    parser.add_argument("args", nargs=argparse.REMAINDER)
    opts = parser.parse_args()
    args = opts.args[1:] if opts.args[:1] == ["--"] else opts.args

    instrumented = _instrument()
    if not opts.no_cprofile:
        threading.Thread.run = _profiled_run  # type: ignore[method-assign]
    from bootc_embed.cli import main as cli_main

    sys.argv = ["bootc-embed", *args]
    prof = cProfile.Profile()
    code: object = 0
    t0 = time.perf_counter()
    if not opts.no_cprofile:
        prof.enable()
    try:
        cli_main()
    except SystemExit as exc:
        code = exc.code
    finally:
        prof.disable()
    total = time.perf_counter() - t0
    mode = "without profiler" if opts.no_cprofile else "under cProfile"
    print(f"--- per app layer ({mode}; whole build {total:.2f} s after imports) ---")
    if not instrumented:
        print("(not available: bootc_embed._transform internals changed)")
    for (image, index), rec in _layers.items():
        passes = "1 pass" if rec["writes"] <= 1 else f"{rec['writes']} writes + 1 analysis pass"
        print(
            f"layer {index}/{rec['count']} of {image}: {rec['size'] / 1e6:8.1f} MB gzip  "
            f"{rec['total']:6.2f} s  {passes}"
        )
    print()
    if not opts.no_cprofile:
        stats = pstats.Stats(prof)
        for p in _profiles:
            stats.add(p)
        if opts.out:
            stats.dump_stats(opts.out)
        for key in ("tottime", "cumulative"):
            buf = io.StringIO()
            stats.stream = buf  # type: ignore[attr-defined]
            stats.sort_stats(key).print_stats(opts.top)
            text = buf.getvalue()
            print(f"--- sorted by {key} ---")
            print(text[text.find("   ncalls") :].rstrip() if "   ncalls" in text else text)
            print()
    return 0 if code in (0, None) else 1


if __name__ == "__main__":
    sys.exit(main())
