#!/usr/bin/env python3
"""Method comparison with seeds on the official Fashion-MNIST split (`make bench-methods`).

The regime: the demo's MLP (784 → 512 → 256 → 10) at B = 8,192 (M = 256 logical workers of
b = 32) on a budget of 20 epochs (140 iterations; warmup 2.5 epochs, ÷10 at epochs 10 and 15),
every example job of examples/fashion-mnist/ (baseline, GNC, RNC, GNC→RNC, noise enhancement)
with this network and its schedule scaled to that budget, beside the baseline at small batch (M = 8, B = 256, learning
rates scaled linearly: 4,680 iterations) — the generalization gap the large-batch methods aim
to close. Each method runs with the same seeds (the GNC paper pairs its runs this way), so the
differences are paired over seeds. The noise-enhancement example trains with Adam, the others
with momentum SGD, so its comparisons with them are labelled not comparable; `adam_baseline`
(the same job with α = 1, i.e. no noise enhancement: Adam on the same schedule) is its baseline.

Runs are bit-reproducible (their parameter hash is recorded), so a run done once is done: every
finished (method, seed, spec) lands in bench/methods-runs.json (committed), and a later
invocation trains only what is missing there. So the matrix can be split across invocations
(`--seeds`, `--only`), each within the 90 minutes one invocation may take here. A run is keyed by
its spec's settings (the parsed TOML: editing an example's comments keeps its runs). A run that
diverges is an outcome, not an error: its row is flagged `diverged`, its accuracy that of its last
evaluation (none: chance, 10 %).

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
import tomllib
from pathlib import Path

from benchlib import (ROOT, b_simple_by_phase, diverged_fields, fieller, gncctl_plot, machine,
                      mean_interval, metric_records, outcome, replace_section, sh)

EXAMPLES = ROOT / "examples" / "fashion-mnist"
OUT = ROOT / "bench" / "out" / "methods"
STORE = ROOT / "bench" / "methods-runs.json"
PLOT = ROOT / "bench" / "methods-accuracy.png"
START, END = "<!-- methods:start -->", "<!-- methods:end -->"
# The regime first (baseline and small batch), then the methods.
ORDER = ["baseline", "small_batch_baseline", "gnc", "rnc", "gnc_to_rnc", "noise_enhancement",
         "adam_baseline"]
# Runs with Adam (the NE paper's optimiser): against the momentum-SGD baselines they compare
# optimisers as much as methods, and at Adam's rate 0.001 on 140 iterations they have not
# converged; the NE row's own baseline is adam_baseline.
ADAM = {"noise_enhancement", "adam_baseline"}
NOT_COMPARABLE = "not comparable (Adam vs momentum SGD, not converged)"
SMALL_WORKERS = 8
EPOCHS = 20
# The demo's network (examples/demo.toml): F1's 7 × 500 costs 3.5 times as much per example,
# too much for three seeds of six runs on this machine (F1 itself: bench/run_ne_f1.py).
HIDDEN = "[512, 256]"
# The examples' 40-epoch schedule (warmup 5, ÷10 at 20 and 30, GNC→RNC switch at 30) scaled to
# EPOCHS: everything at the same fraction of training.
SCALE = EPOCHS / 40
# The schedule's phases in epochs (warmup, then the three rates), for B_simple by phase.
PHASES = [0, 5 * SCALE, 20 * SCALE, 30 * SCALE, EPOCHS]


def setting(text, key, value):
    """`text` with the first `key = …` line's value replaced (its comment dropped)."""
    new, n = re.subn(rf"^{key}\s*=.*$", f"{key} = {value}", text, count=1, flags=re.M)
    assert n == 1, f"the example has no `{key}` line"
    return new


def number(text, key):
    return float(re.search(rf"^{key}\s*=\s*([0-9.eE+-]+)", text, re.M).group(1))


def spec_text(name, seed):
    """The TOML of method `name` with `seed` in this regime."""
    source = {"small_batch_baseline": "baseline", "adam_baseline": "noise_enhancement"}.get(name, name)
    text = (EXAMPLES / f"{source}.toml").read_text()
    if name == "adam_baseline":
        # NE's α = 1 is no noise enhancement: the baseline method with NE's optimiser and rates.
        text, n = re.subn(r'^kind = "noise_enhancement".*\nalpha = .*$',
                          'kind = "baseline"     # NE α = 1: no noise enhancement', text,
                          count=1, flags=re.M)
        assert n == 1, "the NE example's [method] changed shape"
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


def settings_sha256(text):
    """SHA-256 of a spec's settings: its parsed TOML, keys sorted (comments do not count)."""
    return hashlib.sha256(json.dumps(tomllib.loads(text), sort_keys=True).encode()).hexdigest()


def train(name, seed, devices):
    """Trains (name, seed); the row bench/methods-runs.json keeps of it (a diverged run's too)."""
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
    ended = outcome(proc.returncode, proc.stderr)
    if ended is None:
        sys.exit(f"{name} seed {seed}: gncctl run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    records = metric_records(out)
    iters = [r for r in records if r["kind"] == "iter"]
    evals = [{"epoch": r["epoch"], "test_accuracy": r["test_accuracy"],
              "test_loss": r["test_loss"]} for r in records if r["kind"] == "eval"]
    if ended == "done":
        result = json.loads((out / "result.json").read_text())
        fields = {"diverged": False, "test_accuracy": result["test_accuracy"],
                  "test_loss": result["test_loss"], "iterations": result["iterations"],
                  "params_sha256": result["params_sha256"],
                  "gnc_commit": result["reproducibility"]["gnc_commit"]}
    else:
        fields = {**diverged_fields(iters, evals), "iterations": len(iters),
                  "params_sha256": None, "gnc_commit": sh(["git", "rev-parse", "HEAD"])}
    return {
        "name": name, "seed": seed,
        "spec_sha256": hashlib.sha256(text.encode()).hexdigest(),
        "settings_sha256": settings_sha256(text),
        "batch": (SMALL_WORKERS if name == "small_batch_baseline" else 256) * 32,
        **fields,
        "last_train_loss": iters[-1]["loss"] if iters else None, "evals": evals,
        "b_simple": b_simple_by_phase(iters, PHASES),
        "minutes": wall / 60, "devices": devices, "machine": machine(),
        "date": time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
    }


def load_store():
    return json.loads(STORE.read_text()) if STORE.exists() else []


def current(rows):
    """The stored rows of this regime's specs (a row of a spec whose settings changed is
    stale)."""
    return [r for r in rows if r.get("settings_sha256") == settings_sha256(
        spec_text(r["name"], r["seed"]))]


def mean_std(values):
    if not values:
        return "", ""
    m = statistics.mean(values)
    s = statistics.stdev(values) if len(values) > 1 else float("nan")
    return m, s


def paired(rows, name, against):
    """Paired differences (points) of `name` minus `against` over their common seeds, and the
    verdict: resolved when the 95 % t interval of the mean difference (n − 1 degrees of
    freedom) excludes 0; not comparable where one of the two runs with Adam and the other
    with momentum SGD."""
    acc = {(r["name"], r["seed"]): 100 * r["test_accuracy"] for r in rows}
    seeds = sorted(s for (n, s) in acc if n == name and (against, s) in acc)
    diffs = [acc[(name, s)] - acc[(against, s)] for s in seeds]
    if len(diffs) < 2:
        return diffs, f"{len(diffs)} paired seed(s): not enough to tell"
    m, half = mean_interval(diffs)
    if (name in ADAM) != (against in ADAM):
        verdict = NOT_COMPARABLE
    else:
        verdict = ("resolved, " + ("higher" if m > 0 else "lower")) if abs(m) > half else "unresolved"
    if len(diffs) < 3:
        verdict += " (fewer than 3 seeds)"
    return diffs, f"{m:+.2f} ± {half:.2f} (95 % t, n = {len(diffs)}): {verdict}"


def gap_closed(rows, name):
    """The method's mean gain over the large-batch baseline as a share of the small batch's
    mean gain over it, over the seeds all three have, with Fieller's 95 % interval for that
    ratio of paired means (the two gains share the baseline's seed, so they covary)."""
    if name in ("baseline", "small_batch_baseline") or name in ADAM:
        return "—"
    acc = {(r["name"], r["seed"]): r["test_accuracy"] for r in rows}
    seeds = sorted(s for (n, s) in acc if n == name
                   and ("baseline", s) in acc and ("small_batch_baseline", s) in acc)
    if len(seeds) < 2:
        return "—"
    gain = [acc[(name, s)] - acc[("baseline", s)] for s in seeds]
    gap = [acc[("small_batch_baseline", s)] - acc[("baseline", s)] for s in seeds]
    ratio, low, high = fieller(gain, gap)
    if low is None:
        return f"{100 * ratio:.0f} % (interval unbounded: the gap is not resolved; n = {len(seeds)})"
    return f"{100 * ratio:.0f} % ({100 * low:.0f} % to {100 * high:.0f} %, n = {len(seeds)})"


def accuracy_cell(r):
    acc = f"{100 * r['test_accuracy']:.2f}"
    if r.get("diverged"):
        acc += f" (diverged at iteration {r['diverged_at']}" + (
            ", never evaluated: chance)" if r["no_evaluation"] else ", last evaluation)")
    return acc


def b_simple_table(rows):
    """B_simple by phase, median over seeds, for the runs whose rows carry it."""
    names = [n for n in ORDER if any(r["name"] == n and r.get("b_simple") for r in rows)]
    if not names:
        return ("The gradient noise scale B_simple (McCandlish et al. 2018) by phase: not in the "
                "stored rows (trained before this script recorded it; the iteration records "
                "that it needs were not kept). It is recorded for every run trained from now on.")
    bounds = list(zip(PHASES, PHASES[1:]))
    head = ["run", "B"] + [f"epochs {lo:g}–{hi:g}" for lo, hi in bounds]
    lines = ["Gradient noise scale B_simple = Σ tr(Σ) / Σ |G|² (McCandlish et al. 2018) over each "
             "phase's iteration records (the M workers' unbiased estimates; under GNC or RNC at "
             "the perturbed weights), median over seeds:", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in names:
        mine = [r for r in rows if r["name"] == name and r.get("b_simple")]
        cells = [name, f"{mine[0]['batch']:,}"]
        for k in range(len(bounds)):
            values = [r["b_simple"][k]["b_simple"] for r in mine
                      if r["b_simple"][k]["b_simple"] is not None]
            cells.append(f"{statistics.median(values):,.0f} (n = {len(values)})" if values else "—")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table(rows):
    head = ["run", "B", "iterations", "seeds", "test acc. per seed", "mean ± std",
            "vs large-batch baseline (paired)", "vs small batch (paired)", "vs Adam α = 1 (paired)",
            "share of the gap closed (95 % Fieller)", "minutes per run"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in ORDER:
        mine = sorted((r for r in rows if r["name"] == name), key=lambda r: r["seed"])
        if not mine:
            continue
        accs = [100 * r["test_accuracy"] for r in mine]
        m, s = mean_std(accs)
        cells = [name, f"{mine[0]['batch']:,}", f"{mine[0]['iterations']:,}",
                 ", ".join(str(r["seed"]) for r in mine),
                 ", ".join(accuracy_cell(r) for r in mine),
                 f"{m:.2f} ± {s:.2f} %" if len(accs) > 1 else f"{m:.2f} %",
                 "—" if name == "baseline" else paired(rows, name, "baseline")[1],
                 "—" if name == "small_batch_baseline" else paired(rows, name, "small_batch_baseline")[1],
                 "—" if name == "adam_baseline" else (
                     paired(rows, name, "adam_baseline")[1]
                     if any(r["name"] == "adam_baseline" for r in rows) else
                     "not yet run" if name in ADAM else "—"),
                 gap_closed(rows, name),
                 f"{statistics.median(r['minutes'] for r in mine):.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def hashes(rows):
    return "\n".join(f"- {r['name']} seed {r['seed']}: "
                     + (f"diverged at iteration {r['diverged_at']}" if r.get("diverged")
                        else f"`{r['params_sha256'][:12]}`")
                     + f" ({r['date']}, commit {r['gnc_commit'][:7]}, {r['minutes']:.1f} min, "
                     f"{r['devices']})"
                     for r in sorted(rows, key=lambda r: (ORDER.index(r["name"]), r["seed"])))


def plot(rows):
    """Test accuracy through training of each method's lowest seed (gncctl plot). Drawn only
    when every method's run is on this machine's disk: rows combine invocations on several
    machines, and a figure of the few runs one machine has would replace the whole one."""
    dirs, missing = [], []
    for name in ORDER:
        mine = sorted((r for r in rows if r["name"] == name), key=lambda r: r["seed"])
        if not mine:
            continue
        out = OUT / name / f"seed-{mine[0]['seed']}"
        (dirs if (out / "metrics.jsonl").exists() else missing).append(out)
    if missing:
        print(f"{PLOT.name} kept as it is: not on this disk: "
              + ", ".join(str(m.relative_to(ROOT)) for m in missing), file=sys.stderr)
        return False
    return bool(dirs) and gncctl_plot(dirs, ["test-accuracy", "loss"], PLOT)


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
seeds; a difference is *resolved* when its 95 % t interval (n − 1 degrees of freedom) excludes
zero. The share of the gap closed is the method's mean gain over the large-batch baseline over
the small batch's mean gain, with Fieller's 95 % interval for that ratio of paired means. The
noise-enhancement example trains with Adam at its default rate 0.001, the others with momentum
SGD at 0.2: its comparisons with them are *not comparable* (optimisers as much as methods, and
on 140 iterations Adam at that rate has not converged); its own baseline is `adam_baseline`,
the same job with α = 1 (no noise enhancement). A run that diverges is an outcome (flagged; its
accuracy that of its last evaluation). Test accuracy on the
10,000 official test images at the end. Machines: {', '.join(machines)}; {minutes:.0f} minutes of
training in all, over the invocations listed below (the runs are bit-reproducible, so rows from
several invocations combine; `bench/methods-runs.json` keeps them).

{table(rows)}

{b_simple_table(rows)}
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
                print(f"{name:22s} seed {seed}: test accuracy {accuracy_cell(row)} % "
                      f"({row['minutes']:.1f} min)", flush=True)
    rows = current(load_store())
    replace_section(START, END, section(rows, plot(rows)))
    dirty = sh(["git", "status", "--porcelain", "--untracked-files=no"])
    print(f"wrote {ROOT / 'bench/RESULTS.md'} ({len(rows)} runs; tree {'dirty' if dirty else 'clean'})")


if __name__ == "__main__":
    main()
