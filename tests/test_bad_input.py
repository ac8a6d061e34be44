"""Bad input is one line and exit 2, before any compute, and creates nothing."""

from __future__ import annotations

import subprocess
import sys

import pytest

from helpers import REPO, command_in_process
from mnist_ae.config import ConfigError, base_config
from mnist_ae.config_checks import validate


def _config(**overrides):
    config = base_config()
    config.update(overrides)
    return config


@pytest.mark.parametrize("overrides, phrase", [
    (dict(learning_rate=float("inf")), "learning_rate=inf: the learning rate must be a positive finite number"),
    (dict(learning_rate=float("nan")), "learning_rate=nan"),
    (dict(probe_learning_rate=float("inf")), "probe_learning_rate=inf"),
    (dict(weight_decay=float("inf")), "weight_decay=inf: must be a finite number >= 0"),
    (dict(seed=2**32), "seed=4294967296: use an integer in [0, 2**32)"),
    (dict(seed=9223372036854775808), "seed=9223372036854775808"),
    (dict(seed=-1), "seed=-1"),
    (dict(projector_points=0), "projector_points=0: must be a positive integer"),
    (dict(projector_points=-5), "projector_points=-5"),
    (dict(task="sweep", learning_rates=("nan",)), "learning_rates=('nan',): give one or more positive finite"),
    (dict(task="sweep", learning_rates=(float("inf"),)), "learning_rates=(inf,)"),
    (dict(task="sweep", learning_rates=("abc",)), "learning_rates=('abc',)"),
    (dict(task="sweep", learning_rates=()), "learning_rates=()"),
    (dict(task="sweep", seeds=(0, 2**32)), "seeds=(0, 4294967296): give integers in [0, 2**32)"),
    (dict(task="sweep", latent_dims=(2, 5, 2)), "latent_dims repeats 2: each member must differ"),
    (dict(task="sweep", seeds=(1, 1)), "seeds repeats 1"),
    (dict(task="sweep", learning_rates=(1e-3, 1e-3)), "learning_rates repeats 0.001"),
    (dict(test_limit=-1), "test_limit=-1: must be an integer >= 0 (0 = all)"),
    (dict(histogram_every_epochs=-1), "histogram_every_epochs=-1: must be an integer >= 0 (0 = never)"),
    (dict(projector_every_evals=-2), "(0 = only at the end)"),
    (dict(num_devices=-1), "(0 = all local devices)"),
    (dict(recon_loss="l1"), "recon_loss='l1': use mse or bce"),
    (dict(activation="sigmoid"), "activation='sigmoid': use relu, gelu, tanh"),
    (dict(model="conv", activation="gelu"), "activation=gelu applies to the MLP only"),
    (dict(norm="batch"), "norm='batch': use none or layer"),
    (dict(augment_shift=8), "augment_shift=8: give a whole number of pixels in [0, 7]"),
    (dict(augment_shift=-1), "augment_shift=-1: give a whole number of pixels in [0, 7]"),
    (dict(model="conv", norm="layer"), "norm=layer applies to the MLP only"),
    (dict(adam_b2=1.0), "adam_b2=1.0: must be a number in [0, 1)"),
    (dict(adam_b2=float("nan")), "adam_b2=nan: must be a number in [0, 1)"),
    (dict(lr_schedule="cosine"), "lr_schedule='cosine': use constant or warmup_cosine"),
    (dict(lr_warmup_steps=-1), "lr_warmup_steps=-1: must be an integer >= 0"),
    (dict(lr_end_factor=1.5), "lr_end_factor=1.5: must be a number in [0, 1]"),
    (dict(best_checkpoint_metric="test/probe_per_class_accuracy/3"), "name a test score (an error, loss or accuracy)"),
    (dict(best_checkpoint_metric="train/recon_mse"), "best_checkpoint_metric='train/recon_mse'"),
])
def test_bad_values_are_refused_in_one_line(overrides, phrase):
    with pytest.raises(ConfigError) as error:
        validate(_config(**overrides))
    assert phrase in str(error.value) and "\n" not in str(error.value)


def test_good_values_pass():
    validate(_config(seed=2**32 - 1, task="sweep", seeds=(0, 1), learning_rates=(1e-3, 3e-3), latent_dims=(2, 3)))


@pytest.mark.parametrize("args, phrase", [
    (["foo"], "unexpected argument 'foo'"),
    (["--config.analyze_at_end", "False"], "unexpected argument 'False'"),
    (["--config.latent_dim=3", "--config", "experiments/latent3.py"], "put --config FILE first"),
    (["--config.data_dir=EMPTY"], "IDX file(s) missing"),
    (["--config.batch_size=999999"], "lower --config.batch_size"),
    (["--config.lr_schedule=warmup_cosine", "--config.lr_warmup_steps=1170"], "lower --config.lr_warmup_steps"),
    (["--config.learning_rate=inf"], "positive finite number"),
    (["--task", "analyze", "--workdir", "WORKDIR"], "no run to analyze in"),
])
def test_the_cli_refuses_in_one_line_and_creates_nothing(tmp_path, args, phrase):
    (tmp_path / "empty").mkdir()
    workdir = tmp_path / "run"
    args = [a.replace("EMPTY", str(tmp_path / "empty")).replace("WORKDIR", str(workdir)) for a in args]
    if "--workdir" not in args:
        args += ["--workdir", str(workdir)]
    done = subprocess.run([sys.executable, "launch.py", *args], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and phrase in lines[0], done.stderr[-2000:]
    assert not workdir.exists()


@pytest.mark.parametrize("arg", ["--config.activation=sigmoid", "--config.norm=batch", "--config.recon_loss=l1",
                                 "--config.latent_dim=0"])
def test_a_bad_config_value_is_refused_before_jax_loads(arg):
    """Validation reads the names it checks from `core/choices.py`, which imports no JAX: the error took
    2.0-2.5 s when it imported the modules that implement them, 0.35-0.45 s now."""
    code = ("import sys\nfrom mnist_ae.cli import main\nsys.argv = ['launch.py', sys.argv[1]]\n"
            "try:\n    main()\nexcept SystemExit as e:\n    print(e.code, 'jax' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code, arg], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["2", "False"], done.stdout + done.stderr[-2000:]
    assert done.stderr.startswith("error: ") and len(done.stderr.strip().splitlines()) == 1


def _alone_in_a_launch(tmp_path, process_id: int) -> tuple[str, subprocess.CompletedProcess]:
    """Process `process_id` of a 2-process launch whose other process never comes (a 2 s wait)."""
    from helpers import free_port

    address = f"127.0.0.1:{free_port()}"
    return address, subprocess.run([sys.executable, "launch.py", "--workdir", str(tmp_path / "run"), "--log_framework",
                                    "none", f"--coordinator_address={address}", "--num_processes=2",
                                    f"--process_id={process_id}", "--distributed_timeout=2"],
                                   cwd=REPO, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_a_process_whose_coordinator_never_comes_says_so_in_one_line(tmp_path):
    address, done = _alone_in_a_launch(tmp_path, 1)
    assert done.returncode == 2
    assert done.stdout.strip() == f"process 1 of 2: waiting up to 2 s for the coordinator (process 0) at {address}"
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"the coordinator (process 0) at {address} did not answer within 2 s" in lines[0]


def _documented_refusals() -> list[tuple[str, str]]:
    """(command-line arguments, the quoted error line) of each row of docs/reliability.md's bad-input table
    that names one command that runs anywhere (rows with alternatives, several devices or a missing extra
    are checked by the tests above with their own set-up)."""
    import re

    text = (REPO / "docs" / "reliability.md").read_text()
    table = text[text.index("| input | what the user sees (`error: ...`) |"):].split("\n\n")[0].splitlines()[2:]
    rows = []
    for row in table:
        command_cell, message_cell = row.split(" | ")[:2]
        command = re.fullmatch(r"\| `([^`]+)`( \([^)]*\))?", command_cell)
        message = re.match(r"`([^`]+)`", message_cell)
        if command and message and not re.search(r"\bon \d|without", command_cell):
            rows.append((command.group(1), message.group(1)))
    return rows


@pytest.mark.parametrize("args, message", _documented_refusals())
def test_every_refusal_the_docs_quote_is_the_line_the_program_prints(tmp_path, args, message, monkeypatch, capsys):
    """The docs quote what the program prints, with `...` for the parts that vary (paths, the fix's details).
    In this process: the whole process's single line is the test above's."""
    import re
    import shlex

    for name in ("experiments", "data"):  # the repo's, from a fresh folder where any default workdir can go
        (tmp_path / name).symlink_to(REPO / name)
    (tmp_path / "EMPTY").mkdir()  # the docs' name for an empty data folder
    monkeypatch.chdir(tmp_path)
    status = command_in_process(shlex.split(args), monkeypatch)
    pattern = ".*".join(map(re.escape, f"error: {message}".split("...")))
    err = capsys.readouterr().err
    assert status == 2 and re.fullmatch(pattern + r"\n", err), (pattern, err)


@pytest.mark.slow
def test_a_coordinator_whose_peers_never_come_says_so_in_one_line(tmp_path):
    """Process 0 waits inside JAX, whose deadline ended in a C++ abort (exit 134, a stack trace)."""
    address, done = _alone_in_a_launch(tmp_path, 0)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stdout.strip() == f"process 0 of 2: waiting up to 2 s for the other 1 process(es) to join at {address}"
    assert done.stderr == (f"error: the other 1 process(es) did not join at {address} within 2 s: start them "
                           "(--process_id=1..1, the same --coordinator_address) or raise --distributed_timeout\n")


@pytest.mark.slow  # multi-process timing
def test_the_coordinator_s_timer_ends_the_process_only_when_the_peers_are_late(monkeypatch, capfd):
    import os
    import time

    from mnist_ae import parallel

    exits = []
    monkeypatch.setattr(os, "_exit", exits.append)
    with parallel._peers_join_within(0.5, "joined in time"):
        pass  # JAX returned: the timer is cancelled
    with parallel._peers_join_within(0.2, "the others did not join"):
        time.sleep(1.0)  # JAX still waiting
    time.sleep(0.6)
    assert exits == [2] and capfd.readouterr().err == "error: the others did not join\n"
