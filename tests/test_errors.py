"""The errors a command reports in one line: one module, each class with its exit status."""

from __future__ import annotations

import signal

import pytest

from helpers import command_in_process
from mnist_ae import errors


@pytest.mark.parametrize("cls", [errors.UsageError, errors.UnknownTask, errors.ConfigError, errors.DataError,
                                 errors.WriterError, errors.WorkdirBusy, errors.ReportError])
def test_a_users_mistake_exits_2(cls):
    assert cls("x").exit_code == 2 and isinstance(cls("x"), (ValueError, errors.ProductError))


@pytest.mark.parametrize("cls", [errors.TrainingDiverged, errors.CheckpointError, errors.SomeDiverged])
def test_a_run_that_stopped_exits_1(cls):
    assert cls("x").exit_code == 1 and isinstance(cls("x"), RuntimeError)


def test_a_signal_exits_128_plus_its_number_and_says_what_was_kept():
    stop = errors.Interrupted(signal.SIGTERM, 3)
    assert stop.exit_code == 143 and stop.prefix == ""
    assert str(stop) == "interrupted by SIGTERM after epoch 3; checkpoint kept: rerun the same command to resume"
    assert "before the first epoch" in str(errors.Interrupted(signal.SIGINT, None))


def test_the_modules_that_raise_them_name_the_same_classes():
    """`mnist_ae.data.DataError` and the like stay importable where users caught them before."""
    from mnist_ae import checkpoint, config, data, report, tasks, workdir
    from mnist_ae.run import driver
    from mnist_ae.writers import combinators

    assert (data.DataError, config.ConfigError, checkpoint.CheckpointError, report.ReportError, tasks.UnknownTask,
            driver.TrainingDiverged, workdir.WorkdirBusy, combinators.WriterError) == (
        errors.DataError, errors.ConfigError, errors.CheckpointError, errors.ReportError, errors.UnknownTask,
        errors.TrainingDiverged, errors.WorkdirBusy, errors.WriterError)


def test_every_product_error_the_cli_catches_is_one_line_with_its_status(tmp_path, monkeypatch, capsys):
    """A report of a folder that is no run (ReportError): 'error: ' and the message, status 2, no traceback."""
    status, err = command_in_process(["--task", "report", "--workdir", str(tmp_path / "none")], monkeypatch), \
        capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1, err
    assert err.startswith("error: no run in ") and "Traceback" not in err


def test_a_path_the_file_system_refuses_is_one_line_naming_it(tmp_path, monkeypatch, capsys):
    """A folder where the lock file goes (as a read-only mount or a full disk would, for root too): the
    OSError is one line naming the path (its traceback goes to run.log), status 1, nothing touched."""
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / ".lock").mkdir()
    status, err = command_in_process(["--task", "report", "--workdir", str(tmp_path)], monkeypatch), \
        capsys.readouterr().err
    assert status == 1 and err.count("\n") == 1, err
    assert err.startswith(f"error: cannot write or read {tmp_path / '.lock'}: Is a directory; ")
