"""Data-parallel scaling: samples/s of the MLP reconstruction epoch on 1, 2, 4, 8 devices.

    python benchmarks/scaling.py [--devices 1,2,4,8] [--batch_size 256] [--epochs 3] [--platform cpu]

The global batch is the same for every device count (each device gets batch_size / N rows), so
every row trains the same model on the same batches; only the split differs. Each device count
runs in its own subprocess: on CPU (`--platform cpu`, the default when no GPU is visible) the
devices are host devices made with `XLA_FLAGS=--xla_force_host_platform_device_count=N`, which
share the machine's cores, so more of them cannot be faster than the cores allow; on GPUs
(`--platform gpu`) the first N GPUs form the mesh and counts above the GPUs present are skipped.
The whole MNIST training set is resident (replicated) on every device; see mnist_ae/parallel.py.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys


def worker(devices: int, batch_size: int, epochs: int, latent_dim: int) -> dict:
    """Runs in the subprocess: compile, one warm-up epoch, then `epochs` timed epochs."""
    import jax

    from mnist_ae import build
    from mnist_ae import parallel
    from mnist_ae.run import program
    from mnist_ae.config import base_config
    from mnist_ae.data import load_dataset
    from mnist_ae.core.loop import rounds_per_epoch
    from timing import time_epochs

    if devices > jax.device_count():
        return {"devices": devices, "skipped": f"only {jax.device_count()} {jax.default_backend()} device(s)"}
    config = base_config()
    config.update(dict(batch_size=batch_size, latent_dim=latent_dim))
    learner = build.learner(config)
    ds = load_dataset("mnist")
    mesh = parallel.make_mesh(devices)
    state = program.initial_state(config, mesh)
    x, y = parallel.place((ds.train_images, ds.train_labels), mesh)
    compile_s, epoch_s, m, _ = time_epochs(parallel.jit_train_epoch(learner, batch_size, mesh), state, x, y,
                                           epochs=epochs)
    rounds = rounds_per_epoch(learner, x.shape[0], batch_size)
    return {"devices": devices, "backend": jax.default_backend(), "device_kind": jax.devices()[0].device_kind,
            "per_device_batch": batch_size // devices, "compile_s": compile_s, "epoch_s": epoch_s,
            "samples_per_s": rounds * batch_size * learner.batches_per_round / epoch_s,
            "final_recon_mse": float(m["train/recon_mse"][-1])}


def run_one(devices: int, args: argparse.Namespace) -> dict:
    env = dict(os.environ)
    if args.platform == "cpu":
        flags = [f for f in env.get("XLA_FLAGS", "").split() if "host_platform_device_count" not in f]
        env.update(JAX_PLATFORMS="cpu",
                   XLA_FLAGS=" ".join([*flags, f"--xla_force_host_platform_device_count={devices}"]))
    cmd = [sys.executable, __file__, "--_worker", str(devices), "--batch_size", str(args.batch_size),
           "--epochs", str(args.epochs), "--latent_dim", str(args.latent_dim)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        return {"devices": devices, "skipped": f"failed (exit {done.returncode}): {done.stderr.strip()[-300:]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", default="1,2,4,8", help="comma-separated device counts")
    parser.add_argument("--batch_size", type=int, default=256, help="global batch (same for every count)")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs after a warm-up epoch")
    parser.add_argument("--latent_dim", type=int, default=64)
    parser.add_argument("--platform", choices=("auto", "cpu", "gpu"), default="auto",
                        help="cpu: host devices via XLA_FLAGS; gpu: the first N GPUs; auto: gpu if one is visible")
    parser.add_argument("--_worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._worker:
        print(json.dumps(worker(args._worker, args.batch_size, args.epochs, args.latent_dim)))
        return
    if args.platform == "auto":
        probe = subprocess.run([sys.executable, "-c", "import jax; print(jax.default_backend())"],
                               capture_output=True, text=True, check=False)
        args.platform = "gpu" if probe.stdout.strip() == "gpu" else "cpu"
    counts = [int(c) for c in args.devices.split(",")]
    for c in counts:
        if args.batch_size % c:
            parser.error(f"--batch_size={args.batch_size} is not divisible by {c} devices")
    print(f"MLP autoencoder (latent {args.latent_dim}) + probe, 60,000 MNIST digits, global batch "
          f"{args.batch_size}, {args.platform}, {os.cpu_count()} CPU cores ({platform.machine()}, "
          f"load average {os.getloadavg()[0]:.1f} at start)")
    print(f"{'devices':>7} {'batch/dev':>9} {'compile s':>9} {'s/epoch':>8} {'samples/s':>10} {'speedup':>7}  recon_mse")
    base = None
    for c in counts:
        r = run_one(c, args)
        if "skipped" in r:
            print(f"{c:>7}  skipped: {r['skipped']}")
            continue
        base = base or r["samples_per_s"]
        print(f"{c:>7} {r['per_device_batch']:>9} {r['compile_s']:>9.1f} {r['epoch_s']:>8.2f} "
              f"{r['samples_per_s']:>10,.0f} {r['samples_per_s'] / base:>6.2f}x  {r['final_recon_mse']:.4f}",
              flush=True)


if __name__ == "__main__":
    main()
