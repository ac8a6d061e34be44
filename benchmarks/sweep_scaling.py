"""Wall time of a latent-size sweep trained under vmap vs its members one after another vs one run.

    python benchmarks/sweep_scaling.py [--latent_dims 2,3,5,10,50] [--epochs 2]

Times the compiled epochs after one untimed warm-up epoch (compile time printed apart), same data, batch 256, MLP AE + probe.
"""

from __future__ import annotations

import argparse
import functools

import jax

from mnist_ae import build
from mnist_ae.core import sweep
from mnist_ae.config import base_config
from mnist_ae.data import load_dataset
from mnist_ae.core.loop import train_epoch
from timing import machine, time_epochs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latent_dims", default="2,3,5,10,50")
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    config = base_config()
    config.task = "sweep"
    config.latent_dims = tuple(int(v) for v in args.latent_dims.split(","))
    ds = load_dataset("mnist")
    x, y = jax.device_put(ds.train_images), jax.device_put(ds.train_labels)
    setup = build.sweep_setup(config)
    members = setup.members
    sweep_fn = jax.jit(lambda s: sweep.sweep_epoch(setup.learner, s, x, y, setup.masks_ml, config.batch_size),
                       donate_argnums=0)
    sweep_compile, sweep_s, _ = time_epochs(sweep_fn, setup.initial_states(config), epochs=args.epochs)
    sweep_s *= args.epochs
    single_s, single_compile = [], []
    for m in members:
        single_learner = build.learner(build.member_config(config, m))
        fn = jax.jit(functools.partial(train_epoch, single_learner, images_nhw=x, labels_n=y,
                                       batch_size=config.batch_size), donate_argnums=0)
        c, s, _ = time_epochs(fn, build.initial_state(build.member_config(config, m)), epochs=args.epochs)
        single_compile.append(c)
        single_s.append(s * args.epochs)
    one = single_s[-1]
    print(machine())
    print(f"{len(members)} members (latent {args.latent_dims}), {args.epochs} epochs, batch 256, compiled epochs only")
    print(f"{'':<28}{'train s':>9}{'x one run':>11}{'compile s':>11}")
    print(f"{'one run (latent ' + str(members[-1].latent_dim) + ')':<28}{one:>9.2f}{1.0:>11.2f}{single_compile[-1]:>11.2f}")
    print(f"{'members one after another':<28}{sum(single_s):>9.2f}{sum(single_s) / one:>11.2f}{sum(single_compile):>11.2f}")
    print(f"{'vmapped sweep':<28}{sweep_s:>9.2f}{sweep_s / one:>11.2f}{sweep_compile:>11.2f}")


if __name__ == "__main__":
    main()
