#!/usr/bin/env python3
"""Issue 10: what GNC costs per iteration, in time and memory, in the runs users make.

Every figure comes from whole processes, as users run them:
  gnc      `gncctl run SPEC --stop-after N --threads T --json` on Fashion-MNIST; the time of an
           iteration is its own record in the run's metrics.jsonl (`seconds`: its workers'
           gradients, the reduction and the update; start-up, evaluation and checkpoints are
           not in it); peak RSS and minor page faults of the whole process from wait4();
  PyTorch  bench/pytorch_reference.py (the same step written as a PyTorch user would, on T
           intra-op threads), its own per-iteration times.
The matrix (issue 10): F1 (MLP 7 x 500) M = 64; MLP [500, 500] M = 256; the VGG-BN CNN
[16, 32, 64] x 2 M = 64; ResNet-20 M = 16; b = 32; each on 1 and 2 threads; gnc GNC, gnc
baseline (both at the default, portable, reproducibility level), the PyTorch reference's GNC,
and gnc's GNC at the native level (libtorch's MKL products and unpinned oneDNN convolutions, as
PyTorch uses), so that portable / native is measured in the same rounds (issue 25, item 4).
Rounds alternate everything: each round runs every cell once, in an order rotated from round to
round. A cell's figure is the median over rounds of the round's median iteration time, with
the min-max of the round medians; a ratio is the median (min-max) of the per-round ratios, so
both sides of a ratio ran minutes apart at most.

Also measured, in the same invocation: single-thread memory bandwidth (numpy copy of 256 MiB),
for GNC's floor: each iteration must read every worker's previous gradient and write its new
one, 2 x M x P x 4 bytes.

Writes the raw JSON lines to bench/out/cost-bench.jsonl and its section of bench/RESULTS.md
(between the cost-bench markers).

Usage (from the repository root): python3 bench/run_cost_bench.py [--rounds 5] [--iters 5]
  [--only f1,mlp,vgg,resnet] [--threads 1,2]
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
import time

import numpy as np

from benchlib import (RESULTS, ROOT, fashion_mnist_job, machine, median, pinned_environment,
                      replace_section)

OUT = ROOT / "bench" / "out" / "cost"
START = "<!-- cost-bench:start -->"
END = "<!-- cost-bench:end -->"
OVERHEAD_TARGET = 1.05
SPEED_TARGET = 1.0
RSS_SLACK = 0.10
WARMUP = 2  # iterations 0 (GNC has no previous gradients yet) and 1 are not timed

CONFIGS = {
    "f1": dict(
        title="F1 (MLP 7 x 500), M = 64",
        model='kind = "mlp"\nhidden = [500, 500, 500, 500, 500, 500, 500]',
        torch="mlp:500,500,500,500,500,500,500",
        workers=64,
    ),
    "mlp": dict(
        title="MLP [500, 500], M = 256",
        model='kind = "mlp"\nhidden = [500, 500]',
        torch="mlp:500,500",
        workers=256,
    ),
    "vgg": dict(
        title="VGG-BN [16, 32, 64] x 2, M = 64",
        model='kind = "vgg"\nchannels = [16, 32, 64]\nconvs_per_stage = 2',
        torch="vgg:16,32,64x2",
        workers=64,
    ),
    "resnet": dict(
        title="ResNet-20, M = 16",
        model='kind = "resnet"\ndepth = 20',
        torch="resnet:20",
        workers=16,
    ),
}


def spec(config, name, method, level):
    """A job spec file for gncctl."""
    c = CONFIGS[config]
    text = fashion_mnist_job(name, OUT / "runs" / name, c["model"], c["workers"], method, level)
    path = OUT / "specs" / f"{name}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def measured(cmd, env):
    """Runs `cmd` with its resource usage (wait4 of the child and what it waited for)."""
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    # communicate() would reap the child itself; read its pipes, then wait4 for the usage.
    out = proc.stdout.read()
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n"
                 f"{err.decode(errors='replace')[-3000:]}")
    return out.decode(), dict(
        rss_mib=usage.ru_maxrss / 1024,
        minor_faults=usage.ru_minflt,
        user_s=usage.ru_utime,
        system_s=usage.ru_stime,
    )


def run_gnc(config, method, level, threads, iters, env):
    name = f"{config}-{method}-{level}-t{threads}"
    path = spec(config, name, method, level)
    out_dir = OUT / "runs" / name
    cmd = [str(ROOT / "target/release/gncctl"), "run", str(path), "--stop-after", str(iters),
           "--threads", str(threads), "--json", "--out", str(out_dir)]
    wall = time.perf_counter()
    stdout, usage = measured(cmd, env)
    wall = time.perf_counter() - wall
    summary = json.loads(stdout)
    records = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    seconds = [r["seconds"] for r in records if r["kind"] == "iter"]
    times = [s * 1e3 for s in seconds[WARMUP:]]
    return dict(impl="gnc", method=method, level=level, times_ms=times,
                median_ms=median(times), wall_s=wall, hash=summary["params_sha256"], **usage)


def run_torch(config, threads, iters, python, env):
    c = CONFIGS[config]
    cmd = [python, str(ROOT / "bench/pytorch_reference.py"), "--model", c["torch"],
           "--workers", str(c["workers"]), "--small-batch", "32", "--method", "gnc",
           "--threads", str(threads), "--warmup", str(WARMUP), "--iters", str(iters - WARMUP),
           "--root", str(ROOT / "data/fashion-mnist")]
    stdout, usage = measured(cmd, env)
    line = json.loads(stdout.strip().splitlines()[-1])
    return dict(impl="pytorch", method="gnc", level="-", times_ms=line["times_ms"],
                median_ms=line["median_ms"], **usage)


def parameter_count(config):
    """P, from the PyTorch reference's own list of parameters (same shapes as gnc's)."""
    import pytorch_reference as ref  # beside this script; needs torch, which the venv has

    model = ref.parse_model(CONFIGS[config]["torch"])
    return sum(p.numel() for p in ref.init_params(model, 1))


def copy_bandwidth():
    """Single-thread memory bandwidth in GB/s (bytes read + written by a 256 MiB copy; best
    of 5, after a first copy that faults the pages in)."""
    src = np.ones(64 << 20, dtype=np.float32)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t)
    return 2 * src.nbytes / best / 1e9


def cells(configs, threads):
    """Every (config, threads, implementation) the matrix runs."""
    for config in configs:
        for t in threads:
            yield config, t, ("gnc", "gnc", "portable")
            yield config, t, ("gnc", "baseline", "portable")
            yield config, t, ("pytorch", "gnc", "-")
            yield config, t, ("gnc", "gnc", "native")


def spread(values, fmt="{:,.0f}"):
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    return f"{fmt.format(median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def verdict(values, target, at_most):
    """'met' only where every round is on the right side of the target, 'not met' where every
    round is on the wrong side, else 'unresolved' (the range straddles it)."""
    if not values:
        return "-"
    ok = [v <= target if at_most else v >= target for v in values]
    return "met" if all(ok) else ("not met" if not any(ok) else "unresolved")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--iters", type=int, default=5, help="iterations per run; the first 2 untimed")
    p.add_argument("--only", default="f1,mlp,vgg,resnet")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--python", default=str(ROOT / ".venv/bin/python"))
    args = p.parse_args()
    if args.iters <= WARMUP:
        sys.exit(f"--iters must exceed the {WARMUP} untimed iterations")
    configs = args.only.split(",")
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        sys.exit(f"--only: unknown configuration(s) {unknown}; known: {list(CONFIGS)}")
    threads = [int(t) for t in args.threads.split(",")]

    pinned = pinned_environment()
    gnc_env = dict(os.environ)
    # PyTorch as its users run it: none of gnc's pins (threads come from --threads).
    torch_env = {k: v for k, v in os.environ.items() if k not in pinned}
    OUT.mkdir(parents=True, exist_ok=True)
    raw = OUT.parent / "cost-bench.jsonl"
    bandwidth = copy_bandwidth()
    params = {c: parameter_count(c) for c in configs}
    matrix = list(cells(configs, threads))
    results = []
    with raw.open("w") as log:
        for r in range(args.rounds):
            shift = (r * 3) % len(matrix)
            for config, t, (impl, method, level) in matrix[shift:] + matrix[:shift]:
                if impl == "gnc":
                    res = run_gnc(config, method, level, t, args.iters, gnc_env)
                else:
                    res = run_torch(config, t, args.iters, args.python, torch_env)
                res.update(round=r, config=config, threads=t)
                results.append(res)
                log.write(json.dumps(res) + "\n")
                log.flush()
                print(f"round {r} {config} t{t} {impl} {method} {level}: "
                      f"{res['median_ms']:,.0f} ms, {res['rss_mib']:,.0f} MiB, "
                      f"{res['minor_faults']:,} faults", flush=True)
    write_results(results, configs, threads, params, bandwidth, args)


def write_results(results, configs, threads, params, bandwidth, args):
    def cell(config, t, impl, method, level):
        return {r["round"]: r for r in results
                if (r["config"], r["threads"], r["impl"], r["method"], r["level"])
                == (config, t, impl, method, level)}

    rows, rss_rows, notes = [], [], []
    hashes_ok = True
    for config in configs:
        c = CONFIGS[config]
        m, p_count = c["workers"], params[config]
        state_mib = m * p_count * 4 / 2**20
        floor_ms = 2 * m * p_count * 4 / (bandwidth * 1e9) * 1e3
        for t in threads:
            g = cell(config, t, "gnc", "gnc", "portable")
            b = cell(config, t, "gnc", "baseline", "portable")
            pt = cell(config, t, "pytorch", "gnc", "-")
            nat = cell(config, t, "gnc", "gnc", "native")
            rounds = sorted(g)
            overhead = [g[r]["median_ms"] / b[r]["median_ms"] for r in rounds if r in b]
            speed = [pt[r]["median_ms"] / g[r]["median_ms"] for r in rounds if r in pt]
            speed_native = [pt[r]["median_ms"] / nat[r]["median_ms"] for r in rounds
                            if r in pt and r in nat]
            level_cost = [g[r]["median_ms"] / nat[r]["median_ms"] for r in rounds if r in nat]
            excess = [g[r]["median_ms"] - b[r]["median_ms"] for r in rounds if r in b]
            rows.append(
                f"| {c['title']} | {t} | {spread([x['median_ms'] for x in g.values()])} "
                f"| {spread([x['median_ms'] for x in b.values()])} "
                f"| {spread(overhead, '{:.3f}')} | **{verdict(overhead, OVERHEAD_TARGET, True)}** "
                f"| {spread(excess)} | {floor_ms:,.0f} "
                f"| {spread([x['median_ms'] for x in pt.values()])} "
                f"| {spread(speed, '{:.2f}')} | **{verdict(speed, SPEED_TARGET, False)}** "
                f"| {spread([x['median_ms'] for x in nat.values()]) if nat else '-'} "
                f"| {spread(speed_native, '{:.2f}') if nat else '-'} "
                f"| {('**' + verdict(speed_native, SPEED_TARGET, False) + '**') if nat else '-'} "
                f"| {spread(level_cost, '{:.2f}') if nat else '-'} |"
            )
            g_rss = [x["rss_mib"] for x in g.values()]
            b_rss = [x["rss_mib"] for x in b.values()]
            bound = (median(b_rss) + state_mib) * (1 + RSS_SLACK)
            rss_rows.append(
                f"| {c['title']} | {t} | {spread(b_rss)} | {spread(g_rss)} | {state_mib:,.0f} "
                f"| {bound:,.0f} | **{verdict(g_rss, bound, True)}** "
                f"| {spread([x['rss_mib'] for x in pt.values()])} "
                f"| {spread([x['minor_faults'] / 1e3 for x in b.values()], '{:,.0f}')} k "
                f"| {spread([x['minor_faults'] / 1e3 for x in g.values()], '{:,.0f}')} k "
                f"| {spread([x['system_s'] for x in b.values()], '{:.2f}')} "
                f"| {spread([x['system_s'] for x in g.values()], '{:.2f}')} |"
            )
            for runs in (g, b, nat):
                if len({x["hash"] for x in runs.values()}) > 1:
                    hashes_ok = False
                    notes.append(f"{config} t{t}: the final hash differs between rounds")

    today = datetime.date.today().isoformat()
    flags = open("/proc/cpuinfo").read()
    isa = "AVX-512F microkernels" if " avx512f" in flags else "AVX2+FMA microkernels"
    section = f"""{START}
## What GNC costs per iteration (issue 10)

Measured {today} by `make bench` (`bench/run_cost_bench.py --rounds {args.rounds} --iters {args.iters}`)
on **{machine()}**. Whole runs as users make them (`gncctl run … --stop-after {args.iters}`, iterations
0–{WARMUP - 1} untimed); iteration times are the runs' own `metrics.jsonl` records; peak RSS,
minor faults and system time of each whole process from `wait4`. Each cell: median over
{args.rounds} rounds of the round's median (min–max of the round medians); ratios are per round,
then median (min–max). A target is **met** only where every round meets it, **not met** where
none does, **unresolved** where the range straddles it. gnc runs at the default (`portable`)
reproducibility level unless marked native; the PyTorch reference runs with its defaults (MKL
products, oneDNN convolutions) on the same thread count. Raw lines:
`bench/out/cost-bench.jsonl`.

Memory floor of GNC: 2·M·P·4 bytes per iteration (read each worker's previous gradient, write its
new one) at the measured single-thread copy bandwidth of **{bandwidth:.1f} GB/s** (numpy copy of
256 MiB, bytes read + written).

Paths: portable = gnc's own products ({isa}) and libtorch's other kernels pinned to AVX2
(oneDNN's convolutions included); native = libtorch's own choice on this CPU (MKL, oneDNN).

| config | threads | gnc GNC ms | gnc baseline ms | GNC / baseline | ≤ {OVERHEAD_TARGET:.2f} | GNC − baseline ms | floor ms | PyTorch GNC ms | PyTorch / gnc | ≥ {SPEED_TARGET:.1f} | gnc native GNC ms | PyTorch / native | ≥ {SPEED_TARGET:.1f} | portable / native |
|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

Memory (bound: (baseline RSS + M·P·4) × {1 + RSS_SLACK:.2f}):

| config | threads | baseline RSS MiB | GNC RSS MiB | M·P·4 MiB | bound MiB | GNC ≤ bound | PyTorch RSS MiB | baseline faults | GNC faults | baseline sys s | GNC sys s |
|---|---|---|---|---|---|---|---|---|---|---|---|
{chr(10).join(rss_rows)}

Final hashes identical across rounds for every gnc cell: **{'yes' if hashes_ok else 'NO'}**.
{chr(10).join(notes)}
{END}
"""
    replace_section(START, END, section)
    print(section)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
