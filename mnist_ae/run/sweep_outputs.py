"""A sweep's own outputs: members exported as standalone runs, the comparison figure, the results table."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np

from mnist_ae import build
from mnist_ae.analysis.baselines import PCA_KEY
from mnist_ae.analysis import digit_figures
from mnist_ae.analysis import figures as plots
from mnist_ae.checkpoint import Checkpointer
from mnist_ae.core import losses
from mnist_ae.workdir import RunDir, write_text_atomic


def export_member(single: ml_collections.ConfigDict, state: Any, member_dir: Path) -> Path:
    """Save one member (its single-run config and its state sliced to its width: `build.member_run`) as a
    standalone reconstruction checkpoint.

    `--task analyze --workdir member_dir` (or a resumed `--task reconstruction`) accepts it.
    """
    ckpt = Checkpointer(RunDir(member_dir).checkpoints, single.keep_checkpoints)
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
    rows += [(f"latent {m.latent_dim}" + (f" s{m.seed} lr{m.learning_rate:g}" if len(members) > 1 else "")
              + ("" if m.beta is None else f" beta{m.beta:g}"), r) for m, r in zip(members, recon_mnhw)]
    return digit_figures.digit_rows(rows, path)


# The per-member analysis numbers (analysis.members) a results table shows where the sweep has them.
QUALITY_COLUMNS = {"analysis/knn5_accuracy": "kNN accuracy", "analysis/logreg_accuracy": "linear-probe accuracy",
                   "analysis/silhouette": "silhouette", "analysis/trustworthiness": "trustworthiness",
                   "test/retrieval_precision_at_10": "precision@10", "test/retrieval_map": "retrieval mAP"}


def results_table(members: list[build.Member], finals: list[dict[str, float]], workdir: Path) -> str:
    """Final test MSE, probe accuracy and (when the members were analysed) their quality numbers per
    latent size (and lr), mean +- std over the seeds that did not diverge; diverged members are counted
    in their own column. Written for people (sweep_results.md, .png) and for programs (sweep_results.json:
    every member's finals and the same groups, read by the report)."""
    quality = {key: label for key, label in QUALITY_COLUMNS.items() if any(key in f for f in finals)}
    one_class = {"test/auroc": "AUROC", "baseline/pca_auroc": "PCA AUROC"} if any("test/auroc" in f for f in finals) else {}
    columns = {"test/recon_mse": "test MSE", **_vae_columns(finals), **one_class, "test/probe_accuracy": "probe accuracy",
               **quality}
    groups = _groups(members, finals, columns)
    vae, normal = members[0].beta is not None, members[0].normal_class is not None
    header = ["latent", "learning rate", *(["beta"] if vae else []), *(["normal class"] if normal else []), "seeds",
              "diverged", "test MSE", "PCA test MSE", *list(columns.values())[1:]]
    rows = [[str(g["latent_dim"]), f"{g['learning_rate']:g}", *([f"{g['beta']:g}"] if vae else []),
             *([str(g["normal_class"])] if normal else []), str(g["seeds"]), str(g["diverged"]),
             _spread(np.array(g["values"]["test/recon_mse"])), f"{g['pca_test_mse']:.4f}",
             *(_spread(np.array(g["values"][key])) for key in list(columns)[1:])] for g in groups]
    run = RunDir(workdir)
    write_text_atomic(run.sweep_results_json, json.dumps(_no_nan({
        "table": {"header": header, "rows": rows}, "columns": columns, "groups": groups,
        "members": [{**m.tags, **{k: float(v) for k, v in f.items()}} for m, f in zip(members, finals)]}),
        indent=1, allow_nan=False) + "\n")
    table = "\n".join(["| " + " | ".join(header) + " |", "|" + "---:|" * len(header),
                       *("| " + " | ".join(row) + " |" for row in rows)])
    write_text_atomic(run.sweep_results, table + "\n")
    series: dict[str, tuple[list, list]] = {}
    for g in groups:
        for key, label in columns.items():
            if g["normal_class"] is not None:
                continue  # a one-class member's numbers are over its class, not a curve over code sizes
            beta = "" if g["beta"] is None else f", beta {g['beta']:g}"
            means, stds = series.setdefault(f"{label} (lr {g['learning_rate']:g}{beta})", ([], []))
            means.append(np.mean(g["values"][key]))
            stds.append(np.std(g["values"][key]))
    latents = sorted({m.latent_dim for m in members})
    pca_by_latent = {m.latent_dim: f[PCA_KEY] for m, f in zip(members, finals) if PCA_KEY in f}
    if len(pca_by_latent) == len(latents):  # the autoencoders' curves against PCA's over code size
        series["PCA test MSE"] = ([pca_by_latent[l] for l in latents], [0.0] * len(latents))
    plots.line_plot(latents, series, "latent size", "final value", run.sweep_results_plot,
                    title="Sweep: final test metrics", logx=True)
    return table


def _vae_columns(finals: list[dict[str, float]]) -> dict[str, str]:
    """A VAE sweep's ELBO, its bound with the most importance samples (the final one) and its active units."""
    bounds = sorted({k for f in finals for k in f if k.startswith("test/nll_iw")}, key=lambda k: int(k[len("test/nll_iw"):]))
    if not bounds:
        return {}
    return {"test/elbo": "test ELBO (nats)", bounds[-1]: f"test NLL, k={bounds[-1][len('test/nll_iw'):]} (nats)",
            "test/active_units": "active units"}


def _groups(members: list[build.Member], finals: list[dict[str, float]],
            columns: dict[str, str]) -> list[dict[str, Any]]:
    """One group per (latent size, learning rate, beta, normal class), in that order: its healthy seeds' values
    per column ([nan] when every seed diverged) and PCA's number at that code size (one whatever the seed)."""
    by_key: dict[tuple[int, float, float | None, int | None], list[dict[str, float]]] = defaultdict(list)
    for m, f in zip(members, finals):
        by_key[(m.latent_dim, m.learning_rate, m.beta, m.normal_class)].append(f)
    groups = []
    for (latent, lr, beta, normal), fs in sorted(by_key.items(), key=lambda item: tuple(v or 0 for v in item[0])):
        healthy = [f for f in fs if not f.get("diverged")]
        groups.append({"latent_dim": latent, "learning_rate": lr, "beta": beta, "normal_class": normal, "seeds": len(fs),
                       "diverged": len(fs) - len(healthy),
                       "pca_test_mse": float(fs[0].get(PCA_KEY, np.nan)),
                       "values": {key: [float(f.get(key, np.nan)) for f in healthy] or [float("nan")]
                                  for key in columns}})
    return groups


def _no_nan(value: Any) -> Any:
    """NaN (a diverged member's number) as null: strict JSON, which every reader parses."""
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_nan(v) for v in value]
    return None if isinstance(value, float) and np.isnan(value) else value


def _spread(values: np.ndarray) -> str:
    """Mean +- std over seeds; one seed has no spread to show."""
    if np.isnan(values).all():
        return "diverged"
    return f"{values.mean():.4f}" if len(values) == 1 else f"{values.mean():.4f} +- {values.std():.4f}"
