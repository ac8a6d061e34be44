"""What a run logs besides its scalars, and when (`run/hooks.py`), run in this process on tiny runs: the
schedule of each picture, the end-of-run numbers merged into the finals, a classifier's and a sweep's hooks.
The analysis and the report are stubbed here (they have their own tests): these check the hooks' wiring."""

from __future__ import annotations

import re
import types
from collections.abc import Callable

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from helpers import hparams_session_groups, record_digit_rows, tiny, tiny_sweep
from mnist_ae import data as data_lib
from mnist_ae import tasks
from mnist_ae.analysis import ANALYSIS_PHASE, baselines, retrieval
from mnist_ae.run import hooks, measures
from mnist_ae.workdir import RunDir, read_records


@pytest.fixture
def stubbed(monkeypatch) -> list[tuple[str, bool]]:
    """The analysis, the sweep's member analysis and the report replaced by stubs that record their call and
    whether every record the run wrote was in metrics.jsonl by then (the writers flushed first)."""
    from mnist_ae.analysis import members, task
    from mnist_ae.report import task as report_task

    calls: list[tuple[str, bool]] = []

    def analyze_codes(config, codes, metrics, test_y, test_x, class_names, workdir, writer, step, say=None):  # noqa: ANN001, ANN202
        calls.append(("analysis", True))
        return types.SimpleNamespace(summary=lambda: {"analysis/knn5_accuracy": 0.5})

    def analyze_members(codes_mnl, labels_n, widths, names, *args, **kwargs):  # noqa: ANN001, ANN202
        calls.append(("members", list(widths) == [2, 5] and len(codes_mnl) == 2))
        return [{"knn5_accuracy": 0.25 * (i + 1)} for i in range(len(names))]

    def end_of_run(run, state):  # noqa: ANN001, ANN202
        records = read_records(RunDir(run.workdir).metrics)
        calls.append(("report", any("hparams" in r for r in records)))

    monkeypatch.setattr(task, "analyze_codes", analyze_codes)
    monkeypatch.setattr(members, "analyze_members", analyze_members)
    monkeypatch.setattr(report_task, "end_of_run", end_of_run)
    return calls


@pytest.fixture
def row_labels(monkeypatch) -> Callable[[str], list[str]]:
    """The row labels of the digit-row figure of a title, as drawn (the figure is drawn as before)."""
    drawn = record_digit_rows(monkeypatch)
    return lambda title: [label for label, _ in drawn[title]]


@pytest.fixture
def slow_log(monkeypatch) -> list[list[dict]]:
    """metrics.jsonl written slowly (0.3 s per eval or hparams record, on the writer's thread), and the
    records the curves are drawn from: a hook that reads the log without flushing the writers first
    would miss the last ones."""
    import time

    from mnist_ae.analysis import figures
    from mnist_ae.writers import JsonlWriter

    drawn: list[list[dict]] = []
    write_scalars, write_hparams = JsonlWriter.write_scalars, JsonlWriter.write_hparams

    def slow_scalars(self, step, scalars):  # noqa: ANN001, ANN202
        time.sleep(0.3 if "test/recon_mse" in scalars else 0)
        write_scalars(self, step, scalars)

    def slow_hparams(self, *args):  # noqa: ANN001, ANN002, ANN202
        time.sleep(0.3)
        write_hparams(self, *args)

    monkeypatch.setattr(JsonlWriter, "write_scalars", slow_scalars)
    monkeypatch.setattr(JsonlWriter, "write_hparams", slow_hparams)
    monkeypatch.setattr(figures, "training_curves", lambda records, path, title: drawn.append(records))
    return drawn


def _tags(logdir) -> dict[str, list[str]]:  # noqa: ANN001
    return EventAccumulator(str(logdir), size_guidance={"images": 0, "histograms": 0}).Reload().Tags()


def _image_steps(logdir, tag: str) -> list[int]:  # noqa: ANN001
    return [e.step for e in EventAccumulator(str(logdir), size_guidance={"images": 0}).Reload().Images(tag)]


def test_each_picture_at_step_0_every_eval_and_after_the_last_epoch_and_the_end_numbers_in_the_finals(
        tmp_path, stubbed, slow_log, row_labels, capsys):
    """3 epochs of 32 rounds, evals every 2 epochs: pictures at steps 0, 64 (an eval) and 96 (the last
    epoch, not an eval); histograms on their own interval (every epoch), not the evals'; the PCA baseline on the run's own
    train and test limits; the analysis' numbers in the finals; the report last, after every record."""
    config = tiny(epochs=3, eval_every_epochs=2, histogram_every_epochs=1, latent_pictures=True,
                  analyze_at_end=True, report_at_end=True, evaluate_denoising=True)
    final = tasks.run(config, tmp_path, log_framework="tensorboard", quiet=False)
    run = RunDir(tmp_path)
    out = capsys.readouterr().out
    for phase in (ANALYSIS_PHASE, measures.RETRIEVAL_PHASE, measures.DENOISING_PHASE):  # shown, with its time
        assert re.search(rf"^{re.escape(phase)} \.\.\. [\d.]+ s$", out, re.M), phase
    assert [int(p.stem.split("_")[1]) for p in sorted(run.reconstructions.glob("step_*.png"))] == [0, 64, 96]
    assert [int(p.stem.split("_")[1]) for p in sorted(run.codes.glob("step_*.npz"))] == [0, 64, 96]
    with np.load(run.codes_npz(96)) as saved:  # the first report_codes of the 512 test codes
        assert [a.shape[-2] for a in saved.values() if a.ndim >= 2] == [config.report_codes]
    assert _image_steps(run.tensorboard, "test/probe_confusion") == [0, 64, 96]
    tags = _tags(run.tensorboard)
    assert [e.step for e in EventAccumulator(str(run.tensorboard), size_guidance={"histograms": 0}).Reload()
            .Histograms("z/dim_000")] == [0, 32, 64, 96]
    assert {"views/latent/class_means", "views/latent/interpolations"} <= set(tags["images"])
    mnist = data_lib.load_dataset(config.dataset, config.data_dir, config.data_source)
    pca = baselines.pca_test_mse(mnist.train_images[:2048], mnist.test_images[:512], config.latent_dim)
    assert final[baselines.PCA_KEY] == pytest.approx(pca, rel=1e-6)  # the same function on the same digits
    assert final["analysis/knn5_accuracy"] == 0.5
    expected = retrieval.baseline_numbers(mnist.train_images[:2048], mnist.train_labels[:2048], mnist.test_images[:512],
                                          mnist.test_labels[:512], config.latent_dim)  # pixels' and PCA's, cached
    assert {k: final[k] for k in expected} == pytest.approx(expected, rel=1e-6)
    assert 0.1 < final["test/retrieval_map"] < 1 and 0.1 < final["test/retrieval_precision_at_10"] <= 1
    # the noisy test digits' numbers at docs/uses.md's levels (gaussian only: the run trained on clean digits),
    # the model's beside PCA's and the noisy's, logged at the last step as the retrieval numbers are
    assert {k for k in final if "denois" in k or "noisy" in k} == {
        f"{prefix}_gaussian{level:g}_{measure}" for prefix in ("test/denoise", "baseline/pca_denoise", "baseline/noisy")
        for level in (0.1, 0.3, 0.5) for measure in ("psnr", "mse01")}
    assert final["baseline/noisy_gaussian0.1_psnr"] > final["baseline/noisy_gaussian0.5_psnr"]
    logged_last = {k for r in read_records(run.metrics) if r.get("step") == 96 for k in r}
    assert {"test/retrieval_map", "baseline/pca_retrieval_map", "test/denoise_gaussian0.5_psnr"} <= logged_last
    assert run.denoising.exists() and "views/denoising" in tags["images"]
    assert row_labels("test digits: noisy, denoised, clean") == ["gaussian 0.5", "denoised", "clean"]
    assert stubbed == [("analysis", True), ("report", True)]
    [records] = slow_log
    assert [r["step"] for r in records if "test/recon_mse" in r] == [0, 64, 96]  # the last eval too


@pytest.mark.slow  # second check: the quick picture test's histograms follow their own interval
def test_histograms_follow_their_own_schedule_from_step_0_and_0_means_none(tmp_path):
    tasks.run(tiny(epochs=2, histogram_every_epochs=2), tmp_path / "a", log_framework="tensorboard", quiet=True)
    logdir = RunDir(tmp_path / "a").tensorboard
    steps = [e.step for e in EventAccumulator(str(logdir), size_guidance={"histograms": 0}).Reload()
             .Histograms("z/dim_000")]
    assert steps == [0, 64]
    tasks.run(tiny(epochs=1, histogram_every_epochs=0), tmp_path / "b", log_framework="tensorboard", quiet=True)
    assert _tags(RunDir(tmp_path / "b").tensorboard)["histograms"] == []


def test_a_classifier_gets_no_autoencoder_picture_analysis_or_report(tmp_path, stubbed, slow_log, monkeypatch):
    """Its curves still end at its last eval, written slower than its last checkpoint is saved (no end-of-run
    measure flushes the writers before the curves here)."""
    import time

    from mnist_ae.writers import JsonlWriter

    write_scalars = JsonlWriter.write_scalars

    def slower_last_eval(self, step, scalars):  # noqa: ANN001, ANN202
        time.sleep(1.5 if step and "test/accuracy" in scalars else 0)
        write_scalars(self, step, scalars)

    monkeypatch.setattr(JsonlWriter, "write_scalars", slower_last_eval)
    final = tasks.run(tiny(task="classification", epochs=1, latent_pictures=True, analyze_at_end=True,
                           report_at_end=True), tmp_path, log_framework="tensorboard", quiet=True)
    run = RunDir(tmp_path)
    assert np.isfinite(final["test/accuracy"]) and stubbed == []
    assert not run.latent.exists() and not run.reconstructions.exists() and not run.codes.exists()
    assert _image_steps(run.tensorboard, "test/confusion") == [0, 32]
    [records] = slow_log
    assert [r["step"] for r in records if "test/accuracy" in r] == [0, 32]


def test_a_sweep_writes_each_members_hparams_export_pictures_table_and_report(tmp_path, stubbed, row_labels, capsys):
    config = tiny_sweep(epochs=1, seeds=(0,), latent_pictures=True, analyze_at_end=True, report_at_end=True,
                        evaluate_denoising=True)
    finals = tasks.run(config, tmp_path, log_framework="tensorboard", quiet=False)
    assert re.search(rf"^{re.escape(hooks.MEMBERS_PHASE)} \.\.\. [\d.]+ s$", capsys.readouterr().out, re.M)
    assert all(baselines.PCA_KEY in final for final in finals)
    run = RunDir(tmp_path)
    names = ["latent2_seed0_lr0.01", "latent5_seed0_lr0.01"]
    assert [final["analysis/knn5_accuracy"] for final in finals] == [0.25, 0.5]
    groups = hparams_session_groups(tmp_path / "members").session_groups  # each member's own hparams
    assert sorted(g.hparams["latent_dim"].number_value for g in groups) == [2, 5]
    assert all((run.member(name).checkpoints / "1").is_dir() for name in names)  # exported: standalone runs
    assert all(EventAccumulator(str(run.member(name).tensorboard)).Reload().Graph().node for name in names)
    assert run.comparison.exists() and run.sweep_results.exists() and any(run.latent.glob("*.png"))
    assert "0.25" in run.sweep_results.read_text()
    assert row_labels("test digits: noisy, denoised, clean") == ["gaussian 0.5", *names, "clean"]  # each member's own
    assert all(0 < final["test/denoise_gaussian0.5_psnr"] for final in finals)
    assert stubbed == [("members", True), ("report", True)]
    assert tasks.run(config, tmp_path, log_framework="tensorboard", quiet=True) == finals  # a rerun: the saved


def test_a_run_of_several_processes_names_the_report_command_instead_of_writing_it(tmp_path, monkeypatch, stubbed):
    notes, flushed = [], []
    run = types.SimpleNamespace(writers=[types.SimpleNamespace(flush=lambda: flushed.append(1))], workdir=tmp_path,
                                reporter=types.SimpleNamespace(note=notes.append))
    monkeypatch.setattr(hooks.jax, "process_count", lambda: 2)
    hooks._report(run, None)
    assert notes == [f"report: python launch.py --task report --workdir {tmp_path}"] and flushed == [1]
    assert stubbed == []
