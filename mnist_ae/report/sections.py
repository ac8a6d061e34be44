"""The sections of a run's report, in reading order: what ran, how it went, what the codes look like."""

from __future__ import annotations

import datetime
from typing import Any

import numpy as np

from mnist_ae.analysis.quality import confused_pairs, dimension_stats, outliers
from mnist_ae.config import FIELDS
from mnist_ae.report import figures, forming
from mnist_ae.report.collect import RunData
from mnist_ae.report.page import Page, array_png, esc, img, png_url, table
from mnist_ae.workdir import RunDir

PROVENANCE_KEYS = ("time", "from_step", "host", "commit", "devices", "versions")


def _when(seconds: float | None) -> str:
    return "" if seconds is None else datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _plain(value: Any) -> Any:
    """Config values as the schema's defaults hold them (JSON turns tuples into lists)."""
    return tuple(value) if isinstance(value, list) else value


def config_table(config: dict[str, Any]) -> str:
    """Every key, those that differ from the defaults first (highlighted), with its meaning."""
    changed = [k for k in FIELDS if k in config and _plain(config[k]) != FIELDS[k].default]
    keys = changed + [k for k in FIELDS if k in config and k not in changed]
    rows = [(k, str(_plain(config[k])), str(FIELDS[k].default), FIELDS[k].meaning) for k in keys]
    return (f"<p>{len(changed)} of {len(keys)} keys differ from the defaults (highlighted, first).</p>"
            + table(["key", "value", "default", "meaning"], rows, row_class={i: "changed" for i in range(len(changed))}))


def provenance(starts: list[dict[str, Any]]) -> str:
    """One row per start of the run: when, from which step, where, which code and versions."""
    rows = []
    for s in starts:
        devices = s.get("devices") or {}
        device = devices.get("line", devices) if isinstance(devices, dict) else devices
        versions = ", ".join(f"{k} {v}" for k, v in (s.get("versions") or {}).items())
        rows.append((_when(s.get("time")), str(s.get("from_step", "")), str(s.get("host", "")),
                     str(s.get("commit", "")), str(device), versions))
    return table(["started", "from step", "host", "commit", "devices", "versions"], rows) if rows else \
        '<p class="note">no start record in metrics.jsonl</p>'


def status_line(data: RunData) -> str:
    epochs = data.config.get("epochs")
    times = [r["time"] for r in data.records if "time" in r]
    state = "finished" if data.epoch >= (epochs or 0) else "interrupted"
    span = f", last record {_when(max(times))}" if times else ""
    return f'<p>{state}: checkpoint of epoch {data.epoch} of {epochs}, step {data.records[-1]["step"] if data.records else 0}{span}</p>'


# The headline row (label, where the number is: the finals, or the analysis' numbers of the codes).
HEADLINE = (("test MSE", "test/recon_mse"), ("PCA's test MSE, same code size", "baseline/pca_recon_mse"),
            ("probe accuracy", "test/probe_accuracy"), ("accuracy", "test/accuracy"),
            ("kNN accuracy (k=5)", "analysis/knn5_accuracy"), ("trustworthiness", "analysis/trustworthiness"))


def headline(data: RunData) -> str:
    """The few numbers a reader looks for first, in one row: the rest are in the tables below."""
    codes = data.analysis.get("codes", {})
    found = {**{f"analysis/{k}": v for k, v in codes.items()}, **data.finals}
    cells = [(label, float(found[key])) for label, key in HEADLINE if isinstance(found.get(key), (int, float))]
    return '<div class="headline">' + "".join(f"<div><b>{value:.4g}</b><span>{esc(label)}</span></div>"
                                              for label, value in cells) + "</div>"


def finals_table(data: RunData) -> str:
    finals = {k: v for k, v in data.finals.items() if "per_class" not in k}
    rows = [(k, float(v)) for k, v in sorted(finals.items())]
    out = table(["final metric", "value"], rows)
    codes, raw = data.analysis.get("codes", {}), data.analysis.get("raw_pixels", {})
    if codes:
        keys = [k for k in codes if isinstance(codes[k], (int, float))]
        out += "<h3>Quality of the codes (raw pixels as the baseline)</h3>" + table(
            ["quality", "codes", "raw pixels"], [(k, float(codes[k]), float(raw[k]) if k in raw else "") for k in keys])
        settings = data.analysis.get("settings", {})
        out += f'<p class="note">on {settings.get("n_points")} test codes; {esc(settings.get("split", ""))}</p>'
    return out


def over_training(page: Page, data: RunData) -> str:
    """The reconstruction grid and the latent space forming, behind one step slider."""
    steps = sorted(set(data.recon_pngs) | {s for s, _, _ in data.forming})
    if not steps:
        return '<p class="note">no evals saved yet</p>'
    recon_steps = sorted(data.recon_pngs)
    images = [png_url(data.recon_pngs[max([r for r in recon_steps if r <= s], default=recon_steps[0])])
              if recon_steps else None for s in steps]
    img_id, map_id, parts, frames = page.new_id("recon"), "", [], []
    if recon_steps:
        parts.append(f'<div><h3>Reconstructions</h3><p class="note">top: test digits; below: reconstructions</p>'
                     f'<img id="{img_id}" src="{images[-1]}" alt="reconstructions" class="recon"></div>')
    if data.forming:
        by_step = {s: (c, y) for s, c, y in data.forming}
        maps = forming.aligned_maps([by_step[s][0] for s in sorted(by_step)])
        labels = data.forming[0][2].astype(np.int64)
        fig, per_step = figures.forming_frames(maps, labels, data.class_names)
        order = sorted(by_step)
        frames = [per_step[max([i for i, f in enumerate(order) if f <= s], default=0)] for s in steps]
        map_id = page.new_id("fig")
        div = page.figure(fig, css_class="plot forming", div_id=map_id)
        parts.append(f"<div><h3>The latent space forming</h3><p class=note>2-D PCA of {len(labels)} test codes at "
                     "each eval, aligned step to step (orthogonal Procrustes), unit spread</p>" + div + "</div>")
    return page.slider(steps, images, frames, img_id, map_id) + f'<div class="grid">{"".join(parts)}</div>'


def maps(page: Page, data: RunData) -> str:
    """PCA and t-SNE maps (hover: thumbnail, label, probe prediction) and the rotatable 3-D map."""
    p = data.points
    sprite = page.sprite(p.images_nhw)
    custom = figures.hover_data(np.arange(len(p.index_n)), p.index_n, p.preds_n, data.class_names)
    parts = []
    for key, name in (("pca_2d", "PCA"), ("tsne_2d", "t-SNE")):
        if key in p.maps:
            fig = figures.scatter_map(p.maps[key], p.labels_n, custom, data.class_names,
                                      f"{name} of {len(p.index_n)} test codes")
            parts.append(f"<div>{page.figure(fig, sprite, 'plot map')}</div>")
    sweep = RunDir(data.workdir).sweep
    note = "" if "tsne_2d" in p.maps else (
        ('<p class="note">this member\'s t-SNE is in the sweep\'s member maps above</p>'
         if (sweep.analysis() / "member_maps.png").exists() else
         '<p class="note">no t-SNE: the sweep ran without its analysis (--config.analyze_at_end)</p>') if sweep else
        f'<p class="note">no t-SNE yet: python launch.py --task analyze --workdir {esc(data.workdir.name)} (from the '
        "run's parent folder) computes it</p>")
    name, rows, coords = p.map3d
    fig3 = figures.scatter_3d(coords, p.labels_n[rows], custom[rows], data.class_names,
                              f"{name} 3-D of {len(rows)} test codes (drag to turn)")
    return f'<div class="grid">{"".join(parts)}</div>{note}{page.figure(fig3, sprite, "plot map3d")}'


def codes_section(page: Page, data: RunData) -> str:
    """Correlation, histograms, per-unit statistics, outliers, confusion and confused pairs."""
    p, names = data.points, data.class_names
    codes = p.codes_nl.astype(np.float64)
    std = codes.std(axis=0)
    corr = np.corrcoef(codes, rowvar=False) if codes.shape[1] > 1 else np.ones((1, 1))
    corr = np.where(np.outer(std, std) > 0, np.nan_to_num(corr), 0.0)
    units = [str(d) for d in range(codes.shape[1])]
    stats = dimension_stats(codes)
    stat_rows = [(s["dim"], s["mean"], s["std"], s["min"], s["max"], s["near_zero"], "dead" if s["dead"] else "")
                 for s in stats]
    far = outliers(codes, p.labels_n)
    thumbs = "".join(f"<figure>{img(_digit_png(p.images_nhw[i]), f'test {p.index_n[i]}')}<figcaption>"
                     f"{esc(names[p.labels_n[i]])} #{p.index_n[i]}<br>says {esc(names[p.preds_n[i]])}</figcaption></figure>"
                     for i in far)
    pairs = confused_pairs(data.confusion_cc, names)
    accuracy = np.trace(data.confusion_cc) / max(data.confusion_cc.sum(), 1)
    return (f'<div class="grid"><div>{page.figure(figures.heatmap(corr, "Correlation of code units", units, units))}</div>'
            f'<div>{page.figure(figures.heatmap(data.confusion_cc, f"Probe confusion on the test set (accuracy {accuracy:.4f})", names, names, counts=True))}</div></div>'
            "<h3>Confused pairs (either way round)</h3>"
            + table(["class", "class", "confusions"], pairs)
            + "<h3>Histograms</h3>" + page.figure(figures.histograms(codes))
            + "<h3>Statistics per unit</h3><details><summary>"
            f"{sum(s['dead'] for s in stats)} dead of {len(stats)} units (open the table)</summary>"
            + table(["unit", "mean", "std", "min", "max", "near zero", ""], stat_rows, sortable=True) + "</details>"
            + f'<h3>Outliers: farthest from their class centroid</h3><div class="thumbs">{thumbs}</div>')


def _digit_png(image_hw: np.ndarray) -> bytes:
    return array_png(image_hw[..., None])


LATENT_CAPTIONS = {"class_means": "the mean code of each class, decoded",
                   "interpolations": "decoded codes on straight lines between test digits' codes",
                   "manifold": "a grid over the 2-D code space, decoded",
                   "traversals": "the most varying units, each through its percentiles, the others at the mean code",
                   "denoising": "noisy test digits, their reconstructions and the clean digits",
                   "anomaly_roc": "one-class ROC curves (AUROC per normal class)",
                   "anomaly_digits": "the most and least anomalous test digits by reconstruction error"}


def latent_caption(name: str) -> str:
    if name.startswith("samples_step_"):
        return f"digits generated from the prior (a VAE's samples at step {int(name.rsplit('_', 1)[1]):,})"
    return LATENT_CAPTIONS.get(name, name.replace("_", " "))


def run_body(page: Page, data: RunData, *, with_provenance: bool = True) -> str:
    """Everything about one run, as HTML (its figures registered on `page`): the headline numbers and the
    pictures first, the config, provenance and full tables last."""
    latent = "".join(f"<figure>{img(png, name)}<figcaption>{esc(latent_caption(name))}"
                     "</figcaption></figure>" for name, png in data.latent_pngs.items())
    return "".join([
        headline(data),
        status_line(data),
        "<h3>Training and test curves</h3>" + page.figure(figures.curves(data.records)),
        "<h3>Over training</h3>" + over_training(page, data),
        "<h3>Maps of the codes</h3>" + maps(page, data),
        "<h3>The codes</h3>" + codes_section(page, data),
        ("<h3>Latent pictures</h3>" + latent) if latent else "",
        "<h3>Final numbers</h3>" + finals_table(data),
        "<h3>Config</h3><details><summary>open the config</summary>" + config_table(data.config) + "</details>",
        ("<h3>Provenance</h3>" + provenance(data.starts)) if with_provenance else "",
    ])
