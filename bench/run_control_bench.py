#!/usr/bin/env python3
"""Control-plane load benchmark: how much a training iteration under gncd slows while 200
clients poll `status` on its socket.

In one run, with one gncd: the same job (examples/demo.toml, shortened) is submitted
`--rounds` times without load and `--rounds` times with load, alternating which comes first.
The load is bench's gnc-bench-status-load: `--clients` threads, each connecting and asking
`status` every `--interval-ms` (as that many `gncctl status` / `watch` users would). The
iteration time of a run is its result.json train_seconds / iterations (wall time of the
training loop in the workers). Slowdown = median(loaded) / median(unloaded) - 1; target
<= 10%. Results go to bench/RESULTS.md (section control-bench).
"""

import argparse
import datetime
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import ROOT, machine, median, pinned_environment, replace_section, sh  # noqa: E402

START = "<!-- control-bench:start -->"
END = "<!-- control-bench:end -->"
BIN = ROOT / "target" / "release"


def request(sock_path, command):
    """One request on a fresh connection; the reply as a dict (raises on an error reply)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(str(sock_path))
        s.sendall((json.dumps({"v": 1, **command}) + "\n").encode())
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(1 << 16)
            if not chunk:
                break
            data += chunk
    reply = json.loads(data)
    if reply.get("reply") == "error":
        raise RuntimeError(f"gncd: {reply['message']}")
    return reply


def job_spec(epochs, name):
    spec = tomllib.loads((ROOT / "examples" / "demo.toml").read_text())
    spec["name"] = name
    spec["schedule"]["epochs"] = epochs
    spec["data"]["root"] = str((ROOT / spec["data"]["root"]).resolve())
    spec["output_dir"] = str(ROOT / "runs" / name)
    spec["schedule"]["decay"] = {"kind": "step", "milestones": [epochs * 0.75], "factor": 0.1}
    return spec


def run_job(sock, spec, load_cmd, stop_file):
    """Submits `spec`, optionally with the load running, waits for it; returns (s/it, load)."""
    job = request(sock, {"command": "submit", "spec": spec})["job"]
    load = None
    if load_cmd:
        stop_file.unlink(missing_ok=True)
        load = subprocess.Popen(load_cmd + ["--stop-file", str(stop_file), "--seconds", "3600"],
                                stdout=subprocess.PIPE, text=True)
    while True:
        info = request(sock, {"command": "status", "job": str(job["id"])})["job"]
        if info["state"] in ("done", "failed", "cancelled"):
            break
        time.sleep(0.5)
    load_report = None
    if load:
        stop_file.touch()
        out, _ = load.communicate(timeout=120)
        load_report = json.loads(out)
    if info["state"] != "done":
        sys.exit(f"job {info['id']} ended {info['state']}: {info.get('reason')}")
    result = json.loads((Path(info["output_dir"]) / "result.json").read_text())
    return result["train_seconds"] / result["iterations"], load_report, result["params_sha256"]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--devices", default="cpu:2")
    p.add_argument("--clients", type=int, default=200)
    p.add_argument("--interval-ms", type=int, default=100)
    p.add_argument("--no-results", action="store_true", help="do not touch bench/RESULTS.md")
    args = p.parse_args()
    for b in ("gncd", "gnc-worker", "gnc-bench-status-load"):
        if not (BIN / b).is_file():
            sys.exit(f"{BIN / b} is missing: run cargo build --release --workspace first")
    tmp = Path(tempfile.mkdtemp(prefix="gnc-control-bench-"))
    sock = tmp / "gncd.sock"
    config = tmp / "gncd.toml"
    config.write_text(
        f'devices = "{args.devices}"\nstate_dir = "{tmp / "state"}"\nsocket = "{sock}"\n'
        f'allowed_data_roots = ["{ROOT / "data"}"]\n')
    env = dict(os.environ, **pinned_environment())
    log = open(tmp / "gncd.log", "w")
    daemon = subprocess.Popen([str(BIN / "gncd"), "--config", str(config)], stderr=log, env=env)
    try:
        for _ in range(200):
            if sock.exists():
                break
            time.sleep(0.05)
        load_cmd = [str(BIN / "gnc-bench-status-load"), "--socket", str(sock),
                    "--clients", str(args.clients), "--interval-ms", str(args.interval_ms)]
        rows, hashes = [], set()
        for r in range(args.rounds):
            order = [False, True] if r % 2 == 0 else [True, False]
            for loaded in order:
                spec = job_spec(args.epochs, f"control-bench-{r}-{int(loaded)}")
                per_it, report, digest = run_job(sock, spec, load_cmd if loaded else None,
                                                 tmp / "stop")
                hashes.add(digest)
                rows.append({"round": r, "loaded": loaded, "s_per_it": per_it, "load": report})
                extra = ""
                if report:
                    extra = (f"  ({report['answered']} answers, {report['requests_per_second']:.0f}/s,"
                             f" p99 {report['latency_ms']['p99']:.2f} ms, errors {report['errors']},"
                             f" fewest per client {report['fewest_answers_per_client']})")
                print(f"round {r}: {'load   ' if loaded else 'no load'} "
                      f"{1000 * per_it:7.2f} ms/it{extra}", flush=True)
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)
    quiet = median([x["s_per_it"] for x in rows if not x["loaded"]])
    busy = median([x["s_per_it"] for x in rows if x["loaded"]])
    slowdown = busy / quiet - 1
    per_round = []
    for r in range(args.rounds):
        q = next(x for x in rows if x["round"] == r and not x["loaded"])
        b = next(x for x in rows if x["round"] == r and x["loaded"])
        per_round.append(b["s_per_it"] / q["s_per_it"] - 1)
    reports = [x["load"] for x in rows if x["loaded"]]
    all_answered = all(x["errors"] == 0 and x["fewest_answers_per_client"] > 0 for x in reports)
    print(f"slowdown under load: {100 * slowdown:+.1f}% (target <= 10%); "
          f"every client answered: {all_answered}; same hash every run: {len(hashes) == 1}")
    if args.no_results:
        return
    dirty = " (with uncommitted changes)" if sh(["git", "status", "--porcelain"]) else ""
    lines = [START, "## gncd under status load (`make bench-control`)", "",
             f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}, commit "
             f"{sh(['git', 'rev-parse', '--short', 'HEAD'])}{dirty}; {machine()}.", "",
             f"Job: examples/demo.toml (GNC, MLP 512-256, M = 16, b = 32) for {args.epochs} epochs "
             f"under gncd with devices {args.devices}, submitted {args.rounds}× without and "
             f"{args.rounds}× with load, alternating. Load: {args.clients} clients, each "
             f"connecting and asking `status` every {args.interval_ms} ms. Iteration time = "
             "train_seconds / iterations from result.json.", "",
             "| round | no load ms/it | load ms/it | slowdown | answers | req/s | p99 ms | errors |",
             "|---|---|---|---|---|---|---|---|"]
    for r in range(args.rounds):
        q = next(x for x in rows if x["round"] == r and not x["loaded"])
        b = next(x for x in rows if x["round"] == r and x["loaded"])
        rep = b["load"]
        lines.append(f"| {r} | {1000 * q['s_per_it']:.2f} | {1000 * b['s_per_it']:.2f} | "
                     f"{100 * per_round[r]:+.1f}% | {rep['answered']} | "
                     f"{rep['requests_per_second']:.0f} | {rep['latency_ms']['p99']:.2f} | "
                     f"{rep['errors']} |")
    lines += ["", f"**Slowdown (ratio of medians): {100 * slowdown:+.1f}%** (target ≤ 10%: "
              f"{'met' if slowdown <= 0.10 else 'missed'}). Every client answered in every "
              f"loaded run: {'yes' if all_answered else 'NO'}. Same final hash in every run: "
              f"{'yes' if len(hashes) == 1 else 'NO'}.", END]
    replace_section(START, END, "\n".join(lines) + "\n")
    print(f"wrote {ROOT / 'bench/RESULTS.md'}")


if __name__ == "__main__":
    main()
