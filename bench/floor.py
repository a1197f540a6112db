"""The floor for embedding a set of gzip layers: the work no implementation can avoid.

For each layer blob: read it and sha256 it (input blob digest), inflate it with ISA-L, sha256 the
inflated bytes (input diff_id), deflate them again with ISA-L level 2 (raw deflate fed 1 MiB
chunks, as bootc-embed does), sha256 the inflated bytes a second time (the output diff_id pass)
and sha256 the deflated output (output blob digest). No tar parsing, no tar writing, no output
file: inflate + deflate + 4 x sha256.

Run it pinned to one core (``taskset -c 0 python floor.py BLOB...``); bench/run.py does. Prints
one JSON object: the best and every wall time and CPU time (seconds, measured inside this
process, so Python start-up is not counted), and the byte counts.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time

from isal import isal_zlib

CHUNK = 1 << 20


def floor_layer(path: str) -> tuple[int, int, int]:
    """Do the floor work for one gzip blob; returns (compressed in, inflated, deflated out)."""
    blob_sha = hashlib.sha256()
    in_diff_sha = hashlib.sha256()
    out_diff_sha = hashlib.sha256()
    out_blob_sha = hashlib.sha256()
    deflate = isal_zlib.compressobj(2, isal_zlib.DEFLATED, -15)
    inflate = isal_zlib.decompressobj(31)
    pending = bytearray()
    n_in = n_inflated = n_out = 0

    def feed(data: bytes) -> None:
        nonlocal n_inflated, n_out, pending
        if not data:
            return
        n_inflated += len(data)
        in_diff_sha.update(data)
        out_diff_sha.update(data)
        pending += data
        full = len(pending) - len(pending) % CHUNK
        if full:
            view = memoryview(pending)
            for pos in range(0, full, CHUNK):
                out = deflate.compress(view[pos : pos + CHUNK])
                n_out += len(out)
                out_blob_sha.update(out)
            view.release()
            del pending[:full]

    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(CHUNK):
            n_in += len(chunk)
            blob_sha.update(chunk)
            feed(inflate.decompress(chunk))
            while inflate.eof and inflate.unused_data:  # another gzip member
                rest = inflate.unused_data
                inflate = isal_zlib.decompressobj(31)
                feed(inflate.decompress(rest))
    feed(inflate.flush())
    out = deflate.compress(bytes(pending)) + deflate.flush(isal_zlib.Z_FINISH)
    n_out += len(out)
    out_blob_sha.update(out)
    for h in (blob_sha, in_diff_sha, out_diff_sha, out_blob_sha):
        h.digest()
    return n_in, n_inflated, n_out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("blobs", nargs="+", help="gzip layer blobs")
    parser.add_argument("--repeat", type=int, default=3, help="runs; the best is reported")
    args = parser.parse_args(argv)
    times = []
    cpu = []
    per_layer: list[list[float]] = []
    totals = (0, 0, 0)
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        c0 = time.process_time()
        totals = (0, 0, 0)
        layer_times = []
        for blob in args.blobs:
            t1 = time.perf_counter()
            counts = floor_layer(blob)
            layer_times.append(time.perf_counter() - t1)
            totals = tuple(a + b for a, b in zip(totals, counts, strict=True))
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        per_layer.append(layer_times)
    json.dump(
        {
            "seconds": min(times),
            "runs": times,
            "cpu_seconds": min(cpu),
            "cpu_runs": cpu,
            "layer_seconds": per_layer[times.index(min(times))],
            "compressed_in": totals[0],
            "inflated": totals[1],
            "deflated_out": totals[2],
        },
        sys.stdout,
    )
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
