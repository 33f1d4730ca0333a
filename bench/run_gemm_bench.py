#!/usr/bin/env python3
"""Issue 25: gnc's portable matrix product per ISA path vs libtorch's native product.

Runs, in one invocation:
  1. `cargo build --release -p gnc-bench --bin gnc-bench-gemm` (unless --no-build);
  2. gnc-bench-gemm, which in one process and on one thread alternates, round by round, every
     ISA path of `gnc-kernels` this CPU has and libtorch's `matmul` on F1's linear products at
     a batch of 32, and measures each ISA's per-core FMA peak with a throughput loop of
     independent FMA chains in the same rounds; it checks first that every path gives the
     scalar path's bits;
  3. a one-line libtorch product under MKL_VERBOSE=1, for the code path MKL reports;
then writes the raw JSON lines to bench/out/gemm-bench.jsonl and its section of
bench/RESULTS.md (between the gemm-bench markers; the rest of the file is kept).

Everything runs under the native level's environment (proto/src/repro.rs: one thread, MKL's
own code path, fixed from run to run), which is libtorch's fastest; gnc's kernels do not read
the environment.

Usage (from the repository root): python3 bench/run_gemm_bench.py [--rounds 21] [--reps 5]
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

from benchlib import ROOT, level_environment, machine, replace_section, sh

BENCH = ROOT / "bench"
OUT = BENCH / "out"
START = "<!-- gemm-bench:start -->"
END = "<!-- gemm-bench:end -->"
TARGET = 0.80


def mkl_path(python, env):
    """The code path MKL announces for a libtorch product under `env`, or ''."""
    code = "import torch; torch.ones(32, 784) @ torch.ones(500, 784).t()"
    try:
        p = subprocess.run([python, "-c", code], cwd=ROOT, env=dict(env, MKL_VERBOSE="1"),
                           capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    for line in p.stdout.splitlines():
        if line.startswith("MKL_VERBOSE") and "SGEMM" not in line:
            return line.removeprefix("MKL_VERBOSE").strip()
    return ""


def cpu_mhz():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu MHz"):
                return float(line.split(":")[1])
    except (OSError, ValueError):
        pass
    return float("nan")


def rate(s):
    return f"{s['median']:.1f} ({s['min']:.0f}–{s['max']:.0f})"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=21)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--python", default=str(ROOT / ".venv/bin/python"))
    p.add_argument("--no-build", action="store_true")
    p.add_argument("--no-results", action="store_true",
                   help="print the section instead of writing RESULTS.md")
    args = p.parse_args()

    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "-p", "gnc-bench", "--bin",
                        "gnc-bench-gemm"], cwd=ROOT, check=True)
    env = level_environment("native")
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    dirty = " (with uncommitted changes)" if sh(["git", "status", "--porcelain"]) else ""
    commit = (sh(["git", "rev-parse", "--short", "HEAD"]) or "unknown") + dirty
    cmd = [str(ROOT / "target/release/gnc-bench-gemm"), "--rounds", str(args.rounds),
           "--reps", str(args.reps)]
    load_before = os.getloadavg()[0]
    run = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    load_after = os.getloadavg()[0]
    if run.returncode != 0:
        sys.exit(f"gnc-bench-gemm failed ({run.returncode}):\n{run.stderr[-4000:]}")
    lines = [json.loads(x) for x in run.stdout.splitlines() if x.startswith("{")]
    skipped = [x for x in run.stderr.splitlines() if "skipping" in x]
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "gemm-bench.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    mkl = mkl_path(args.python, env)

    peaks = {x["isa"]: x for x in lines if x["bench"] == "gnc-gemm-peak"}
    widest = max(peaks.values(), key=lambda x: x["lanes"])
    mhz = cpu_mhz()
    products = [x for x in lines if x["bench"] == "gnc-gemm"]
    impls = list(dict.fromkeys(x["impl"] for x in products))

    def peak_of(impl):
        """The peak an implementation is measured against: its ISA's; the scalar path's build
        lets the compiler vectorise it with AVX2 (scripts/cargo-config.sh), so AVX2's; MKL's
        (AVX-512 on a CPU that has it), the widest."""
        if impl.startswith("gnc "):
            isa = impl.removeprefix("gnc ")
            return peaks.get("avx2+fma" if isa == "scalar" else isa, widest)
        return widest

    out = [START, "## Portable matrix product per ISA vs libtorch (issue 25)", ""]
    out.append(f"{date}, commit {commit}, {machine()}. One invocation of "
               f"`bench/run_gemm_bench.py` ({args.rounds} rounds), one thread, the native "
               "level's environment (`" + " ".join(f"{k}={v}" for k, v in
                                                   sorted(level_environment('native').items())
                                                   if k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                                            "MKL_CBWR")) + "`). "
               f"Load average (1 min) {load_before:.1f} before and {load_after:.1f} after, on "
               f"{os.cpu_count()} CPUs: other processes shared the machine, so the min–max "
               "ranges are wide; the medians of alternated rounds compare fairly within the "
               "run.")
    out.append("")
    out.append("Per-core FMA peak, measured in the same rounds by a throughput loop of "
               "independent FMA chains (`gnc_kernels::fma_probe`: 24 zmm or 12 ymm chains), "
               f"median (min–max) GFLOP/s; /proc/cpuinfo says {mhz:.0f} MHz (the VM's nominal "
               "clock; the implied clock assumes two FMA units per core):")
    out.append("")
    out.append("| ISA | lanes | peak GFLOP/s | flop/cycle at the cpuinfo clock | implied clock, 2 FMA units |")
    out.append("|---|---:|---:|---:|---:|")
    for isa, x in peaks.items():
        g = x["gflops"]["median"]
        per_cycle = g / (mhz / 1000)
        implied = g / (2 * 2 * x["lanes"])
        out.append(f"| {isa} | {x['lanes']} | {rate(x['gflops'])} | {per_cycle:.1f} | "
                   f"{implied:.2f} GHz |")
    out.append("")
    out.append("Products: F1's linear layers at the batch of one logical worker (32), in the "
               "orientation `worker/src/kernels/linear.rs` computes them (gnc's m×k×n: forward "
               "yᵀ = W·hᵀ with W read in place and h packed; weight gradient ∂W = dyᵀ·h; input "
               "gradient ∂hᵀ = Wᵀ·dyᵀ with W read in place, k-major; the small transposes around "
               "the forward and input-gradient products are not timed). libtorch: `matmul` in "
               "its own orientation (h·Wᵀ, dyᵀ·h, dy·W), as autograd computes them; MKL reports "
               f"its path as: {mkl or 'unknown (MKL_VERBOSE printed nothing)'}. Each cell: "
               "GFLOP/s median (min–max) over rounds, each round the fastest of "
               f"{args.reps} calls, implementations alternated within the round; then the "
               "fraction of the peak of the implementation's ISA (the scalar path: of AVX2's, "
               "as the build vectorises it; libtorch: of the widest). Every gnc path's output "
               "equals the scalar path's bit for bit (checked by the benchmark first).")
    out.append("")
    head = "| layer | product | m×k×n | " + " | ".join(impls) + " |"
    out.append(head)
    out.append("|---|---|---|" + "---:|" * len(impls))
    rows = {}
    for x in products:
        rows.setdefault((x["layer"], x["product"], x["shape"]), {})[x["impl"]] = x
    below = []
    for (layer, product, shape), by in rows.items():
        cells = []
        for impl in impls:
            x = by[impl]
            frac = x["gflops"]["median"] / peak_of(impl)["gflops"]["median"]
            cells.append(f"{rate(x['gflops'])}, {frac * 100:.0f} %")
            if impl == f"gnc {widest['isa']}" and frac < TARGET:
                below.append(f"{layer} {product} ({frac * 100:.0f} %)")
        out.append(f"| {layer} | {product} | {shape} | " + " | ".join(cells) + " |")
    out.append("")
    target = (f"Target ≥ {TARGET * 100:.0f} % of the {widest['isa']} peak on every product: "
              + ("met." if not below else "below on " + ", ".join(below) + "."))
    out.append(target)
    w = f"gnc {widest['isa']}"
    best = ", ".join(
        f"{layer} {product} {by[w]['gflops']['max'] / widest['gflops']['max'] * 100:.0f} %"
        for (layer, product, _), by in rows.items())
    out.append("")
    out.append(f"Least disturbed rounds (the fastest round of the {w} path over the fastest "
               f"probe round, {widest['gflops']['max']:.1f} GFLOP/s): {best}.")
    if skipped:
        out.append("")
        out.append("Skipped: " + "; ".join(s.split(": ", 1)[-1] for s in skipped) + ".")
    out.append(END)
    section = "\n".join(out) + "\n"
    if args.no_results:
        print(section)
    else:
        replace_section(START, END, section)
        print(section)


if __name__ == "__main__":
    main()
