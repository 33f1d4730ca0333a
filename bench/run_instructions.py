#!/usr/bin/env python3
"""Issue 10: instructions GNC executes per iteration, against the baseline: a count that no
machine noise moves.

Runs `gnc-run run` on a shortened F1 job (M = 8 logical workers of b = 32, 3 iterations) under
valgrind's callgrind, counting only inside an iteration's phases (`benchlib.callgrind_step`:
start-up, data loading and the checkpoint are not counted), once per method. Iteration 0 of GNC has no previous gradients (it
computes as the baseline does); iterations 1 and 2 are full GNC iterations, so the difference
of the two totals is what two GNC iterations add. Slow (valgrind runs the whole process, about
6 minutes per method on an AMD EPYC); both methods run at once.

Writes its section of bench/RESULTS.md (between the instructions markers) and the raw counts
to bench/out/instructions.json.

Usage (from the repository root): python3 bench/run_instructions.py [--workers 8]
"""

import argparse
import datetime
import json
import shutil
import sys

from benchlib import ROOT, callgrind_step, callgrind_total, fashion_mnist_job, machine, replace_section

OUT = ROOT / "bench" / "out" / "instructions"
START = "<!-- instructions:start -->"
END = "<!-- instructions:end -->"
ITERATIONS = 3
HIDDEN = [500] * 7


def spec(method, workers):
    path = OUT / f"f1-{method}.toml"
    model = f'kind = "mlp"\nhidden = {HIDDEN}'
    path.write_text(fashion_mnist_job(f"instructions-{method}", OUT / "runs" / method, model,
                                      workers, method))
    return path


def start(method, workers):
    out = OUT / f"callgrind.{method}"
    proc = callgrind_step(spec(method, workers), out, OUT / f"valgrind.{method}.log", ITERATIONS)
    return proc, out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workers", type=int, default=8)
    args = p.parse_args()
    if not shutil.which("valgrind"):
        sys.exit("valgrind is not installed (apt-get install valgrind)")
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    runs = {m: start(m, args.workers) for m in ("gnc", "baseline")}
    counts = {}
    for method, (proc, out) in runs.items():
        if proc.wait() != 0:
            sys.exit(f"valgrind on {method} failed; see {OUT / f'valgrind.{method}.log'}")
        counts[method] = callgrind_total(out)
    (ROOT / "bench/out/instructions.json").write_text(json.dumps(counts) + "\n")
    g, b = counts["gnc"], counts["baseline"]
    per_worker_iter = {m: c / (ITERATIONS * args.workers) for m, c in counts.items()}
    # P of F1: 784 -> 500 x 7 -> 10 with biases.
    widths = [784] + HIDDEN + [10]
    params = sum(i * o + o for i, o in zip(widths, widths[1:]))
    extra = (g - b) / ((ITERATIONS - 1) * args.workers)
    today = datetime.date.today().isoformat()
    section = f"""{START}
### Instructions per iteration (callgrind; no machine noise)

Measured {today} by `bench/run_instructions.py` on {machine()}: `gnc-run run` of F1 with
M = {args.workers}, b = 32, {ITERATIONS} iterations, one thread, portable level, under
`valgrind --tool=callgrind`, counting only inside an iteration's phases (`Trainer::prepare`,
`compute_blocks`, `finish`).

| method | instructions in the iterations ({ITERATIONS} of them) | per worker-iteration |
|---|---|---|
| baseline | {b:,} | {per_worker_iter['baseline']:,.0f} |
| GNC | {g:,} | {per_worker_iter['gnc']:,.0f} |

GNC / baseline: **{g / b:.4f}**. GNC adds {extra:,.0f} instructions per worker in each of its
{ITERATIONS - 1} full iterations (iteration 0 has no previous gradients), i.e.
{extra / params:.2f} per parameter (P = {params:,}). What differs in the code: GNC makes each
worker's weights from its saved gradient, one fused multiply-add per parameter
(`method::GncWeights::make`), where the baseline's portable layers copy the shared weights, and
keeps each gradient (the weights' as computed, the biases' copied).
{END}
"""
    replace_section(START, END, section)
    print(section)


if __name__ == "__main__":
    main()
