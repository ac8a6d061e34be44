"""The conv autoencoder's epoch in PyTorch, with the reference tutorial's recipe: the peer to time against.

    pip install -e '.[bench]'   # or torch alone, in any environment: this script does not import mnist_ae
    python benchmarks/torch_conv_peer.py [--epochs 3] [--train_limit N] [--threads N]

The same architecture as `mnist_ae`'s conv model (core/models.py: ConvEncoder, ConvDecoder), AdamW
1e-3 (weight decay 1e-5, as mnist_ae), batch 256 from a shuffling DataLoader over in-memory tensors,
MSE on tanh outputs against digits scaled to [-1, 1]; the autoencoder only (mnist_ae's epoch also
trains the small probe). The remainder batch is dropped, as mnist_ae's epoch does. Prints s/epoch
of each epoch after one untimed warm-up epoch, with the load average.
"""

from __future__ import annotations

import argparse
import gzip
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

IMAGES = Path(__file__).resolve().parents[1] / "data" / "mnist" / "train-images-idx3-ubyte.gz"


def conv_autoencoder() -> nn.Sequential:
    """28x28x1 -> 10x10x32 -> 5x5x32 -> 3x3x64 -> 2x2x64 -> 5x5x32 -> 15x15x16 -> 28x28x1."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, stride=3, padding=1), nn.ReLU(), nn.MaxPool2d(2, stride=2),
        nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(), nn.MaxPool2d(2, stride=1),
        nn.ConvTranspose2d(64, 32, 3, stride=2), nn.ReLU(),
        nn.ConvTranspose2d(32, 16, 5, stride=3, padding=1), nn.ReLU(),
        nn.ConvTranspose2d(16, 1, 2, stride=2, padding=1), nn.Tanh())


def train_images(limit: int) -> torch.Tensor:
    """The IDX training digits as float [n, 1, 28, 28] in [-1, 1] (header: 16 bytes)."""
    pixels = np.frombuffer(gzip.decompress(IMAGES.read_bytes()), np.uint8, offset=16).reshape(-1, 1, 28, 28)
    pixels = pixels[:limit] if limit else pixels
    return torch.from_numpy(pixels.astype(np.float32) / 127.5 - 1.0)


def epoch(model: nn.Module, optimizer: torch.optim.Optimizer, loader: torch.utils.data.DataLoader) -> float:
    """One epoch; its wall seconds."""
    start = time.perf_counter()
    for (x,) in loader:
        loss = nn.functional.mse_loss(model(x), x)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs after one warm-up epoch")
    parser.add_argument("--train_limit", type=int, default=0, help="the first N training digits (0 = all)")
    parser.add_argument("--threads", type=int, default=0, help="torch's intra-op threads (0 = torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = train_images(args.train_limit)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=256, shuffle=True,
                                         drop_last=True)
    model = conv_autoencoder()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-5)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {len(x):,} digits, batch 256; "
          f"load average {os.getloadavg()[0]:.1f} at start")
    epoch(model, optimizer, loader)
    times = [epoch(model, optimizer, loader) for _ in range(args.epochs)]
    print(f"s/epoch {np.mean(times):.3f} (each: {', '.join(f'{t:.3f}' for t in times)}); "
          f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
