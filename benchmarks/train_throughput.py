"""Training throughput of the scanned epoch: compile time, s/epoch, samples/s, FLOPs, FLOP/s.

    python benchmarks/train_throughput.py [--epochs 3] [--models conv] [--train_limit N]

FLOPs come from XLA's cost analysis of the compiled epoch times its rounds (XLA's analysis of a
`scan` counts the loop body, one round, once): see `epoch_throughput`.
"""

from __future__ import annotations

import argparse
import functools

import jax
import ml_collections

from mnist_ae import build, parallel
from mnist_ae.config import base_config
from mnist_ae.data import load_dataset
from mnist_ae.core.loop import rounds_per_epoch, train_epoch
from mnist_ae.core.steps import Learner
from mnist_ae.run import program
from timing import Throughput, machine, time_epochs

MODELS = {"mlp latent 3": dict(latent_dim=3), "mlp latent 64": dict(latent_dim=64), "conv": dict(model="conv")}


def samples_per_epoch(learner: Learner, num_train: int, batch_size: int) -> int:
    """Digits one member trains on per epoch (whole rounds only, as the epoch drops the rest)."""
    return rounds_per_epoch(learner, num_train, batch_size) * batch_size * learner.batches_per_round


def epoch_throughput(config: ml_collections.ConfigDict, x: jax.Array, y: jax.Array, epochs: int) -> Throughput:
    """The single run's compiled epoch on (x, y): compile s, mean s per timed epoch, samples, GFLOP.

    GFLOP per epoch: XLA's count of the compiled epoch, which counts the scanned round once, times the
    rounds. The epoch's own work around the loop (the shuffle) is then counted once per round, not once:
    measured against a train round compiled alone, 0.03% (conv) to 0.35% (MLP latent 64) too many.
    """
    learner = build.learner(config)
    epoch = jax.jit(functools.partial(train_epoch, learner, batch_size=config.batch_size), donate_argnums=0)
    times = time_epochs(epoch, program.initial_state(config, parallel.make_mesh(1)), x, y, epochs=epochs)
    return Throughput(times.epoch_s, samples_per_epoch(learner, x.shape[0], config.batch_size),
                      compile_s=times.compile_s,
                      gflop=times.flops * rounds_per_epoch(learner, x.shape[0], config.batch_size) / 1e9)


def bench(model: str, epochs: int, x: jax.Array, y: jax.Array) -> Throughput:
    """The epoch of MODELS[model] (batch 256), with its GFLOP per epoch."""
    config = base_config()
    config.update(MODELS[model])
    return epoch_throughput(config, x, y, epochs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--train_limit", type=int, default=0, help="the first N training digits (0 = all)")
    args = parser.parse_args()
    data = load_dataset("mnist")
    n = args.train_limit or len(data.train_images)
    x, y = jax.device_put(data.train_images[:n]), jax.device_put(data.train_labels[:n])
    print(machine())
    print(f"batch 256, {n:,} MNIST digits, AE + probe per round")
    print(f"{'model':<15}{'compile s':>10}{'s/epoch':>10}{'samples/s':>12}{'GFLOP/epoch':>13}{'GFLOP/s':>9}")
    for name in args.models.split(","):
        t = bench(name, args.epochs, x, y)
        print(f"{name:<15}{t.compile_s:>10.2f}{t.seconds:>10.3f}{t.samples_per_s:>12,.0f}"
              f"{t.gflop:>13.1f}{t.gflop / t.seconds:>9.1f}")


if __name__ == "__main__":
    main()
