#!/usr/bin/env python3
"""PyTorch reference for one GNC / baseline iteration (issues 2 and 10), for timing only.

The same step as gnc's engine (worker/src/engine.rs `Trainer::step`) on Fashion-MNIST, M logical
workers of small batch b, for gnc's models (worker/src/model/): an MLP (F1 = 784 -> 500 x 7 ->
10 by default; --model mlp:500,500 for others), the VGG-style CNN with BatchNorm
(--model vgg:16,32,64x2: stages of that many channels, two 3x3 convolutions each, max-pool
between stages) and the CIFAR ResNet (--model resnet:20, option-A shortcuts). BatchNorm
normalises each logical worker over its own small batch and writes that batch's statistics
(momentum 1), which join the gradients in the tree sum, as gnc does. On --threads intra-op
threads (default one), written the way a PyTorch user would write a fast version: functional forward,
torch.autograd.grad, multi-tensor `torch._foreach_*` ops (as torch.optim uses them), no_grad
around the arithmetic:

  for each logical worker i (in index order):
    GNC (DESIGN.md §3, Eq. 6): x_i^(p) = x^(p) - alpha*eta*||x^(p)|| * (g_i(t-1) - g~(t-1)), a
        filter p being a row of a weight matrix, a bias vector one filter; x_i = x while worker
        i has no previous gradient (the first iteration). Computed like gnc's method.rs does it:
        base = x + s*g~(t-1) once per iteration (s = alpha*eta*||x^(p)||), then one fused
        x_i = base - s*g_i(t-1) (addcmul) per worker.
    baseline: x_i = x.
    forward (F.linear / relu / cross_entropy) on its b examples, torch.autograd.grad;
    keep g_i for the next iteration (GNC only);
    add (g_i, loss_i) into the canonical pairwise tree over [0, M) (split [lo, hi) at lo + the
    largest power of two strictly below hi - lo), streamed with a stack of partial sums as in
    worker/src/tree.rs.
  g~ = sum / M; momentum: v = m v - eta (g~ + lambda x); x = x + v.

It is a timing reference, not a bit-identical re-implementation: shapes and work are gnc's, the
float rounding is not (e.g. the shared base is computed differently). On its own it draws its
own initial weights and data order; with --load-init DIR (as bench/run_step_bench.py runs it) it
starts from gnc's, written by `gnc-bench-step --dump-init DIR`, and then follows gnc's loss
trajectory up to rounding, which shows that both do the same computation. gnc's engine
additionally computes, per worker, the squared norm of its gradient and, per iteration, the
gradient norm and the noise norm for its metrics; this reference does not (they are not part
of the algorithm).

Prints one JSON line: {"impl":"pytorch","method":..,"workers":..,"iters":N,"median_ms":..,...}.
"""

import argparse
import gzip
import json
import os
import resource
import statistics
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

CLASSES = 10
BN_EPS = 1e-5


def parse_model(text):
    """`mlp:500,500`, `vgg:16,32,64x2` or `resnet:20` as (kind, settings)."""
    kind, _, rest = text.partition(":")
    if kind == "mlp":
        return kind, [int(w) for w in (rest or ",".join(["500"] * 7)).split(",")]
    if kind == "vgg":
        channels, _, convs = (rest or "16,32,64x2").partition("x")
        return kind, ([int(c) for c in channels.split(",")], int(convs or 2))
    if kind == "resnet":
        return kind, int(rest or 20)
    raise SystemExit(f"--model: unknown kind {kind!r} (mlp, vgg or resnet)")


def read_idx(path):
    """An IDX array of unsigned bytes (raw or .gz), as a numpy array."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, kind, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or kind != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    dims = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def locate(root, name):
    for candidate in (name, name + ".gz"):
        path = os.path.join(root, candidate)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"{name}[.gz] not found in {root}")


def load_train(root, flat=True):
    """Training images flattened to [N, 784] (or [N, 1, 28, 28] for a CNN), normalised with the
    training set's mean and std (in f64, like worker/src/data/mod.rs), and labels as int64."""
    images = read_idx(locate(root, "train-images-idx3-ubyte"))
    labels = read_idx(locate(root, "train-labels-idx1-ubyte"))
    shape = (images.shape[0], -1) if flat else (images.shape[0], 1) + images.shape[1:]
    x = images.reshape(shape).astype(np.float32) / np.float32(255.0)
    x64 = x.astype(np.float64)
    mean = x64.mean()
    std = max(np.sqrt(max((x64 * x64).mean() - mean * mean, 0.0)), 1e-6)
    x = ((x64 - mean) / std).astype(np.float32)
    return torch.from_numpy(x), torch.from_numpy(labels.astype(np.int64))


def he(gen, shape, fan_in):
    bound = (6.0 / fan_in) ** 0.5
    return torch.empty(shape).uniform_(-bound, bound, generator=gen)


def init_params(model, seed):
    """He uniform weights (bound sqrt(6 / fan_in)), BatchNorm weight 1 and bias 0, zero biases,
    in gnc's canonical order (worker/src/model/)."""
    kind, settings = model
    gen = torch.Generator().manual_seed(seed)
    params = []

    def conv_bn(cin, cout):
        params.extend([he(gen, [cout, cin, 3, 3], cin * 9), torch.ones(cout), torch.zeros(cout)])

    if kind == "mlp":
        fan_in = 784
        for width in settings + [CLASSES]:
            params += [he(gen, [width, fan_in], fan_in), torch.zeros(width)]
            fan_in = width
        return params
    if kind == "vgg":
        channels, convs = settings
        cin = 1
        for c in channels:
            for _ in range(convs):
                conv_bn(cin, c)
                cin = c
    else:
        n = (settings - 2) // 6
        conv_bn(1, 16)
        cin = 16
        for c in (16, 32, 64):
            for _ in range(n):
                conv_bn(cin, c)
                conv_bn(c, c)
                cin = c
    params += [he(gen, [CLASSES, cin], cin), torch.zeros(CLASSES)]
    return params


def filter_norms(x):
    """||x^(p)|| per filter, shaped to broadcast against x: rows of a matrix, a vector whole."""
    if x.dim() >= 2:
        return torch.linalg.vector_norm(x.flatten(1), dim=1).view(
            [x.shape[0]] + [1] * (x.dim() - 1)
        )
    return torch.linalg.vector_norm(x).view(1)


def batch_norm(h, weight, bias, stats):
    """Normalises over this small batch; its mean and unbiased variance are written into two
    fresh buffers (momentum 1, as gnc's BatchNorm::Train) and kept in `stats`."""
    c = h.shape[1]
    mean, var = torch.zeros(c), torch.zeros(c)
    stats += [mean, var]
    return F.batch_norm(h, mean, var, weight, bias, training=True, momentum=1.0, eps=BN_EPS)


def forward_loss(model, w, x, y):
    """Mean cross-entropy of one small batch, and the BatchNorm statistics of the pass."""
    kind, settings = model
    stats = []
    if kind == "mlp":
        h = x
        layers = len(w) // 2
        for layer in range(layers):
            h = F.linear(h, w[2 * layer], w[2 * layer + 1])
            if layer + 1 < layers:
                h = torch.relu(h)
        return F.cross_entropy(h, y), stats
    it = iter(w)

    def conv_bn(h, stride=1, relu=True):
        h = F.conv2d(h, next(it), stride=stride, padding=1)
        h = batch_norm(h, next(it), next(it), stats)
        return torch.relu(h) if relu else h

    h = x
    if kind == "vgg":
        channels, convs = settings
        for _ in channels:
            for _ in range(convs):
                h = conv_bn(h)
            h = F.max_pool2d(h, 2)
    else:
        n = (settings - 2) // 6
        h = conv_bn(h)
        for s, c in enumerate((16, 32, 64)):
            for b in range(n):
                stride = 2 if s > 0 and b == 0 else 1
                out = conv_bn(conv_bn(h, stride), relu=False)
                short = h
                if stride != 1 or h.shape[1] != c:
                    extra = c - h.shape[1]
                    pad = (0, 0, 0, 0, extra // 2, extra - extra // 2)
                    short = F.pad(h[:, :, ::stride, ::stride], pad)
                h = torch.relu(out + short)
    h = F.adaptive_avg_pool2d(h, 1).flatten(1)
    h = F.linear(h, next(it), next(it))
    return F.cross_entropy(h, y), stats


class TreeSum:
    """Streaming canonical-tree sum of bundles pushed in index order (worker/src/tree.rs)."""

    def __init__(self):
        self.stack = []  # (leaf count, bundle); sizes strictly decrease towards the top

    @staticmethod
    def _add(left_size, left, right):
        if left_size == 1:  # a leaf: its owner may keep it, so make a fresh sum
            return torch._foreach_add(left, right)
        torch._foreach_add_(left, right)
        return left

    def push(self, leaf):
        size, node = 1, leaf
        while self.stack and self.stack[-1][0] == size:
            left_size, left = self.stack.pop()
            node = self._add(left_size, left, node)
            size += left_size
        self.stack.append((size, node))

    def finish(self):
        size, acc = self.stack.pop()
        while self.stack:
            left_size, left = self.stack.pop()
            acc = self._add(left_size, left, acc)
            size += left_size
        return acc


class Reference:
    def __init__(self, args):
        self.model = parse_model(args.model)
        self.x, self.y = load_train(args.root, flat=self.model[0] == "mlp")
        self.m = args.workers
        self.b = args.small_batch
        self.gnc = args.method == "gnc"
        self.alpha = args.alpha
        self.lr = 0.1
        self.momentum = 0.9
        self.weight_decay = 1e-4
        if args.load_init:
            # gnc's initial weights and epoch-0 order (gnc-bench-step --dump-init): the
            # equivalence check, where both sides must follow the same loss trajectory.
            count = len(init_params(self.model, args.seed))
            self.params = [
                torch.from_numpy(np.load(os.path.join(args.load_init, f"param_{k}.npy")))
                for k in range(count)
            ]
        else:
            self.params = init_params(self.model, args.seed)
        self.velocity = [torch.zeros_like(p) for p in self.params]
        self.prev_grads = [None] * self.m
        self.prev_mean = None
        n = self.x.shape[0]
        self.iters_per_epoch = n // (self.m * self.b)
        if args.load_init:
            self.order = torch.from_numpy(np.load(os.path.join(args.load_init, "order.npy")))
        else:
            rng = np.random.default_rng(args.seed)
            self.order = torch.from_numpy(rng.permutation(n).astype(np.int64))
        self.t = 0

    def step(self):
        m, b, lr = self.m, self.b, self.lr
        k = self.t % self.iters_per_epoch
        params = self.params
        perturb = False
        if self.gnc and self.prev_mean is not None:
            with torch.no_grad():
                neg_scale = [filter_norms(p).mul_(-self.alpha * lr) for p in params]
                # base = x + s * g~(t-1), shared by all workers (s = -neg_scale)
                base = torch._foreach_addcmul(params, neg_scale, self.prev_mean, value=-1.0)
            perturb = True
        tree = TreeSum()
        for i in range(m):
            prev = self.prev_grads[i]
            if perturb and prev is not None:
                with torch.no_grad():
                    w = torch._foreach_addcmul(base, neg_scale, prev)
                for leaf in w:
                    leaf.requires_grad_(True)
            else:
                w = [p.detach().requires_grad_(True) for p in params]
            start = (k * m + i) * b
            idx = self.order[start : start + b]
            xb = self.x.index_select(0, idx)
            yb = self.y.index_select(0, idx)
            loss, stats = forward_loss(self.model, w, xb, yb)
            grads = torch.autograd.grad(loss, w)
            if self.gnc:
                self.prev_grads[i] = grads
            tree.push(list(grads) + stats + [loss.detach()])
            # Drop this worker's tensors now rather than when the next worker rebinds the names,
            # so that they are not alive next to the next worker's (less memory churn).
            del w, xb, yb, loss, grads, stats
        total = tree.finish()
        with torch.no_grad():
            mean = torch._foreach_div(total, m)
            loss = mean[-1].item()
            grads = mean[: len(params)]
            # v = m v - eta (g~ + lambda x); x = x + v
            v = self.velocity
            torch._foreach_mul_(v, self.momentum)
            decayed = torch._foreach_add(grads, params, alpha=self.weight_decay)
            torch._foreach_add_(v, decayed, alpha=-lr)
            torch._foreach_add_(params, v)
        if self.gnc:
            self.prev_mean = grads
        self.t += 1
        return loss


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root", default="data/fashion-mnist")
    p.add_argument("--model", default="mlp", help="mlp[:W,W,...], vgg[:C,C,...xK] or resnet[:DEPTH]")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads")
    p.add_argument("--workers", type=int, default=64)
    p.add_argument("--small-batch", type=int, default=32)
    p.add_argument("--method", choices=["gnc", "baseline"], default="gnc")
    p.add_argument("--alpha", type=float, default=0.1)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--load-init",
        metavar="DIR",
        help="start from gnc's initial weights and data order (gnc-bench-step --dump-init DIR)",
    )
    args = p.parse_args()
    if args.warmup < 2:
        sys.exit("--warmup must be at least 2 (GNC's noise path needs previous gradients)")
    if args.iters < 1:
        sys.exit("--iters must be at least 1")
    torch.set_num_threads(args.threads)
    ref = Reference(args)
    losses = [ref.step() for _ in range(args.warmup)]
    times, cpu = [], []
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(args.iters):
        cpu_start = time.thread_time()
        start = time.perf_counter()
        losses.append(ref.step())
        times.append((time.perf_counter() - start) * 1e3)
        cpu.append((time.thread_time() - cpu_start) * 1e3)
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / args.iters
    line = {
        "impl": "pytorch",
        "method": args.method,
        "model": args.model,
        "workers": args.workers,
        "small_batch": args.small_batch,
        "warmup": args.warmup,
        "iters": len(times),
        "median_ms": statistics.median(times),
        "mean_ms": statistics.fmean(times),
        "min_ms": min(times),
        "max_ms": max(times),
        "times_ms": times,
        "cpu_median_ms": statistics.median(cpu),
        "cpu_ms": cpu,
        "minor_faults_per_iter": faults,
        "losses": losses,
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }
    print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
