#!/usr/bin/env python3
"""Issue 25, run by hand (`.venv/bin/python bench/gnc_make_order.py`; numpy): does the order of
GNC's weight making matter? Worker-major (each worker's 8 layers, then the next worker: the
shared part of the weights, 7.6 MB, streams from memory per worker) against layer-major (each
layer for all 64 workers: the layer's shared part, <= 1.5 MB, stays in L2). Each make: x =
fma(s, prev, base) in place (numpy: two passes, multiply then add, over a layer that is in L2
after the first). F1's layers, M = 64. Alternated, 7 rounds."""
import statistics
import time

import numpy as np

sizes = [784 * 500] + [500 * 500] * 6 + [500 * 10]
M = 64
rng = np.random.default_rng(0)
prev = [[rng.standard_normal(n).astype(np.float32) for n in sizes] for _ in range(M)]
base = [np.zeros(n, np.float32) for n in sizes]
s = np.float32(1.0)
def make(w, l):
    p = prev[w][l]
    np.multiply(p, s, out=p)
    np.add(p, base[l], out=p)
def worker_major():
    for w in range(M):
        for l in range(len(sizes)):
            make(w, l)
def layer_major():
    for l in range(len(sizes)):
        for w in range(M):
            make(w, l)
t = {"worker-major": [], "layer-major": []}
for r in range(7):
    order = [("worker-major", worker_major), ("layer-major", layer_major)]
    if r % 2: order.reverse()
    for name, f in order:
        t0 = time.perf_counter(); f(); t[name].append((time.perf_counter() - t0) * 1e3)
for k, v in t.items():
    print(f"{k}: {statistics.median(v):.0f} ms ({min(v):.0f}-{max(v):.0f})")
ratios = [a / b for a, b in zip(t["layer-major"], t["worker-major"])]
print(f"layer / worker per round: {statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})")
