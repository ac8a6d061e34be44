"""Host side of a sweep: one compiled, vmapped program trains every member; logs per member.

Outputs in the workdir: `metrics.jsonl` (every record tagged with its member), `members/<name>/`
(one TensorBoard run / W&B run per member, grouped), `comparison.png` (input digits and each
member's reconstructions), `sweep_results.md` and `sweep_results.png` (final test MSE and probe
accuracy against latent size, mean +- std over seeds), checkpoints of the whole stacked sweep.
"""

from __future__ import annotations

import functools
import time
from collections import defaultdict
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from matplotlib.figure import Figure

from mnist_ae import build
from mnist_ae import monitoring, parallel, plots
from mnist_ae.core import losses, sweep
from mnist_ae.checkpoint import Checkpointer
from mnist_ae.core.loop import rounds_per_epoch
from mnist_ae.core.steps import init_state, reconstruct
from mnist_ae.progress import Reporter
from mnist_ae.run.setup import load_data
from mnist_ae.train import check_finite, closing_all, summary_paths, warn_if_finished, window_means
from mnist_ae.writers import JsonlWriter, MetricWriter, MultiWriter


def _member_writers(config: ml_collections.ConfigDict, workdir: Path, framework: str,
                    members: list[build.Member]) -> list[MetricWriter]:
    """Per member: its own TensorBoard dir / W&B run, plus tagged lines in the shared metrics.jsonl.

    As with every writer, only the main process writes anything.
    """
    group = config.wandb_group or workdir.name
    main = parallel.is_main_process()
    return [MultiWriter([
        JsonlWriter(workdir / "metrics.jsonl", tags=m.tags) if main else MultiWriter([]),
        monitoring.open_writer(config, workdir, framework, run_name=f"{workdir.name}/{m.name}", group=group,
                               jsonl_tags=m.tags, subdir=f"members/{m.name}"),
    ]) for m in members]


def run_sweep(config: ml_collections.ConfigDict, workdir: Path, log_framework: str,
              quiet: bool = False) -> list[dict[str, float]]:
    """Train (or resume) every member together to `config.epochs`; returns final metrics per member."""
    mesh = parallel.make_mesh(config.num_devices)
    t = time.perf_counter()
    data = load_data(config, mesh)
    data_s = time.perf_counter() - t
    members = build.members(config)
    width = build.sweep_setup(config).width
    task = build.learner(config, latent_dim=width)
    masks = parallel.place(jnp.stack([sweep.latent_mask(m.latent_dim, width) for m in members]), mesh)
    states = parallel.place(build.sweep_setup(config).initial_states(config), mesh)
    ckpt = Checkpointer(workdir / "checkpoints", config.keep_checkpoints)
    if ckpt.latest_epoch() is not None:
        ckpt.check_fits(config)
        states = ckpt.restore(states)
    num_rounds = rounds_per_epoch(task, data.train_x.shape[0], config.batch_size)
    reporter = Reporter(total_epochs=config.epochs, rounds_per_epoch=num_rounds, start_epoch=int(states.epoch[0]),
                        quiet=quiet or not parallel.is_main_process(), title=f"sweep of {len(members)}")
    reporter.add_time("data", data_s)
    warn_if_finished(reporter, workdir, int(states.epoch[0]), config.epochs)
    writers = _member_writers(config, workdir, log_framework, members)
    evaluate = jax.jit(functools.partial(sweep.sweep_evaluate, task), out_shardings=parallel.replicated(mesh))

    def log_eval() -> list[dict[str, float]]:
        t = time.perf_counter()
        metrics = jax.device_get(evaluate(states.params, data.test_x, data.test_y, masks))
        reporter.add_time("eval", time.perf_counter() - t)
        check_finite(metrics, f"at evaluation after epoch {int(states.epoch[0])}", ckpt)
        finals = []
        for i, writer in enumerate(writers):
            final = monitoring.scalars(sweep.unstack(metrics, i))
            writer.write_scalars(int(states.step[i]), {"epoch": int(states.epoch[i]), **final})
            finals.append(final)
        return finals

    with closing_all(ckpt, *writers, reporter):
        finals = log_eval() if int(states.epoch[0]) == 0 else []
        with reporter.phase("compiling"):
            epoch_fn = jax.jit(functools.partial(sweep.sweep_epoch, task, batch_size=config.batch_size,
                                                 batch_constraint=parallel.shard_batch_constraint(mesh)),
                               out_shardings=parallel.replicated(mesh), donate_argnums=0,
                               ).lower(states, data.train_x, data.train_y, masks).compile()
        for writer in writers:  # built meanwhile (W&B's start-up): a failure surfaces here, not mid-run
            writer.flush()
        for epoch in range(int(states.epoch[0]), config.epochs):
            t = time.perf_counter()
            with jax.transfer_guard("disallow"):  # no implicit host <-> device copies in an epoch
                states, per_round = epoch_fn(states, data.train_x, data.train_y, masks)
            per_round = jax.device_get(per_round)
            seconds = time.perf_counter() - t
            reporter.add_time("train", seconds)
            check_finite(per_round, f"in epoch {epoch + 1}", ckpt)
            step0 = int(states.step[0]) - num_rounds
            for i, writer in enumerate(writers):
                for end, means in window_means(sweep.unstack(per_round, i), config.log_every_steps):
                    writer.write_scalars(step0 + end, {"epoch": epoch + 1, **means,
                                                       "train/steps_per_s": num_rounds / seconds})
            last = epoch + 1 == config.epochs
            if (epoch + 1) % config.eval_every_epochs == 0 or last:
                finals = log_eval()
            if (epoch + 1) % config.checkpoint_every_epochs == 0 or last:
                ckpt.save(epoch + 1, states, config)
            best = min(range(len(members)), key=lambda i: finals[i]["test/recon_mse"]) if finals else 0
            reporter.epoch_done(epoch + 1, int(states.step[0]), num_rounds / seconds,
                                {**{k: float(v[best].mean()) for k, v in per_round.items()},
                                 **(finals[best] if finals else {})})
        if not finals:
            finals = log_eval()
        for i, writer in enumerate(writers):
            writer.write_hparams({**build.member_config(config, members[i]).to_dict(), **members[i].tags},
                                 finals[i])
        for i, member in enumerate(members):
            export_member(config, member, sweep.unstack(states, i), workdir / "members" / member.name)
        recon = jax.jit(jax.vmap(lambda p, m: reconstruct(task, p["ae"], data.grid_x, m)),
                        out_shardings=parallel.replicated(mesh))(states.params, masks)
        if parallel.is_main_process():  # files written directly, not through the writers
            comparison_figure(data.grid_x, np.asarray(recon), members, workdir / "comparison.png")
            results_table(members, finals, workdir)
    reporter.summary(final=[(m.tags, f) for m, f in zip(members, finals)], workdir=workdir,
                     paths=summary_paths(workdir))
    return finals


def export_member(config: ml_collections.ConfigDict, member: build.Member, wide_state, member_dir: Path) -> Path:
    """Save one member, sliced to its width, as a standalone reconstruction checkpoint.

    `--task analyze --workdir member_dir` (or a resumed `--task reconstruction`) accepts it.
    """
    single = build.member_config(config, member)
    template = jax.eval_shape(lambda: init_state(build.learner(single), member.seed))
    ckpt = Checkpointer(member_dir / "checkpoints", config.keep_checkpoints)
    try:
        if ckpt.latest_epoch() != int(wide_state.epoch):  # a rerun of a finished sweep exported it already
            ckpt.save(int(wide_state.epoch), sweep.slice_to(wide_state, template), single)
    finally:
        ckpt.close()
    return member_dir


def comparison_figure(originals_nhw: np.ndarray, recon_mnhw: np.ndarray, members: list[build.Member],
                      path: Path) -> Path:
    """The seed's figure: input digits on the first row, then each member's reconstructions."""
    rows = [("input", np.asarray(losses.to_unit_range(originals_nhw)))]
    rows += [(f"latent {m.latent_dim}" + (f" s{m.seed} lr{m.learning_rate:g}" if len(members) > 1 else ""), r)
             for m, r in zip(members, recon_mnhw)]
    n = originals_nhw.shape[0]
    with plots.style():
        fig = Figure(figsize=(0.9 * n + 1.6, 0.95 * len(rows)))
        axes = fig.subplots(len(rows), n, squeeze=False)
        for r, (label, images) in enumerate(rows):
            for c in range(n):
                axes[r, c].imshow(images[c], cmap="gray", vmin=-1, vmax=1, interpolation="nearest")
                axes[r, c].set_xticks([])
                axes[r, c].set_yticks([])
            axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
        fig.tight_layout(pad=0.2)
        fig.savefig(path)
    return path


def results_table(members: list[build.Member], finals: list[dict[str, float]], workdir: Path) -> str:
    """Final test MSE and probe accuracy per latent size (and lr), mean +- std over seeds."""
    groups: dict[tuple[int, float], list[dict[str, float]]] = defaultdict(list)
    for m, f in zip(members, finals):
        groups[(m.latent_dim, m.learning_rate)].append(f)
    lines = ["| latent | learning rate | seeds | test MSE | probe accuracy |", "|---:|---:|---:|---:|---:|"]
    series: dict[str, tuple[list, list]] = {}
    for (latent, lr), fs in sorted(groups.items()):
        mse = np.array([f["test/recon_mse"] for f in fs])
        acc = np.array([f["test/probe_accuracy"] for f in fs])
        lines.append(f"| {latent} | {lr:g} | {len(fs)} | {mse.mean():.4f} +- {mse.std():.4f} | "
                     f"{acc.mean():.4f} +- {acc.std():.4f} |")
        for name, values in ((f"test MSE (lr {lr:g})", mse), (f"probe accuracy (lr {lr:g})", acc)):
            means, stds = series.setdefault(name, ([], []))
            means.append(values.mean())
            stds.append(values.std())
    table = "\n".join(lines)
    (workdir / "sweep_results.md").write_text(table + "\n")
    latents = sorted({m.latent_dim for m in members})
    plots.line_plot(latents, series, "latent size", "final value",
                    workdir / "sweep_results.png", title="Sweep: final test metrics", logx=True)
    return table
