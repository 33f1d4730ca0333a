#!/usr/bin/env python3
"""Issue 9: what each reproducibility level costs, measured in the same run.

One GNC iteration of F1 (M = 64, b = 32, one thread) through `gnc-bench-step`, with
  portable       gnc's own matrix products and square roots, libtorch pinned to AVX2 (the
                 default level: the same bits on Intel and AMD);
  native         libtorch's kernels, unpinned (AVX-512 where the CPU has it, MKL's own choice);
  avx2-libtorch  libtorch's kernels under the AVX2 pins: what every run computed with before
                 the levels existed ("today's pin" of the issue).
R rounds, each running the three processes in an order rotated every round. Per process: its
median iteration time (wall and thread CPU) and minor page faults per iteration.
Writes bench/out/levels-bench.jsonl and its section of bench/RESULTS.md.

Usage (from the repository root): python3 bench/run_levels_bench.py [--rounds 5] [--iters 4]
"""

import argparse
import datetime
import json
import shlex
import subprocess
import sys

from benchlib import RESULTS, ROOT, level_environment, machine, median, replace_section, sh

OUT = ROOT / "bench" / "out"
START = "<!-- levels-bench:start -->"
END = "<!-- levels-bench:end -->"
KINDS = ["portable", "native", "avx2-libtorch"]
# The environment each kind starts with (`gnc-bench-step --kernels`, which checks it).
ENVIRONMENT = {"portable": "portable", "native": "native", "avx2-libtorch": "portable"}


def cpu_fma():
    """The widest FMA vector ISA of this CPU, its f32 lanes, and the clock /proc/cpuinfo gives."""
    info = open("/proc/cpuinfo").read()
    flags = next(l for l in info.splitlines() if l.startswith("flags")).split()
    mhz = float(next(l for l in info.splitlines() if l.startswith("cpu MHz")).split(":")[1])
    return ("AVX-512", 16, mhz) if "avx512f" in flags else ("AVX2", 8, mhz)


def run(cmd, env):
    """Runs `cmd` in `env`; returns its last stdout line as JSON."""
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"{shlex.join(cmd)} failed ({p.returncode}):\n{p.stderr[-4000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--iters", type=int, default=4, help="timed iterations per process")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--workers", type=int, default=64)
    p.add_argument("--small-batch", type=int, default=32)
    p.add_argument("--root", default="data/fashion-mnist")
    p.add_argument("--no-build", action="store_true")
    args = p.parse_args()
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "-p", "gnc-bench"], cwd=ROOT, check=True)
    OUT.mkdir(parents=True, exist_ok=True)
    binary = str(ROOT / "target/release/gnc-bench-step")
    common = [
        "--method", "gnc", "--workers", str(args.workers), "--small-batch",
        str(args.small_batch), "--root", args.root, "--warmup", str(args.warmup),
        "--iters", str(args.iters),
    ]
    lines = []
    for r in range(args.rounds):
        order = KINDS[r % len(KINDS):] + KINDS[: r % len(KINDS)]
        for kind in order:
            line = run([binary, "--kernels", kind, *common], level_environment(ENVIRONMENT[kind]))
            line.update(round=r, kernels=kind)
            lines.append(line)
            print(f"round {r}: {kind:14s} median {line['median_ms']:7.1f} ms "
                  f"(cpu {line['cpu_median_ms']:7.1f} ms)", flush=True)
    with open(OUT / "levels-bench.jsonl", "w") as f:
        for line in lines:
            f.write(json.dumps(line) + "\n")

    stats = {}
    for kind in KINDS:
        rs = [x for x in lines if x["kernels"] == kind]
        wall = [x["median_ms"] for x in rs]
        cpu = [x["cpu_median_ms"] for x in rs]
        stats[kind] = dict(wall=median(wall), lo=min(wall), hi=max(wall), cpu=median(cpu),
                           cpu_lo=min(cpu), cpu_hi=max(cpu),
                           faults=median([x["minor_faults_per_iter"] for x in rs]),
                           loss=rs[0]["losses"][-1])
    # Ratios per round (the three ran back to back), then their range.
    def ratio(a, b, field="median_ms"):
        per = [x[field] / y[field] for x, y in zip(
            [x for x in lines if x["kernels"] == a], [y for y in lines if y["kernels"] == b])]
        return median(per), min(per), max(per)

    # Forward and weight gradient of every layer, input gradient of all but the first.
    macs = 784 * 500 + 6 * 500 * 500 + 500 * 10
    flops = 2 * args.small_batch * (3 * macs - 784 * 500) * args.workers
    commit = sh(["git", "rev-parse", "--short", "HEAD"]) or "unknown"
    dirty = " (with uncommitted changes)" if sh(["git", "status", "--porcelain"]) else ""
    table = "\n".join(
        f"| {k} | {s['wall']:.0f} | {s['lo']:.0f} – {s['hi']:.0f} | {s['cpu']:.0f} "
        f"({s['cpu_lo']:.0f} – {s['cpu_hi']:.0f}) | {s['faults']:,.0f} | {s['loss']:.6f} |"
        for k, s in stats.items()
    )
    rows = []
    for a, b in [("portable", "avx2-libtorch"), ("portable", "native"), ("native", "avx2-libtorch")]:
        w, c = ratio(a, b), ratio(a, b, "cpu_median_ms")
        rows.append(f"| {a} / {b} | {w[0]:.2f} ({w[1]:.2f} – {w[2]:.2f}) | "
                    f"{c[0]:.2f} ({c[1]:.2f} – {c[2]:.2f}) |")
    isa, lanes, mhz = cpu_fma()
    peak = 2 * lanes * 2 * mhz * 1e6
    section = f"""{START}
## Reproducibility levels: what portable costs (issue 9)

One GNC iteration of F1 (784 → 500 ×7 → 10) on Fashion-MNIST, M = {args.workers}, b = {args.small_batch},
one thread (`gnc-bench-step --method gnc --kernels K`), {args.warmup} untimed and {args.iters} timed
iterations per process, {args.rounds} rounds, the three processes in an order rotated every round.
`portable` = gnc's own matrix products (fma chains, `gnc-kernels`) and square
roots, libtorch pinned to AVX2; `native` = libtorch's own kernels, unpinned; `avx2-libtorch` =
libtorch's kernels under the AVX2 pins, which every run used before the levels existed.

| kernels | ms / iteration (median of round medians, wall) | round medians min – max | CPU ms (min – max) | minor faults / iteration | loss after the last iteration |
|---|---:|---:|---:|---:|---:|
{table}

| ratio (per round, back to back) | wall: median (min – max) | CPU: median (min – max) |
|---|---:|---:|
{chr(10).join(rows)}

Floor: the matrix products of one iteration are {flops / 1e9:.1f} GFLOP (every worker: forward and weight
gradient of every layer, input gradient of all but the first); one core's peak at 2 {isa} FMA units × {lanes} lanes × 2 flops
per cycle is {4 * lanes} flop/cycle, about {peak / 1e9:.0f} GFLOP/s at /proc/cpuinfo's {mhz:.0f} MHz, so ≥ {flops / peak * 1e3:.0f} ms
(`make bench`'s product section measures the peak itself). gnc's products are `gnc-kernels`
(`kernels/`), on the widest of AVX-512F, AVX2+FMA and scalar the CPU has.
The losses differ in the last digits between `portable` and the others: different roundings of
the same products, as expected; `native` and `avx2-libtorch` compute the same bits on a CPU
without AVX-512 (AVX2 is ATen's choice there, and MKL ignores its pins on AMD).
Instruction counts: `perf stat` reports cycles and instructions as not supported on this VM.

- Machine: {machine()}
- Date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}
- Commit: {commit}{dirty}
- Reproduce: `make bench` (runs this first), or `.venv/bin/python bench/run_levels_bench.py --rounds {args.rounds} --iters {args.iters}`
- Raw: `bench/out/levels-bench.jsonl` (not committed)
{END}
"""
    replace_section(START, END, section)
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
