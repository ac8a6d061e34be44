"""Training throughput of the scanned epoch: compile time, s/epoch, samples/s, FLOPs, FLOP/s.

    python benchmarks/train_throughput.py [--epochs 3]

FLOPs come from XLA's cost analysis of ONE compiled train round times the rounds per epoch
(XLA's analysis of a `scan` counts the loop body once, not once per iteration).
"""

from __future__ import annotations

import argparse
import functools

import jax
import jax.numpy as jnp

from mnist_ae import build
from mnist_ae.config import base_config
from mnist_ae.data import load_dataset
from mnist_ae.core.loop import rounds_per_epoch, train_epoch
from mnist_ae.core.steps import train_round
from timing import machine, time_epochs

MODELS = {"mlp latent 3": dict(latent_dim=3), "mlp latent 64": dict(latent_dim=64), "conv": dict(model="conv")}


def flops_per_round(learner, state, batch_size: int) -> float:
    x = jnp.zeros((learner.batches_per_round, batch_size, 28, 28))
    y = jnp.zeros((learner.batches_per_round, batch_size), jnp.int32)
    compiled = jax.jit(functools.partial(train_round, learner)).lower(state, x, y).compile()
    analysis = compiled.cost_analysis()
    analysis = analysis[0] if isinstance(analysis, list) else analysis
    return float(analysis.get("flops", 0.0))


def bench(name: str, overrides: dict, epochs: int, data) -> dict:
    config = base_config()
    config.update(overrides)
    learner = build.learner(config)
    state = build.initial_state(config)
    x, y = jax.device_put(data.train_images), jax.device_put(data.train_labels)
    epoch = jax.jit(functools.partial(train_epoch, learner, batch_size=config.batch_size), donate_argnums=0)
    compile_s, epoch_s, _ = time_epochs(epoch, state, x, y, epochs=epochs)
    rounds = rounds_per_epoch(learner, x.shape[0], config.batch_size)
    flops = flops_per_round(learner, build.initial_state(config), config.batch_size) * rounds
    return {"model": name, "compile_s": compile_s, "epoch_s": epoch_s,
            "samples_per_s": rounds * config.batch_size * learner.batches_per_round / epoch_s,
            "gflops_per_epoch": flops / 1e9, "gflop_per_s": flops / epoch_s / 1e9}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--models", default=",".join(MODELS))
    args = parser.parse_args()
    data = load_dataset("mnist")
    print(machine())
    print("batch 256, 60,000 MNIST digits, AE + probe per round")
    print(f"{'model':<15}{'compile s':>10}{'s/epoch':>10}{'samples/s':>12}{'GFLOP/epoch':>13}{'GFLOP/s':>9}")
    for name in args.models.split(","):
        r = bench(name, MODELS[name], args.epochs, data)
        print(f"{r['model']:<15}{r['compile_s']:>10.2f}{r['epoch_s']:>10.3f}{r['samples_per_s']:>12,.0f}"
              f"{r['gflops_per_epoch']:>13.1f}{r['gflop_per_s']:>9.1f}")


if __name__ == "__main__":
    main()
