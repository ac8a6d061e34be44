"""A sweep's own outputs: members exported as standalone runs, the comparison figure, the results table."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np

from mnist_ae import build
from mnist_ae.baselines import PCA_KEY
from mnist_ae.analysis import digit_figures
from mnist_ae.analysis import figures as plots
from mnist_ae.checkpoint import Checkpointer
from mnist_ae.core import losses


def export_member(single: ml_collections.ConfigDict, state: Any, member_dir: Path) -> Path:
    """Save one member (its single-run config and its state sliced to its width: `build.member_run`) as a
    standalone reconstruction checkpoint.

    `--task analyze --workdir member_dir` (or a resumed `--task reconstruction`) accepts it.
    """
    ckpt = Checkpointer(member_dir / "checkpoints", single.keep_checkpoints)
    try:
        if ckpt.latest_epoch() != int(state.epoch):  # a rerun of a finished sweep exported it already
            ckpt.save(int(state.epoch), state, single)
    finally:
        ckpt.close()
    return member_dir


def comparison_figure(originals_nhw: np.ndarray, recon_mnhw: np.ndarray, members: list[build.Member],
                      path: Path) -> Path:
    """The seed's figure: input digits on the first row, then each member's reconstructions."""
    rows = [("input", np.asarray(losses.to_unit_range(originals_nhw)))]
    rows += [(f"latent {m.latent_dim}" + (f" s{m.seed} lr{m.learning_rate:g}" if len(members) > 1 else ""), r)
             for m, r in zip(members, recon_mnhw)]
    return digit_figures.digit_rows(rows, path)


# The per-member analysis numbers (analysis.members) a results table shows where the sweep has them.
QUALITY_COLUMNS = {"analysis/knn5_accuracy": "kNN accuracy", "analysis/logreg_accuracy": "linear-probe accuracy",
                   "analysis/silhouette": "silhouette", "analysis/trustworthiness": "trustworthiness"}


def results_table(members: list[build.Member], finals: list[dict[str, float]], workdir: Path) -> str:
    """Final test MSE, probe accuracy and (when the members were analysed) their quality numbers per
    latent size (and lr), mean +- std over the seeds that did not diverge; diverged members are counted
    in their own column."""
    groups: dict[tuple[int, float], list[dict[str, float]]] = defaultdict(list)
    for m, f in zip(members, finals):
        groups[(m.latent_dim, m.learning_rate)].append(f)
    quality = {key: label for key, label in QUALITY_COLUMNS.items() if any(key in f for f in finals)}
    lines = ["| latent | learning rate | seeds | diverged | test MSE | PCA test MSE | probe accuracy |"
             + "".join(f" {label} |" for label in quality.values()),
             "|---:|---:|---:|---:|---:|---:|---:|" + "---:|" * len(quality)]
    series: dict[str, tuple[list, list]] = {}
    for (latent, lr), fs in sorted(groups.items()):
        healthy = [f for f in fs if not f.get("diverged")]
        columns = {"test MSE": "test/recon_mse", "probe accuracy": "test/probe_accuracy",
                   **{label: key for key, label in quality.items()}}
        values = {label: np.array([f.get(key, np.nan) for f in healthy] or [np.nan]) for label, key in columns.items()}
        pca = np.array([fs[0].get(PCA_KEY, np.nan)])  # one number per code size, whatever the seed
        lines.append(f"| {latent} | {lr:g} | {len(fs)} | {len(fs) - len(healthy)} | {_spread(values['test MSE'])} | "
                     f"{pca[0]:.4f} | " + " | ".join(_spread(values[label]) for label in list(columns)[1:]) + " |")
        for label, column in values.items():
            means, stds = series.setdefault(f"{label} (lr {lr:g})", ([], []))
            means.append(column.mean())
            stds.append(column.std())
    table = "\n".join(lines)
    (workdir / "sweep_results.md").write_text(table + "\n")
    latents = sorted({m.latent_dim for m in members})
    pca_by_latent = {m.latent_dim: f[PCA_KEY] for m, f in zip(members, finals) if PCA_KEY in f}
    if len(pca_by_latent) == len(latents):  # the autoencoders' curves against PCA's over code size
        series["PCA test MSE"] = ([pca_by_latent[l] for l in latents], [0.0] * len(latents))
    plots.line_plot(latents, series, "latent size", "final value",
                    workdir / "sweep_results.png", title="Sweep: final test metrics", logx=True)
    return table


def _spread(values: np.ndarray) -> str:
    """Mean +- std over seeds; one seed has no spread to show."""
    if np.isnan(values).all():
        return "diverged"
    return f"{values.mean():.4f}" if len(values) == 1 else f"{values.mean():.4f} +- {values.std():.4f}"
