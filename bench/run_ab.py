"""Before against after: whole `gncctl run`s of one job by two (or more) builds of gnc, alternated.

Each build is a directory holding its `gncctl` and `gnc-run` (copy them out of target/release
after building each commit). Every round runs the job once per build, in an order reversed
from round to round; a run's figure is the median of its own per-iteration records
(`metrics.jsonl` `seconds`, the first two iterations untimed). Reported: per build the median
(min-max) over rounds; per later build the median (min-max) of its per-round ratio to the
first; and whether every build and round gave the same parameter hash and the same iteration
records apart from their times (a change meant to keep the bits must show both).

Usage (from the repository root):
  python3 bench/run_ab.py SPEC BUILD_DIR BUILD_DIR... [--rounds 6] [--iters 8] [--threads 1]
"""

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

UNTIMED = 2


def run(build, spec, iters, threads, out):
    shutil.rmtree(out, ignore_errors=True)
    cmd = [str(Path(build) / "gncctl"), "run", str(spec), "--stop-after", str(iters),
           "--threads", str(threads), "--json", "--out", str(out)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode:
        sys.exit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    iters = [r for r in records if r["kind"] == "iter"]
    times = [r.pop("seconds") * 1e3 for r in iters]
    return statistics.median(times[UNTIMED:]), json.loads(p.stdout)["params_sha256"], \
        json.dumps(iters, sort_keys=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("spec")
    p.add_argument("builds", nargs="+")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--iters", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    if len(args.builds) < 2:
        sys.exit("give at least two build directories")
    if args.iters <= UNTIMED:
        sys.exit(f"--iters must exceed the {UNTIMED} untimed iterations")
    times = {b: [] for b in args.builds}
    outcomes = set()
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            order = args.builds if r % 2 == 0 else args.builds[::-1]
            for b in order:
                ms, digest, records = run(b, args.spec, args.iters, args.threads,
                                          Path(tmp) / "run")
                times[b].append(ms)
                outcomes.add((digest, records))
                print(f"round {r} {b}: {ms:.0f} ms", flush=True)
    print(f"{args.spec}, {args.threads} thread(s), {args.rounds} rounds, "
          f"iterations {UNTIMED}-{args.iters - 1} timed")
    for b, t in times.items():
        print(f"  {b}: {statistics.median(t):.0f} ms ({min(t):.0f}-{max(t):.0f})")
    first = args.builds[0]
    for b in args.builds[1:]:
        ratios = [x / y for x, y in zip(times[b], times[first])]
        print(f"  {b} / {first} per round: {statistics.median(ratios):.3f} "
              f"({min(ratios):.3f}-{max(ratios):.3f})")
    same = len(outcomes) == 1
    print(f"  same parameter hash and iteration records (but times) everywhere: {same}")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
