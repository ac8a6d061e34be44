"""What a report shows about one run, read from its workdir and its model: no plotting here.

Everything a run already wrote is read back (records, reconstruction grids, the analysis and its
map coordinates, the latent pictures, the codes saved at each eval); only what no file holds is
computed, on the run's own model: the test codes and the probe's predictions (one jitted call).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from mnist_ae import data as data_lib
from mnist_ae.workdir import RunDir, write_atomic
from mnist_ae.analysis.embed import host_pca, subsample_index

def save_codes(workdir: Path, step: int, codes_nl: np.ndarray, labels_n: np.ndarray,
               members: list[str] | None = None) -> Path:
    """The first test codes at this eval ([members,] n, L) as float16 with their labels (and a sweep's
    member names, in the order of the leading axis): 0.25 MB an eval for 2,000 64-unit codes."""
    arrays = {"codes": np.asarray(codes_nl, np.float16), "labels": np.asarray(labels_n, np.uint8),
              **({"members": np.asarray(members)} if members else {})}

    def write(tmp: Path) -> None:
        with tmp.open("wb") as f:  # a file object: np.savez would add ".npz" to the temporary name
            np.savez(f, **arrays)

    return write_atomic(RunDir(workdir).codes_npz(step), write)


def codes_over_time(workdir: Path) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """(step, codes [[members,] n, L] float32, labels [n]) for every eval that saved codes, by step."""
    out = []
    for path in sorted(RunDir(workdir).codes.glob("step_*.npz")):
        with np.load(path) as z:
            out.append((int(path.stem.split("_")[1]), z["codes"].astype(np.float32), z["labels"]))
    return out


def member_codes_over_time(member_dir: Path, width: int) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """An exported sweep member's (RUN/members/<name>) codes over time: its slice (its own `width`
    units) of the codes its sweep saved; [] for any other folder."""
    sweep = RunDir(member_dir).sweep
    names = member_names(sweep.root) if sweep is not None else []
    if Path(member_dir).name not in names:
        return []
    return member_slice(codes_over_time(sweep.root), names.index(Path(member_dir).name), width)


def member_slice(sweep_codes: list[tuple[int, np.ndarray, np.ndarray]], i: int,
                 width: int) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """Member `i`'s codes over time (its own `width` units) from its sweep's `codes_over_time`."""
    return [(s, c[i][:, :width], y) for s, c, y in sweep_codes]


def member_names(workdir: Path) -> list[str]:
    """A sweep's member names in the order of the leading axis of its saved codes ([] if none saved)."""
    first = next(iter(sorted(RunDir(workdir).codes.glob("step_*.npz"))), None)
    if first is None:
        return []
    with np.load(first) as z:
        return [str(n) for n in z["members"]] if "members" in z.files else []


def pngs(folder: Path) -> dict[str, bytes]:
    """Every PNG of a folder by file stem, sorted by name."""
    return {p.stem: p.read_bytes() for p in sorted(Path(folder).glob("*.png"))}


@dataclasses.dataclass
class Points:
    """The test digits on the maps: test index, code, label, probe prediction, image, and their maps."""

    index_n: np.ndarray
    codes_nl: np.ndarray
    labels_n: np.ndarray
    preds_n: np.ndarray
    images_nhw: np.ndarray
    maps: dict[str, np.ndarray]  # "pca_2d", "pca_3d", and from the analysis "tsne_2d"
    map3d: tuple[str, np.ndarray, np.ndarray]  # (name, rows of the points it shows, [k, 3])


@dataclasses.dataclass
class RunData:
    """One run (or sweep member) as its report section shows it."""

    name: str
    workdir: Path
    config: dict[str, Any]
    epoch: int
    records: list[dict[str, Any]]  # scalar records of this run (member), in order
    starts: list[dict[str, Any]]  # the start records (provenance)
    finals: dict[str, float]
    recon_pngs: dict[int, bytes]  # step -> grid
    forming: list[tuple[int, np.ndarray, np.ndarray]]  # step -> codes [n, L], labels [n]
    points: Points
    confusion_cc: np.ndarray
    class_names: tuple[str, ...]
    analysis: dict[str, Any]  # analysis/metrics.json, or {}
    latent_pngs: dict[str, bytes]  # the latent pictures; a VAE's last samples, denoising and anomaly pictures


def test_set(config: Any) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """The run's test images and labels (its test_limit applied) and class names."""
    ds = data_lib.load_dataset(config.dataset, config.data_dir, config.data_source)
    limit = config.test_limit or None
    return ds.test_images[:limit], ds.test_labels[:limit], ds.class_names


def probe_predictions(trained: Any, codes_nl: np.ndarray) -> np.ndarray:
    """The probe's class for each code (what the embedding classifier reads off the code)."""
    logits = trained.learner.head.apply(trained.state.params["probe"], codes_nl)
    return np.asarray(np.argmax(np.asarray(logits), -1))


def points(workdir: Path, codes_nl: np.ndarray, labels_n: np.ndarray, preds_n: np.ndarray,
           images_nhw: np.ndarray, subsample: int, seed: int) -> Points:
    """The analysed digits with the analysis's maps (analysis/coords.npz) where the run has them; else
    the same seeded subset with its PCA computed here (cheap; the t-SNE is left to --task analyze)."""
    coords = Path(workdir) / "analysis" / "coords.npz"
    if coords.exists():
        with np.load(coords) as z:
            saved = {k: z[k] for k in z.files}
    else:
        saved = {"index": subsample_index(len(codes_nl), subsample or len(codes_nl), seed)}
    index = saved["index"]
    if index.max(initial=-1) >= len(codes_nl):  # the analysis saw another test set (--task analyze elsewhere)
        index = np.arange(min(len(codes_nl), subsample or len(codes_nl)))
        saved = {"index": index}
    if "pca_2d" not in saved:
        pca = host_pca(codes_nl[index], 3).projected
        saved.update(pca_2d=np.pad(pca[:, :2], ((0, 0), (0, 2 - min(2, pca.shape[1])))), pca_3d=pca)
    maps = {k: saved[k] for k in ("pca_2d", "tsne_2d") if k in saved}
    if "tsne_3d" in saved:
        row_of = {int(test_index): row for row, test_index in enumerate(index)}
        rows = np.array([row_of[int(i)] for i in saved["index_3d"]])
        map3d = ("t-SNE", rows, saved["tsne_3d"])
    else:
        pca3 = np.pad(saved["pca_3d"], ((0, 0), (0, 3 - saved["pca_3d"].shape[1])))
        map3d = ("PCA", np.arange(len(index)), pca3)
    return Points(index, codes_nl[index], labels_n[index], preds_n[index], images_nhw[index], maps, map3d)


def confusion(labels_n: np.ndarray, preds_n: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts [true, predicted]."""
    cc = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(cc, (labels_n.astype(np.int64), preds_n.astype(np.int64)), 1)
    return cc


def finals_of(records: list[dict[str, Any]]) -> dict[str, float]:
    """The final numbers: the last hparams record's metrics (a finished run), else the last eval's."""
    hparams = [r for r in records if "hparams" in r]
    if hparams:
        return hparams[-1]["metrics"]
    evals = [r for r in records if "step" in r and any(k.startswith("test/") for k in r)]
    return {k: v for k, v in evals[-1].items() if k.startswith("test/")} if evals else {}


def run_data(trained: Any, name: str = "", records: list[dict[str, Any]] | None = None,
             forming: list[tuple[int, np.ndarray, np.ndarray]] | None = None) -> RunData:
    """Everything one section shows, for a loaded run (`mnist_ae.api.TrainedRun`). A sweep member
    passes its own records and codes over time (they live in the sweep's workdir)."""
    config, workdir = trained.config, Path(trained.workdir)
    images, labels, class_names = test_set(config)
    codes = trained.encode(images)
    preds = probe_predictions(trained, codes)
    run = RunDir(workdir)
    all_records = run.records() if records is None else records
    analysis_json = run.analysis_metrics()
    return RunData(
        name=name or workdir.name, workdir=workdir, config=config.to_dict(), epoch=trained.epoch,
        records=[r for r in all_records if "step" in r],
        starts=[r for r in all_records if r.get("event") == "start"],
        finals=finals_of(all_records),
        recon_pngs={int(k.split("_")[1]): v for k, v in pngs(run.reconstructions).items()},
        forming=forming if forming is not None else (
            codes_over_time(workdir) or member_codes_over_time(workdir, config.latent_dim)),
        points=points(workdir, codes, labels, preds, images, config.analysis_subsample, config.seed),
        confusion_cc=confusion(labels, preds, len(class_names)), class_names=class_names,
        analysis=json.loads(analysis_json.read_text()) if analysis_json.exists() else {},
        latent_pngs={**pngs(run.latent), **dict(list(pngs(run.samples).items())[-1:]),  # a VAE's last samples
                     **{p.stem: p.read_bytes() for p in (run.denoising, run.anomaly_roc, run.anomaly_digits) if p.exists()}})
