"""The command line: tasks, experiment configs, `--config.KEY=VALUE` overrides, one-line errors.

`launch.py` only calls `main()`. User mistakes (unknown task or key, bad values, missing data,
unwritable workdir) end with one line on stderr and exit status 2, before any compute.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import ml_collections
from absl import flags
from ml_collections import config_flags

from mnist_ae.config import LOG_FRAMEWORKS, closest_key, help_text
from mnist_ae.config_checks import check_workdir, validate
from mnist_ae.config import FIELDS
from mnist_ae.run.run_log import guard_terminal_streams
from mnist_ae.errors import ProductError, SomeDiverged, UsageError
from mnist_ae.tasks import TASKS, check_task
from mnist_ae.workdir import RunDir, check_free, intact_line

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = REPO / "experiments"

flags.DEFINE_string("task", "reconstruction", f"{' | '.join(TASKS)} (default: the config file's task, "
                    "else reconstruction)")
flags.DEFINE_string("workdir", "", "run directory (default runs/<task>); rerunning resumes from it")
flags.DEFINE_string("workdirs", "", "compare: runs to compare, comma-separated, globs welcome (a sweep: its members)")
flags.DEFINE_string("out", "runs/compare.html", "compare: the page to write")
flags.DEFINE_string("log_framework", "tensorboard", "|".join(LOG_FRAMEWORKS))
flags.DEFINE_bool("list", False, "list the experiment configs in experiments/ and exit")
flags.DEFINE_bool("quiet", False, "print only warnings and the final summary")
flags.DEFINE_string("coordinator_address", "", "multi-process: host:port of process 0 (with --num_processes, "
                    "--process_id); empty = one process, or auto-detected under SLURM / Open MPI / TPU")
flags.DEFINE_integer("num_processes", 0, "multi-process: number of processes")
flags.DEFINE_integer("process_id", -1, "multi-process: this process's index (process 0 writes logs)")
flags.DEFINE_integer("distributed_timeout", 300, "multi-process: seconds to wait for the other processes")
flags.DEFINE_bool("verbose", False, "show third-party logs and warnings on the terminal (always in WORKDIR/run.log)")
config_flags.DEFINE_config_file("config", None, "experiment config file (default experiments/<task>.py)")


def _flag_value(argv: list[str], name: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == f"--{name}" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
    return None


def prepare_argv(argv: list[str]) -> list[str]:
    """Check task and override keys before absl sees them; default the config to the task's file."""
    task = _flag_value(argv, "task") or "reconstruction"
    if not check_task(task).trains:  # report, compare: they read runs on disk, with no config file
        return argv
    for arg in argv:
        match = re.match(r"--config\.([A-Za-z0-9_]+)", arg)
        if match and match.group(1) != "help" and match.group(1) not in FIELDS:
            key = match.group(1)
            raise UsageError(f"unknown config key {key!r}: did you mean {closest_key(key)!r}? "
                             "(--config.help lists every key)")
    config_file = _flag_value(argv, "config")
    file_at = next((i for i, a in enumerate(argv) if a == "--config" or a.startswith("--config=")), None)
    first_override = next((i for i, a in enumerate(argv) if a.startswith("--config.") and a != "--config.help"),
                          None)
    if file_at is not None and first_override is not None and first_override < file_at:
        raise UsageError(f"{argv[first_override]} comes before --config {config_file}: put --config FILE first, "
                         "then the --config.KEY=VALUE overrides")
    if config_file is None:
        # Before the overrides: config_flags registers `--config.KEY` when it parses `--config`.
        argv = [argv[0], f"--config={EXPERIMENTS / (task + '.py')}", *argv[1:]]
    elif not Path(config_file).is_file():
        raise UsageError(f"config file {config_file} does not exist: pass an experiment file, e.g. "
                         "experiments/latent3.py (python launch.py --list shows them all)")
    return argv


def parse_flags(argv: list[str]) -> None:
    """absl parses the flags and loads the config file; every failure becomes one line."""
    try:
        rest = flags.FLAGS(argv)[1:]
    except flags.Error as e:
        raise UsageError(str(e).splitlines()[0]) from None
    except Exception as e:  # noqa: BLE001 - the config file is user code: say which and why, in one line
        cause = e.__cause__ or e
        raise UsageError(f"the config file {_flag_value(argv, 'config')} failed to load: "
                         f"{type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''}") from None
    if rest:  # absl leaves what it does not parse: `foo`, or the value of `--config.KEY VALUE` (needs `=`)
        raise UsageError(f"unexpected argument {rest[0]!r}: options take the form --name=value "
                         "(e.g. --config.analyze_at_end=False); python launch.py --help lists them")


def resolve_task(config: Any, task_flag: str, task_given: bool, config_given: bool) -> str:
    """`--task` if given, else the config's; a config file or `--config.task` naming another task is refused."""
    if not isinstance(config, ml_collections.ConfigDict) or "task" not in config:
        what = "a ConfigDict without 'task'" if isinstance(config, ml_collections.ConfigDict) else \
            f"a {type(config).__name__}"
        raise UsageError(f"get_config() returned {what}; it must return the full config: start from "
                         "mnist_ae.config.base_config()")
    if not task_given:
        return check_task(config.task, trains=True).name
    if config_given and config.task != task_flag:
        raise UsageError(f"--task {task_flag} but the config's task is {config.task!r}: drop one of them, or "
                         f"pass a {task_flag} config (python launch.py --list)")
    return task_flag


def usage() -> str:
    """`--help`: every task with its one-line description, then the flags."""
    lines = ["usage: python launch.py [--task TASK] [--workdir DIR] [--log_framework FW] [--config FILE] "
             "[--config.KEY=VALUE ...]", "", "tasks:"]
    lines += [f"  {task.name:<15} {task.help}" for task in TASKS.values()]
    lines += ["", "more: --list (experiment configs), --config.help (every config key)", "", "options:"]
    return "\n".join(lines + flag_lines())


def flag_lines() -> list[str]:
    """One line per flag: its name, what it does and, where there is one, its default (absl's own help
    prints `(default: 'None')` and `(an integer)` under every flag)."""
    shown = sorted(flags.FLAGS.get_flags_for_module(sys.modules[__name__]), key=lambda f: f.name)
    names = {f.name: f"--{f.name}" if f.boolean else f"--{f.name}=VALUE" for f in shown}
    width = max(map(len, names.values()))
    lines = []
    for f in shown:
        default = f.default if f.name != "task" else None  # --task's default is said in its help
        tail = f"  (default {default})" if default not in (None, "", False) else ""
        lines.append(f"  {names[f.name]:<{width}}  {f.help}{tail}")
    return lines


def list_experiments() -> str:
    """Each experiment file with its docstring's first line and its command."""
    import ast  # noqa: PLC0415

    lines = []
    for path in sorted(EXPERIMENTS.glob("*.py")):
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        first = doc.splitlines()[0] if doc else "(no docstring)"
        command = next((ln.strip() for ln in doc.splitlines() if ln.strip().startswith("python ")), "")
        lines.append(f"{path.name}\n    {first}\n    $ {command}")
    return "\n".join(lines)


def check_data(config: Any) -> None:
    """The data files (checksums included; the load is cached, so training does not read them twice) and
    the batch against the training set, before anything is created."""
    from mnist_ae.config_checks import check_batch_fits  # noqa: PLC0415
    from mnist_ae.data import load_dataset  # noqa: PLC0415

    train = load_dataset(config.dataset, config.data_dir, config.data_source).train_images
    check_batch_fits(config, len(train[: config.train_limit or None]))


def check_log_framework(framework: str) -> str:
    if framework not in LOG_FRAMEWORKS:
        raise UsageError(f"unknown --log_framework {framework!r}: choose one of {', '.join(LOG_FRAMEWORKS)}")
    if framework in ("wandb", "both") and importlib.util.find_spec("wandb") is None:
        raise UsageError(f"--log_framework {framework} needs the wandb package: pip install -e '.[wandb]'")
    return framework


def _page_task(task: str) -> None:
    """`--task report` / `--task compare`: pages from runs on disk; nothing is trained."""
    if task == "report":
        path = TASKS[task].fn(flags.FLAGS.workdir or "runs/reconstruction")
    else:
        if not flags.FLAGS.workdirs:
            raise UsageError("--task compare needs --workdirs A,B,... (globs welcome, e.g. --workdirs 'runs/*')")
        path = TASKS[task].fn(flags.FLAGS.workdirs, flags.FLAGS.out)
    print(f"wrote {path} (self-contained: open it in a browser, or send the file)")


def use_compilation_cache() -> None:
    """JAX's persistent compilation cache in the user's cache folder (unless JAX_COMPILATION_CACHE_DIR
    names another): a later run of the same programs (the same config, another seed, a resume, an
    analysis) loads them instead of compiling again. JAX keys each entry by the program, the flags
    and the versions, so a changed program compiles afresh."""
    import jax  # noqa: PLC0415

    from mnist_ae.analysis.baselines import cache_dir  # noqa: PLC0415

    if not jax.config.jax_compilation_cache_dir:
        jax.config.update("jax_compilation_cache_dir", str(cache_dir() / "jax"))
    if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.1)  # JAX's 1 s misses the analysis' programs


def _main(config_given: bool, started: float) -> None:
    config = flags.FLAGS.config
    config.task = resolve_task(config, flags.FLAGS.task, bool(flags.FLAGS["task"].present), config_given)
    framework = check_log_framework(flags.FLAGS.log_framework)
    validate(config)
    if config.task == "analyze":  # an existing run's workdir, never created here
        workdir = Path(flags.FLAGS.workdir or "runs/reconstruction").expanduser().resolve()
        if not RunDir(workdir).checkpoints.is_dir():
            raise UsageError(f"no run to analyze in {workdir} (no checkpoints/): pass --workdir of a reconstruction "
                             "run, or train one with --task reconstruction --workdir DIR")
    else:
        check_data(config)  # a refusal for bad data leaves nothing behind: checked before the workdir exists
        workdir = check_workdir(flags.FLAGS.workdir or f"runs/{config.task}")
    if locks_workdir():  # a second run is refused now, not after JAX's import
        check_free(workdir)
    from mnist_ae.run.run_log import configure_logging  # noqa: PLC0415

    configure_logging(workdir, flags.FLAGS.verbose)
    from mnist_ae.parallel import initialize_distributed  # noqa: PLC0415

    initialize_distributed(flags.FLAGS.coordinator_address, flags.FLAGS.num_processes, flags.FLAGS.process_id,
                           flags.FLAGS.distributed_timeout, say=lambda line: print(line, flush=True))
    use_compilation_cache()
    result = TASKS[config.task].fn(config, workdir, framework, flags.FLAGS.quiet, started=started)
    if config.task == "sweep" and any(final.get("diverged") for final in result):
        raise SomeDiverged(f"{sum(bool(f.get('diverged')) for f in result)} of {len(result)} sweep members diverged "
                           f"(marked in {RunDir(workdir).sweep_results}); the others finished")


def _committed_checkpoints(workdir: str | None) -> str:
    """Which checkpoints a rerun can resume from, for a message about a failed write: the committed
    step folders (orbax writes a step under a temporary name and renames it when complete)."""
    try:
        folder = RunDir(Path(workdir)).checkpoints
        epochs = sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit())
    except (OSError, TypeError):  # no workdir given or parsed yet, no checkpoints folder
        epochs = []
    return intact_line(epochs, none="no checkpoint was written")


def locks_workdir() -> bool:
    """Whether this process holds the workdir's lock: a single run, or process 0 of several."""
    ranks = (flags.FLAGS.process_id, *(int(os.environ.get(name) or 0) for name in
                                       ("SLURM_PROCID", "OMPI_COMM_WORLD_RANK", "TPU_WORKER_ID")))
    return all(rank <= 0 for rank in ranks)


def main(started: float | None = None) -> None:
    """The command line; `started` (launch.py's first perf_counter reading) lets the summary count the imports."""
    started = time.perf_counter() if started is None else started
    guard_terminal_streams()
    argv = sys.argv
    if "--help" in argv or "-h" in argv:
        print(usage())
        return
    if "--config.help" in argv:
        print("config keys (override with --config.KEY=VALUE):\n" + help_text())
        return
    try:
        config_given = any(_flag_value(argv, name) is not None for name in ("config", "config.task"))
        argv = prepare_argv(argv)
        parse_flags(argv)
        if flags.FLAGS.list:
            print(list_experiments())
            return
        if not TASKS[flags.FLAGS.task].trains:
            _page_task(flags.FLAGS.task)
            return
        _main(config_given, started)
    except ProductError as e:  # mnist_ae.errors: one line and the error's own exit status
        sys.stderr.write(f"{e.prefix}{e}\n")
        sys.exit(e.exit_code)
    except OSError as e:  # the file system refused: read-only, a folder where a file goes, disk full
        if logging.getLogger().handlers:  # a training task's run.log: the traceback, for a bug report
            logging.getLogger(__name__).error("stopped by an OSError", exc_info=True)
        where = f"cannot write or read {e.filename}: {e.strerror}" if e.filename else str(e)
        sys.stderr.write(f"error: {where}; what was written before is intact (files are replaced whole; "
                         f"{_committed_checkpoints(flags.FLAGS.workdir if flags.FLAGS.is_parsed() else None)}): "
                         "fix it and rerun the same command\n")
        sys.exit(1)
    except KeyboardInterrupt:  # before any task's handlers were set (loading the config, importing JAX)
        sys.stderr.write("interrupted before the task started: rerun the same command\n")
        sys.exit(130)
