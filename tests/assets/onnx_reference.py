#!/usr/bin/env python3
"""PyTorch's side of tests/onnx.rs: one forward and backward of a module exported by
examples/byo/export.py, with the ONNX file's weights, on the batch a gnc run computed its first
gradient on, compared with that run's loss (metrics.jsonl) and gradient (the checkpoint after
iteration 1: GNC keeps each logical worker's gradient of the previous iteration).

    onnx_reference.py MODEL.onnx {mlp,resnet,zoo} FASHION_MNIST_DIR EXAMPLES RUN_DIR

Prints one JSON line: the loss's relative error and each gradient's (‖g_gnc − g_torch‖ /
‖g_torch‖), by parameter name.
"""

import json
import struct
import sys
from pathlib import Path

import numpy as np
import onnx
import onnx.numpy_helper
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "byo"))
from export import Mlp, ResNet, Zoo  # noqa: E402
from write_data import read_idx  # noqa: E402


def safetensors(path):
    """The tensors of a .safetensors file, as float32 arrays by name."""
    raw = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        assert info["dtype"] == "F32", info
        out[name] = np.frombuffer(raw[8 + n + begin:8 + n + end], dtype="<f4").reshape(info["shape"])
    return out


def main():
    model_path, kind, data, examples, run = sys.argv[1:6]
    torch.set_num_threads(1)
    examples = int(examples)
    model = {"mlp": Mlp, "resnet": ResNet, "zoo": Zoo}[kind]()
    weights = {t.name: torch.from_numpy(onnx.numpy_helper.to_array(t).copy())
               for t in onnx.load(model_path).graph.initializer}
    missing, _ = model.load_state_dict(weights, strict=False)
    assert all(m.endswith("num_batches_tracked") for m in missing), missing
    model.train()
    # gnc's Dropout is the identity (its randomness is its own): PyTorch's is switched off.
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.eval()

    # gnc's inputs: uint8 / 255 in float32, normalised by the training split's mean and
    # standard deviation (one channel), computed in float64 (worker/src/data/mod.rs).
    pixels = read_idx(Path(data) / "train-images-idx3-ubyte")[:examples]
    labels = read_idx(Path(data) / "train-labels-idx1-ubyte")[:examples].astype(np.int64)
    values = (pixels.astype(np.float32) / np.float32(255.0)).astype(np.float64)
    mean = values.mean()
    std = max(np.sqrt(max((values * values).mean() - mean * mean, 0.0)), 1e-6)
    x = ((values - mean) / std).astype(np.float32).reshape(examples, 1, 28, 28)

    loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(labels))
    loss.backward()

    record = next(json.loads(line) for line in (Path(run) / "metrics.jsonl").read_text().splitlines()
                  if json.loads(line)["kind"] == "iter")
    saved = safetensors(Path(run) / "checkpoints" / "ckpt-000000001.safetensors")
    errors = {}
    for name, p in model.named_parameters():
        g = p.grad.double().numpy()
        mine = saved[f"prev_grad/0/{name}"].astype(np.float64)
        if mine.shape != g.shape:
            # A MatMul weight: gnc keeps it as [out, in], the file (and PyTorch) as [in, out].
            mine = mine.T
        errors[name] = float(np.linalg.norm(mine - g) / max(np.linalg.norm(g), 1e-30))
    print(json.dumps({
        "loss": loss.item(), "gnc_loss": record["loss"],
        "loss_error": abs(record["loss"] - loss.item()) / abs(loss.item()),
        "gradient_errors": errors,
    }))


if __name__ == "__main__":
    main()
