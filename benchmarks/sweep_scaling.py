"""Wall time of a latent-size sweep trained under vmap vs its members one after another vs one run; with
`--layouts`, the same sweep on every device under each member layout (member groups x data devices).

    python benchmarks/sweep_scaling.py [--latent_dims 2,3,5,10,50] [--seeds 0] [--epochs 2] [--train_limit N]
    XLA_FLAGS=--xla_force_host_platform_device_count=8 python benchmarks/sweep_scaling.py --layouts \
        --latent_dims 2,3,5,10 --seeds 0,1,2,3 --train_limit 16384

Times the compiled epochs after one untimed warm-up epoch (compile time printed apart), same data, batch 256, MLP AE + probe.
"""

from __future__ import annotations

import argparse
import time

import jax
import ml_collections

from mnist_ae import build, parallel
from mnist_ae import hlo as hlo_text
from mnist_ae.core import sweep
from mnist_ae.run import program
from mnist_ae.config import base_config
from mnist_ae.data import load_dataset
from timing import Throughput, machine, time_epochs
from train_throughput import epoch_throughput, samples_per_epoch


def sweep_config(latent_dims: tuple[int, ...], seeds: tuple[int, ...] = (0,)) -> ml_collections.ConfigDict:
    """The default MLP sweep over these latent sizes and seeds (one learning rate)."""
    config = base_config()
    config.update(task="sweep", latent_dims=latent_dims, seeds=seeds)
    return config


def sweep_throughput(config: ml_collections.ConfigDict, x: jax.Array, y: jax.Array, epochs: int) -> Throughput:
    """Every member's epoch in one vmapped compiled call: compile s, s per epoch, samples of all members."""
    setup = build.sweep_setup(config)
    fn = jax.jit(lambda s: sweep.sweep_epoch(setup.learner, s, x, y, setup.masks_ml, batch_size=config.batch_size),
                 donate_argnums=0)
    times = time_epochs(fn, program.initial_states(config, parallel.make_mesh(1), setup), epochs=epochs)
    members = len(setup.members)
    return Throughput(times.epoch_s, members * samples_per_epoch(setup.learner, x.shape[0], config.batch_size),
                      members, times.compile_s)




def layout_rows(config: ml_collections.ConfigDict, epochs: int, evals: int = 5) -> list[tuple[str, float, float, float, int]]:
    """Per layout (1 device, then every member-groups x data split of all devices): s per epoch, samples/s summed
    over members, s per whole-test-set eval, and the collectives in the compiled epoch (each runs every round)."""
    from mnist_ae.run.device_data import load_data

    devices = jax.device_count()
    members = len(build.members(config))
    layouts = [(1, 1)] + [(g, devices // g) for g in range(devices, 0, -1)
                          if devices > 1 and devices % g == 0 and members % g == 0]
    rows = []
    for groups, data in layouts:
        mesh = parallel.make_mesh(groups * data, members=members, member_devices=groups)
        prog, state = program.sweep_program(config, mesh)
        ds = load_data(config, mesh)
        args = (ds.train_x, ds.train_y, *prog.extra_args)
        hlo = prog.epoch_fn.lower(state, *args).compile().as_text()
        collectives = len(hlo_text.collective_lines(hlo))
        jax.block_until_ready(prog.eval_fn(state.params, ds.test_x, ds.test_y, *prog.extra_args))  # compiled
        t = time.perf_counter()
        for _ in range(evals):
            jax.block_until_ready(prog.eval_fn(state.params, ds.test_x, ds.test_y, *prog.extra_args))
        eval_s = (time.perf_counter() - t) / evals
        times = time_epochs(prog.epoch_fn, state, *args, epochs=epochs)  # last: it donates the state
        samples = members * samples_per_epoch(prog.learner, ds.train_x.shape[0], config.batch_size)
        rows.append((f"{groups} x {data}" if groups * data > 1 else "1 device", times.epoch_s, samples / times.epoch_s,
                     eval_s, collectives))
    return rows


def main_layouts(args: argparse.Namespace) -> None:
    config = sweep_config(tuple(int(v) for v in args.latent_dims.split(",")),
                          tuple(int(v) for v in args.seeds.split(",")))
    config.update(train_limit=args.train_limit)
    print(machine())
    rows = layout_rows(config, args.epochs)
    print(f"{len(build.members(config))} members (latent {args.latent_dims}, seeds {args.seeds}), "
          f"{args.train_limit or 60000:,} digits, batch 256, {jax.device_count()} devices; compiled epochs only")
    print(f"{'layout (members x data)':<26}{'epoch s':>9}{'x 1 device':>12}{'samples/s':>12}{'eval s':>9}"
          f"{'x 1 device':>12}{'collectives':>13}")
    for name, epoch_s, rate, eval_s, collectives in rows:
        print(f"{name:<26}{epoch_s:>9.2f}{epoch_s / rows[0][1]:>12.2f}{rate:>12,.0f}{eval_s:>9.3f}"
              f"{eval_s / rows[0][3]:>12.2f}{collectives:>13}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latent_dims", default="2,3,5,10,50")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--train_limit", type=int, default=0, help="the first N training digits (0 = all)")
    parser.add_argument("--layouts", action="store_true", help="every member layout of all devices, and 1 device")
    args = parser.parse_args()
    if args.layouts:
        main_layouts(args)
        return
    config = sweep_config(tuple(int(v) for v in args.latent_dims.split(",")),
                          tuple(int(v) for v in args.seeds.split(",")))
    ds = load_dataset("mnist")
    n = args.train_limit or len(ds.train_images)
    x, y = jax.device_put(ds.train_images[:n]), jax.device_put(ds.train_labels[:n])
    vmapped = sweep_throughput(config, x, y, args.epochs)
    singles = [epoch_throughput(build.member_config(config, m), x, y, args.epochs) for m in build.members(config)]
    one = singles[-1].seconds * args.epochs
    after = sum(t.seconds for t in singles) * args.epochs
    print(machine())
    print(f"{vmapped.members} members (latent {args.latent_dims}, seeds {args.seeds}), {args.epochs} epochs, "
          f"{n:,} digits, batch 256, compiled epochs only")
    print(f"{'':<36}{'train s':>9}{'x one run':>11}{'compile s':>11}")
    print(f"{'one run (' + build.members(config)[-1].name + ')':<36}{one:>9.2f}{1.0:>11.2f}{singles[-1].compile_s:>11.2f}")
    print(f"{'members one after another':<36}{after:>9.2f}{after / one:>11.2f}"
          f"{sum(t.compile_s for t in singles):>11.2f}")
    print(f"{'vmapped sweep':<36}{vmapped.seconds * args.epochs:>9.2f}{vmapped.seconds * args.epochs / one:>11.2f}"
          f"{vmapped.compile_s:>11.2f}")


if __name__ == "__main__":
    main()
