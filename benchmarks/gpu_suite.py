"""Where the time goes, in one run on one device: the numbers docs/scale-out-and-gpus.md's GPU table asks for.

    python benchmarks/gpu_suite.py [--markdown]        # full MNIST: under 5 minutes on one GPU
    python benchmarks/gpu_suite.py --tiny              # 1,024 digits, 1 epoch, a 50-member sweep of 2 x 25:
                                                       # a CPU check of the script

Rows: the default job (experiments/reconstruction.py through `tasks.run`: compile, epochs, evals,
checkpoints, analysis, report), the compiled epoch of the MLP and conv models, one run against the
5-member latent sweep and a 50-member sweep (10 latent sizes x 5 seeds) trained under vmap, then
the default job's analysis stages as the job itself timed them. Epoch rows time compiled epochs
after an untimed warm-up epoch; a sweep's samples are summed over its members.
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import tempfile
from pathlib import Path

import jax
import ml_collections

from analysis_timing import train
from mnist_ae import build
from mnist_ae.analysis.tables import markdown_table
from mnist_ae.data import load_dataset
from sweep_scaling import layout_rows, sweep_config, sweep_throughput
from timing import Throughput, machine
from train_throughput import bench, epoch_throughput, samples_per_epoch

REPO = Path(__file__).resolve().parents[1]
SWEEP_5 = sweep_config((2, 3, 5, 10, 50))
SWEEP_50 = sweep_config((2, 3, 4, 5, 8, 10, 16, 20, 32, 50), (0, 1, 2, 3, 4))
# --tiny's 50 members: 2 latent sizes x 25 seeds. A sweep's initial state compiles one init per latent
# size (vmapped over seeds), about 1 s each on the CPU; --tiny checks that the script runs, not the sizes.
TINY_SWEEP_50 = sweep_config((2, 50), tuple(range(25)))
TINY = {"train_limit": 1024, "test_limit": 200, "job_epochs": 1, "timed_epochs": 1}
TRAIN_HEADER = ["what", "members", "s", "samples", "samples/s", "x one run", "compile s", "GFLOP/s"]
ANALYSIS_HEADER = ["analysis stage", "s", "share of the job"]


def default_job(train_limit: int, test_limit: int, epochs: int) -> ml_collections.ConfigDict:
    """experiments/reconstruction.py's config, as `python launch.py` runs it, on the chosen data."""
    config = runpy.run_path(str(REPO / "experiments" / "reconstruction.py"))["get_config"]()
    config.update(train_limit=train_limit, test_limit=test_limit, epochs=epochs)
    return config


def job_row(config: ml_collections.ConfigDict, workdir: Path, num_train: int) -> Throughput:
    """The whole job's wall time (compile included) and the digits its epochs trained on."""
    seconds = train(config, workdir)
    return Throughput(seconds, config.epochs * samples_per_epoch(build.learner(config), num_train, config.batch_size))


def row(name: str, t: Throughput, one_run_s: float | None = None, gflop: float | None = None) -> list[str | None]:
    def opt(value: float | None, fmt: str) -> str | None:
        return None if value is None else format(value, fmt)

    return [name, str(t.members), f"{t.seconds:.4g}", str(t.samples), f"{t.samples_per_s:.0f}",
            opt(None if one_run_s is None else t.seconds / one_run_s, ".2f"), opt(t.compile_s, ".2f"),
            opt(None if gflop is None else gflop / t.seconds, ".1f")]


def plain_table(header: list[str], rows: list[list[str | None]]) -> str:
    cells = [header] + [[c or "" for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
                     for r in cells) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="small settings for a CPU: " + json.dumps(TINY)
                        + ", the 50-member sweep as 2 latent sizes x 25 seeds")
    parser.add_argument("--train_limit", type=int, help="the first N training digits (0 = all 60,000)")
    parser.add_argument("--test_limit", type=int, help="the first N test digits (0 = all 10,000)")
    parser.add_argument("--job_epochs", type=int, help="the default job's epochs (default: the experiment's, 5)")
    parser.add_argument("--timed_epochs", type=int, help="timed epochs per epoch row, after a warm-up (default 2)")
    parser.add_argument("--markdown", action="store_true", help="GitHub tables, to paste into docs/scale-out-and-gpus.md")
    args = parser.parse_args(argv)
    preset = TINY if args.tiny else {"train_limit": 0, "test_limit": 0, "job_epochs": 5, "timed_epochs": 2}
    opts = {k: preset[k] if getattr(args, k) is None else getattr(args, k) for k in preset}
    print(machine())
    data = load_dataset("mnist")
    n = opts["train_limit"] or len(data.train_images)
    x, y = jax.device_put(data.train_images[:n]), jax.device_put(data.train_labels[:n])
    epochs = opts["timed_epochs"]

    with tempfile.TemporaryDirectory() as tmp:
        config = default_job(opts["train_limit"], opts["test_limit"], opts["job_epochs"])
        job = job_row(config, Path(tmp) / "job", n)
        stages = json.loads((Path(tmp) / "job" / "analysis" / "metrics.json").read_text())["timings_s"]
    mlp, conv = bench("mlp latent 64", epochs, x, y), bench("conv", epochs, x, y)
    one = epoch_throughput(build.member_config(SWEEP_5, build.members(SWEEP_5)[-1]), x, y, epochs)
    sweeps = [(c, sweep_throughput(c, x, y, epochs)) for c in (SWEEP_5, TINY_SWEEP_50 if args.tiny else SWEEP_50)]

    train_rows = [row(f"default job, end to end ({config.epochs} epochs)", job),
                  row("MLP epoch (latent 64)", mlp, gflop=mlp.gflop),
                  row("conv epoch", conv, gflop=conv.gflop),
                  row("one run epoch (MLP latent 50)", one, one.seconds)]
    train_rows += [row(f"{t.members}-member sweep epoch (latent {','.join(map(str, c.latent_dims))}; "
                       f"{len(c.seeds)} seed{'s' * (len(c.seeds) > 1)})", t, one.seconds) for c, t in sweeps]
    analysis_rows = [[stage, f"{s:.2f}", f"{s / job.seconds:.2f}"] for stage, s in stages.items()]
    sweep_16 = sweep_config((2, 3, 5, 10), (0, 1, 2, 3))  # issue 37's sweep, under every member layout of the devices
    sweep_16.update(train_limit=opts["train_limit"], test_limit=opts["test_limit"])
    layouts = [[name, f"{epoch_s:.4g}", f"{rate:,.0f}", f"{eval_s:.4g}", str(collectives)]
               for name, epoch_s, rate, eval_s, collectives in layout_rows(sweep_16, epochs)]
    table = markdown_table if args.markdown else plain_table
    print(f"{n:,} training digits, batch {config.batch_size}, {epochs} timed epoch(s) per epoch row")
    print(table(TRAIN_HEADER, train_rows))
    print(table(ANALYSIS_HEADER, analysis_rows))
    print(f"16-member sweep on {jax.device_count()} device(s), by layout (member groups x data devices)")
    print(table(["layout", "epoch s", "samples/s (all members)", "eval s", "collectives per round"], layouts))
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
