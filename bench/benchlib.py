"""Helpers shared by gnc's benchmark runners: the pinned environment, the results file, runs
stopped at a deadline, training outcomes (divergence), Student's t and interval estimates, the
gradient noise scale from iteration records, and figures drawn with `gncctl plot`."""

import json
import math
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "RESULTS.md"

# The portable level's environment (proto/src/repro.rs, `Level::environment`); read from
# there, this copy is only the fallback should the file ever change shape.
FALLBACK_ENV = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_CBWR": "AVX2,STRICT",
}


def pinned_environment(level="portable"):
    """The variables a gnc process of `level` starts with (gnc processes check them; their
    launcher sets them), read from proto/src/repro.rs."""
    text = (ROOT / "proto/src/repro.rs").read_text()
    name = level.capitalize()
    block = re.search(rf"Level::{name}\s*=>\s*&\[(.*?)\],", text, re.S)
    pairs = re.findall(r'\(\s*"([A-Z0-9_]+)"\s*,\s*"([^"]*)"\s*\)', block.group(1)) if block else []
    if not pairs:
        if level != "portable":
            sys.exit(f"cannot read the {level} environment from proto/src/repro.rs")
        print("warning: could not read the portable environment from proto/src/repro.rs",
              file=sys.stderr)
        return dict(FALLBACK_ENV)
    return dict(pairs)


def level_environment(level="portable"):
    """This process's environment as a gnc launcher gives it to a process of `level`: the
    level's variables set, those of the other level removed."""
    text = (ROOT / "proto/src/repro.rs").read_text()
    cleared = re.search(rf"fn cleared.*?Level::{level.capitalize()}\s*=>\s*&\[(.*?)\]", text, re.S)
    env = {k: v for k, v in os.environ.items()
           if not cleared or f'"{k}"' not in cleared.group(1)}
    env.update(pinned_environment(level))
    return env


def fashion_mnist_job(name, output_dir, model_toml, workers, method, level="portable"):
    """The TOML of a benchmark job on Fashion-MNIST (b = 32, the paper's momentum SGD, 10 epochs
    that no benchmark reaches, no evaluation, a checkpoint only at the stop): GNC with alpha 0.1
    or the baseline, at reproducibility `level`."""
    method_toml = 'kind = "gnc"\nalpha = 0.1' if method == "gnc" else 'kind = "baseline"'
    level_toml = 'reproducibility = "native"\n' if level == "native" else ""
    return f"""# Written by a gnc benchmark (bench/).
name = "{name}"
seed = 1
output_dir = "{output_dir}"
{level_toml}
[data]
dataset = "fashion-mnist"
root = "{ROOT / 'data/fashion-mnist'}"

[model]
{model_toml}

[parallel]
workers = {workers}
small_batch = 32

[method]
{method_toml}

[optimizer]
kind = "momentum"
momentum = 0.9
weight_decay = 1e-4

[schedule]
epochs = 10
base_lr = 0.1

[eval]
every_epochs = 0

[checkpoint]
every_iterations = 0
keep = 1
"""


def sh(cmd):
    """A command's stdout, or "" if it cannot run."""
    try:
        return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""


def machine():
    """CPU model, cores, caches and memory, for the results file."""
    model, cores = platform.processor() or "unknown CPU", os.cpu_count()
    caches = []
    for line in sh(["lscpu"]).splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Model name":
            model = value.strip()
        if key.strip() in ("L2 cache", "L3 cache"):
            caches.append(f"{key.strip()} {value.strip()}")
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 2**20:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return f"{model}, {cores} cores (lscpu; {', '.join(caches)}){mem}, Linux {platform.release()}"


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


def replace_section(start, end, section):
    """Writes `section` (which begins with `start` and ends with `end`) into RESULTS.md in
    place of the previous one, keeping every other section."""
    old = RESULTS.read_text() if RESULTS.exists() else "# gnc benchmark results\n"
    if start in old and end in old:
        head, rest = old.split(start, 1)
        new = head + section.rstrip("\n") + rest.split(end, 1)[1]
    else:
        new = old.rstrip("\n") + "\n\n" + section
    RESULTS.write_text(new)


def run_until_deadline(command, deadline):
    """Runs a `gncctl run` command until it ends or `deadline` (a time.time()) passes, then
    stops it as Ctrl-C would (SIGINT to its process group: gncctl checkpoints at the next
    iteration and exits; `--resume` continues). Its exit code and stderr, or (None, stderr)
    when the deadline stopped it."""
    # Its own process group: the stop reaches gncctl and the trainer, as Ctrl-C would.
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    while proc.poll() is None:
        if time.time() > deadline:
            os.killpg(proc.pid, signal.SIGINT)
            _, stderr = proc.communicate()
            return None, stderr
        time.sleep(5)
    _, stderr = proc.communicate()
    return proc.returncode, stderr


def callgrind_step(spec, out, log, stop_after):
    """Starts `gnc-run run spec` (one thread, portable level, `stop_after` iterations) under
    valgrind's callgrind, counting only inside an iteration's three phases as the run loop
    calls them — `Trainer::prepare`, `Trainer::compute_blocks` (the logical workers' forward
    and backward passes and their sum) and `Trainer::finish` (the update) — so start-up, data
    loading, evaluation and the checkpoint are not counted; the counts to `out`; the Popen."""
    toggles = [f"--toggle-collect=gnc_worker::engine::Trainer::{f}*"
               for f in ("prepare", "compute_blocks", "finish")]
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
           "--collect-atstart=no", *toggles,
           str(ROOT / "target/release/gnc-run"), "run", str(spec),
           "--stop-after", str(stop_after), "--threads", "1", "--json"]
    # gnc-run checks that it starts with its level's environment (gncctl, its usual launcher,
    # sets it).
    return subprocess.Popen(cmd, cwd=ROOT, env=level_environment("portable"),
                            stdout=subprocess.DEVNULL, stderr=open(log, "w"))


def callgrind_total(path):
    """The instructions a callgrind output file counted."""
    text = Path(path).read_text(errors="replace")
    m = re.search(r"^(?:summary|totals):\s*(\d+)", text, re.M)
    if not m:
        sys.exit(f"{path}: no instruction total")
    return int(m.group(1))


# --- Training outcomes ----------------------------------------------------------------------

# gncctl's message when a run's loss or gradient stops being finite (EngineError::Diverged,
# worker/src/lib.rs): the run exits non-zero, keeps its newest checkpoint, and writes no
# result.json.
DIVERGED = "training diverged at iteration"
# A diverged run never evaluated: chance on 10 classes.
CHANCE = 0.1


def outcome(code, stderr):
    """A finished `gncctl run`'s outcome from its exit code and stderr: 'done', 'diverged' (an
    outcome of the experiment, not an error), or None (it failed: an error)."""
    if code == 0:
        return "done"
    if DIVERGED in stderr:
        return "diverged"
    return None


def metric_records(out):
    """The records of a run's metrics.jsonl (none if it has none)."""
    path = Path(out) / "metrics.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(line) for line in lines]


def diverged_fields(iters, evals):
    """What a row keeps of a diverged run: flagged, the iteration it diverged at (the one after
    the last finite record), and its accuracy and loss those of its last evaluation (none:
    chance, flagged `no_evaluation`)."""
    last = evals[-1] if evals else None
    return {
        "diverged": True,
        "diverged_at": iters[-1]["iter"] + 1 if iters else 0,
        "no_evaluation": last is None,
        "test_accuracy": last["test_accuracy"] if last else CHANCE,
        "test_loss": last["test_loss"] if last else None,
    }


# --- Student's t and intervals ----------------------------------------------------------------

def _beta_fraction(a, b, x):
    """The continued fraction of the regularized incomplete beta function (modified Lentz)."""
    tiny, eps = 1e-300, 1e-15
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    f = d
    for m in range(1, 10000):
        for num in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                    -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            f *= c * d
        if abs(c * d - 1.0) < eps:
            return f
    raise ArithmeticError("incomplete beta: no convergence")


def regularized_beta(x, a, b):
    """I_x(a, b), the regularized incomplete beta function, for 0 ≤ x ≤ 1 and a, b > 0."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(b, a, 1.0 - x) / b


def t_cdf(t, df):
    """P(T ≤ t) for Student's t with `df` > 0 degrees of freedom (any real df, as Welch's)."""
    tail = 0.5 * regularized_beta(df / (df + t * t), df / 2.0, 0.5)
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p, df):
    """The p-quantile of Student's t with `df` > 0 degrees of freedom, by bisection on t_cdf
    (exact to about 1e-12; no large-sample fallback)."""
    if not 0.0 < p < 1.0 or not df > 0:
        raise ValueError(f"t_quantile({p}, {df})")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        lo, hi = hi, 2.0 * hi
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


def t95(df):
    """The two-sided 95 % quantile of Student's t, t(0.975, df)."""
    return t_quantile(0.975, df)


def mean_interval(values):
    """(mean, half-width of its two-sided 95 % t interval with n − 1 degrees of freedom) of
    `values` (n ≥ 2)."""
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, t95(n - 1) * sd / math.sqrt(n)


def welch(mean_a, sd_a, n_a, mean_b, sd_b, n_b):
    """Welch's two-sided 95 % interval of mean_a − mean_b from two samples' means, standard
    deviations and sizes: (difference, half-width, Welch–Satterthwaite degrees of freedom)."""
    va, vb = sd_a ** 2 / n_a, sd_b ** 2 / n_b
    df = (va + vb) ** 2 / (va ** 2 / (n_a - 1) + vb ** 2 / (n_b - 1))
    return mean_a - mean_b, t95(df) * math.sqrt(va + vb), df


def fieller(num, den):
    """Fieller's two-sided 95 % interval for the ratio of means mean(num) / mean(den) of paired
    samples (num[i] and den[i] from the same seed; t with n − 1 degrees of freedom, the sample
    covariance of the pair): (ratio, low, high). low/high are None where the set is not a
    bounded interval (the denominator's mean is not resolved from zero)."""
    n = len(num)
    a, b = sum(num) / n, sum(den) / n
    v11 = sum((x - a) ** 2 for x in num) / (n - 1) / n
    v22 = sum((y - b) ** 2 for y in den) / (n - 1) / n
    v12 = sum((x - a) * (y - b) for x, y in zip(num, den)) / (n - 1) / n
    t2 = t95(n - 1) ** 2
    # (a − R b)² ≤ t² (v11 − 2 R v12 + R² v22), i.e. qa R² − 2 qb R + qc ≤ 0:
    qa, qb, qc = b * b - t2 * v22, a * b - t2 * v12, a * a - t2 * v11
    ratio = a / b if b else float("nan")
    if qa <= 0:
        return ratio, None, None
    # R = a / b always satisfies it, so with qa > 0 the discriminant is ≥ 0 but for rounding.
    root = math.sqrt(max(qb * qb - qa * qc, 0.0))
    return ratio, (qb - root) / qa, (qb + root) / qa


# --- The gradient noise scale ------------------------------------------------------------------

def b_simple_by_phase(iters, bounds):
    """McCandlish et al.'s (2018) gradient noise scale B_simple = Σ tr(Σ) / Σ |G|² over the
    iteration records (their `trace_estimate` and `grad_sq_estimate`, the unbiased estimates
    from the M workers' gradients; worker/src/analysis/noise_scale.rs) whose epoch lies in each
    [bounds[k], bounds[k+1]): a list of {"epochs", "iterations", "b_simple"} (b_simple None
    where no record there has the estimates or their |G|² sum is not positive)."""
    phases = []
    for lo, hi in zip(bounds, bounds[1:]):
        inside = [r for r in iters if lo <= r["epoch"] < hi
                  and r.get("grad_sq_estimate") is not None and r.get("trace_estimate") is not None]
        grad_sq = sum(r["grad_sq_estimate"] for r in inside)
        trace = sum(r["trace_estimate"] for r in inside)
        phases.append({"epochs": [lo, hi], "iterations": len(inside),
                       "b_simple": trace / grad_sq if inside and grad_sq > 0 else None})
    return phases


# --- Figures (`gncctl plot`) -----------------------------------------------------------------

GNCCTL = ROOT / "target" / "release" / "gncctl"


def gncctl_plot(dirs, metrics, output):
    """Draws `metrics` (gncctl plot's names, one panel each) of the runs in `dirs` into `output`
    with `gncctl plot`; whether it wrote it. A failure is printed to stderr, not raised: a
    figure only illustrates a report's tables, so a report is written without it."""
    command = [str(GNCCTL), "plot", *map(str, dirs), "-o", str(output)]
    for metric in metrics:
        command += ["--metric", metric]
    try:
        proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    except OSError as e:  # no gncctl built
        print(f"gncctl plot failed: {e}", file=sys.stderr)
        return False
    if proc.returncode != 0:
        print(f"gncctl plot failed ({Path(output).name}): {proc.stderr[-2000:]}",
              file=sys.stderr)
    return proc.returncode == 0


def _dig(record, *keys):
    """record[keys[0]][keys[1]]...; None where a key is missing (a record of another kind or
    version)."""
    for key in keys:
        record = record.get(key) if isinstance(record, dict) else None
    return record


def _finite(value):
    """Whether `value` is a finite number (gncctl plot draws only those; NaN is stored as null)."""
    return isinstance(value, (int, float)) and math.isfinite(value)


# gncctl plot's metrics of diagnostics records, in its order, each with where a record carries
# it (ctl/src/cmd/plot/series.rs, `Metric::diagnostic`; κ is a median over layers there, any
# finite layer's κ here, for presence only).
DIAGNOSTIC_METRICS = {
    "predictiveness": lambda d: [_dig(d, "predictiveness")],
    "loss-stability": lambda d: [_dig(d, "smoothness", "loss_range")],
    "gradient-change": lambda d: (_dig(d, "smoothness", "gradient_change_range") or [])[1:],
    "beta-smoothness": lambda d: [_dig(d, "smoothness", "beta")],
    "kappa-gnc": lambda d: [layer.get("kappa") for layer in _dig(d, "anisotropy", "gnc") or []],
    "kappa-rnc": lambda d: [layer.get("kappa") for layer in _dig(d, "anisotropy", "rnc") or []],
    "perturbed-spread-gnc": lambda d: [_dig(d, "perturbed", "gnc", "std")],
    "perturbed-spread-rnc": lambda d: [_dig(d, "perturbed", "rnc", "std")],
}


def diagnostics_records(out):
    """The diagnostics records of the run in `out` (its `[diagnostics]` measurements)."""
    return [r for r in metric_records(out) if r["kind"] == "diagnostics"]


def diagnostic_metrics(dirs):
    """The gncctl plot metrics of DIAGNOSTIC_METRICS that some run in `dirs` has a finite value
    of, in gncctl's order: gncctl plot refuses a whole figure over one metric no run has."""
    records = [d for out in dirs for d in diagnostics_records(out)]
    return [name for name, values in DIAGNOSTIC_METRICS.items()
            if any(_finite(v) for d in records for v in values(d))]
