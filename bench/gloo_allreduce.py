#!/usr/bin/env python3
"""Issue 3: PyTorch's torch.distributed all-reduce (gloo backend, CPU) over P processes.

The reference `bench/run_shm_bench.py` compares gnc's shared-memory all-reduce
(`gnc-bench-reduce`) against, in the same run. Launched without --rank, this script starts P
copies of itself (`--rank r`), which join one gloo process group over loopback TCP
(127.0.0.1, a free port picked here) and, per vector size:

  * fill a float32 tensor of `len` values with their own deterministic input;
  * `warmup` untimed all-reduces, then `iters` timed ones, back to back. Before each call the
    input is copied into the buffer (all_reduce works in place and would otherwise sum sums),
    OUTSIDE the timed region: only `dist.all_reduce(buf)` is timed, which favours gloo
    (gnc's timed call includes copying its input into its slot);
  * check the last result against the sum of all P inputs computed locally (for P = 2 the
    sum of two numbers has one rounding, so it must match bit for bit).

The launcher prints one JSON line per size (`"bench":"gloo-allreduce"`), with the time of
call t taken as the longest of the P processes' times for call t (as gnc-bench-reduce does).

Usage: .venv/bin/python bench/gloo_allreduce.py [--sizes 1048576,4194304] [--iters 50]
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time


def inputs(rank, length):
    import torch

    g = torch.Generator().manual_seed(1000 + rank)
    # Varied magnitudes, as gnc-bench-reduce's inputs: sign * mantissa * 2^(-8..7).
    mantissa = 1.0 + torch.rand(length, generator=g, dtype=torch.float32)
    exponent = torch.randint(-8, 8, (length,), generator=g).to(torch.float32)
    sign = torch.where(torch.rand(length, generator=g) < 0.5, -1.0, 1.0)
    return sign * mantissa * torch.pow(2.0, exponent)


def worker(args):
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{args.port}",
        rank=args.rank,
        world_size=args.processes,
    )
    for length in args.sizes:
        mine = inputs(args.rank, length)
        buf = torch.empty_like(mine)
        times = []
        dist.barrier()
        for i in range(args.warmup + args.iters):
            buf.copy_(mine)
            start = time.perf_counter_ns()
            dist.all_reduce(buf)
            ns = time.perf_counter_ns() - start
            if i >= args.warmup:
                times.append(ns)
        expected = inputs(0, length)
        for r in range(1, args.processes):
            expected = expected + inputs(r, length)
        exact = bool(torch.equal(buf, expected))
        max_rel = float(((buf - expected).abs() / expected.abs().clamp_min(1e-30)).max())
        print(json.dumps({"rank": args.rank, "len": length, "ns": times, "exact": exact,
                          "max_rel_diff": max_rel}), flush=True)
    dist.barrier()
    dist.destroy_process_group()
    print(json.dumps({"rank": args.rank, "torch_version": torch.__version__}), flush=True)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(args):
    port = free_port()
    env = dict(os.environ, GLOO_SOCKET_IFNAME="lo", MASTER_ADDR="127.0.0.1")
    common = [
        sys.executable, os.path.abspath(__file__), "--processes", str(args.processes),
        "--sizes", ",".join(map(str, args.sizes)), "--warmup", str(args.warmup),
        "--iters", str(args.iters), "--port", str(port),
    ]
    procs = [
        subprocess.Popen(common + ["--rank", str(r)], stdout=subprocess.PIPE, env=env, text=True)
        for r in range(args.processes)
    ]
    outs = []
    for r, p in enumerate(procs):
        out, _ = p.communicate(timeout=args.timeout)
        if p.returncode != 0:
            sys.exit(f"gloo rank {r} failed ({p.returncode})")
        outs.append([json.loads(line) for line in out.splitlines() if line.startswith("{")])
    version = outs[0][-1].get("torch_version", "?")
    for k, length in enumerate(args.sizes):
        per_rank = [o[k] for o in outs]
        assert all(x["len"] == length for x in per_rank)
        per_call = [max(r["ns"][t] for r in per_rank) / 1e6 for t in range(args.iters)]
        print(json.dumps({
            "bench": "gloo-allreduce",
            "processes": args.processes,
            "len": length,
            "bytes": 4 * length,
            "warmup": args.warmup,
            "iters": args.iters,
            "allreduce_ms": statistics.median(per_call),
            "allreduce_min_ms": min(per_call),
            "allreduce_mean_ms": statistics.fmean(per_call),
            "allreduce_gbps": 4 * length / statistics.median(per_call) / 1e6,
            "exact": all(r["exact"] for r in per_rank),
            "max_rel_diff": max(r["max_rel_diff"] for r in per_rank),
            "torch_version": version,
            "allreduce_per_call_ms": per_call,
        }), flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--sizes", default="1048576,1900510,4194304,16777216",
                   type=lambda s: [int(x) for x in s.split(",")])
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--iters", type=int, default=50)
    p.add_argument("--timeout", type=float, default=600)
    p.add_argument("--rank", type=int, help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.rank is None:
        launch(args)
    else:
        worker(args)


if __name__ == "__main__":
    main()
