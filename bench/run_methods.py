#!/usr/bin/env python3
"""Method comparison with seeds on the official Fashion-MNIST split (`make bench-methods`).

The regime: the demo's MLP (784 → 512 → 256 → 10) at B = 8,192 (M = 256 logical workers of
b = 32) on a budget of 20 epochs (140 iterations; warmup 2.5 epochs, ÷10 at epochs 10 and 15),
every example job of examples/fashion-mnist/ (baseline, GNC, RNC, GNC→RNC, noise enhancement)
with this network and its schedule scaled to that budget, beside the baseline at small batch (M = 8, B = 256, learning
rates scaled linearly: 4,680 iterations) — the generalization gap the large-batch methods aim
to close. Each method runs with the same seeds (the GNC paper pairs its runs this way), so the
differences are paired over seeds.

Runs are bit-reproducible (their parameter hash is recorded), so a run done once is done: every
finished (method, seed, spec) lands in bench/methods-runs.json (committed), and a later
invocation trains only what is missing there. So the matrix can be split across invocations
(`--seeds`, `--only`), each within the 90 minutes one invocation may take here.

Usage: .venv/bin/python bench/run_methods.py [--seeds 1,2,3,4,5] [--only gnc,baseline]
                                             [--devices cpu:2 | --devices in-process]
                                             [--budget-minutes 85] [--report-only]
"""

import argparse
import fcntl
import hashlib
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchlib import ROOT, machine, replace_section, sh

EXAMPLES = ROOT / "examples" / "fashion-mnist"
OUT = ROOT / "bench" / "out" / "methods"
STORE = ROOT / "bench" / "methods-runs.json"
PLOT = ROOT / "bench" / "methods-accuracy.png"
START, END = "<!-- methods:start -->", "<!-- methods:end -->"
# The regime first (baseline and small batch), then the methods.
ORDER = ["baseline", "small_batch_baseline", "gnc", "rnc", "gnc_to_rnc", "noise_enhancement"]
SMALL_WORKERS = 8
EPOCHS = 20
# The demo's network (examples/demo.toml): F1's 7 × 500 costs 3.5 times as much per example,
# too much for three seeds of six runs on this machine (F1 itself: bench/run_ne_f1.py).
HIDDEN = "[512, 256]"
# The examples' 40-epoch schedule (warmup 5, ÷10 at 20 and 30, GNC→RNC switch at 30) scaled to
# EPOCHS: everything at the same fraction of training.
SCALE = EPOCHS / 40
# Two-sided 95 % quantiles of Student's t, by degrees of freedom.
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def setting(text, key, value):
    """`text` with the first `key = …` line's value replaced (its comment dropped)."""
    new, n = re.subn(rf"^{key}\s*=.*$", f"{key} = {value}", text, count=1, flags=re.M)
    assert n == 1, f"the example has no `{key}` line"
    return new


def number(text, key):
    return float(re.search(rf"^{key}\s*=\s*([0-9.eE+-]+)", text, re.M).group(1))


def spec_text(name, seed):
    """The TOML of method `name` with `seed` in this regime."""
    source = "baseline" if name == "small_batch_baseline" else name
    text = (EXAMPLES / f"{source}.toml").read_text()
    if name == "small_batch_baseline":
        # Goyal et al.: rates proportional to B.
        scale = SMALL_WORKERS / 256
        text = setting(text, "workers", SMALL_WORKERS)
        for key in ("base_lr", "warmup_start_lr"):
            text = setting(text, key, f"{number(text, key) * scale:g}")
    text = setting(text, "name", f'"methods-{name.replace("_", "-")}-{seed}"')
    text = setting(text, "seed", seed)
    text = setting(text, "output_dir", f'"bench/out/methods/{name}/seed-{seed}"')
    text = setting(text, "hidden", HIDDEN)
    text = setting(text, "epochs", EPOCHS)
    text = setting(text, "warmup_epochs", f"{number(text, 'warmup_epochs') * SCALE:g}")
    text = setting(text, "decay", f'{{ kind = "step", milestones = [{20 * SCALE:g}, {30 * SCALE:g}], factor = 0.1 }}')
    if name == "gnc_to_rnc":
        text = setting(text, "switch_epoch", int(30 * SCALE))
    text = setting(text, "every_iterations", 0)  # a checkpoint at the end only
    return f"# Written by bench/run_methods.py from examples/fashion-mnist/{source}.toml\n" + text


def train(name, seed, devices):
    """Trains (name, seed); the row bench/methods-runs.json keeps of it."""
    text = spec_text(name, seed)
    out = OUT / name / f"seed-{seed}"
    out.mkdir(parents=True, exist_ok=True)
    spec = out.parent / f"seed-{seed}.toml"
    spec.write_text(text)
    command = [str(ROOT / "target/release/gncctl"), "run", str(spec), "--json", "--out", str(out)]
    command += ["--threads", "1"] if devices == "in-process" else ["--devices", devices]
    started = time.time()
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    wall = time.time() - started
    if proc.returncode != 0:
        sys.exit(f"{name} seed {seed}: gncctl run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result = json.loads((out / "result.json").read_text())
    evals, last_loss = [], None
    for line in (out / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record["kind"] == "eval":
            evals.append({"epoch": record["epoch"], "test_accuracy": record["test_accuracy"]})
        elif record["kind"] == "iter":
            last_loss = record["loss"]
    return {
        "name": name, "seed": seed,
        "spec_sha256": hashlib.sha256(text.encode()).hexdigest(),
        "batch": (SMALL_WORKERS if name == "small_batch_baseline" else 256) * 32,
        "iterations": result["iterations"],
        "test_accuracy": result["test_accuracy"], "test_loss": result["test_loss"],
        "last_train_loss": last_loss, "evals": evals,
        "params_sha256": result["params_sha256"],
        "gnc_commit": result["reproducibility"]["gnc_commit"],
        "minutes": wall / 60, "devices": devices, "machine": machine(),
        "date": time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
    }


def load_store():
    return json.loads(STORE.read_text()) if STORE.exists() else []


def current(rows):
    """The stored rows of this regime's specs (a row of a changed spec is stale)."""
    return [r for r in rows if r["spec_sha256"] == hashlib.sha256(
        spec_text(r["name"], r["seed"]).encode()).hexdigest()]


def mean_std(values):
    if not values:
        return "", ""
    m = statistics.mean(values)
    s = statistics.stdev(values) if len(values) > 1 else float("nan")
    return m, s


def paired(rows, name, against):
    """Paired differences (points) of `name` minus `against` over their common seeds, and the
    verdict: resolved when the 95 % t interval of the mean difference excludes 0."""
    acc = {(r["name"], r["seed"]): 100 * r["test_accuracy"] for r in rows}
    seeds = sorted(s for (n, s) in acc if n == name and (against, s) in acc)
    diffs = [acc[(name, s)] - acc[(against, s)] for s in seeds]
    if len(diffs) < 2:
        return diffs, f"{len(diffs)} paired seed(s): not enough to tell"
    m, s = statistics.mean(diffs), statistics.stdev(diffs)
    half = T95.get(len(diffs) - 1, 1.96) * s / len(diffs) ** 0.5
    verdict = ("resolved, " + ("higher" if m > 0 else "lower")) if abs(m) > half else "unresolved"
    if len(diffs) < 3:
        verdict += " (fewer than 3 seeds)"
    return diffs, f"{m:+.2f} ± {half:.2f} (95 % t, n = {len(diffs)}): {verdict}"


def gap_closed(rows, name):
    """The method's mean gain over the large-batch baseline as a share of the small batch's
    gain, over the seeds all three have."""
    if name in ("baseline", "small_batch_baseline"):
        return "—"
    acc = {(r["name"], r["seed"]): r["test_accuracy"] for r in rows}
    seeds = [s for (n, s) in acc if n == name
             and ("baseline", s) in acc and ("small_batch_baseline", s) in acc]
    if not seeds:
        return "—"
    gain = sum(acc[(name, s)] - acc[("baseline", s)] for s in seeds)
    gap = sum(acc[("small_batch_baseline", s)] - acc[("baseline", s)] for s in seeds)
    return f"{100 * gain / gap:.0f} % (n = {len(seeds)})" if gap > 0 else "—"


def table(rows):
    head = ["run", "B", "iterations", "seeds", "test acc. per seed", "mean ± std",
            "vs large-batch baseline (paired)", "vs small batch (paired)", "share of the gap closed",
            "minutes per run"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in ORDER:
        mine = sorted((r for r in rows if r["name"] == name), key=lambda r: r["seed"])
        if not mine:
            continue
        accs = [100 * r["test_accuracy"] for r in mine]
        m, s = mean_std(accs)
        cells = [name, f"{mine[0]['batch']:,}", f"{mine[0]['iterations']:,}",
                 ", ".join(str(r["seed"]) for r in mine),
                 ", ".join(f"{a:.2f}" for a in accs),
                 f"{m:.2f} ± {s:.2f} %" if len(accs) > 1 else f"{m:.2f} %",
                 "—" if name == "baseline" else paired(rows, name, "baseline")[1],
                 "—" if name == "small_batch_baseline" else paired(rows, name, "small_batch_baseline")[1],
                 gap_closed(rows, name),
                 f"{statistics.median(r['minutes'] for r in mine):.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def hashes(rows):
    return "\n".join(f"- {r['name']} seed {r['seed']}: `{r['params_sha256'][:12]}` "
                     f"({r['date']}, commit {r['gnc_commit'][:7]}, {r['minutes']:.1f} min, "
                     f"{r['devices']})"
                     for r in sorted(rows, key=lambda r: (ORDER.index(r["name"]), r["seed"])))


def plot(rows):
    """Test accuracy through training of each method's lowest seed (gncctl plot)."""
    dirs = []
    for name in ORDER:
        mine = sorted((r for r in rows if r["name"] == name), key=lambda r: r["seed"])
        if mine and (OUT / name / f"seed-{mine[0]['seed']}" / "metrics.jsonl").exists():
            dirs.append(str(OUT / name / f"seed-{mine[0]['seed']}"))
    if not dirs:
        return False
    proc = subprocess.run([str(ROOT / "target/release/gncctl"), "plot", *dirs, "--metric",
                           "test-accuracy", "--metric", "loss", "-o", str(PLOT)],
                          cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"gncctl plot failed: {proc.stderr[-2000:]}", file=sys.stderr)
    return proc.returncode == 0


def section(rows, plotted):
    machines = sorted({r["machine"].split(",")[0] for r in rows})
    minutes = sum(r["minutes"] for r in rows)
    figure = (f"\n![test accuracy and training loss of each method's first seed]"
              f"({PLOT.name})\n" if plotted or PLOT.exists() else "")
    return f"""{START}
## Methods on Fashion-MNIST at B = 8,192, with seeds (`make bench-methods`)

The regime: the demo's MLP (784 → 512 → 256 → 10) on the official split at B = 8,192
(M = 256 logical workers of b = 32) on a budget of {EPOCHS} epochs (140 iterations: gradual warmup over 2.5 epochs, rate ÷10 at epochs 10
and 15; GNC→RNC switches at epoch 15), each example job of `examples/fashion-mnist/` with its
schedule scaled to this budget; beside it the baseline at small batch (M = {SMALL_WORKERS},
B = 256, rates scaled linearly). The same seeds for every method, so differences are paired over
seeds; a difference is *resolved* when its 95 % t interval excludes zero. Test accuracy on the
10,000 official test images at the end. Machines: {', '.join(machines)}; {minutes:.0f} minutes of
training in all, over the invocations listed below (the runs are bit-reproducible, so rows from
several invocations combine; `bench/methods-runs.json` keeps them).

{table(rows)}
{figure}
Runs (final parameter hash):
{hashes(rows)}
{END}
"""


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", default="1,2,3,4,5")
    p.add_argument("--only", help="comma-separated subset of: " + ", ".join(ORDER))
    p.add_argument("--devices", default="cpu:2",
                   help="`cpu:N` worker processes, or `in-process` (one thread)")
    p.add_argument("--budget-minutes", type=float, default=85,
                   help="start no run after this many minutes of this invocation")
    p.add_argument("--report-only", action="store_true",
                   help="train nothing; rewrite the RESULTS.md section from the stored runs")
    args = p.parse_args()
    names = args.only.split(",") if args.only else ORDER
    unknown = set(names) - set(ORDER)
    if unknown:
        sys.exit(f"unknown run(s) {sorted(unknown)}; choose from {ORDER}")
    seeds = [int(s) for s in args.seeds.split(",")]
    began = time.time()
    if not args.report_only:
        for seed in seeds:
            for name in names:
                have = {(r["name"], r["seed"]) for r in current(load_store())}
                if (name, seed) in have:
                    continue
                if (time.time() - began) / 60 > args.budget_minutes:
                    print(f"budget of {args.budget_minutes:.0f} min spent: stopping before "
                          f"{name} seed {seed}", flush=True)
                    break
                row = train(name, seed, args.devices)
                with open(OUT / "store.lock", "w") as lock:
                    # Two invocations (other seeds) may finish at once.
                    fcntl.flock(lock, fcntl.LOCK_EX)
                    rows = [r for r in load_store() if (r["name"], r["seed"]) != (name, seed)]
                    STORE.write_text(json.dumps(rows + [row], indent=1) + "\n")
                print(f"{name:22s} seed {seed}: test accuracy {100 * row['test_accuracy']:.2f} % "
                      f"({row['minutes']:.1f} min)", flush=True)
    rows = current(load_store())
    replace_section(START, END, section(rows, plot(rows)))
    dirty = sh(["git", "status", "--porcelain", "--untracked-files=no"])
    print(f"wrote {ROOT / 'bench/RESULTS.md'} ({len(rows)} runs; tree {'dirty' if dirty else 'clean'})")


if __name__ == "__main__":
    main()
