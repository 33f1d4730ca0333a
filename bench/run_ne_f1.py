#!/usr/bin/env python3
"""The noise-enhancement paper's F1 row of Table 2 (B = 900, no noise enhancement), trained
by gnc (`make bench-ne-f1`).

bench/ne-f1-table2.toml is the paper's protocol (Mori & Ueda 2020, §3, Tables 1–2): F1 on the
official Fashion-MNIST split, Adam with its defaults, Glorot initialisation, no weight decay
or augmentation, the rate halved when the training loss reaches L* = 0.01 and the run ended
when it falls below L** = 0.001. The paper reports 90.17 ± 0.14 % test accuracy in
10,934 ± 816 iterations (10 initialisations). This trains the seeds asked for (the spec with
`seed` replaced; one run is about 11,000 iterations, about an hour on one core here), resuming
a seed whose run stopped, and writes the comparison to bench/RESULTS.md. Finished seeds are
kept in bench/ne-f1-runs.json (runs are bit-reproducible: a finished seed is never re-run).

Usage: .venv/bin/python bench/run_ne_f1.py [--seeds 1,2,3] [--budget-minutes 85] [--report-only]
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from benchlib import ROOT, machine, outcome, replace_section, run_until_deadline, welch

SPEC = ROOT / "bench" / "ne-f1-table2.toml"
OUT = ROOT / "bench" / "out" / "ne-f1"
STORE = ROOT / "bench" / "ne-f1-runs.json"
START, END = "<!-- ne-f1:start -->", "<!-- ne-f1:end -->"
PAPER = {"accuracy": (90.17, 0.14), "iterations": (10934, 816), "seeds": 10}


def spec_for(seed):
    text = SPEC.read_text()
    text = text.replace("seed = 1\n", f"seed = {seed}\n", 1)
    text = text.replace('output_dir = "bench/out/ne-f1/seed-1"',
                        f'output_dir = "bench/out/ne-f1/seed-{seed}"', 1)
    assert f"seed = {seed}" in text and f"seed-{seed}" in text, "the spec changed shape"
    path = OUT / f"seed-{seed}.toml"
    path.write_text(text)
    return path


def train(seed, deadline):
    """Trains (or resumes) `seed` until it converges or `deadline` passes; its row, or None if
    it stopped unfinished."""
    out = OUT / f"seed-{seed}"
    began = time.time()
    finished = out / "result.json"
    if not (finished.exists() and json.loads(finished.read_text())["complete"]):
        if not run_until(seed, out, deadline):
            return None
    return row(seed, out, began)


def run_until(seed, out, deadline):
    """Trains or resumes `seed` in `out`; whether it finished before `deadline`."""
    command = [str(ROOT / "target/release/gncctl"), "run", str(spec_for(seed)), "--json",
               "--out", str(out)]
    if (out / "checkpoints").is_dir():
        command.append("--resume")
    code, stderr = run_until_deadline(command, deadline)
    if code is None:
        print(f"seed {seed}: budget spent, stopped with a checkpoint", flush=True)
        return False
    if outcome(code, stderr) != "done":
        # Adam at its default rate on this protocol has not diverged; should a seed diverge,
        # this is where it would become an outcome row (bench/run_regime.py shows how).
        sys.exit(f"seed {seed}: gncctl run failed ({code}):\n{stderr[-3000:]}")
    return json.loads((out / "result.json").read_text())["complete"]


def row(seed, out, began):
    """What bench/ne-f1-runs.json keeps of a finished run."""
    result = json.loads((out / "result.json").read_text())
    iters = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    lrs = [(r["iter"], r["lr"]) for r in iters if r["kind"] == "iter"]
    halved = next((t for t, lr in lrs if lr < lrs[0][1]), None)
    return {
        "seed": seed,
        "test_accuracy": result["test_accuracy"],
        "test_loss": result["test_loss"],
        "converged_at": result.get("converged_at"),
        "halved_at": halved,
        "iterations": result["iterations"],
        "params_sha256": result["params_sha256"],
        "gnc_commit": result["reproducibility"]["gnc_commit"],
        "train_seconds": result["train_seconds"],
        "wall_minutes_this_invocation": (time.time() - began) / 60,
        "machine": machine(),
        "date": time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
    }


def load():
    return json.loads(STORE.read_text()) if STORE.exists() else []


def section(rows):
    rows = sorted(rows, key=lambda r: r["seed"])
    lines = ["| seed | test accuracy | convergence time (iterations) | rate halved at | "
             "final test loss | params sha256 | machine |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['seed']} | {100 * r['test_accuracy']:.2f} % | "
                     f"{r['converged_at'] if r['converged_at'] is not None else 'did not converge'} | "
                     f"{r['halved_at']} | {r['test_loss']:.4f} | `{r['params_sha256'][:12]}` | "
                     f"{r['machine'].split(',')[0]} |")
    accs = [100 * r["test_accuracy"] for r in rows]
    its = [r["converged_at"] for r in rows if r["converged_at"] is not None]

    def summary(values, fmt):
        if not values:
            return "—"
        if len(values) == 1:
            return f"{fmt(values[0])} (one seed)"
        return f"{fmt(statistics.mean(values))} ± {fmt(statistics.stdev(values))} ({len(values)} seeds)"

    pa, pi = PAPER["accuracy"], PAPER["iterations"]

    def against_paper(values, paper, digits, unit=""):
        """gnc's mean − the paper's, with Welch's 95 % interval (Welch–Satterthwaite degrees of
        freedom, the paper's ± read as the standard deviation over its initialisations)."""
        if len(values) < 2:
            return "—"
        diff, half, df = welch(statistics.mean(values), statistics.stdev(values), len(values),
                               paper[0], paper[1], PAPER["seeds"])
        verdict = (f"not distinguishable with {len(values)} seeds" if abs(diff) <= half
                   else "resolved, " + ("higher" if diff > 0 else "lower"))
        return (f"{diff:+,.{digits}f}{unit} ± {half:,.{digits}f}{unit} ({df:.1f} degrees of "
                f"freedom): {verdict}")
    return f"""{START}
## The noise-enhancement paper's F1 row, trained by gnc (`make bench-ne-f1`)

`bench/ne-f1-table2.toml`: F1 (7 hidden layers of 500 ReLU units) on the official
Fashion-MNIST split, B = 900 (M = 9 logical workers of b = 100), no noise enhancement (α = 1),
Adam with its default hyperparameters, Glorot initialisation, no weight decay or augmentation;
the rate is halved when the mean training loss of the last 100 iterations reaches
L* = 0.01 and the run ends when it falls below L** = 0.001 (Mori & Ueda 2020, §3, Tables 1–2).
Test accuracy on the 10,000 test images at the end; the convergence time is the iterations
until the run ended.

| | test accuracy | convergence time (iterations) |
|---|---|---|
| Mori & Ueda 2020, Table 2 (F1, α = 1, B = 900; {PAPER['seeds']} initialisations) | {pa[0]:.2f} ± {pa[1]:.2f} % | {pi[0]:,} ± {pi[1]:,} |
| gnc | {summary(accs, lambda v: f'{v:.2f} %')} | {summary(its, lambda v: f'{v:,.0f}')} |
| gnc − paper (Welch's 95 % interval) | {against_paper(accs, pa, 2, " points")} | {against_paper(its, pi, 0)} |

{chr(10).join(lines)}

Each run is bit-reproducible (its final hash above); `bench/ne-f1-runs.json` keeps them.
{END}
"""


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--budget-minutes", type=float, default=85,
                   help="stop (with a checkpoint, to resume later) after this many minutes")
    p.add_argument("--report-only", action="store_true")
    args = p.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    deadline = time.time() + 60 * args.budget_minutes
    if not args.report_only:
        for seed in (int(s) for s in args.seeds.split(",")):
            if any(r["seed"] == seed for r in load()):
                continue
            if time.time() > deadline:
                break
            row = train(seed, deadline)
            if row is None:
                break
            rows = [r for r in load() if r["seed"] != seed]
            STORE.write_text(json.dumps(rows + [row], indent=1) + "\n")
            print(f"seed {seed}: {100 * row['test_accuracy']:.2f} % in {row['converged_at']} "
                  "iterations", flush=True)
    rows = load()
    if rows:
        replace_section(START, END, section(rows))
        print(f"wrote {ROOT / 'bench/RESULTS.md'} ({len(rows)} seed(s))")


if __name__ == "__main__":
    main()
