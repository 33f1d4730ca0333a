#!/usr/bin/env python3
"""Bring your own data: Fashion-MNIST (the IDX files `make data` sets up) written as NumPy
arrays, as a user's own data would be (README, "Your own data").

    .venv/bin/python examples/byo/write_data.py [--data data/fashion-mnist] [--out byo/data]

writes train_inputs.npy (60000, 28, 28) uint8, train_labels.npy (60000,) int64, and the same
for the test split, plus fashion-mnist.npz holding the training split as `inputs` and `labels`.
"""

import argparse
import gzip
from pathlib import Path

import numpy as np


def read_idx(path):
    """An IDX file (raw or .gz) as a NumPy array of uint8."""
    path = Path(path)
    if not path.exists():
        path = path.with_name(path.name + ".gz")
    raw = (gzip.open if path.suffix == ".gz" else open)(path, "rb").read()
    dims = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="data/fashion-mnist")
    p.add_argument("--out", default="byo/data")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = read_idx(Path(args.data) / f"{prefix}-images-idx3-ubyte")
        labels = read_idx(Path(args.data) / f"{prefix}-labels-idx1-ubyte").astype(np.int64)
        np.save(out / f"{split}_inputs.npy", images)
        np.save(out / f"{split}_labels.npy", labels)
        if split == "train":
            np.savez(out / "fashion-mnist.npz", inputs=images, labels=labels)
        print(f"{split}: inputs {images.shape} {images.dtype}, labels {labels.shape} {labels.dtype}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
