#!/usr/bin/env python3
"""GNC in the regime its paper is about (issue 24, `make bench-regime`).

The designs are pre-registered in issue 24; their arms and α are fixed here before any result
is seen and are not to be changed after:

- **d2-pilot**: VGG-style [16, 32, 64] × 2 with per-logical-worker BatchNorm on the official
  Fashion-MNIST split, B = 8,192 (M = 256, b = 32), momentum 0.9, WD 1e-4, 32 epochs, linear
  warmup from 0.025 over the first 8 epochs (about 56 iterations, as long in iterations as the
  GNC paper's 10 of 160 epochs at its batch), ÷10 at 50 % and 75 %. The baseline and GNC
  α = 0.1 at η ∈ {1.6, 3.2, 6.4}, one seed, against B = 256 (M = 8) at η = 0.2 (the linear
  rule: 6.4 × 256 / 8,192), same epochs.

- **d2-matrix**: the pilot's regime at η = 6.4 on VGG [8, 16, 32] × 1 (see DESIGNS): baseline,
  GNC α = 0.1, RNC α = 0.01, GNC→RNC (0.1 → 2.0 at 75 %), small batch; seeds 1–3.
- **d2-full**: d2-matrix's arms and seeds on the pilot's network, [16, 32, 64] × 2.
- **d1**: the demo's MLP [512, 256] (no BatchNorm), B = 8,192, 40 epochs, 1 epoch of warmup
  from 0.025, ÷10 at 50 % and 75 %; η ∈ {0.4, 0.8, 1.6, 3.2}; baseline, GNC α = 0.1, GNC with
  αη = 0.64, RNC α = 0.01, each paired with the baseline at its η; seeds 1–3.
- **d1-stable**: D1's baseline at η = 0.2 and 0.1 (seeds 1–3), to find D1's largest stable η
  for D3 (none of D1's grid is).
- **d3**: magnitude or direction at η = 0.2: GNC α ∈ {0.1, 0.4, 1.6, 3.2} against RNC of the
  same measured relative perturbation; seeds 1–5.
- **keskar**: small- and large-batch end points at one training loss (loss trigger), then
  `gncctl analyze` (ε-sharpness, λ_max at h and h/10, the line between them); seeds 1–3.
- **keskar-same-rate** (exploratory, added after keskar's results): keskar with the small batch
  at the large batch's rate 0.2, as Keskar et al. train both.

A run that diverges is an outcome, not an error: its row is flagged `diverged` (with the
iteration) and its accuracy is that of its last evaluation (none: 10 %, chance on 10 classes,
flagged). Each row also keeps the gradient noise scale B_simple (McCandlish et al. 2018) by phase of
the schedule (warmup, then the three rates), from the iteration records. Runs train on one thread each (`--threads 1`), checkpoint every few iterations and
are resumed from their newest checkpoint by the next invocation, so a design can be finished
over many invocations (`--budget-minutes`). Finished runs are kept in bench/regime-runs.json
(keyed by the spec's SHA-256: a changed spec is a new run); runs are bit-reproducible, so a
finished run is never re-run.

The report (also `--report-only`, which trains nothing) draws with `gncctl plot`, for each
design with finished or diverged runs, test accuracy (and training loss) against epoch of each
arm's lowest such seed (bench/regime-<design>.png), and for a design with `[diagnostics]` the
diagnostics of seed 1 of each arm (bench/regime-<design>-diagnostics.png); a figure gncctl
cannot draw is left out and the report written without it.

Usage: .venv/bin/python bench/run_regime.py [--design d2-pilot|d2-matrix|d2-full|d1|d1-stable|d3|keskar|keskar-same-rate] [--budget-minutes 85]
                                            [--report-only]
"""

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchlib import (CHANCE, ROOT, b_simple_by_phase, diagnostic_metrics, diagnostics_records,
                      gncctl_plot, machine, mean_interval, metric_records, outcome,
                      replace_section, run_until_deadline)

OUT = ROOT / "bench" / "out" / "regime"
STORE = ROOT / "bench" / "regime-runs.json"
START, END = "<!-- regime:start -->", "<!-- regime:end -->"
LARGE_WORKERS, SMALL_WORKERS, SMALL_BATCH = 256, 8, 32
# Figures drawn by hand for RESULTS.md's summary, kept as they are: a generated figure that
# would have one of these names takes another (`figure_path`).
HAND_MADE = {"regime-d1-lr0.4-seed3.png", "regime-d2-matrix-seed1.png", "regime-d2-pilot.png"}

VGG = 'kind = "vgg"\nchannels = [16, 32, 64]\nconvs_per_stage = 2'


def arm(name, workers, lr, method='kind = "baseline"', ref=None):
    """An arm; `ref` names the arm its paired differences are taken against (the design's
    first arm where None)."""
    return {"name": name, "workers": workers, "lr": lr, "method": method, "ref": ref}


GNC = 'kind = "gnc"\nalpha = 0.1'
RNC = 'kind = "rnc"\nalpha = 0.01'
GNC_TO_RNC = 'kind = "gnc_to_rnc"\nalpha_gnc = 0.1\nalpha_rnc = 2.0\nswitch_epoch = 24'
# The matrix's network (decided from the pilot's wall times, before any matrix run, as issue
# 24 asks): 15 runs of the pilot's network would take 10-14 hours of one core (40-56 minutes
# each on the Intel Xeon), more than the ~6 hours allowed, so every arm uses [8, 16, 32] x 1.
SMALL_VGG = 'kind = "vgg"\nchannels = [8, 16, 32]\nconvs_per_stage = 1'
SMALL_LR = 6.4 * SMALL_WORKERS / LARGE_WORKERS  # 0.2: the linear rule from 6.4 at B = 8,192

# The D2 matrix's arms (issue 24), at the pilot's η = 6.4.
MATRIX_ARMS = [
    arm("baseline-lr6.4", LARGE_WORKERS, 6.4),
    arm("gnc0.1-lr6.4", LARGE_WORKERS, 6.4, GNC),
    arm("rnc0.01-lr6.4", LARGE_WORKERS, 6.4, RNC),
    arm("gnc_to_rnc-lr6.4", LARGE_WORKERS, 6.4, GNC_TO_RNC),
    arm("small-batch", SMALL_WORKERS, SMALL_LR),
]

# D1's network: the demo's MLP (examples/demo.toml), no BatchNorm.
DEMO_MLP = 'kind = "mlp"\nhidden = [512, 256]'


def d1_arms():
    """D1 (issue 24, fixed before any D1 run): at each η, the baseline, GNC α = 0.1, GNC with
    αη = 0.64 (the GNC paper's product: 0.1 × 6.4) and RNC α = 0.01, each paired with the
    baseline at its η. The baselines come first, so that the endpoint's η (the largest where
    the baseline's seeds spread by more than a point or one diverges) is known early."""
    rates = (0.4, 0.8, 1.6, 3.2)
    arms = [arm(f"baseline-lr{lr:g}", LARGE_WORKERS, lr) for lr in rates]
    for lr in rates:
        ref = f"baseline-lr{lr:g}"
        arms += [
            arm(f"gnc0.1-lr{lr:g}", LARGE_WORKERS, lr, GNC, ref),
            arm(f"gnc{0.64 / lr:g}-lr{lr:g}", LARGE_WORKERS, lr,
                f'kind = "gnc"\nalpha = {0.64 / lr:g}', ref),
            arm(f"rnc0.01-lr{lr:g}", LARGE_WORKERS, lr, RNC, ref),
        ]
    return arms


D3_LR = 0.2
D3_ALPHAS = (0.1, 0.4, 1.6, 3.2)
# Every 28 iterations (4 epochs at B = 8,192): the perturbed models' losses over 512 examples
# and their sizes; the full gradient over 2,048 and two smoothness steps keep the rest cheap.
D3_DIAGNOSTICS = """
[diagnostics]
every_iterations = 28
examples = 2048
smoothness_steps = 2
"""


def noise_records(out, kind):
    """The `kind` ("gnc" or "rnc") perturbed-loss spreads of a run's diagnostics records, each
    with the record's unperturbed loss."""
    found = []
    for r in diagnostics_records(out):
        p = r.get("perturbed")
        if p and p.get(kind):
            found.append({**p[kind], "unperturbed": p["unperturbed"], "lr": p["lr"]})
    return found


def noise_summary(out, kind):
    """A run's own noise, averaged over its diagnostics records: the mean per-filter relative
    perturbation ‖x_i^(p) − x^(p)‖/‖x^(p)‖, and the curvature along the noise,
    (mean_i L(x_i) − L(x)) / mean_i ‖x_i − x‖² (GNC §3.2); None without records."""
    spreads = [s for s in noise_records(out, kind) if s.get("relative_norms")]
    sizes = [sum(s["relative_norms"]) / len(s["relative_norms"]) for s in spreads]
    curvatures = [(s["mean"] - s["unperturbed"]) / (sum(s["squared_norms"]) / len(s["squared_norms"]))
                  for s in spreads if s.get("squared_norms")]
    if not sizes:
        return None
    return {"records": len(spreads), "relative_size": sum(sizes) / len(sizes),
            "curvature": sum(curvatures) / len(curvatures) if curvatures else None,
            # The α at which RNC (size α η_t by construction) has the same mean size over the
            # same records: Σ size / Σ η_t.
            "rnc_alpha": sum(sizes) / sum(s["lr"] for s in spreads)}


_RNC_ALPHAS = {}


def rnc_alpha(gnc_alpha):
    """RNC's α for the GNC arm of `gnc_alpha` (D3; the rule fixed before any D3 run): RNC's
    per-filter relative perturbation is α η_t by construction, so α = Σ s_t / Σ η_t over the
    diagnostics records of that GNC arm's seed-1 run, s_t the mean per-filter relative size of
    GNC's noise in record t and η_t its rate: the α at which RNC's mean size over those records
    is GNC's. None until that run has finished. (The first implementation divided by the base
    rate, s̄ / η, which ignores the schedule's decay and gave RNC about half GNC's mean size;
    seen in the sizes of the noise table after two RNC seed-1 runs had finished, corrected,
    and those runs redone.)

    Added when GNC α = 1.6 and 3.2 diverged at their iterations 9 and 6, before their first
    record of GNC's noise (iteration 28), and before any RNC run matched to them: such an arm's
    s is measured over the iterations its run made before diverging, by the same run again up
    to there with a record every iteration ([`calibrate`]); diagnostics change no bit, so it
    is the same trajectory."""
    if gnc_alpha in _RNC_ALPHAS:  # measured once: a finished run never changes
        return _RNC_ALPHAS[gnc_alpha]
    name = f"gnc{gnc_alpha:g}-lr{D3_LR:g}"
    a = next(x for x in DESIGNS["d3"]["arms"] if x["name"] == name)
    out = OUT / "d3" / name / "seed-1"
    if complete(out):
        summary = noise_summary(out, "gnc")
    else:
        row = next((r for r in load() if r["design"] == "d3" and r["arm"] == name
                    and r["seed"] == 1 and r["spec_sha256"] == sha(spec_text("d3", a, 1))), None)
        if row is None or not row["diverged"]:
            return None
        summary = calibrate(a, row["diverged_at"])
    if summary is None:
        return None
    _RNC_ALPHAS[gnc_alpha] = float(f"{summary['rnc_alpha']:.4g}")
    return _RNC_ALPHAS[gnc_alpha]


def calibrate(a, diverged_at):
    """GNC's noise in D3's seed-1 run of arm `a`, which diverged at `diverged_at`: the run
    again up to there, with its perturbed models measured every iteration."""
    out = OUT / "d3-calibration" / a["name"]
    done = out / "calibrated"
    if not done.exists():
        # From the start: an interrupted calibration's records are a part of the window.
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        text = spec_text("d3", a, 1).replace("every_iterations = 28", "every_iterations = 1")
        text = text.replace(f'output_dir = "bench/out/regime/d3/{a["name"]}/seed-1"',
                            f'output_dir = "bench/out/regime/d3-calibration/{a["name"]}"')
        spec = out.parent / f"{a['name']}.toml"
        spec.write_text(text)
        command = [str(ROOT / "target/release/gncctl"), "run", str(spec), "--json", "--threads",
                   "1", "--out", str(out), "--stop-after", str(diverged_at - 1)]
        code, stderr = run_until_deadline(command, time.time() + 3600)
        if code != 0:
            sys.exit(f"{spec}: calibration failed ({code}):\n{stderr[-3000:]}")
        done.write_text(f"iterations 0-{diverged_at - 2} replayed\n")
    return noise_summary(out, "gnc")


def d3_arms():
    """D3's arms: GNC at each α, then RNC matched to each (its method made when the GNC arm's
    seed-1 run has been measured)."""
    # A GNC arm is its own reference: the design's differences are RNC minus GNC.
    gnc = [arm(f"gnc{a:g}-lr{D3_LR:g}", LARGE_WORKERS, D3_LR, f'kind = "gnc"\nalpha = {a:g}',
               f"gnc{a:g}-lr{D3_LR:g}") for a in D3_ALPHAS]

    def matched(a):
        def method():
            alpha = rnc_alpha(a)
            return None if alpha is None else f'kind = "rnc"\nalpha = {alpha:g}'
        return arm(f"rnc-matching-gnc{a:g}-lr{D3_LR:g}", LARGE_WORKERS, D3_LR, method,
                   f"gnc{a:g}-lr{D3_LR:g}")
    return gnc + [matched(a) for a in D3_ALPHAS]


def method_text(a):
    """An arm's [method] body; None where it cannot be made yet (D3's RNC before its GNC)."""
    return a["method"]() if callable(a["method"]) else a["method"]


DESIGNS = {
    "d2-pilot": {
        "model": VGG, "epochs": 32, "warmup_epochs": 8, "seeds": [1],
        # The paper's rate first (the most informative pair), the reference last.
        "arms": [a for lr in (6.4, 3.2, 1.6) for a in (
            arm(f"baseline-lr{lr:g}", LARGE_WORKERS, lr),
            arm(f"gnc0.1-lr{lr:g}", LARGE_WORKERS, lr, GNC))]
        + [arm("small-batch", SMALL_WORKERS, SMALL_LR)],
    },
    # The pilot (seed 1): the baseline degrades most at eta = 6.4 (10.00 %, its BatchNorm
    # statistics blown up; not every seed diverged: one seed, none flagged), against 91.77 % at
    # 3.2 and 91.11 % at 1.6; GNC at 6.4 reached 89.14 %. So the matrix runs at 6.4 (which is
    # also the rule's default), with the arms and alphas issue 24 fixed before any result.
    "d2-matrix": {
        "model": SMALL_VGG, "epochs": 32, "warmup_epochs": 8, "seeds": [1, 2, 3],
        "arms": MATRIX_ARMS,
    },
    # The matrix again on the pilot's network, registered (2026-12-06) after the small
    # network's matrix and before any run of this design: on [8, 16, 32] x 1, GNC diverged in
    # every seed at eta = 6.4, while on the pilot's [16, 32, 64] x 2 (one seed) it trained to
    # 89.14 % where the baseline collapsed. The same arms, seeds and alphas; about 40-56
    # minutes a run on one core of the Intel Xeon, 10-14 hours in all, over many invocations.
    "d2-full": {
        "model": VGG, "epochs": 32, "warmup_epochs": 8, "seeds": [1, 2, 3],
        "arms": MATRIX_ARMS,
    },
    # D1, stress the MLP: B = 8,192, 40 epochs, 1 epoch of warmup from 0.025, ÷10 at 50 % and
    # 75 %; 16 arms x 3 seeds (about 3 minutes a run on one core of the Intel Xeon).
    "d1": {
        "model": DEMO_MLP, "epochs": 40, "warmup_epochs": 1, "seeds": [1, 2, 3],
        "arms": d1_arms(),
    },
    # D1's ladder continued downward, registered (2026-12-06) after D1 and before any run of
    # D3, which issue 24 places "at D1's largest stable eta": in D1, 47 of 48 runs diverged
    # and no eta of its grid (0.4-3.2) is stable for the baseline. Halving on: 0.2 (the
    # examples' rate) and 0.1, the baseline alone, seeds 1-3. Stable means no seed diverges
    # and the seeds' test accuracies lie within one point (D1's endpoint, negated). D3 runs at
    # the largest stable one of these; if neither is, D3 waits and says so.
    "d1-stable": {
        "model": DEMO_MLP, "epochs": 40, "warmup_epochs": 1, "seeds": [1, 2, 3],
        "arms": [arm(f"baseline-lr{lr:g}", LARGE_WORKERS, lr) for lr in (0.2, 0.1)],
    },
    # D3, magnitude or direction (GNC paper section 3.2), registered 2026-12-06 after
    # d1-stable and before any D3 run. d1-stable: at eta = 0.2 the baseline's seeds reached
    # 88.17, 88.70, 88.80 % and at 0.1 88.35, 88.19, 88.51 %, none diverged, both within one
    # point: D1's largest stable eta is 0.2, so D3 runs there, on D1's network and schedule.
    # GNC alpha in {0.1, 0.4, 1.6, 3.2} against RNC scaled to the same measured per-filter
    # relative perturbation (`rnc_alpha`), each RNC arm paired with its GNC arm; seeds 1-5.
    # Seed 1 of every arm records the perturbed models' losses every 4 epochs
    # (`D3_DIAGNOSTICS`), which change no bit of the run: RNC's match and the curvature along
    # the noise come from them. (Decided after seed 1's first runs, from their cost alone: a
    # record takes about a minute, four times a run's training, so seeds 2-5 go without.)
    "d3": {
        "model": DEMO_MLP, "epochs": 40, "warmup_epochs": 1, "seeds": [1, 2, 3, 4, 5],
        "arms": d3_arms(), "diagnostics_seeds": [1],
    },
    # Sharp minima (Keskar et al. 2017; issue 24 item 4), registered 2026-12-06 before any of
    # its runs: D1's network at its largest stable rate (0.2, d1-stable), the large batch's
    # baseline and GNC alpha = 0.1, and the small batch (B = 256) at the linear rule's rate
    # (0.2 x 256 / 8,192, as the d2 designs' small batch), all trained to one training loss:
    # a constant rate after the warmup, halved once when the loss (mean over an epoch of
    # iterations) falls below 0.30, and the run ended below 0.25 (at most 80 epochs). Then
    # `gncctl analyze` of each end point: epsilon-sharpness at 1e-3 and 5e-4, lambda_max with
    # the Hessian-vector step h = 1e-3 |x| and h/10, and for the large batch's arms the loss on
    # the line towards the small batch's end point of the same seed.
    "keskar": {
        "model": DEMO_MLP, "epochs": 80, "warmup_epochs": 1, "seeds": [1, 2, 3],
        "decay": '{ kind = "constant" }', "loss_trigger": (0.30, 0.25),
        "arms": [arm("sb-baseline", SMALL_WORKERS, 0.2 * SMALL_WORKERS / LARGE_WORKERS),
                 arm("lb-baseline", LARGE_WORKERS, 0.2, ref="sb-baseline"),
                 arm("lb-gnc0.1", LARGE_WORKERS, 0.2, GNC, ref="sb-baseline")],
        "analyze": {"towards": "sb-baseline"},
    },
    # Added 2026-12-06 AFTER keskar's results, so exploratory, not pre-registered: keskar's
    # small batch at the linear rule's rate ended sharper than the large batch (lambda_max
    # 34-52 against 15), the opposite of Keskar et al., whose small and large batches train
    # at one rate. With momentum 0.9, gradient descent is stable only where lambda_max <
    # 2 (1 + 0.9) / eta: 19 at 0.2, 608 at 0.00625, so the large batch sits near its bound
    # and the small batch far below its own. This design trains the small batch at the large
    # batch's rate, 0.2 (Keskar's protocol), everything else as keskar; its large-batch arms
    # are keskar's jobs (same bits) so that the line runs towards this small batch.
    "keskar-same-rate": {
        "model": DEMO_MLP, "epochs": 80, "warmup_epochs": 1, "seeds": [1, 2, 3],
        "decay": '{ kind = "constant" }', "loss_trigger": (0.30, 0.25),
        "arms": [arm("sb-baseline-lr0.2", SMALL_WORKERS, 0.2),
                 arm("lb-baseline", LARGE_WORKERS, 0.2, ref="sb-baseline-lr0.2"),
                 arm("lb-gnc0.1", LARGE_WORKERS, 0.2, GNC, ref="sb-baseline-lr0.2")],
        "analyze": {"towards": "sb-baseline-lr0.2"},
    },
}


def spec_text(design, a, seed):
    """The job of arm `a` of `design` with `seed`: every arm the same but for its fields; None
    where the arm's method cannot be made yet."""
    d = DESIGNS[design]
    method = method_text(a)
    if method is None:
        return None
    epochs = d["epochs"]
    # The warmup starts at 0.025 at B = 8,192 and scales with the batch as the rate does.
    warmup_start = 0.025 * a["workers"] / LARGE_WORKERS
    iters_per_epoch = 60000 // (a["workers"] * SMALL_BATCH)
    every = max(1, min(200, iters_per_epoch * 2))
    decay = d.get("decay", f'{{ kind = "step", milestones = [{epochs // 2}, {epochs * 3 // 4}], '
                           'factor = 0.1 }')
    trigger = ""
    if d.get("loss_trigger"):
        halve, stop = d["loss_trigger"]
        trigger = (f"loss_trigger = {{ halve_below = {halve:g}, stop_below = {stop:g}, "
                   f"window = {iters_per_epoch} }}\n")
    return f"""# Written by bench/run_regime.py (issue 24, design {design}, arm {a['name']}).
name = "{design}-{a['name'].replace(".", "_")}-{seed}"
seed = {seed}
output_dir = "bench/out/regime/{design}/{a['name']}/seed-{seed}"

[data]
dataset = "fashion-mnist"
root = "data/fashion-mnist"

[model]
{d['model']}

[parallel]
workers = {a['workers']}
small_batch = {SMALL_BATCH}

[method]
{method}

[optimizer]
kind = "momentum"
momentum = 0.9
weight_decay = 1e-4

[schedule]
epochs = {epochs}
base_lr = {a['lr']:g}
warmup_epochs = {d['warmup_epochs']}
warmup_start_lr = {warmup_start:g}
decay = {decay}
{trigger}
[eval]
every_epochs = 2

[checkpoint]
every_iterations = {every}
keep = 2
""" + (D3_DIAGNOSTICS if seed in d.get("diagnostics_seeds", []) else "")


def sha(text):
    return hashlib.sha256(text.encode()).hexdigest()


def load():
    return json.loads(STORE.read_text()) if STORE.exists() else []


def save(row):
    rows = [r for r in load() if r["spec_sha256"] != row["spec_sha256"]]
    STORE.write_text(json.dumps(rows + [row], indent=1) + "\n")


def complete(out):
    """Whether the run in `out` trained to its end (a paused run's result says otherwise)."""
    try:
        return json.loads((out / "result.json").read_text()).get("complete", False)
    except (OSError, ValueError):
        return False


def run_until(spec, out, deadline):
    """Trains or resumes `spec` in `out`: 'done', 'diverged' or 'stopped' (budget spent)."""
    command = [str(ROOT / "target/release/gncctl"), "run", str(spec), "--json", "--threads",
               "1", "--out", str(out)]
    if any((out / "checkpoints").glob("ckpt-*.json")):
        command.append("--resume")
    code, stderr = run_until_deadline(command, deadline)
    if code is None:
        return "stopped"
    if code == 0 and not complete(out):
        # Paused from outside (Ctrl-C, SIGINT to gncctl): a checkpoint to resume, no result.
        return "stopped"
    ended = outcome(code, stderr)  # 'done', 'diverged' (an outcome), or None (an error)
    if ended is None:
        sys.exit(f"{spec}: gncctl run failed ({code}):\n{stderr[-3000:]}")
    return ended


def phases(design):
    """The design's schedule phases in epochs: warmup, then the three rates."""
    d = DESIGNS[design]
    return [0, d["warmup_epochs"], d["epochs"] // 2, d["epochs"] * 3 // 4, d["epochs"]]


def row(design, a, seed, text, out, outcome, minutes):
    """What bench/regime-runs.json keeps of a finished run (or a diverged one)."""
    recs = metric_records(out)
    iters = [r for r in recs if r["kind"] == "iter"]
    evals = [{"epoch": r["epoch"], "test_accuracy": r["test_accuracy"],
              "test_loss": r["test_loss"]} for r in recs if r["kind"] == "eval"]
    result = json.loads((out / "result.json").read_text()) if outcome == "done" else {}
    last_eval = evals[-1] if evals else None
    accuracy = result.get("test_accuracy", last_eval["test_accuracy"] if last_eval else CHANCE)
    tail = iters[-10:]
    peak = max(iters, key=lambda r: r["loss"] if r["loss"] == r["loss"] else float("inf"),
               default=None)
    return {
        "peak_train_loss": peak and [peak["loss"], peak["iter"]],
        "design": design, "arm": a["name"], "seed": seed, "spec_sha256": sha(text),
        "batch": a["workers"] * SMALL_BATCH, "lr": a["lr"], "method": method_text(a),
        "diverged": outcome == "diverged",
        "diverged_at": iters[-1]["iter"] + 1 if outcome == "diverged" and iters else None,
        "no_evaluation": outcome == "diverged" and last_eval is None,
        "test_accuracy": accuracy,
        "test_loss": result.get("test_loss", last_eval["test_loss"] if last_eval else None),
        "last_train_loss": sum(r["loss"] for r in tail) / len(tail) if tail else None,
        "iterations": len(iters), "evals": evals,
        "b_simple": b_simple_by_phase(iters, phases(design)),
        "params_sha256": result.get("params_sha256"),
        "noise": noise_summary(out, "gnc" if 'kind = "gnc"' in method_text(a) else "rnc"),
        "gnc_commit": result.get("reproducibility", {}).get("gnc_commit"),
        "train_minutes_this_invocation": minutes, "machine": machine(),
        "date": time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
    }


def train(design, a, seed, deadline):
    """Trains, resumes or adopts arm `a` with `seed`; its row, or None if stopped unfinished."""
    text = spec_text(design, a, seed)
    assert text is not None, f"{a['name']}: its method cannot be made yet"
    out = OUT / design / a["name"] / f"seed-{seed}"
    spec = out.parent / f"seed-{seed}.toml"
    # Which spec the run in `out` is of: its marker, or (runs begun before markers) the spec
    # file beside it.
    marker = out / "spec.sha256"
    recorded = (marker.read_text().strip() if marker.exists()
                else sha(spec.read_text()) if spec.exists() else None)
    if out.exists() and recorded not in (None, sha(text)):
        # The arm's spec changed (D3's corrected RNC α): that run, finished or not, is another
        # job's; kept aside, never adopted or resumed.
        out.rename(out.with_name(f"{out.name}.superseded-{recorded[:8]}"))
    out.mkdir(parents=True, exist_ok=True)
    spec.write_text(text)
    marker.write_text(sha(text) + "\n")
    began = time.time()
    done = out / "result.json"
    if done.exists() and json.loads(done.read_text()).get("complete"):
        outcome = "done"
    else:
        outcome = run_until(spec, out, deadline)
        if outcome == "stopped":
            return None
    r = row(design, a, seed, text, out, outcome, (time.time() - began) / 60)
    if DESIGNS[design].get("analyze") and outcome == "done":
        r["analysis"] = analyze(design, a, seed, out)
    return r


def analyze(design, a, seed, out):
    """Keskar's measures of a finished run's end point (`gncctl analyze`): λ_max with the
    Hessian-vector step h/10, then ε-sharpness at 1e-3 and 5e-4 and λ_max at h = 1e-3 ‖x‖
    (what analysis.json keeps), with the loss on the line towards the `towards` arm's end
    point of the same seed for the other arms."""
    def run(*flags):
        command = [str(ROOT / "target/release/gncctl"), "analyze", str(out), "--json", *flags]
        proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"{out}: gncctl analyze failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        return json.loads(proc.stdout)
    towards = DESIGNS[design]["analyze"]["towards"]
    finer = run("--hvp-step", "1e-4", "--ascent-steps", "0", "--epsilon", "1e-3")
    line = [] if a["name"] == towards else ["--towards", str(OUT / design / towards / f"seed-{seed}")]
    full = run(*line)
    points = (full.get("line") or {}).get("points", [])
    inside = [p["loss"] for p in points if 0 < p["alpha"] < 1 and p["loss"] is not None]
    return {
        "iteration": full["iteration"], "loss": full["loss"],
        "lambda_max": full["top_eigenvalue"]["value"],
        "lambda_max_h10": finer["top_eigenvalue"]["value"],
        "sharpness": {f"{e['epsilon']:g}": e["sharpness"] for e in full["epsilon_sharpness"]},
        "line_max_between": max(inside) if inside else None,
    }


def analysis_table(d, rows):
    """Each end point's sharpness (designs with `analyze`)."""
    def cells(a, seed, r, z):
        line = "—" if z["line_max_between"] is None else f"{z['line_max_between']:.4f}"
        sharp = [f"{z['sharpness'].get(e, float('nan')):.4g}" for e in ("0.001", "0.0005")]
        return [a["name"], seed, z["iteration"], f"{z['loss']:.4f}", f"{z['lambda_max']:.4g}",
                f"{z['lambda_max_h10']:.4g}", *sharp, line]
    return per_run_table(
        d, rows, "analysis",
        "End points (`gncctl analyze`, over 2,048 training examples): λ_max by power "
        "iteration with the Hessian-vector step h = 1e-3 ‖x‖ and h/10, Keskar's ε-sharpness "
        "(percent of 1 + loss), and the largest loss on the line to the small batch's end "
        "point strictly between the two.",
        ["arm", "seed", "iteration", "loss", "λ_max (h)", "λ_max (h/10)", "ε = 1e-3",
         "ε = 5e-4", "line maximum"], cells)


def per_run_table(d, rows, key, caption, header, cells):
    """A table of one row per run of `d` whose stored row has `key`, each row's cells from
    `cells(arm, seed, row, row[key])`; nothing where no run has it."""
    body = [cells(a, seed, r, r[key]) for a in d["arms"] for seed in d["seeds"]
            if (r := rows.get((a["name"], seed))) and r.get(key)]
    if not body:
        return []
    line = lambda values: "| " + " | ".join(str(v) for v in values) + " |"  # noqa: E731
    return ([caption, "", line(header), "|" + "---|" * len(header)]
            + [line(b) for b in body] + [""])


def cell(r):
    if r is None:
        return "—"
    acc = f"{100 * r['test_accuracy']:.2f} %"
    if r["diverged"]:
        acc += f" (diverged at iteration {r['diverged_at']}" + (
            ", never evaluated: chance)" if r["no_evaluation"] else ", last evaluation)")
    return acc


def b_simple_cell(design, a, seed, r):
    """B_simple by phase: the row's, or for a row stored before rows kept it, from the run's
    metrics.jsonl where it is still on disk."""
    by_phase = r.get("b_simple")
    if by_phase is None:
        recs = metric_records(OUT / design / a["name"] / f"seed-{seed}")
        if not recs:
            return "—"
        by_phase = b_simple_by_phase([x for x in recs if x["kind"] == "iter"], phases(design))
    return ", ".join("—" if p["b_simple"] is None else f"{p['b_simple']:,.0f}" for p in by_phase)


def section(rows):
    out = [START, "## GNC in its paper's regime (issue 24, `bench/run_regime.py`)", "",
           "Pre-registered designs of issue 24; rows are per seed, a diverged run is an "
           "outcome (flagged), its accuracy that of its last evaluation.", ""]
    for design, d in DESIGNS.items():
        def current(r):
            a = next((a for a in d["arms"] if a["name"] == r["arm"]), None)
            text = a and spec_text(design, a, r["seed"])
            return text is not None and r["spec_sha256"] == sha(text)
        mine = {(r["arm"], r["seed"]): r for r in rows if r["design"] == design and current(r)}
        out += [f"### {design}", "",
                "| arm | B | η | seed | test accuracy | test loss | train loss (last 10) | "
                "largest train loss (iteration) | test accuracy at epochs 4, 8, 16, 24 | "
                "B_simple by phase (epochs " + ", ".join(
                    f"{lo}–{hi}" for lo, hi in zip(phases(design), phases(design)[1:])) + ") | "
                "iterations | minutes | machine |",
                "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for a in d["arms"]:
            for seed in d["seeds"]:
                r = mine.get((a["name"], seed))
                if r is None:
                    out.append(f"| {a['name']} | {a['workers'] * SMALL_BATCH} | {a['lr']:g} | "
                               f"{seed} | not yet run | | | | | | | | |")
                    continue
                loss = "—" if r["test_loss"] is None else f"{r['test_loss']:.4f}"
                train_loss = "—" if r["last_train_loss"] is None else f"{r['last_train_loss']:.4f}"
                peak = r.get("peak_train_loss")
                peak = "—" if not peak else f"{peak[0]:.3g} ({peak[1]})"
                by_epoch = {round(e["epoch"]): e["test_accuracy"] for e in r["evals"]}
                curve = ", ".join(f"{100 * by_epoch[e]:.1f}" if e in by_epoch else "—"
                                  for e in (4, 8, 16, 24))
                noise = b_simple_cell(design, a, seed, r)
                out.append(f"| {a['name']} | {r['batch']} | {a['lr']:g} | {seed} | {cell(r)} | "
                           f"{loss} | {train_loss} | {peak} | {curve} | {noise} | {r['iterations']} | "
                           f"{r['train_minutes_this_invocation']:.0f} | "
                           f"{r['machine'].split(',')[0]} |")
        out.append("")
        if d.get("diagnostics_seeds"):
            out += noise_table(d, mine)
        if d.get("analyze"):
            out += analysis_table(d, mine)
        out += paired(d, mine)
        out += accuracy_figure(design, d, mine) + diagnostics_figure(design, d, mine)
    out.append(END)
    return "\n".join(out) + "\n"


def noise_table(d, rows):
    """Each run's own noise, from its diagnostics records: the method, the mean per-filter
    relative perturbation and the curvature along the noise."""
    def cells(a, seed, r, n):
        method = r["method"].replace("\n", ", ").replace('"', "")
        curv = "—" if n["curvature"] is None else f"{n['curvature']:.4g}"
        return [a["name"], seed, method, f"{n['relative_size']:.4g}", curv, n["records"]]
    return per_run_table(
        d, rows, "noise",
        "The runs' own noise, averaged over their diagnostics records (seed 1, every 4 epochs): "
        "per-filter relative perturbation ‖x_i − x‖/‖x‖ (mean over filters and workers), and "
        "the curvature along the noise, (mean_i L(x_i) − L(x)) / mean_i ‖x_i − x‖². RNC's α "
        "is Σ_t s_t / Σ_t η_t over the records of the GNC arm it is matched to (seed 1): the "
        "same mean size.",
        ["arm", "seed", "method", "relative perturbation", "curvature along the noise",
         "records"], cells)


def paired(d, rows):
    """Each arm against the design's first arm (the baseline), paired by seed: the mean
    difference in test accuracy with its 95 % t interval (n − 1 degrees of freedom) over the
    seeds both have finished, and a verdict. Diverged runs count with their accuracy (an
    outcome). Nothing for a design of one seed."""
    if len(d["seeds"]) < 2:
        return []
    first = d["arms"][0]["name"]
    out = [f"Paired by seed, each arm minus its reference ({first} unless named; test "
           "accuracy, points; 95 % t interval with n − 1 degrees of freedom):", "",
           "| arm | minus | seeds | mean difference | 95 % interval | verdict |",
           "|---|---|---|---|---|---|"]
    for a in d["arms"][1:]:
        base = a.get("ref") or first
        if a["name"] == base or (a.get("ref") is None and a["name"].startswith("baseline")):
            continue
        diffs = [100 * (rows[(a["name"], s)]["test_accuracy"] - rows[(base, s)]["test_accuracy"])
                 for s in d["seeds"] if (a["name"], s) in rows and (base, s) in rows]
        if len(diffs) < 2:
            out.append(f"| {a['name']} | {base} | {len(diffs)} | — | — | needs 2 paired seeds |")
            continue
        mean, half = mean_interval(diffs)
        verdict = ("unresolved" if abs(mean) <= half
                   else "higher" if mean > 0 else "lower")
        out.append(f"| {a['name']} | {base} | {len(diffs)} | {mean:+.2f} | {mean - half:+.2f} to "
                   f"{mean + half:+.2f} | {verdict} |")
    # A design whose arms all are references (d1-stable's baselines) has no differences.
    return out + [""] if len(out) > 4 else []


def figure_path(design, suffix=""):
    """Where the report draws a figure of `design`: bench/regime-<design><suffix>.png, or
    -accuracy added to the name where a hand-made figure has that name (never overwritten)."""
    name = f"regime-{design}{suffix}.png"
    return ROOT / "bench" / (name.replace(".png", "-accuracy.png") if name in HAND_MADE else name)


def first_runs(design, d, rows, seeds):
    """Each arm's lowest seed of `seeds` with a finished or diverged run (a row of `rows`) whose
    records are on disk and of that row's spec: (arm name, seed, run directory, row), in the
    design's arm order."""
    found = []
    for a in d["arms"]:
        for seed in sorted(seeds):
            r, out = rows.get((a["name"], seed)), OUT / design / a["name"] / f"seed-{seed}"
            marker = out / "spec.sha256"
            # Runs begun before markers have none; their rows are of the spec beside them.
            if r and (out / "metrics.jsonl").exists() and (
                    not marker.exists() or marker.read_text().strip() == r["spec_sha256"]):
                found.append((a["name"], seed, out, r))
                break
    return found


def which_runs(d, runs):
    """The caption's words for which runs a figure draws: the seed, and the arms unless all."""
    seeds = {seed for _, seed, _, _ in runs}
    names = [name for name, _, _, _ in runs]
    if len(seeds) == 1:
        arms = ("every arm" if len(names) == len(d["arms"])
                else f"arm {names[0]}" if len(names) == 1 else "arms " + ", ".join(names))
        return f"seed {seeds.pop()} of {arms}" + (", one line each" if len(names) > 1 else "")
    return "one line per arm, its lowest seed with a finished or diverged run: " + ", ".join(
        f"{name} (seed {seed})" for name, seed, _, _ in runs)


def named(name, r):
    """An arm's name in a caption, with where its run diverged if it did."""
    return f"{name} (diverged at iteration {r['diverged_at']})" if r["diverged"] else name


def accuracy_curve(r):
    """A row's evaluations as (epoch, test accuracy) pairs: what its line in a figure is."""
    return tuple((e["epoch"], e["test_accuracy"]) for e in r["evals"])


def hidden_lines(runs):
    """Which drawn runs' accuracy lines lie exactly under a later run's (gncctl draws in order),
    as "a's line lies under b's": a caption says why a legend's line is not seen (D2's GNC→RNC
    diverged before its switch, so its run is GNC's)."""
    on_top = {accuracy_curve(r): name for name, _, _, r in runs}  # the last drawn of each
    return [f"{name}'s line lies under {on_top[accuracy_curve(r)]}'s" for name, _, _, r in runs
            if len(r["evals"]) > 1 and on_top[accuracy_curve(r)] != name]


def figure_lines(path, alt, caption):
    """A figure in RESULTS.md: the image (relative to bench/, as RESULTS.md is) and its caption."""
    return [f"![{alt}]({path.name})", "", f"*{path.name}: {caption}*", ""]


def accuracy_figure(design, d, rows):
    """The design's figure of test accuracy (and training loss) against epoch, one line per arm
    (its lowest seed with a finished or diverged run), as RESULTS.md lines; none where gncctl
    plot fails (the tables stand without it), a sentence where no run has a line to draw."""
    runs = first_runs(design, d, rows, d["seeds"])
    if not runs:
        return []
    if all(len(r["evals"]) < 2 for _, _, _, r in runs):
        # D1: every arm's seed 1 diverged within 30 iterations, at most one evaluation each.
        return ["No figure of test accuracy: each arm's lowest seed with a finished or diverged "
                "run was evaluated at most once (a line needs two points).", ""]
    # A diverged run's training loss grows by orders of magnitude before it stops (to 1e30 in
    # D2's matrix); on gncctl plot's linear axis it would flatten every other run's line.
    diverged = [name for name, _, _, r in runs if r["diverged"]]
    metrics = ["test-accuracy"] + ([] if diverged else ["loss"])
    path = figure_path(design)
    if not gncctl_plot([out for _, _, out, _ in runs], metrics, path):
        return []
    drawn = "test accuracy" + ("" if diverged else " and training loss")
    caption = f"{drawn} against epoch, {which_runs(d, runs)}"
    unlined = [named(name, r) for name, _, _, r in runs if len(r["evals"]) < 2]
    if unlined:
        caption += "; no line (fewer than two evaluations): " + ", ".join(unlined)
    if hidden := hidden_lines(runs):
        caption += "; " + ", ".join(hidden) + " (the same evaluations)"
    if diverged:
        caption += ("; training loss left out: " + ", ".join(diverged) + " diverged, and a "
                    "diverged run's loss would set the panel's linear scale")
    return figure_lines(path, f"{design}: {drawn}", caption + ".")


def diagnostics_figure(design, d, rows):
    """The design's figure of its `[diagnostics]` records (every gncctl plot metric they carry)
    against epoch, seed 1 of each arm, as RESULTS.md lines; none for a design without
    diagnostics or where gncctl plot fails."""
    seeds = d.get("diagnostics_seeds")
    runs = seeds and [x for x in first_runs(design, d, rows, [min(seeds)])
                      if diagnostics_records(x[2])]
    metrics = runs and diagnostic_metrics([out for _, _, out, _ in runs])
    if not metrics:
        return []
    path = figure_path(design, "-diagnostics")
    if not gncctl_plot([out for _, _, out, _ in runs], metrics, path):
        return []
    caption = (f"the `[diagnostics]` records ({', '.join(metrics)}) against epoch, "
               f"{which_runs(d, runs)}")
    few = [named(name, r) for name, _, out, r in runs if len(diagnostics_records(out)) < 2]
    if few:
        caption += "; no line (one record): " + ", ".join(few)
    if "perturbed-spread-rnc" in metrics:
        caption += ("; perturbed-spread-rnc is RNC's noise at the run's own α (in a GNC arm "
                    "RNC at GNC's α: neither that arm's noise nor its size)")
    return figure_lines(path, f"{design}: diagnostics", caption + ".")


def train_missing(design, deadline):
    """Trains the design's runs that bench/regime-runs.json lacks, seed by seed, until the
    deadline; the run the deadline interrupts keeps its checkpoint for the next invocation."""
    d = DESIGNS[design]
    done = {r["spec_sha256"] for r in load()}
    for seed in d["seeds"]:
        for a in d["arms"]:
            text = spec_text(design, a, seed)
            if text is None:
                print(f"{a['name']} seed {seed}: waits for the run it is matched to", flush=True)
                continue
            if sha(text) in done:
                continue
            if time.time() > deadline:
                return
            r = train(design, a, seed, deadline)
            if r is None:
                print(f"{a['name']} seed {seed}: budget spent, stopped with a checkpoint",
                      flush=True)
                return
            save(r)
            print(f"{a['name']} seed {seed}: {cell(r)}", flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--design", default="d2-pilot", choices=sorted(DESIGNS))
    p.add_argument("--budget-minutes", type=float, default=85,
                   help="stop (with a checkpoint, to resume later) after this many minutes")
    p.add_argument("--report-only", action="store_true")
    args = p.parse_args()
    deadline = time.time() + 60 * args.budget_minutes
    if not args.report_only:
        train_missing(args.design, deadline)
    replace_section(START, END, section(load()))
    print(f"wrote {ROOT / 'bench/RESULTS.md'}")


if __name__ == "__main__":
    main()
