"""Helpers shared by gnc's benchmark runners (run_step_bench.py, run_shm_bench.py)."""

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
