"""Batch rendering: files/s and audio-seconds/s with 1 and 2 pool workers and a 2-worker Dask
cluster, as ratios to 1 worker; peak RSS per worker, and per minute of the longest file (a
DawDreamer render holds a whole file in memory, so a worker's peak follows its longest file), and
the slope of a fresh worker's peak from a short file to a long one (``--alone``): MiB per audio minute.
CPU seconds per audio second (every process the run used, Dask's included) is the figure other
engineers' load does not move: equal across modes means the work splits without overhead.

    python scripts/bench_batch.py [--files 24] [--seconds 5 20] [--runs 1] [--alone 10 240] [--instrument SPEC]

Each mode renders the same corpus (scripts/make_corpus.py) with ``sendlearn render --json``
into a fresh data directory; the Dask cluster (``LocalCluster``, 2 processes x 1 thread) is
started before its runs are timed, as a standing cluster would be. Modes are interleaved and
the best of ``--runs`` kept (other engineers' load swings single runs). Prints a table, then
one JSON object as its last line. Ends cleanly on SIGINT, SIGTERM and SIGHUP.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
SENDLEARN = str(Path(sys.executable).parent / "sendlearn")


def load_make_corpus() -> Any:
    spec = importlib.util.spec_from_file_location("make_corpus", ROOT / "make_corpus.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cpu_seconds() -> float:
    """CPU time of everything this bench started: reaped processes (the sendlearn command and its
    pool workers) and live ones (the Dask cluster's workers and their render processes)."""
    import resource

    import psutil

    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = reaped.ru_utime + reaped.ru_stime
    for process in psutil.Process().children(recursive=True):
        try:
            t = process.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


def render(corpus: Path, data_dir: Path, extra: list[str]) -> dict[str, Any]:
    cpu = cpu_seconds()
    started = time.monotonic()
    done = subprocess.run([SENDLEARN, "render", str(corpus), "--data-dir", str(data_dir), "--json", *extra],
                          capture_output=True, text=True, check=False)
    wall = time.monotonic() - started
    if not done.stdout.strip():
        raise SystemExit(f"sendlearn render failed ({done.returncode}): {done.stderr[-2000:]}")
    report = json.loads(done.stdout.splitlines()[-1])
    if report["failed"]:
        raise SystemExit(f"bench corpus had failures: {report['failures']}")
    report["wall_seconds"] = wall
    report["cpu_seconds"] = cpu_seconds() - cpu
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=24)
    parser.add_argument("--seconds", type=float, nargs=2, default=(5.0, 20.0), metavar=("MIN", "MAX"))
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--alone", type=float, nargs=2, default=(10.0, 240.0), metavar=("SHORT", "LONG"),
                        help="seconds of the two files rendered alone for RSS per audio minute")
    parser.add_argument("--instrument", help="--instrument for every file (default: the bundled Faust synth)")
    args = parser.parse_args()

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop)
    try:
        results = run(args)
    except KeyboardInterrupt:
        print("bench_batch: stopped", file=sys.stderr)
        return
    print_results(results, args)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from distributed import LocalCluster

    common = ["--instrument", args.instrument] if args.instrument else []
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        corpus = Path(tmp) / "corpus"
        written = load_make_corpus().make_corpus(corpus, args.files, tuple(args.seconds), seed=11)
        longest = max(seconds for _, seconds in written)
        best: dict[str, dict[str, Any]] = {}
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
            modes = {"pool_1": ["--workers", "1"], "pool_2": ["--workers", "2"],
                     "dask_2": ["--scheduler", cluster.scheduler_address]}
            for run_index in range(args.runs):
                for mode, extra in modes.items():
                    report = render(corpus, Path(tmp) / f"{mode}-{run_index}", common + extra)
                    if mode not in best or report["wall_seconds"] < best[mode]["wall_seconds"]:
                        best[mode] = report
        # memory per audio minute: a short and a long file, each alone in a fresh worker process (the
        # long one long enough that its buffers outgrow the heap Faust's compiler leaves behind)
        import random

        make_file = load_make_corpus().make_file
        alone = []
        for seconds in args.alone:
            path = Path(tmp) / "alone" / f"alone-{seconds:g}.mid"
            path.parent.mkdir(exist_ok=True)
            alone.append((path, make_file(path, random.Random(5), seconds)))
        peaks = []
        for path, seconds in alone:
            report = render(path, Path(tmp) / f"alone-{path.stem}", common + ["--workers", "1", "--max-renders", "1"])
            peaks.append((seconds, max(report["peak_rss_mib"].values())))
        (s0, p0), (s1, p1) = peaks
        slope = (p1 - p0) / ((s1 - s0) / 60.0) if s1 > s0 else None
        return {"files": args.files, "longest_file_seconds": longest, "modes": best, "alone": peaks,
                "rss_mib_per_audio_minute": slope}


def print_results(results: dict[str, Any], args: argparse.Namespace) -> None:
    modes = results["modes"]
    base = modes["pool_1"]
    rows, figures = [], {}
    for mode, report in modes.items():
        files_s = results["files"] / report["wall_seconds"]
        audio_s = report["audio_seconds"] / report["wall_seconds"]
        peak = max(report["peak_rss_mib"].values(), default=0.0)
        figures[mode] = {
            "seconds": round(report["wall_seconds"], 2), "files_per_s": round(files_s, 3),
            "audio_s_per_s": round(audio_s, 2),
            "ratio_to_1_worker": round(base["wall_seconds"] / report["wall_seconds"], 3),
            "peak_rss_mib_per_worker": round(peak, 1),
            "cpu_s_per_audio_s": round(report["cpu_seconds"] / report["audio_seconds"], 4),
        }
        f = figures[mode]
        rows.append(f"{mode:8} {f['seconds']:8.2f} {f['files_per_s']:8.3f} {f['audio_s_per_s']:9.2f} "
                    f"{f['ratio_to_1_worker']:7.3f} {f['peak_rss_mib_per_worker']:9.1f} {f['cpu_s_per_audio_s']:9.4f}")
    audio = base["audio_seconds"]
    print(f"{results['files']} files, {audio:.0f} s of audio (longest {results['longest_file_seconds']:.1f} s), "
          f"best of {args.runs}")
    print(f"{'mode':8} {'seconds':>8} {'files/s':>8} {'audio s/s':>9} {'ratio':>7} {'peak MiB':>9} {'cpu/audio':>9}")
    print("\n".join(rows))
    slope = results["rss_mib_per_audio_minute"]
    (s0, p0), (s1, p1) = results["alone"]
    print(f"peak RSS of a fresh worker: {p0:.0f} MiB for a {s0:.1f} s file, {p1:.0f} MiB for {s1:.1f} s: "
          f"{'n/a' if slope is None else f'{slope:.0f}'} MiB per audio minute past the baseline")
    dask_vs_pool = figures["dask_2"]["ratio_to_1_worker"] / figures["pool_2"]["ratio_to_1_worker"]
    print(json.dumps({"files": results["files"], "audio_seconds": round(audio, 1),
                      "longest_file_seconds": round(results["longest_file_seconds"], 1), "runs": args.runs,
                      "modes": figures, "pool_2_vs_1": figures["pool_2"]["ratio_to_1_worker"],
                      "dask_2_vs_1": figures["dask_2"]["ratio_to_1_worker"],
                      "dask_vs_pool_2": round(dask_vs_pool, 3),
                      "rss_mib_per_audio_minute": None if slope is None else round(slope, 1),
                      "rss_alone": [{"audio_seconds": round(a, 1), "peak_rss_mib": p} for a, p in results["alone"]]}))


if __name__ == "__main__":
    main()
