"""Mutation testing on demand (not in CI): do the tests notice when the code is wrong?

A small AST mutator of our own rather than mutmut 3 or cosmic-ray: mutmut 3 runs every mutant in a
process forked from one that already traced and compiled the jitted functions (a jit cache hit
never calls the mutated Python again, so mutants in traced code would survive unseen) and wraps
each function in a trampoline that flax's `nn.compact` methods do not expect; cosmic-ray mutates
the files in place and generates every operator swap (about 12 mutants per `+`), too many for
2 shared cores. Here each mutant is one fresh `pytest -x` process on a scratch copy of the repo,
run on the module's covering tests only, with a timeout; results are appended to
`tools/mutation/results.jsonl` (tracked: a fresh clone resumes where the last run stopped, and
`--report` can be rerun from it; a row is keyed by its module's source hash, so an edited module's
mutants run again).

    python tools/mutation/mutation.py                      # every module (resumes)
    python tools/mutation/mutation.py mnist_ae/core/pca.py # one module
    python tools/mutation/mutation.py --list MODULE        # the mutants, numbered
    python tools/mutation/mutation.py --apply MODULE:N     # write mutant N into the worktree (git checkout to undo)
    python tools/mutation/mutation.py --report             # the score and the survivors into docs/mutation.md
    python tools/mutation/mutation.py --prune              # keep only the current modules' results

Mutations: arithmetic/bitwise operator swaps (also in `+=`), comparison flips (`<` to `<=`, `==` to
`!=`, `is`/`in` negated), `and`/`or`, a removed `not` or unary minus, numbers +1 and True/False
swapped, a call statement or `raise` removed, `return x` to `return None`. Not mutated: strings
(messages, dict keys), f-strings, annotations, docstrings, imports.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import tomllib
from pathlib import Path

import pytest

from mutants import Mutant, mutants, mutated_source

ROOT = Path(__file__).resolve().parents[2]
STATE = ROOT / ".mutation"
RESULTS = Path(__file__).with_name("results.jsonl")
UNOBSERVABLE = Path(__file__).with_name("unobservable.toml")
REPORT = ROOT / "docs" / "mutation.md"

# Module -> the tests that cover it, the most direct first (`-x` stops at the first failure), in
# the order a run takes them: the core and the checkpoint first.
_QUICK_ANALYSIS = ["tests/test_analysis.py", "-k", "not run_analysis and not tsne and not figures"]
_SIGNAL_TEST = "tests/test_faults.py::test_a_signal_stops_at_an_epoch_boundary_with_its_checkpoint_and_the_rerun_matches"
MODULES: dict[str, list[str]] = {
    "mnist_ae/core/losses.py": ["tests/test_losses.py", "tests/test_recon_options.py", "tests/test_steps.py"],
    "mnist_ae/core/state.py": ["tests/test_steps.py", "tests/test_recon_options.py", "tests/test_checkpoint.py"],
    "mnist_ae/core/steps.py": ["tests/test_steps.py", "tests/test_recon_options.py"],
    "mnist_ae/core/loop.py": ["tests/test_steps.py", "tests/test_sweep.py", "tests/test_augment.py"],
    "mnist_ae/core/augment.py": ["tests/test_augment.py"],
    "mnist_ae/core/sweep.py": ["tests/test_sweep.py"],
    "mnist_ae/core/models.py": ["tests/test_models.py", "tests/test_steps.py"],
    "mnist_ae/checkpoint.py": ["tests/test_checkpoint.py", "tests/test_compat.py",
                               "tests/test_faults.py::test_a_damaged_latest_checkpoint_is_set_aside_and_the"
                               "_previous_one_used"],
    "mnist_ae/core/conv_layers.py": ["tests/test_conv_layers.py", "tests/test_models.py"],
    "mnist_ae/core/pca.py": _QUICK_ANALYSIS,
    "mnist_ae/analysis/quality.py": _QUICK_ANALYSIS,
    "mnist_ae/parallel.py": ["tests/test_parallel.py"],
    "mnist_ae/core/code_quality.py": ["tests/test_code_quality.py", *_QUICK_ANALYSIS],
    "mnist_ae/analysis/raw_baseline.py": ["tests/test_baselines.py"],
    "mnist_ae/analysis/embed.py": ["tests/test_embed.py", "tests/test_analysis.py", "tests/test_tsne.py"],
    "mnist_ae/analysis/members.py": ["tests/test_sweep.py"],
    "mnist_ae/core/tsne.py": ["tests/test_tsne.py",
                              "tests/test_analysis.py::test_the_exact_and_opentsne_maps_are_as_faithful_as_sklearns"],
    # The shell around the core: the report, the writers, the analysis pipeline and the run lifecycle.
    "mnist_ae/report/forming.py": ["tests/test_report.py"],
    "mnist_ae/report/compare.py": ["tests/test_report.py"],
    "mnist_ae/report/collect.py": ["tests/test_report.py"],
    "mnist_ae/writers/jsonl.py": ["tests/test_writers.py", "tests/test_monitoring.py"],
    "mnist_ae/writers/combinators.py": ["tests/test_writers.py", "tests/test_monitoring.py", "tests/test_graph.py"],
    "mnist_ae/writers/factory.py": ["tests/test_writers.py", "tests/test_monitoring.py"],
    "mnist_ae/writers/base.py": ["tests/test_writers.py", "tests/test_monitoring.py"],
    "mnist_ae/writers/tensorboard.py": ["tests/test_writers.py", "tests/test_monitoring.py", "tests/test_graph.py"],
    "mnist_ae/writers/wandb.py": ["tests/test_writers.py"],
    "mnist_ae/writers/graph.py": ["tests/test_graph.py"],
    "mnist_ae/analysis/pipeline.py": ["tests/test_analysis.py", "tests/test_analyze.py"],
    "mnist_ae/run/program.py": ["tests/test_sweep.py", "tests/test_driver.py", "tests/test_checkpoint.py",
                               "tests/test_latent_pictures.py", "tests/test_graph.py", "tests/test_hooks.py",
                               "tests/test_anomaly.py", "tests/test_denoising.py", "tests/test_vae_run.py",
                               "tests/test_retrieval.py"],
    "mnist_ae/run/sweep_outputs.py": ["tests/test_sweep.py"],
    "mnist_ae/run/setup.py": ["tests/test_setup.py", "tests/test_checkpoint.py", "tests/test_faults.py",
                             "tests/test_driver.py"],
    "mnist_ae/run/lifecycle.py": ["tests/test_lifecycle.py", "tests/test_signals.py", "tests/test_setup.py",
                                  "tests/test_faults.py", "tests/test_checkpoint.py", "tests/test_driver.py"],
    "mnist_ae/run/preflight.py": ["tests/test_preflight.py"],
    "mnist_ae/workdir.py": ["tests/test_workdir.py", "tests/test_faults.py", "tests/test_sweep.py"],
    "mnist_ae/errors.py": ["tests/test_errors.py", "tests/test_signals.py"],
    "mnist_ae/run/driver.py": ["tests/test_driver.py", "tests/test_hooks.py", "tests/test_checkpoint.py", _SIGNAL_TEST,
                               "tests/test_faults.py::test_a_damaged_latest_checkpoint_is_set_aside_and_the"
                               "_previous_one_used", "tests/test_sweep.py::test_a_diverging_member_is_frozen_while"
                               "_the_others_train_on_untouched"],
    # The hooks' in-process tests (tests/test_hooks.py runs single runs, a classifier and a sweep through every
    # hook with the analysis and report stubbed): the run-level suites that also reach them took minutes a mutant.
    "mnist_ae/run/hooks.py": ["tests/test_hooks.py", "tests/test_graph.py", "tests/test_monitoring.py",
                              "tests/test_figures.py", "tests/test_latent_pictures.py"],
    # What autoencoders are for: the VAE, denoising, retrieval, one-class anomaly detection, and the end-of-run
    # measures that run them; and the config's checks.
    "mnist_ae/core/vae.py": ["tests/test_vae.py", "tests/test_vae_run.py", "tests/test_sweep.py"],
    "mnist_ae/core/noise.py": ["tests/test_denoising.py", "tests/test_hooks.py"],
    "mnist_ae/core/retrieval.py": ["tests/test_retrieval.py"],
    "mnist_ae/analysis/retrieval.py": ["tests/test_retrieval.py", "tests/test_hooks.py"],
    "mnist_ae/analysis/anomaly.py": ["tests/test_anomaly.py"],
    "mnist_ae/run/measures.py": ["tests/test_hooks.py", "tests/test_anomaly.py", "tests/test_denoising.py",
                                 "tests/test_vae_run.py", "tests/test_retrieval.py"],
    "mnist_ae/config_checks.py": ["tests/test_bad_input.py", "tests/test_vae_run.py", "tests/test_anomaly.py",
                                  "tests/test_denoising.py", "tests/test_errors.py", "tests/test_cli.py"],
}
# Modules whose listed tests run with the slow ones among them: the sweep's end-of-run outputs (member
# exports, results table), a sweep program's initial states, three of the four checkpoint damages and
# the sweep page's member sections are checked by slow tests only (the quick tier keeps one test per
# behaviour). The hooks and the driver run their quick tests only (with the slow ones a mutant took
# minutes); their slow-only checks (the PCA baseline per member, the signal's checkpoint) are recorded
# with `--check MODULE:N`. A line run only in a subprocess (signal handlers, launch.py) is invisible
# to the line tracer.
WITH_SLOW = {"mnist_ae/run/sweep_outputs.py", "mnist_ae/run/program.py", "mnist_ae/checkpoint.py",
             "mnist_ae/report/collect.py"}
# Modules whose quick tests run them in subprocesses (test_parallel's workers pin the device count
# before JAX starts), where the line tracer cannot follow, or whose trace came back incomplete (the
# report's collect.py: lines that a direct trace of the same run shows hit were missing): each mutant
# runs all the module's tests.
UNTRACED = {"mnist_ae/parallel.py", "mnist_ae/report/collect.py"}
PYTEST_ARGS = ["-x", "-q", "-p", "no:cacheprovider", "-p", "no:randomly"]

def _source_hash(module: str) -> str:
    return hashlib.sha256((ROOT / module).read_bytes()).hexdigest()[:16]


def _load_results() -> dict[str, dict]:
    if not RESULTS.exists():
        return {}
    rows = [json.loads(line) for line in RESULTS.read_text().splitlines() if line.strip()]
    return {r["id"]: r for r in rows}


def _scratch(n: int) -> Path:
    """A copy of the package and tests (data and experiments linked) where mutants are written, never the worktree."""
    work = STATE / f"work-{os.getpid()}-{n}"  # one per job and per concurrent run
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("mnist_ae", "tests"):
        shutil.copytree(ROOT / name, work / name, ignore=ignore)
    for name in ("pyproject.toml", "launch.py", "README.md"):  # launch.py: tests that run the command line
        shutil.copy(ROOT / name, work / name)
    for name in ("data", "experiments", "docs"):  # read, never mutated (experiments/*.py; the docs' tables)
        (work / name).symlink_to(ROOT / name)
    return work


def _preload() -> None:
    """Import the heavy libraries once; every mutant's pytest is a fork of this process.

    Forking saves the ~4 CPU-seconds of imports per mutant. It is safe because nothing here touches
    a JAX backend (no XLA threads, empty jit caches) and `mnist_ae` itself is imported fresh, from
    the scratch copy, in each child. The env vars tests/conftest.py would set come first, as JAX
    reads them at import.
    """
    scratch = Path(tempfile.gettempdir()) / f"mnist_ae_tests_{os.getuid()}"
    os.environ.update(JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=str(scratch / "jax_cache"),
                      JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                      JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="-1",
                      MNIST_AE_CACHE=str(scratch / "cache"))
    os.environ.pop("CI", None)  # a skip is not a kill
    sys.dont_write_bytecode = True  # a mutant must never leave a .pyc that a later one would load
    import chex, flax.linen, jax, numpy, optax, orbax.checkpoint, pytest, sklearn  # noqa: F401,E401


def _fork_pytest(work: Path, tests: list[str], trace: str = "", slow: bool = False) -> int:
    """pytest in a child process in the scratch copy, its output to a log. With `trace` (a module),
    the child records which test ran which of its lines into `work/lines.json` instead. The quick tests
    only, unless `slow`."""
    pid = os.fork()
    if pid == 0:
        try:
            import pytest
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.chdir(work)
            sys.path.insert(0, str(work))
            # subprocesses the tests start (test_parallel's workers) import the mutated copy too,
            # not the worktree's or the editable install's unmutated package
            os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(work), os.environ.get("PYTHONPATH")]))
            fd = os.open(work / "pytest.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            tracer = _LineTracer(work / trace) if trace else None
            marker = [] if slow else ["-m", "not slow"]
            code = int(pytest.main([*PYTEST_ARGS, *marker, *tests], plugins=[tracer] if tracer else []))
            if tracer:
                (work / "lines.json").write_text(json.dumps(
                    {"order": tracer.order, "lines": {k: sorted(v) for k, v in tracer.hits.items()},
                     "uses": tracer.uses}))
            os._exit(code)
        finally:
            os._exit(99)
    return pid


class _LineTracer:
    """A pytest plugin: for each line of one file, the tests that ran it ("<import>": run outside any
    test, e.g. module-level code, class bodies and default values).

    JAX runs a jitted function's Python only when it traces it, and a later test with the same shapes
    hits the jit cache: the caches are cleared before each test so that every test that needs a line
    runs it here. A module- or session-scoped fixture is set up once, inside the first test that
    asks for it: the lines it runs are credited to "<fixture NAME>", and so to every test that uses
    the fixture (`uses`: each test's fixtures), not to that first test only.
    """

    def __init__(self, path: Path):
        self.path, self.current = os.path.realpath(path), "<import>"
        self.hits: dict[str, set[str]] = {}
        self.order: list[str] = []
        self.uses: dict[str, list[str]] = {}
        self._outer: list[str] = []
        self._ours: dict[str, bool] = {}
        sys.settrace(self._call)
        threading.settrace(self._call)

    def _call(self, frame, event, arg):  # noqa: ANN001, ANN202
        name = frame.f_code.co_filename
        ours = self._ours.get(name)
        if ours is None:
            ours = self._ours[name] = os.path.realpath(name) == self.path
        return self._line if ours else None

    def _line(self, frame, event, arg):  # noqa: ANN001, ANN202
        if event == "line":
            self.hits.setdefault(str(frame.f_lineno), set()).add(self.current)
        return self._line

    def pytest_runtest_protocol(self, item):  # noqa: ANN001, ANN201
        import jax
        jax.clear_caches()
        self.current = item.nodeid
        self.order.append(item.nodeid)
        self.uses[item.nodeid] = list(item.fixturenames)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_fixture_setup(self, fixturedef, request):  # noqa: ANN001, ANN201
        shared = fixturedef.scope != "function"
        if shared:
            self._outer.append(self.current)
            self.current = f"<fixture {fixturedef.argname}>"
        yield
        if shared:
            self.current = self._outer.pop()

    def pytest_runtest_logfinish(self, nodeid, location):  # noqa: ANN001, ANN201
        self.current = "<import>"


def _selected(m: Mutant, lines: dict[str, list[str]], order: list[str], everything: list[str],
              uses: dict[str, list[str]]) -> list[str]:
    """The tests that ran the mutant's lines, or use a shared fixture that ran them, in file order;
    all of them for code run at import."""
    tests = {t for line in range(m.line, m.end + 1) for t in lines.get(str(line), [])}
    if "<import>" in tests:
        return everything
    fixtures = {t[len("<fixture "):-1] for t in tests if t.startswith("<fixture ")}
    return [t for t in order if t in tests or fixtures.intersection(uses.get(t, ()))]


def _outcome(status: int | None) -> str:
    if status is None:
        return "timeout"
    code = os.waitstatus_to_exitcode(status)
    # 1: a test failed; 2: collection failed (the mutant breaks the import); 4: conftest.py could not be
    # loaded (a mutant that breaks an import conftest makes; the unmutated run had the same arguments);
    # below 0: the test process died of a signal (a mutant that makes native code crash: the suite fails);
    # others: our problem
    if code < 0:
        return "killed"
    return {0: "survived", 1: "killed", 2: "killed", 4: "killed"}.get(code, f"error{code}")


def _run_one(work: Path, tests: list[str], timeout: float, trace: str = "", slow: bool = False) -> tuple[str, float]:
    start, pid = time.monotonic(), _fork_pytest(work, tests, trace, slow)
    try:
        while time.monotonic() - start < timeout:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                pid = 0
                return _outcome(status), time.monotonic() - start
            time.sleep(0.1)
        return "timeout", time.monotonic() - start
    finally:
        if pid:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


def run(modules: list[str], timeout_factor: float, jobs: int, retest: bool) -> None:
    STATE.mkdir(exist_ok=True)
    _preload()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped"))  # so `finally` ends the children
    signal.signal(signal.SIGINT, signal.default_int_handler)
    done, works = _load_results(), [_scratch(n) for n in range(jobs)]
    if retest:  # the tests changed: run the survivors (and timeouts, maybe just a busy machine, and errors) again
        explained = {e["key"] for e in tomllib.loads(UNOBSERVABLE.read_text()).get("mutant", [])}
        done = {k: r for k, r in done.items()
                if r["outcome"] not in ("survived", "timeout") and not r["outcome"].startswith("error")
                or r["key"] in explained}
    try:
        for module in modules:
            _run_module(module, works, done, timeout_factor)
    finally:
        for work in works:
            shutil.rmtree(work, ignore_errors=True)


def _record(h: str, m: Mutant, outcome: str, secs: float, n_tests: int | list) -> None:
    n = n_tests if isinstance(n_tests, int) else len(n_tests)
    row = {"id": f"{h}:{m.index}", **dataclasses.asdict(m), "key": m.key, "outcome": outcome,
           "seconds": round(secs, 1), "tests": n}
    with RESULTS.open("a") as f:
        f.write(json.dumps(row) + "\n")
    print(f"  {m.index:4d} L{m.line:<4d} {outcome:9s} {secs:5.1f}s {n:3d} tests  {m.desc}", flush=True)


def _coverage(module: str, work: Path) -> tuple[dict[str, list[str]], list[str], float, dict] | None:
    """Which test runs which line of `module` (cached per module and tests version), the tests in
    order, the seconds the traced run took, and each test's fixtures (none traced for an UNTRACED
    module); None if the tests fail unmutated."""
    tests_hash = hashlib.sha256(b"".join(p.read_bytes() for p in sorted((ROOT / "tests").rglob("*.py")))
                                + json.dumps(MODULES[module]).encode())  # the files and the module's list of them
    cache = STATE / f"lines2-{module.replace('/', '.')}-{_source_hash(module)}-{tests_hash.hexdigest()[:12]}.json"
    if not cache.exists():
        untraced = module in UNTRACED
        outcome, secs = _run_one(work, MODULES[module], timeout=3600, trace="" if untraced else module,
                                 slow=module in WITH_SLOW)
        if outcome != "survived":
            return None
        lines = ({"order": [], "lines": {}, "uses": {}} if untraced
                 else json.loads((work / "lines.json").read_text()))
        cache.write_text(json.dumps({**lines, "seconds": secs}))
    got = json.loads(cache.read_text())
    return got["lines"], got["order"], got["seconds"], got["uses"]


def _run_module(module: str, works: list[Path], done: dict[str, dict], timeout_factor: float) -> None:
    h = _source_hash(module)
    todo = [m for m in mutants(module) if f"{h}:{m.index}" not in done]
    print(f"{module}: {len(todo)} mutants to run", flush=True)
    if not todo:
        return
    for work in works:  # the tests as they are now (tests may be added while a run goes on)
        shutil.copytree(ROOT / "tests", work / "tests", dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    covered = _coverage(module, works[0])
    if covered is None:
        sys.exit(f"{module}: its tests fail before any mutation (see {works[0] / 'pytest.log'}); fix them first")
    lines, order, base, uses = covered
    timeout = max(60.0, timeout_factor * base)
    print(f"  unmutated tests (traced): {base:.0f}s; timeout {timeout:.0f}s", flush=True)
    original = (ROOT / module).read_text()
    running: dict[int, tuple[Mutant, Path, float]] = {}
    free = list(works)
    try:
        while todo or running:
            while todo and free:
                m = todo.pop(0)
                tests = MODULES[module] if module in UNTRACED else _selected(m, lines, order, MODULES[module], uses)
                if not tests:  # no test runs this line: it survives without a run
                    _record(h, m, "survived", 0.0, [])
                    continue
                work = free.pop()
                (work / module).write_text(mutated_source(m))
                running[_fork_pytest(work, tests, slow=module in WITH_SLOW)] = (m, work, time.monotonic(), len(tests))
            finished = []
            for pid, (m, work, start, n_tests) in running.items():
                got, status = os.waitpid(pid, os.WNOHANG)
                if not got and time.monotonic() - start > timeout:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    got, status = pid, None
                if got:
                    finished.append(pid)
                    _record(h, m, _outcome(status), time.monotonic() - start, n_tests)
                    (work / module).write_text(original)
                    free.append(work)
            for pid in finished:
                del running[pid]
            time.sleep(0.1)
    finally:
        for pid in running:
            os.kill(pid, signal.SIGKILL)
        for work in works:
            (work / module).write_text(original)


def report(modules: list[str]) -> str:
    done = _load_results()
    listed = tomllib.loads(UNOBSERVABLE.read_text())
    reasons = {e["key"]: e["reason"] for e in listed.get("mutant", [])}
    late = {e["key"]: e["test"] for e in listed.get("killed", [])}  # killed by a test added after the run
    done = {k: {**r, "outcome": "killed"} if r["outcome"] == "survived" and r["key"] in late else r
            for k, r in done.items()}
    lines = ["# Mutation testing", "", "Written by `python tools/mutation/mutation.py --report` from the last "
             "run's results; reasons for unobservable mutants are in `tools/mutation/unobservable.toml`.",
             "", "| module | mutants | run | killed | unobservable | survived | score |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    survivors, total = [], {"all": 0, "run": 0, "killed": 0, "unobs": 0, "surv": 0, "secs": 0.0}
    for module in modules:
        ms, h = mutants(module), _source_hash(module)
        rows = [done[f"{h}:{m.index}"] for m in ms if f"{h}:{m.index}" in done]
        killed = sum(r["outcome"] in ("killed", "timeout") for r in rows)
        unobs = [r for r in rows if r["outcome"] == "survived" and r["key"] in reasons]
        surv = [r for r in rows if r["outcome"] == "survived" and r["key"] not in reasons]
        observable = len(rows) - len(unobs)
        score = f"{100 * killed / observable:.1f}%" if observable else "-"
        lines.append(f"| `{module}` | {len(ms)} | {len(rows)} | {killed} | {len(unobs)} | "
                     f"{len(surv)} | {score} |")
        survivors += [(r, reasons.get(r["key"])) for r in unobs + surv]
        for k, v in (("all", len(ms)), ("run", len(rows)), ("killed", killed),
                     ("unobs", len(unobs)), ("surv", len(surv)),
                     ("secs", sum(r["seconds"] for r in rows))):
            total[k] += v
    obs = total["run"] - total["unobs"]
    lines.append(f"| **all** | {total['all']} | {total['run']} | {total['killed']} | "
                 f"{total['unobs']} | {total['surv']} | "
                 f"{100 * total['killed'] / max(obs, 1):.1f}% |")
    lines += ["", f"Score = killed / (run - unobservable); a timeout counts as killed. "
              f"Test time summed over mutants: {total['secs'] / 60:.0f} min.", "",
              "## Surviving mutants", "", "| module | line | where | mutation | why it cannot be observed |",
              "|---|---:|---|---|---|"]
    for r, why in sorted(survivors, key=lambda t: (t[0]["module"], t[0]["line"])):
        mutation = r["desc"].replace("|", "\\|")
        lines.append(f"| `{r['module']}` | {r['line']} | `{r['where']}` | `{mutation}` | "
                     f"{why or ('**no test runs this line**' if r.get('tests') == 0 else '**not explained yet: a missing test?**')} |")
    if late:
        lines += ["", "## Survivors of the run killed by tests added after it", "",
                  "Checked by writing the mutant into a copy of the tree and running the test (it failed); "
                  "the next `--retest-survivors` records them as killed.", "", "| mutant | killed by |", "|---|---|"]
        lines += [f"| `{k}` | `{t}` |".replace("||", "\\|\\|") for k, t in late.items()]
    return "\n".join(lines) + "\n"


def prune() -> int:
    """Drop the results of module versions that exist no more (a row is keyed by its module's source
    hash), so results.jsonl holds the current mutants only and stops growing with each edit."""
    current = {_source_hash(m) for m in MODULES}
    lines = [line for line in RESULTS.read_text().splitlines() if line.strip()] if RESULTS.exists() else []
    kept = [line for line in lines if json.loads(line)["id"].split(":")[0] in current]
    RESULTS.write_text("".join(f"{line}\n" for line in kept))
    return len(lines) - len(kept)


def check(spec: str) -> None:
    """Run one mutant on all of its module's tests, slow ones included (no tracing), and record it."""
    module, n = spec.rsplit(":", 1)
    m = mutants(module)[int(n)]
    STATE.mkdir(exist_ok=True)
    _preload()
    work = _scratch(0)
    try:
        (work / module).write_text(mutated_source(m))
        outcome, secs = _run_one(work, MODULES[module], timeout=3600, slow=True)
        _record(_source_hash(module), m, outcome, secs, len(MODULES[module]))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("modules", nargs="*", help="modules to mutate (default: all, in priority order)")
    p.add_argument("--list", action="store_true", help="print the mutants and exit")
    p.add_argument("--apply", metavar="MODULE:N", help="write mutant N into the worktree and exit")
    p.add_argument("--check", metavar="MODULE:N", help="run mutant N on all its module's tests, record it")
    p.add_argument("--report", action="store_true", help=f"write {REPORT.relative_to(ROOT)}")
    p.add_argument("--prune", action="store_true", help="drop the results of module versions that exist no more")
    p.add_argument("--jobs", type=int, default=1, help="mutants tested at once (default 1)")
    p.add_argument("--retest-survivors", action="store_true",
                   help="run the mutants that survived or timed out again (after adding tests)")
    p.add_argument("--timeout-factor", type=float, default=5.0,
                   help="per-mutant timeout as a multiple of the unmutated test time (min 30 s)")
    args = p.parse_args()
    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        sys.exit(f"not a mutated module: {unknown[0]}; choose from: {', '.join(MODULES)}")
    modules = args.modules or list(MODULES)
    if args.apply:
        module, n = args.apply.rsplit(":", 1)
        m = mutants(module)[int(n)]
        (ROOT / module).write_text(mutated_source(m))
        print(f"applied {m.module}:{m.index} L{m.line} {m.desc}  (undo: git checkout {module})")
    elif args.check:
        check(args.check)
    elif args.prune:
        print(f"dropped {prune()} results of old module versions")
    elif args.list:
        for module in modules:
            for m in mutants(module):
                print(f"{module}:{m.index:<4d} L{m.line:<4d} {m.where:30s} {m.desc}")
    elif args.report:
        REPORT.write_text(report(modules))
        print(REPORT.read_text())
    else:
        run(modules, args.timeout_factor, args.jobs, args.retest_survivors)


if __name__ == "__main__":
    main()
