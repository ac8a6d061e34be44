"""Terminal experience: the reporter driven directly (no training), and where library logs go."""

from __future__ import annotations

import io
import logging
import os
import re
import sys
import time
import warnings
from pathlib import Path
from unittest import mock

import pytest
from absl import logging as absl_logging

from mnist_ae.run import run_log
from mnist_ae.run.progress import Reporter
from mnist_ae.run.run_log import configure_logging

ANSI = re.compile(r"\x1b\[")
METRICS = {"train/recon_mse": 0.0978, "test/recon_mse": 0.095, "test/probe_accuracy": 0.877}


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def reporter(stream: io.StringIO, **kwargs) -> Reporter:
    return Reporter(total_epochs=3, rounds_per_epoch=100, stream=stream, is_main=kwargs.pop("is_main", True),
                    **kwargs)


def paths(workdir: Path) -> dict[str, Path]:
    return {"metrics": workdir / "metrics.jsonl", "checkpoints": workdir / "checkpoints",
            "figures": workdir / "reconstructions"}


# ----------------------------------------------------------------------------- during training


def test_plain_stream_gets_one_line_per_epoch_without_escapes():
    out = io.StringIO()
    r = reporter(out)
    for epoch in (1, 2, 3):
        r.epoch_done(epoch, 100 * epoch, 1520.0, METRICS)
    r.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    assert lines[1].startswith("epoch 2/3  step 200  1520 steps/s  ETA ")
    assert lines[1].endswith("train/recon_mse 0.0978  test/recon_mse 0.0950  test/probe_accuracy 0.877")
    assert not ANSI.search(out.getvalue())


def test_first_eta_comes_from_throughput():
    out = io.StringIO()
    reporter(out).epoch_done(1, 100, 5.0, {})
    assert out.getvalue() == "epoch 1/3  step 100  5.00 steps/s  ETA 0:00:40\n"  # 2 epochs x 100 steps / 5


def test_line_keeps_latest_test_metrics_and_prefers_recon_mse_to_loss():
    out = io.StringIO()
    r = reporter(out)
    r.epoch_done(1, 100, 50.0, {"train/loss": 0.5, **METRICS, "train/grad_norm": 3.0})
    r.epoch_done(2, 200, 50.0, {"train/loss": 0.4, "train/recon_mse": 0.0800})  # no eval this epoch
    last = out.getvalue().splitlines()[-1]
    assert last.endswith("train/recon_mse 0.0800  test/recon_mse 0.0950  test/probe_accuracy 0.877")
    assert "train/loss" not in out.getvalue() and "grad_norm" not in out.getvalue()


def test_classification_shows_loss_and_accuracy():
    out = io.StringIO()
    reporter(out).epoch_done(1, 100, 50.0, {"train/loss": 0.25, "test/accuracy": 0.9712})
    assert out.getvalue().rstrip().endswith("train/loss 0.250  test/accuracy 0.971")


def test_phase_prints_a_timed_line_and_accumulates(capsys):
    out = io.StringIO()
    r = reporter(out)
    with r.phase("compiling"):
        time.sleep(0.05)
    with pytest.raises(RuntimeError), r.phase("compiling"):
        time.sleep(0.05)
        raise RuntimeError("still timed")
    r.add_time("eval", 1.5)
    r.add_time("eval", 1.5)
    assert re.fullmatch(r"(compiling \.\.\. \d+\.\d s\n){2}", out.getvalue())
    assert list(r.timings) == ["compiling", "eval"]
    assert r.timings["eval"] == 3.0 and 0.1 <= r.timings["compiling"] < 5  # both phases summed, errors too
    assert capsys.readouterr().err == ""


def test_quiet_prints_only_warnings_and_the_summary(tmp_path, capsys):
    out = io.StringIO()
    r = reporter(out, quiet=True)
    with r.phase("data"):
        pass
    r.epoch_done(1, 100, 50.0, METRICS)
    r.warn("disk almost full")
    assert out.getvalue() == ""
    assert capsys.readouterr().err == "warning: disk almost full\n"
    text = r.summary(final=METRICS, workdir=tmp_path, paths=paths(tmp_path))
    assert out.getvalue() == text and "0.877" in text
    assert "data" in r.timings


def test_not_main_prints_nothing(tmp_path, capsys):
    out = io.StringIO()
    r = reporter(out, is_main=False)
    with r.phase("compiling"):
        pass
    r.epoch_done(1, 100, 50.0, METRICS)
    r.warn("only process 0 says this")
    text = r.summary(final=METRICS, workdir=tmp_path, paths=paths(tmp_path))
    assert "test/recon_mse" in text  # still returned
    assert out.getvalue() == "" and capsys.readouterr() == ("", "")


def test_is_main_defaults_to_process_zero(monkeypatch):
    import jax  # noqa: PLC0415

    monkeypatch.setattr(jax, "process_index", lambda: 1)
    out = io.StringIO()
    Reporter(total_epochs=1, rounds_per_epoch=1, stream=out).epoch_done(1, 1, 1.0, METRICS)
    assert out.getvalue() == ""


def test_terminal_renders_a_live_bar(tmp_path):
    out = FakeTty()
    r = reporter(out)
    with r.phase("compiling"):
        pass
    for epoch in (1, 2, 3):
        r.epoch_done(epoch, 100 * epoch, 1520.0, METRICS)
    r.close()
    text = r.summary(final=METRICS, workdir=tmp_path, paths=paths(tmp_path))
    screen = out.getvalue()
    assert ANSI.search(screen)  # drawn by rich, not plain lines
    assert "3/3" in screen and "compiling ... " in screen and "test/probe_accuracy 0.877" in screen
    assert not ANSI.search(text)  # the returned summary is plain either way


# ----------------------------------------------------------------------------- summary


def test_summary_has_metrics_times_memory_paths_and_commands(tmp_path):
    (tmp_path / "tb").mkdir()
    (tmp_path / "wandb" / "offline-run-20250101_000000-abc").mkdir(parents=True)
    out = io.StringIO()
    r = reporter(out)
    r.add_time("compile", 2.0)
    r.add_time("train", 7.25)
    text = r.summary(final={**METRICS, "test/recon_mse": 0.0950312, "test/probe_accuracy/3": 0.5},
                     workdir=tmp_path, paths=paths(tmp_path))
    assert out.getvalue() == text and not ANSI.search(text)
    assert re.search(r"test/recon_mse +0\.09503\n", text) and re.search(r"test/probe_accuracy +0\.877\n", text)
    assert "probe_accuracy/3" not in text
    assert "compile 2.0 s" in text and "train 7.2 s" in text
    assert re.search(r"peak host memory +(\d+ MiB|\d+\.\d\d GiB)", text)
    for path in (tmp_path, *paths(tmp_path).values()):
        assert str(path) in text
    assert f"tensorboard --logdir {tmp_path / 'tb'}\n" in text
    assert f"wandb sync {tmp_path / 'wandb'}/offline-run-*\n" in text
    assert "Color by" not in text  # no projector data yet
    (tmp_path / "tb" / "projector_config.pbtxt").write_text("embeddings {}\n")
    text = reporter(io.StringIO()).summary(final=METRICS, workdir=tmp_path, paths={})
    assert re.search(f"tensorboard --logdir {tmp_path / 'tb'}\n +in the Projector, pick \"Color by: label\" "
                     r"\(it opens uncoloured\)\n", text)


def test_summary_names_no_viewer_that_has_nothing_to_show(tmp_path):
    text = reporter(io.StringIO()).summary(final=METRICS, workdir=tmp_path, paths={})
    assert "tensorboard" not in text and "wandb" not in text


def test_sweep_summary_has_one_row_per_member(tmp_path):
    """The member's name (which holds its latent size, seed and rate) and its main numbers under short
    headers: a table that fits a terminal (it was 222 characters wide with every number and tag)."""
    numbers = {"test/recon_mse": 0.1234, "baseline/pca_recon_mse": 0.0811, "test/recon_sse01": 24.1,
               "baseline/pca_recon_sse01": 15.9, "test/probe_accuracy": 0.512, "analysis/knn5_accuracy": 0.61,
               "analysis/trustworthiness": 0.9012, "analysis/silhouette": 0.1}
    final = [({"member": f"latent{d}_seed0_lr0.001", "latent_dim": d, "seed": 0, "learning_rate": 1e-3},
              {**numbers, "test/recon_mse": mse}) for d, mse in [(2, 0.1234), (16, 0.0321)]]
    text = Reporter(total_epochs=3, rounds_per_epoch=100, stream=io.StringIO(), is_main=True,
                    title="sweep").summary(final=final, workdir=tmp_path, paths={})
    lines = text.splitlines()
    header = next(line for line in lines if "member" in line)
    assert header.split() == ["member", "recon_mse", "pca_mse", "probe_acc", "knn5_acc", "trust"]
    assert re.search(r"latent2_seed0_lr0\.001 +0\.1234 +0\.0811 +0\.512 +0\.61 +0\.9012\n", text)
    assert re.search(r"latent16_seed0_lr0\.001 +0\.0321 +0\.0811 +0\.512 +0\.61 +0\.9012\n", text)
    table = lines[lines.index(header) - 2: lines.index(header) + 4]
    assert max(map(len, table)) <= 100 and "sweep_results.md" in table[0]


def _clocked(monkeypatch, now: list[float]) -> None:
    """The reporter's clock reads now[0]: a test moves time by hand."""
    from mnist_ae.run import progress

    monkeypatch.setattr(progress, "time", mock.Mock(perf_counter=lambda: now[0], monotonic=lambda: now[0]))


@pytest.mark.parametrize("analysed", [True, False])
def test_the_summary_weighs_the_end_of_run_work_against_the_training(tmp_path, monkeypatch, analysed):
    """Wall time from `started` (the process's start, imports included: a finished run's rerun printed 0.0 s while
    its process took 2.6 s), and the end-of-run work as a multiple of compiling + train + eval + checkpoint; past
    2x with the analysis among it, the line that says how to analyse less."""
    from mnist_ae.analysis import ANALYSIS_PHASE

    now = [100.0]
    _clocked(monkeypatch, now)
    out = io.StringIO()
    rep = reporter(out, started=90.0)  # 10 s before the reporter: the imports and the set-up
    for name, seconds in [("compiling", 1.0), ("train", 2.0), ("eval", 0.5), ("checkpoint", 0.5), ("data", 7.0)]:
        rep.add_time(name, seconds)
    now[0] = 104.0
    rep.training_done()  # 4 s of training (not the data), then 9 s of end-of-run work
    rep.add_time(ANALYSIS_PHASE if analysed else "report", 8.0)
    now[0] = 113.0
    text = rep.summary(final=METRICS, workdir=tmp_path, paths={})
    assert re.search(r"wall time +23\.0 s \(compiling 1\.0 s, train 2\.0 s, eval 0\.5 s, checkpoint 0\.5 s, "
                     r"data 7\.0 s, (analysis \(PCA, t-SNE, quality numbers\)|report) 8\.0 s, other 4\.0 s\)", text)
    assert "after training    9.0 s, 2.2x the training's 4.0 s (compiling, train, eval, checkpoint)" in text
    assert ("of which the analysis 8.0 s: --config.analyze_at_end=False skips it" in text) is analysed


def test_a_run_that_did_not_train_has_no_after_training_line(tmp_path, monkeypatch):
    """A finished run's rerun, or `--task analyze`: nothing to weigh against."""
    now = [50.0]
    _clocked(monkeypatch, now)
    rep = reporter(io.StringIO(), started=47.5)
    now[0] = 50.25
    text = rep.summary(final=METRICS, workdir=tmp_path, paths={})
    assert re.search(r"wall time +2\.8 s \(other 2\.8 s\)", text) and "after training" not in text


# ----------------------------------------------------------------------------- library logs


@pytest.fixture
def restore_logging():
    """Undo configure_logging: its handlers, levels, propagation, warning capture and environment."""
    loggers = [logging.getLogger(name) for name in ("", *run_log.LIBRARY_LOGGERS)]
    saved = [(logger, logger.level, logger.propagate, list(logger.handlers)) for logger in loggers]
    with mock.patch.dict(os.environ), warnings.catch_warnings(), mock.patch.object(sys, "unraisablehook"):
        yield
        logging.captureWarnings(False)
    for logger, level, propagate, handlers in saved:
        for handler in list(logger.handlers):
            if isinstance(handler, (run_log._RunLogHandler, run_log._StderrHandler)):
                logger.removeHandler(handler)
                handler.close()
        for handler in handlers:  # the terminal handlers configure_logging took away
            if run_log._to_replace(handler) and handler not in logger.handlers:
                logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


def _emit_library_logs() -> None:
    warnings.simplefilter("always")
    logging.getLogger("absl").warning("absl-warning-line")
    logging.getLogger("jax._src.xla_bridge").info("jax-info-line")
    warnings.warn("python-warning-line", UserWarning)
    for handler in logging.getLogger().handlers:
        handler.flush()


def test_library_logs_go_to_run_log_not_the_terminal(tmp_path, capfd, restore_logging):
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "1"  # what `import jax` sets when it is unset
    os.environ.pop("WANDB_SILENT", None)
    logging.getLogger().addHandler(absl_logging.get_absl_handler())  # as absl's app.run leaves it
    configure_logging(tmp_path, verbose=False)
    _emit_library_logs()
    captured = capfd.readouterr()
    assert "line" not in captured.err + captured.out
    log = (tmp_path / "run.log").read_text()
    for line in ("WARNING absl: absl-warning-line", "INFO jax._src.xla_bridge: jax-info-line",
                 "python-warning-line"):
        assert line in log
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "2" and os.environ["WANDB_SILENT"] == "true"


def test_verbose_also_writes_to_stderr_and_reconfiguring_does_not_duplicate(tmp_path, capsys, restore_logging):
    configure_logging(tmp_path, verbose=False)
    configure_logging(tmp_path, verbose=True)
    _emit_library_logs()
    err = capsys.readouterr().err
    log = (tmp_path / "run.log").read_text()
    for line in ("absl-warning-line", "jax-info-line", "UserWarning: python-warning-line"):
        assert err.count(line) == 1 and log.count(line) == 1


def test_a_run_log_that_cannot_be_written_stays_quiet(tmp_path, capsys, restore_logging):
    configure_logging(tmp_path, verbose=False)
    handler = next(h for h in logging.getLogger().handlers if isinstance(h, run_log._RunLogHandler))
    class FullDisk(io.StringIO):
        def write(self, text: str) -> int:
            raise OSError(28, "No space left on device")

    handler.stream.close()
    handler.stream = FullDisk()  # as on a full disk: every write fails
    logging.getLogger("orbax").warning("a library line that cannot be written")
    assert capsys.readouterr().err == ""


def test_the_summary_of_a_sweep_says_how_to_open_its_members_in_tensorboard(tmp_path):
    (tmp_path / "members" / "l2_s0" / "tb").mkdir(parents=True)
    out = io.StringIO()
    text = reporter(out).summary(final=[({"member": "l2_s0"}, {"test/recon_mse": 0.1})], workdir=tmp_path, paths={})
    assert f"tensorboard --logdir {tmp_path / 'members'}" in text
