#!/usr/bin/env python3
"""Issue 3: the shared-memory data plane, measured against references in the same run.

Runs, in one invocation:
  1. `cargo build --release -p gnc-bench -p gnc-ctl -p gnc-worker` (unless --no-build);
  2. R rounds of the all-reduce benchmarks, each round running `gnc-bench-reduce` (gnc's
     sharded all-reduce over /dev/shm between P processes, and memcpy of the same bytes in the
     same process run) and `bench/gloo_allreduce.py` (torch.distributed all_reduce, gloo
     backend, P processes over loopback TCP) for the same vector sizes, in an order rotated
     every round;
  3. R rounds of the process-scaling benchmark: `gncctl run bench/f1-scaling.toml` with
     `--devices cpu:1`, `--devices cpu:2`, `--threads 1`, `--threads 2` (order rotated every
     round); the iteration time is the slope of the times at which iterations complete,
     observed as `metrics.jsonl` grows (process 0 writes and flushes one line per iteration),
     from iteration --scaling-skip to the last, so start-up, data loading, the first
     iterations and the final checkpoint are all left out;
then writes raw JSON lines to bench/out/shm-bench.jsonl and its section of bench/RESULTS.md
(between the shm-bench markers; the rest of the file is kept). Every process runs under the
pinned CPU environment of worker/src/pin.rs.

Measures (per round, then the median over rounds):
  fraction of memcpy = memcpy time / all-reduce time for the same vector (N = 4·len bytes),
      the memcpy single-core, measured in the same gnc-bench-reduce run, interleaved with the
      all-reduce calls (while the reducing processes sleep), the all-reduce time the time of
      one call per process (the slowest process's, per call); i.e. the all-reduce's throughput
      in vector bytes per second over memcpy's (target >= 0.5);
  gloo / gnc = gloo all-reduce time / gnc all-reduce time, same sizes (target >= 2);
  speedup = ms per iteration with cpu:1 / with cpu:2 (target >= 1.6); the ratio of the two
      medians is reported too, as bench/run_step_bench.py computes its ratios.

Usage (from the repository root): .venv/bin/python bench/run_shm_bench.py [--rounds 5]
"""

import argparse
import datetime
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import RESULTS, ROOT, machine, median, pinned_environment, replace_section, sh

BENCH = ROOT / "bench"
OUT = BENCH / "out"
START = "<!-- shm-bench:start -->"
END = "<!-- shm-bench:end -->"
FRACTION_TARGET = 0.5
GLOO_TARGET = 2.0
SPEEDUP_TARGET = 1.6
SCALING_SPEC = "bench/f1-scaling.toml"





def run_lines(cmd, env):
    """Runs `cmd`, returns its stdout lines that are JSON objects."""
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"{shlex.join(cmd)} failed ({p.returncode}):\n{p.stderr[-4000:]}")
    return [json.loads(x) for x in p.stdout.splitlines() if x.startswith("{")]








def timed_training(cmd, out_dir, env, iterations, skip):
    """Runs a training command; returns (ms per iteration, its JSON summary). The iteration
    time is the least-squares slope of iteration k's completion time over k = skip..iterations,
    a completion being seen when its line appears in metrics.jsonl (polled every 5 ms with a
    stat(), so the poller takes next to no CPU from the workers)."""
    metrics = Path(out_dir) / "metrics.jsonl"
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    seen = {}
    size, count, data = 0, 0, b""
    while True:
        done = proc.poll() is not None
        try:
            new_size = os.stat(metrics).st_size
        except FileNotFoundError:
            new_size = 0
        if new_size > size:
            now = time.perf_counter()
            with open(metrics, "rb") as f:
                f.seek(size)
                data += f.read(new_size - size)
            size = new_size
            lines = data.split(b"\n")
            data = lines.pop()
            for line in lines:
                if b'"kind":"iter"' in line.replace(b" ", b""):
                    count += 1
                    seen[count] = now
        if done:
            break
        time.sleep(0.005)
    stdout, stderr = proc.communicate()
    if proc.returncode != 0:
        sys.exit(f"{shlex.join(cmd)} failed ({proc.returncode}):\n{stderr[-4000:]}")
    if count != iterations:
        sys.exit(f"{shlex.join(cmd)}: saw {count} iteration records, expected {iterations}")
    ks = list(range(skip, iterations + 1))
    ts = [seen[k] for k in ks]
    kbar, tbar = statistics.fmean(ks), statistics.fmean(ts)
    slope = sum((k - kbar) * (t - tbar) for k, t in zip(ks, ts)) / sum((k - kbar) ** 2 for k in ks)
    # gncctl prints the summary; a bare gnc-mpi-worker leaves it in result.json only.
    summary = json.loads(stdout) if stdout.strip() else json.loads(
        (Path(out_dir) / "result.json").read_text())
    return slope * 1e3, summary


def analysis(args, reduce_rows, phase_rows, s_rows, speedup, speedup_of_medians,
             speedup_threads, rounds):
    """Why the measures came out as they did, in this run's numbers."""
    big = max(reduce_rows, key=lambda x: x["len"])
    f1 = next((x for x in reduce_rows if x["len"] == 1900510), reduce_rows[0])
    small = min(reduce_rows, key=lambda x: x["len"])
    p_ = args.processes
    traffic = big["traffic"]
    share = big["memcpy_conc_ms"] / big["memcpy_hot_ms"]
    any_ceiling = big["memcpy_ms"] / big["memcpy_conc_ms"]
    gnc_ceiling = any_ceiling / traffic
    fractions = [x["fraction"] for x in reduce_rows]
    met = f1["fraction"] >= FRACTION_TARGET
    out = [
        f"**Fraction of memcpy: {'met' if met else 'missed'}** ({min(fractions):.2f} – "
        f"{max(fractions):.2f} over sizes, {f1['fraction']:.2f} at F1's bundle). The call is "
        "bound by the bytes it moves, not by waiting or protocol overhead. Per process it reads "
        f"and writes {traffic:.2f}× the bytes of a memcpy of the vector (fill: read N + write N; "
        f"reduce its shard: read N + write N/{p_}; gather: read N + write N), on {p_} cores that "
        "share one memory system, and its data crosses between the cores (every slot one core "
        "writes, the other reads), so it runs from L3/DRAM even where a hot memcpy runs from "
        "the core's own cache."
    ]
    out.append(
        f"- At {big['len']:,} floats ({big['mib']:.0f} MiB, beyond the 32 MiB L3) {p_} processes "
        f"copying at once take {share:.2f}× as long as one ({big['memcpy_conc_ms']:.1f} vs "
        f"{big['memcpy_hot_ms']:.1f} ms): together the {p_} cores copy only {p_ / share:.2f}× as "
        f"fast as one. Any all-reduce that reads {p_} input vectors and writes {p_} output "
        f"vectors moves at least {p_} memcpys' worth of bytes, so here even an ideal one would "
        f"reach at most ≈ {any_ceiling:.2f}; with gnc's {traffic:.2f}× per process the bound is "
        f"≈ {gnc_ceiling:.2f}. It measures {big['fraction']:.2f}: it moves its bytes "
        f"{big['bandwidth_use']:.2f}× as fast as {p_} concurrent memcpys move theirs (column "
        "*memory bandwidth used*; above 1 because part of its traffic stays in the L3), i.e. "
        "at the memory's speed.")
    parts = [
        f"{x['mib']:.0f} MiB: {traffic * x['memcpy_cold_ms']:.2f} / "
        f"{traffic * x['memcpy_conc_ms']:.2f} / {x['gnc_ms']:.2f} ms"
        for x in reduce_rows
    ]
    out.append(
        f"- At the smaller sizes the hot memcpy runs from cache ({4 * small['len'] / small['memcpy_hot_ms'] / 1e6:.0f} GB/s "
        f"at {small['mib']:.0f} MiB) but the all-reduce cannot: its working set per process is "
        "about 5N (input, both block sums, both shards, output) and what one core wrote must be "
        f"fetched by the other. At F1's bundle ({f1['mib']:.1f} MiB) the fill alone takes "
        f"{f1['fill_ms']:.2f} ms, close to a cold memcpy ({f1['memcpy_cold_ms']:.2f} ms) rather "
        f"than the hot one ({f1['memcpy_hot_ms']:.2f} ms; interleaved with the all-reduce: "
        f"{f1['memcpy_ms']:.2f} ms). At every size the call's time is of the order of "
        f"{traffic:.2f} memcpys' time, of a cold memcpy while the data fits the L3 and of "
        f"{p_} concurrent memcpys once both cores stream from DRAM ({traffic:.2f} × cold / "
        f"{traffic:.2f} × {p_}-at-once / measured: {'; '.join(parts)}).")
    f1_phases = [(rank, ph) for length, rank, ph in phase_rows if length == f1["len"]]
    if f1_phases:
        waits = {rank: ph["wait_slot_free"] + ph["wait_block_sums"] + ph["wait_shard_free"]
                 + ph["wait_shards"] for rank, ph in f1_phases}
        worst = max(waits.values())
        total = max(ph["total"] for _, ph in f1_phases)
        ph0 = f1_phases[0][1]
        out.append(
            f"- The phase table shows the same: at F1's bundle a process waits for the other "
            f"{worst:.2f} ms of {total:.2f} ms at most; the rest is fill "
            f"({ph0['fill']:.2f} ms), reducing its shard ({ph0['reduce_shard']:.2f} ms) and "
            f"gathering ({ph0['gather']:.2f} ms), each a pass over N or N/{p_} bytes at L3/DRAM "
            "speed.")
    out.append(
        "- The lever is the number of bytes moved: at "
        f"{big['mib']:.0f} MiB an all-reduce moving only {p_} memcpys' worth could reach "
        f"≈ {any_ceiling:.2f} here, gnc's present protocol ≈ {gnc_ceiling:.2f}. Readers already "
        "consume the reduced shards where they lie (the shard visitor of `all_reduce`; the "
        "worker copies them straight into its tensors, once), and the block sum is copied into "
        "its slot once (`flatten_into`; the benchmark's fill stands for that copy): the one copy "
        "in and the one copy out are what training needs, and leave "
        f"{(traffic * 2 - 4) / 2:.2f} memcpys' worth of traffic per process for the reduction "
        "itself. Below the L3 size the reference (a single-core memcpy) is out of reach for any "
        "operation whose data crosses cores.")
    ratios = [x["ratio"] for x in reduce_rows]
    low = min(x["ratio_lo"] for x in reduce_rows)
    low_at = min(reduce_rows, key=lambda x: x["ratio_lo"])
    out.append(
        f"**gloo / gnc: {'met' if min(ratios) >= GLOO_TARGET else 'missed'}** for the median "
        f"of every size ({min(ratios):.1f}× – {max(ratios):.1f}×)"
        + (f"; in single rounds it fell to {low:.1f}× (at {low_at['mib']:.0f} MiB)"
           if low < GLOO_TARGET else "")
        + ". The margin shrinks with size: gnc is memory-bound (above), and gloo's loopback "
        "TCP path (kernel copies on both sides, chunked, summed as received) is also mostly "
        "copying at large sizes, so the ratio tends to the ratio of bytes copied; at small "
        "sizes gloo's per-call overhead dominates.")
    one, two = s_rows[("processes", 1)], s_rows[("processes", 2)]
    sp = [a / b for a, b in zip(rounds["processes"][1], rounds["processes"][2])]
    below = sum(x < SPEEDUP_TARGET for x in sp)
    ar = f1["gnc_ms"]
    verdict = "met" if speedup >= SPEEDUP_TARGET else "missed"
    if (speedup >= SPEEDUP_TARGET) != (speedup_of_medians >= SPEEDUP_TARGET):
        verdict += ", narrowly: at the target within the noise"
    out.append(
        f"**Process scaling: {verdict}** ({speedup:.2f}× as the median of the per-round "
        f"ratios, {speedup_of_medians:.2f}× as the ratio of the median times; {below} of "
        f"{len(sp)} rounds below {SPEEDUP_TARGET}, range {min(sp):.2f}× – {max(sp):.2f}×). "
        f"With 2 processes each computes 8 of the 16 workers: {one / 2:.1f} ms per "
        f"iteration would be perfect, {two:.1f} ms is measured (medians). The all-reduce of "
        f"F1's {f1['len']:,}-float bundle accounts for about {ar:.1f} ms of that "
        f"({100 * ar / two:.0f} %, fill included). The in-process engine, which has no "
        f"shared-memory all-reduce at all, scales about the same from 1 to 2 threads "
        f"({speedup_threads:.2f}×), so the rest of the gap is not the data plane. The likely "
        "cause is the machine: its two cores share memory bandwidth (two concurrent memcpys "
        f"take {share:.2f}× as long as one, above), and GNC's iteration streams every worker's "
        "previous gradient (7.6 MB each, 122 MB for 16 workers, far more than the L3) and new "
        "gradient through it. The cpu:2 rounds ranged "
        f"{min(rounds['processes'][2]):.1f} – {max(rounds['processes'][2]):.1f} ms"
        + (f", a spread larger than the distance to the target ({one / SPEEDUP_TARGET:.1f} ms)."
           if verdict != "met" else "."))
    return "\n\n".join(out)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--sizes", default="1048576,1900510,4194304,16777216")
    p.add_argument("--iters", type=int, default=50, help="timed all-reduces per size and round")
    p.add_argument("--warmup", type=int, default=5, help="untimed all-reduces first")
    p.add_argument("--scaling-iters", type=int, default=40,
                   help="iterations of each training run (--stop-after)")
    p.add_argument("--scaling-skip", type=int, default=8,
                   help="iterations before the timed span of each training run")
    p.add_argument("--python", default=str(ROOT / ".venv/bin/python"))
    p.add_argument("--no-build", action="store_true")
    p.add_argument("--no-results", action="store_true",
                   help="do not touch bench/RESULTS.md (smoke tests)")
    p.add_argument("--from-jsonl", type=Path,
                   help="measure nothing: rewrite the RESULTS.md section from the raw lines "
                        "(and settings, date, commit) an earlier run saved")
    args = p.parse_args()
    replay = None
    if args.from_jsonl:
        replay = [json.loads(x) for x in args.from_jsonl.read_text().splitlines() if x.strip()]
        meta = replay[0]
        assert meta["bench"] == "meta", "the first line must be the run's settings"
        for k, v in meta["args"].items():
            setattr(args, k, v)
    sizes = [int(x) for x in args.sizes.split(",")]
    if args.scaling_skip < 1 or args.scaling_iters < args.scaling_skip + 5:
        sys.exit("need 1 <= --scaling-skip and --scaling-iters >= --scaling-skip + 5")

    if not args.no_build and not replay:
        subprocess.run(["cargo", "build", "--release", "-p", "gnc-bench", "-p", "gnc-ctl",
                        "-p", "gnc-worker"], cwd=ROOT, check=True)
    pinned = replay[0]["pinned"] if replay else pinned_environment()
    env = dict(os.environ, **pinned)
    OUT.mkdir(parents=True, exist_ok=True)
    started = time.time()
    dirty = " (with uncommitted changes)" if sh(["git", "status", "--porcelain"]) else ""
    meta = replay[0] if replay else {
        "bench": "meta",
        "args": {k: getattr(args, k) for k in ("rounds", "processes", "sizes", "iters", "warmup",
                                               "scaling_iters", "scaling_skip")},
        "pinned": pinned,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": (sh(["git", "rev-parse", "--short", "HEAD"]) or "unknown") + dirty,
        "machine": machine(),
    }

    # --- all-reduce: gnc vs memcpy (same process run) and vs gloo (same invocation) ---
    common = ["--processes", str(args.processes), "--sizes", args.sizes,
              "--warmup", str(args.warmup), "--iters", str(args.iters)]
    commands = {
        "gnc": [str(ROOT / "target/release/gnc-bench-reduce"), *common, "--phases"],
        "gloo": [args.python, str(BENCH / "gloo_allreduce.py"), *common],
    }
    lines = replay[1:] if replay else []
    order = list(commands)
    for r in range(0 if replay else args.rounds):
        for key in order[r % 2:] + order[:r % 2]:
            for line in run_lines(commands[key], env):
                line["round"] = r
                lines.append(line)
                extra = (f" memcpy {line['memcpy_ms']:8.3f} ms  fraction {line['fraction_of_memcpy']:.3f}"
                         if key == "gnc" else "")
                print(f"round {r}: {key:4s} {line['len']:>9d} floats  all-reduce "
                      f"{line['allreduce_ms']:8.3f} ms{extra}", flush=True)

    def reduce_line(bench, length, r):
        return next(x for x in lines if x["bench"] == bench and x["len"] == length and x["round"] == r)

    reduce_rows = []
    for length in sizes:
        g = [reduce_line("gnc-reduce", length, r) for r in range(args.rounds)]
        t = [reduce_line("gloo-allreduce", length, r) for r in range(args.rounds)]
        fractions = [x["fraction_of_memcpy"] for x in g]
        # Bytes read + written per call, all processes: each fills its slot (read N, write
        # N), reduces its shard (read N, write N/P) and gathers (read N, write N).
        traffic = (5 * args.processes + 1) / (2 * args.processes)
        busy = [traffic * x["memcpy_concurrent_ms"] / x["allreduce_ms"] for x in g]
        fractions_cold = [x["memcpy_cold_ms"] / x["allreduce_ms"] for x in g]
        fractions_proper = [x["memcpy_ms"] / x["reduce_only_ms"] for x in g]
        ratios = [y["allreduce_ms"] / x["allreduce_ms"] for x, y in zip(g, t)]
        reduce_rows.append({
            "len": length,
            "mib": 4 * length / 2**20,
            "memcpy_ms": median([x["memcpy_ms"] for x in g]),
            "memcpy_conc_ms": median([x["memcpy_concurrent_ms"] for x in g]),
            "memcpy_cold_ms": median([x["memcpy_cold_ms"] for x in g]),
            "gnc_ms": median([x["allreduce_ms"] for x in g]),
            "fill_ms": median([x["fill_ms"] for x in g]),
            "memcpy_hot_ms": median([x.get("memcpy_hot_ms", x["memcpy_ms"]) for x in g]),
            "proper_ms": median([x["reduce_only_ms"] for x in g]),
            "gloo_ms": median([x["allreduce_ms"] for x in t]),
            "fraction": median(fractions),
            "fraction_lo": min(fractions),
            "fraction_hi": max(fractions),
            "fraction_cold": median(fractions_cold),
            "bandwidth_use": median(busy),
            "traffic": traffic,
            "fraction_proper": median(fractions_proper),
            "ratio": median(ratios),
            "ratio_lo": min(ratios),
            "ratio_hi": max(ratios),
            "exact": all(x["exact"] for x in g),
            "gloo_exact": all(x["exact"] for x in t),
        })
    phase_names = ["wait_slot_free", "fill", "wait_block_sums", "wait_shard_free",
                   "reduce_shard", "wait_shards", "gather", "total"]
    phase_rows = []
    for length in sizes:
        g = [reduce_line("gnc-reduce", length, r) for r in range(args.rounds)]
        for rank in range(args.processes):
            per = [x["phases_ms_per_rank"][rank] for x in g]
            phase_rows.append((length, rank, {k: median([y[k] for y in per]) for k in phase_names}))
    torch_version = next((x["torch_version"] for x in lines if "torch_version" in x), "?")

    # --- process scaling: gncctl run, cpu:1 vs cpu:2 (and --threads 1 vs 2) ---
    configs = [("processes", 1), ("processes", 2), ("threads", 1), ("threads", 2)]
    scaling = [x for x in lines if x["bench"] == "scaling"]
    for r in range(0 if replay else args.rounds):
        for kind, n in configs[r % 4:] + configs[:r % 4]:
            with tempfile.TemporaryDirectory(prefix="gnc-shm-bench-") as tmp:
                flag = ["--devices", f"cpu:{n}"] if kind == "processes" else ["--threads", str(n)]
                cmd = [str(ROOT / "target/release/gncctl"), "run", SCALING_SPEC, *flag,
                       "--stop-after", str(args.scaling_iters), "--out", tmp, "--json"]
                ms, summary = timed_training(cmd, tmp, env, args.scaling_iters, args.scaling_skip)
            line = {"bench": "scaling", "kind": kind, "n": n, "round": r, "ms_per_iter": ms,
                    "iterations": args.scaling_iters, "skip": args.scaling_skip,
                    "train_seconds": summary["train_seconds"],
                    "params_sha256": summary["params_sha256"]}
            scaling.append(line)
            lines.append(line)
            print(f"round {r}: {kind:9s} {n}  {ms:8.1f} ms / iteration  "
                  f"(hash {summary['params_sha256'][:12]})", flush=True)

    def scale(kind, n):
        return [x["ms_per_iter"] for x in scaling if x["kind"] == kind and x["n"] == n]

    def per_round_speedup(kind):
        one, two = scale(kind, 1), scale(kind, 2)
        return [a / b for a, b in zip(one, two)]

    s_rows = {(k, n): median(scale(k, n)) for k, n in configs}
    speedup_rounds = per_round_speedup("processes")
    thread_rounds = per_round_speedup("threads")
    # Judged like the other two measures: the median of the per-round ratios.
    speedup = median(speedup_rounds)
    speedup_threads = median(thread_rounds)
    speedup_of_medians = s_rows[("processes", 1)] / s_rows[("processes", 2)]
    threads_of_medians = s_rows[("threads", 1)] / s_rows[("threads", 2)]
    hashes = {x["params_sha256"] for x in scaling}
    if not replay:
        meta["elapsed_s"] = time.time() - started
        with open(OUT / "shm-bench.jsonl", "w") as f:
            for line in [meta, *lines]:
                f.write(json.dumps(line) + "\n")
    elapsed = meta["elapsed_s"]

    def yes(ok):
        return "**yes**" if ok else "**no**"

    commit = meta["commit"]
    cmd = ".venv/bin/python bench/run_shm_bench.py" + "".join(
        f" --{k} {v}" for k, v in [("rounds", args.rounds), ("iters", args.iters),
                                   ("warmup", args.warmup), ("scaling-iters", args.scaling_iters),
                                   ("scaling-skip", args.scaling_skip)])
    env_text = " ".join(f"{k}={v}" for k, v in pinned.items())
    p_ = args.processes

    reduce_table = "\n".join(
        f"| {x['len']:,} | {x['mib']:.1f} | {x['memcpy_ms']:.3f} | {x['memcpy_hot_ms']:.3f}"
        f" | {x['memcpy_cold_ms']:.3f}"
        f" | {x['memcpy_conc_ms']:.3f} | {x['gnc_ms']:.3f}"
        f" | {x['fill_ms']:.3f} | {x['gloo_ms']:.3f}"
        f" | **{x['fraction']:.2f}** ({x['fraction_lo']:.2f} – {x['fraction_hi']:.2f})"
        f" | {x['fraction_proper']:.2f} | {x['fraction_cold']:.2f} | {x['bandwidth_use']:.2f}"
        f" | **{x['ratio']:.1f}** ({x['ratio_lo']:.1f} – {x['ratio_hi']:.1f})"
        f" | {'yes' if x['exact'] else 'NO'} |"
        for x in reduce_rows
    )
    phase_table = "\n".join(
        f"| {length:,} | {rank} | " + " | ".join(f"{ph[k]:.3f}" for k in phase_names) + " |"
        for length, rank, ph in phase_rows
    )
    fractions_all = [x["fraction"] for x in reduce_rows]
    ratios_all = [x["ratio"] for x in reduce_rows]
    f1 = next((x for x in reduce_rows if x["len"] == 1900510), reduce_rows[0])
    s_table = "\n".join(
        f"| {label} | {s_rows[key]:.1f} | {min(scale(*key)):.1f} – {max(scale(*key)):.1f} |"
        for key, label in [
            (("processes", 1), "`--devices cpu:1` (1 worker process)"),
            (("processes", 2), "`--devices cpu:2` (2 worker processes)"),
            (("threads", 1), "`--threads 1` (in-process engine)"),
            (("threads", 2), "`--threads 2` (in-process engine)"),
        ]
    )

    borderline = ""
    if (speedup >= SPEEDUP_TARGET) != (speedup_of_medians >= SPEEDUP_TARGET):
        borderline = (f" (borderline: the ratio of the medians, {speedup_of_medians:.2f}, "
                      f"{'meets' if speedup_of_medians >= SPEEDUP_TARGET else 'misses'} it)")
    section = f"""{START}
## Shared-memory data plane: all-reduce and process scaling (issue 3)

All numbers from one invocation of `bench/run_shm_bench.py` ({elapsed / 60:.1f} min), every
process under the pinned environment of `worker/src/pin.rs` (`{env_text}`); each ratio is taken
between measurements of the same round, then the median over {args.rounds} rounds is reported
(per-round min – max in brackets).

### All-reduce of P = {p_} processes: gnc vs memcpy and vs gloo

gnc: `ShardedReducer::all_reduce` between {p_} processes over real `/dev/shm` segments
(`bench/src/bin/gnc-bench-reduce.rs`), M = 16 logical workers in blocks [0, 8) [8, 16). One
timed call does what a training iteration's call does, taking the process's input vector (an
ordinary `Vec<f32>` of `len` floats) to the summed output vector: it copies the input into the
process's block-sum slot (the in-place write a worker's `flatten_into` does), reduces its half
of the vector over both block sums in tree order, publishes it, and its shard visitor copies
both reduced halves, where they lie in shared memory, into the output (as the worker copies
them straight into its gradient tensors; there is no other copy). gloo: `dist.all_reduce`
of a float32 tensor of the same length, {p_} processes over loopback TCP
(`bench/gloo_allreduce.py`, PyTorch {torch_version}); only the call is timed (re-copying the
input before each in-place call is left out of gloo's time). Both: {args.warmup} untimed calls,
then {args.iters} timed ones (gnc: in chunks of 5, see below); the time of call t is the slowest
process's; median over calls. memcpy, in the same `gnc-bench-reduce` run: `copy_from_slice` of
the same `len` floats (N = 4·len bytes), median of its copies, four ways: *interleaved* (the
reference of the fraction: after every chunk of 5 all-reduce calls the reducing processes
sleep on a pipe while the benchmark's parent process alone, on one core, copies between the
same two pre-faulted vectors 5 times; so memcpy and all-reduce are measured alternately under
the same conditions), *hot* (context: one process, back to back before the all-reduce, the
same two vectors every time, so they stay in cache while 2N fits in the 32 MiB L3),
*cold* (one process, around a ring of vectors of 128 MiB in all, so the source comes from
DRAM), and *{p_}× at once* ({p_} processes, started together, each copying its own vectors; the
slowest's time).

**Fraction of memcpy** (the target's measure) = interleaved single-core memcpy time / gnc
all-reduce time per process (slowest process per call) for the same N bytes, i.e. the all-reduce's throughput in vector bytes per second (N / t) over
memcpy's (N / t). Each byte of the vector counts once, as a reader would expect ("the all-reduce
moves the vector at x × memcpy speed"; for P = 2 this is also NCCL's bus bandwidth, which
equals its algorithm bandwidth at 2 ranks). It does not credit the protocol for the extra bytes
it moves: per process and call, read N + write N to fill the slot, read N + write N/{p_} to
reduce its shard, read N + write N to copy the reduced shards out, i.e. {reduce_rows[0]['traffic']:.2f} memcpys' worth
of memory traffic on each of the {p_} cores. Other columns: *proper* leaves out the fill (the
reduction once the block sum is in its slot, as in training, where the worker's block sum is
flattened straight into the slot); *vs cold* uses the cold memcpy; *memory bandwidth used* =
the protocol's bytes read + written by all processes per second over those of {p_} concurrent
memcpys ({reduce_rows[0]['traffic']:.2f} × {p_}× memcpy time / all-reduce time; about 1 means the
all-reduce moves its bytes as fast as this machine's memory moves any).

| floats | MiB | memcpy ms, interleaved | memcpy ms, hot | memcpy ms, cold | memcpy ms, {p_}× at once | gnc all-reduce ms | of which fill ms | gloo all-reduce ms | fraction of memcpy | fraction, proper | fraction vs cold | memory bandwidth used | gloo / gnc | gnc bits = tree sum |
|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|
{reduce_table}

Where a call's time goes, per process (`gnc-bench-reduce --phases`: a step-for-step copy of
`all_reduce` on the public slot API with a clock read between steps, run right after the real
calls; ms, median over calls, then over rounds; *wait* = waiting for the other process):

| floats | process | wait: own slot free | fill (copy input → slot) | wait: block sums | wait: shard slot free | reduce own shard | wait: shards | gather (copy shards → output) | total |
|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|
{phase_table}

(1,900,510 floats is F1's gradient bundle.) gloo's results equal the sum of the inputs bit for
bit too: {'yes' if all(x['gloo_exact'] for x in reduce_rows) else 'NO'}.

### Process scaling: iteration time with 2 worker processes vs 1

`gncctl run {SCALING_SPEC}`: F1 (MLP 784 → 500 ×7 → 10) on Fashion-MNIST with GNC, M = 16
logical workers of b = 32, stopped with `--stop-after {args.scaling_iters}` (no evaluation,
no checkpoint before the stop). ms / iteration = least-squares slope of the wall-clock times at
which iterations {args.scaling_skip}…{args.scaling_iters} complete, observed as `metrics.jsonl` grows
(flushed per iteration by process 0; polled every 5 ms): start-up, data loading, the first iterations and the
final checkpoint are left out. Every run ends with the same parameter hash: {'yes' if len(hashes) == 1 else 'NO (' + str(len(hashes)) + ' hashes)'}.

| run | ms / iteration (median of rounds) | rounds min – max |
|---|---:|---:|
{s_table}

### Targets

| measure | value | per-round / per-size range | target | met |
|---|---:|---:|---|---|
| all-reduce throughput / memcpy bandwidth, F1 bundle ({f1['len']:,} floats) | {f1['fraction']:.2f} | {min(fractions_all):.2f} – {max(fractions_all):.2f} over sizes | ≥ {FRACTION_TARGET} | {yes(f1['fraction'] >= FRACTION_TARGET)} (sizes meeting it: {sum(f >= FRACTION_TARGET for f in fractions_all)} of {len(fractions_all)}) |
| gloo / gnc all-reduce time, F1 bundle | {f1['ratio']:.1f} | {min(ratios_all):.1f} – {max(ratios_all):.1f} over sizes | ≥ {GLOO_TARGET:.0f} | {yes(min(ratios_all) >= GLOO_TARGET)} (the median of every size: {'yes' if min(ratios_all) >= GLOO_TARGET else 'no'}; lowest single round {min(x['ratio_lo'] for x in reduce_rows):.1f}) |
| speedup = cpu:1 / cpu:2 ms per iteration, median of per-round ratios (ratio of the medians) | {speedup:.2f} ({speedup_of_medians:.2f}) | {min(speedup_rounds):.2f} – {max(speedup_rounds):.2f} per round | ≥ {SPEEDUP_TARGET} | {yes(speedup >= SPEEDUP_TARGET)}{borderline} |
| (context) speedup, `--threads 1` / `--threads 2` | {speedup_threads:.2f} ({threads_of_medians:.2f}) | {min(thread_rounds):.2f} – {max(thread_rounds):.2f} per round | | |

<!-- shm-bench:analysis -->

- Machine: {meta['machine']}
- Date: {meta['date']}
- Commit: {commit}
- Reproduce (from the repository root): `{cmd}`
- Raw measurements: `bench/out/shm-bench.jsonl` (one JSON line per size, process group and
  round, with every call's time; not committed).
{END}
"""
    section = section.replace(
        "<!-- shm-bench:analysis -->",
        analysis(args, reduce_rows, phase_rows, s_rows, speedup, speedup_of_medians,
                 speedup_threads,
                 {k: {n: scale(k, n) for n in (1, 2)} for k in ("processes", "threads")}).strip())
    if not args.no_results:
        replace_section(START, END, section)
    else:
        print(section)
    for x in reduce_rows:
        print(f"{x['len']:>9d} floats: fraction of memcpy {x['fraction']:.2f}, "
              f"gloo/gnc {x['ratio']:.1f}")
    print(f"speedup cpu:1/cpu:2 {speedup:.2f}, threads 1/2 {speedup_threads:.2f}")
    wrote = ([] if replay else [str((OUT / "shm-bench.jsonl").relative_to(ROOT))]) + (
        [] if args.no_results else [str(RESULTS.relative_to(ROOT))])
    print(f"measuring took {elapsed:.0f} s" + (f"; wrote {' and '.join(wrote)}" if wrote else ""))


if __name__ == "__main__":
    main()
