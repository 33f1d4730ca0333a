#!/usr/bin/env python3
"""Bring your own network: two PyTorch models exported to ONNX for gnc (README, "Your own
network").

    .venv/bin/python examples/byo/export.py [--out examples/byo]

writes `mlp.onnx` (the demo's MLP, 784 → 512 → 256 → 10, written as a user would; with
gnc's `init = "he"` it trains bit for bit as the built-in `kind = "mlp"`), `resnet.onnx`
(a small residual CNN with BatchNorm), `zoo.onnx` (every other kind of layer gnc trains) and
`resnet-folded.onnx` (the CNN exported as PyTorch does by default, BatchNorm folded). Both are exported the way gnc reads BatchNorm as a
layer of its own: with the TorchScript exporter (`dynamo=False`) in training mode without
constant folding; an eval-mode export folds BatchNorm into the convolutions, which gnc accepts
too (the network then trains without BatchNorm).
"""

import argparse
from pathlib import Path

import torch
from torch import nn


class Mlp(nn.Module):
    """The demo's network (examples/demo.toml: hidden = [512, 256]); the layers are named
    fc0, fc1, fc2 as gnc's built-in MLP names them, so the two hash alike."""

    def __init__(self, widths=(784, 512, 256, 10)):
        super().__init__()
        self.flatten = nn.Flatten()
        for i, (a, b) in enumerate(zip(widths, widths[1:])):
            setattr(self, f"fc{i}", nn.Linear(a, b))
        self.layers = len(widths) - 1

    def forward(self, x):
        h = self.flatten(x)
        for i in range(self.layers):
            h = getattr(self, f"fc{i}")(h)
            if i + 1 < self.layers:
                h = torch.relu(h)
        return h


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x):
        h = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(x + self.bn2(self.conv2(h)))


class ResNet(nn.Module):
    """A small residual CNN for 1×28×28 images: a stem, two stages of a residual block
    (the second after a strided convolution), global average pooling, a linear classifier."""

    def __init__(self, classes=10):
        super().__init__()
        self.stem = nn.Conv2d(1, 16, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        self.block1 = Block(16)
        self.down = nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False)
        self.bn_down = nn.BatchNorm2d(32)
        self.block2 = Block(32)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, classes)

    def forward(self, x):
        h = torch.relu(self.bn(self.stem(x)))
        h = self.block1(h)
        h = torch.relu(self.bn_down(self.down(h)))
        h = self.block2(h)
        return self.fc(torch.flatten(self.pool(h), 1))


class Zoo(nn.Module):
    """Every other kind of layer gnc trains, in one network (tests/onnx.rs compares its
    gradients with PyTorch's): grouped and dilated convolutions, LeakyReLU, max and average
    pooling, BatchNorm, Sigmoid, Tanh, concatenation, arithmetic with constants, a reshape, a
    MatMul + Add layer, GELU and Dropout."""

    def __init__(self, classes=10):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.grouped = nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=4, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.w = nn.Parameter(torch.randn(16 * 7 * 7, 32) / 28)
        self.b = nn.Parameter(torch.zeros(32))
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(32, classes)

    def forward(self, x):
        h = nn.functional.max_pool2d(nn.functional.leaky_relu(self.conv(x), 0.1), 2)
        g = torch.sigmoid(self.bn(self.grouped(h)))
        h = nn.functional.avg_pool2d(torch.cat([h, g], dim=1), 2)
        h = (torch.tanh(h) - 0.5) / 2.0
        h = nn.functional.gelu(h.reshape(-1, 16 * 7 * 7) @ self.w + self.b)
        return self.fc(self.drop(h))


def export(model, path, batch=2):
    """The export gnc reads BatchNorm from: TorchScript exporter, training mode, no folding."""
    example = torch.zeros(batch, 1, 28, 28)
    torch.onnx.export(model, (example,), str(path), dynamo=False,
                      training=torch.onnx.TrainingMode.TRAINING, do_constant_folding=False,
                      input_names=["images"], output_names=["logits"])
    print(f"wrote {path}")


def export_folded(model, path, batch=2):
    """PyTorch's default export (eval mode, constants folded): BatchNorm folded into the
    convolutions, which gnc then trains as a network without BatchNorm."""
    model.eval()
    torch.onnx.export(model, (torch.zeros(batch, 1, 28, 28),), str(path), dynamo=False)
    print(f"wrote {path}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=str(Path(__file__).parent))
    args = p.parse_args()
    torch.manual_seed(0)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    export(Mlp(), out / "mlp.onnx")
    export(ResNet(), out / "resnet.onnx")
    export(Zoo(), out / "zoo.onnx")
    export_folded(ResNet(), out / "resnet-folded.onnx")


if __name__ == "__main__":
    main()
