"""Benchmark: streaming `fit_gda` (memory-mapped .npy, one pass) against scikit-learn's LedoitWolf on the
fully loaded, stacked, centred array.

Each method runs in its own fresh subprocess so that its memory is its own. Two memory figures are given:
- traced peak: the peak of Python-level allocations seen by `tracemalloc` (numpy registers its array
  buffers there), i.e. the heap the method needs; pages of a memory-mapped file are not allocations;
- ΔRSS peak: `ru_maxrss` at the end minus after the imports; this includes the memory-mapped file
  pages the streaming pass touched (clean page cache the kernel may drop), so it overstates streaming.

    .venv/bin/python bench/gda.py                      # N=100000 rows per class, d=512, chunk 8192
    .venv/bin/python bench/gda.py --n 20000 --d 128    # quick run
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from rmood.job import thread_environment

MIB = 2**20


def write_data(folder: Path, n: int, d: int, seed: int) -> None:
    """Random float32 chosen/rejected files with unequal feature scales and class means far from 0."""
    rng = np.random.default_rng(seed)
    scales = rng.uniform(0.5, 2.0, size=d).astype(np.float32)
    for name, mean in (("chosen", 5.0), ("rejected", 4.8)):
        array = np.lib.format.open_memmap(folder / f"{name}.npy", mode="w+", dtype=np.float32, shape=(n, d))
        for start in range(0, n, 16384):
            block = rng.standard_normal((min(16384, n - start), d), dtype=np.float32)
            array[start : start + len(block)] = block * scales + mean
        array.flush()
        del array


def run_streaming(folder: Path, chunk_size: int) -> tuple[np.ndarray, float]:
    from rmood.mrm.gda import fit_gda, load_gda

    fit_gda(folder / "chosen.npy", folder / "rejected.npy", folder / "gda_parameters.npz", chunk_size)
    params = load_gda(folder / "gda_parameters.npz")
    return params["covariance"], float(params["shrinkage"])


def run_sklearn(folder: Path, chunk_size: int) -> tuple[np.ndarray, float]:
    from sklearn.covariance import LedoitWolf

    chosen = np.load(folder / "chosen.npy", allow_pickle=False).astype(np.float64)
    rejected = np.load(folder / "rejected.npy", allow_pickle=False).astype(np.float64)
    stacked = np.vstack([chosen - chosen.mean(axis=0), rejected - rejected.mean(axis=0)])
    del chosen, rejected
    lw = LedoitWolf(assume_centered=True).fit(stacked)
    return lw.covariance_, float(lw.shrinkage_)


METHODS = {"streaming": run_streaming, "sklearn": run_sklearn}


def worker(method: str, folder: Path, chunk_size: int) -> None:
    """Run one method, save its covariance beside the data and print its measurements as JSON."""
    import sklearn.covariance  # noqa: F401  (imports outside the measurement)

    import rmood.mrm.gda  # noqa: F401

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    start = time.perf_counter()
    covariance, shrinkage = METHODS[method](folder, chunk_size)
    seconds = time.perf_counter() - start
    traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before  # KiB on Linux
    np.save(folder / f"covariance_{method}.npy", covariance)
    print(json.dumps({"seconds": seconds, "traced": traced, "rss": rss * 1024, "shrinkage": shrinkage}))


def measure(method: str, folder: Path, chunk_size: int, threads: int) -> dict[str, float]:
    command = [sys.executable, __file__, "--worker", method, "--dir", str(folder), "--chunk-size", str(chunk_size)]
    env = dict(os.environ)
    if threads:
        env.update(thread_environment(threads))
    result = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000, help="rows per class (chosen and rejected each)")
    parser.add_argument("--d", type=int, default=512, help="features")
    parser.add_argument("--chunk-size", type=int, default=8192, help="rows per streamed chunk")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="BLAS threads per method (0: BLAS default; on a shared 2-core VM "
        "OpenBLAS with 2 threads slows tall-skinny XᵀX ~40×, so the default is 1)",
    )
    parser.add_argument("--worker", choices=sorted(METHODS), help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.dir, args.chunk_size)
        return

    with tempfile.TemporaryDirectory(prefix="bench_gda.") as tmp:
        folder = Path(tmp)
        write_data(folder, args.n, args.d, args.seed)
        results = {m: measure(m, folder, args.chunk_size, args.threads) for m in ("streaming", "sklearn")}
        ours, theirs = (np.load(folder / f"covariance_{m}.npy", allow_pickle=False) for m in ("streaming", "sklearn"))
    rel_diff = float(np.max(np.abs(ours - theirs)) / np.max(np.abs(theirs)))
    shrink_diff = abs(results["streaming"]["shrinkage"] - results["sklearn"]["shrinkage"])

    file_mib = 2 * args.n * args.d * 4 / MIB
    print(
        f"GDA, N = {args.n} + {args.n} rows × d = {args.d} (float32 .npy, {file_mib:.0f} MiB in all), "
        f"chunk {args.chunk_size}, {args.threads or 'default'} BLAS thread(s), {os.cpu_count()} CPUs"
    )
    rows = [
        ("time [s]", "seconds", 1.0, ".2f"),
        ("traced peak [MiB]", "traced", MIB, ".1f"),
        ("ΔRSS peak [MiB]", "rss", MIB, ".1f"),
    ]
    print(f"{'':<20}{'streaming fit_gda':>20}{'sklearn LedoitWolf':>20}{'sklearn / streaming':>22}")
    for label, key, unit, fmt in rows:
        a, b = results["streaming"][key] / unit, results["sklearn"][key] / unit
        print(f"{label:<20}{a:>20{fmt}}{b:>20{fmt}}{b / a:>21.1f}×")
    print(f"{'shrinkage':<20}{results['streaming']['shrinkage']:>20.6g}{results['sklearn']['shrinkage']:>20.6g}")
    print(f"covariance: max |Δ| / max |Σ| = {rel_diff:.2e}; shrinkage |Δ| = {shrink_diff:.2e}")
    print("traced = tracemalloc peak (numpy buffers); ΔRSS includes the memory-mapped file pages streaming reads")


if __name__ == "__main__":
    main()
