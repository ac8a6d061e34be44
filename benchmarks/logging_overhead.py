"""Wall-time cost of logging: the default reconstruction run with --log_framework none / tensorboard / both.

    python benchmarks/logging_overhead.py [--repeats 2] [--frameworks none tensorboard both]
                                          [--config.KEY=VALUE ...]   # e.g. --config.epochs=2

Each run is a fresh process (`--child`) that calls `mnist_ae.tasks.train_and_evaluate` on the default
config (5 epochs, full MNIST, analyze_at_end=False) in a new temporary workdir; W&B runs offline
(HOME points at an empty folder, so no credentials are found). Runs are interleaved
(none, tensorboard, both, none, ...) so load from other jobs spreads evenly, and the minimum of
the repeats is reported. "none" still writes metrics.jsonl, the reconstruction PNGs and
checkpoints: the overhead is what TensorBoard / W&B add on top.

Columns:
  process s   the whole child process: imports, W&B start-up, training, W&B teardown at exit
  run s       `run_training` itself: data, compile, epochs, evals, logging, checkpoints, writer close
  epochs s    the compiled epochs only (the Reporter's "train" phase): logging on the writer thread
              competes with them for the CPU
  drain s     the writer's final flush + close on the training thread: waiting for the async queue
              to empty and finishing the W&B run
  CPU s       user + system CPU seconds of the child (and of the children it waited for):
              the work logging adds, less sensitive to other jobs' load than wall time
  overhead    relative to "none"
The writer thread's seconds per call kind (histograms, images, embeddings, ...) and the main-thread
seconds in each logging helper are printed for the best repeat of each framework, to show where the
time goes.
"""

from __future__ import annotations

import argparse
import ast
import collections
import functools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_PCT = 10.0


# ----------------------------------------------------------------------------- child


def _timed(table: dict[str, float], name: str, fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            table[name] += time.perf_counter() - t

    return wrapper


def child(framework: str, workdir: Path, overrides: list[str]) -> dict:
    """One run in this process, instrumented; returns the timings as a dict."""
    from mnist_ae import tasks, writers
    from mnist_ae.run import monitoring, progress
    from mnist_ae.run import hooks
    from mnist_ae.config import base_config
    from mnist_ae.config_checks import validate

    config = base_config()
    config.analyze_at_end = False
    for item in overrides:  # --config.KEY=VALUE: Python literals (1e-3, False, 64, (32, 16)) or strings
        key, text = item.removeprefix("--config.").split("=", 1)
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        config[key] = tuple(value) if isinstance(config[key], tuple) and isinstance(value, (list, tuple)) else value
    validate(config)

    thread: dict[str, float] = collections.defaultdict(float)  # seconds on the writer thread
    main: dict[str, float] = collections.defaultdict(float)  # seconds on the training thread
    for method in ("write_scalars", "write_images", "write_histograms", "write_texts", "write_hparams",
                   "write_confusion", "write_embeddings", "flush", "close"):
        for cls in (writers.TensorBoardWriter, writers.WandbWriter, writers.JsonlWriter):
            setattr(cls, method, _timed(thread, f"{cls.__name__[:-6].lower()}.{method}", getattr(cls, method)))
    for name in ("log_histograms", "log_reconstructions", "log_projector", "log_system", "save_png"):
        setattr(monitoring, name, _timed(main, f"monitoring.{name}", getattr(monitoring, name)))
    for name in ("_projector", "_reconstructions", "_confusion", "_histograms"):
        setattr(hooks, name, _timed(main, f"hooks.{name}", getattr(hooks, name)))
    writers.AsyncWriter.close = _timed(main, "writer.close", writers.AsyncWriter.close)
    writers.AsyncWriter.flush = _timed(main, "writer.flush", writers.AsyncWriter.flush)
    writers.WandbWriter.__init__ = _timed(main, "wandb.init", writers.WandbWriter.__init__)

    phases: dict[str, float] = {}
    summary = progress.Reporter.summary

    def keep_timings(self, **kwargs):
        phases.update(self.timings)
        return summary(self, **kwargs)

    progress.Reporter.summary = keep_timings
    t = time.perf_counter()
    final = tasks.train_and_evaluate(config, workdir, framework, quiet=True)
    run_s = time.perf_counter() - t
    return {"framework": framework, "run_s": run_s, "phases": phases, "main": dict(main),
            "thread": dict(thread), "final": final}


# ----------------------------------------------------------------------------- parent


def run_child(framework: str, overrides: list[str], scratch: Path, index: int) -> dict:
    workdir = scratch / f"{index:02d}_{framework}"
    home = scratch / "home"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items()
           if k not in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL", "WANDB_IDENTITY_TOKEN_FILE")}
    env.update(HOME=str(home), NETRC=str(home / ".netrc"), WANDB_SILENT="true")
    result_file = scratch / f"{index:02d}.json"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "--child", framework, "--workdir", str(workdir),
         "--result", str(result_file), *overrides],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800,
    )
    process_s = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    if proc.returncode != 0:
        raise SystemExit(f"{framework} run failed (status {proc.returncode}):\n{proc.stderr[-3000:]}")
    result = json.loads(result_file.read_text())
    result["process_s"] = process_s
    result["cpu_s"] = cpu_s
    return result


def _pct(value: float, base: float) -> str:
    return f"{100 * (value - base) / base:+.1f}%"


def report(results: list[dict]) -> str:
    best: dict[str, dict] = {}
    for r in results:
        fw = r["framework"]
        cur = best.setdefault(fw, {"run_s": float("inf"), "process_s": float("inf"),
                                   "epochs_s": float("inf"), "drain_s": float("inf"), "cpu_s": float("inf")})
        cur["run_s"] = min(cur["run_s"], r["run_s"])
        cur["process_s"] = min(cur["process_s"], r["process_s"])
        cur["cpu_s"] = min(cur["cpu_s"], r["cpu_s"])
        cur["epochs_s"] = min(cur["epochs_s"], r["phases"].get("train", float("nan")))
        cur["drain_s"] = min(cur["drain_s"], r["main"].get("writer.close", 0.0) + r["main"].get("writer.flush", 0.0))
        if cur.get("detail") is None or r["run_s"] <= cur["run_s"]:
            cur["detail"] = r
    base = best.get("none")
    lines = ["| framework | process s | run s | epochs s | drain s | CPU s | overhead (run) | overhead (process) "
             "| overhead (CPU) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for fw, b in best.items():
        over_run = _pct(b["run_s"], base["run_s"]) if base else "-"
        over_proc = _pct(b["process_s"], base["process_s"]) if base else "-"
        over_cpu = _pct(b["cpu_s"], base["cpu_s"]) if base else "-"
        lines.append(f"| {fw} | {b['process_s']:.1f} | {b['run_s']:.1f} | {b['epochs_s']:.1f} | "
                     f"{b['drain_s']:.2f} | {b['cpu_s']:.1f} | {over_run} | {over_proc} | {over_cpu} |")
    n = collections.Counter(r["framework"] for r in results)
    lines.append(f"\nminimum of {max(n.values())} run(s) each; target: overhead < {TARGET_PCT:.0f}% of run s")
    for fw, b in best.items():
        d = b["detail"]
        phases = ", ".join(f"{k} {v:.1f}" for k, v in d["phases"].items())
        lines.append(f"\n{fw}: phases (s): {phases}")
        lines.append("  main thread (s): " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(d["main"].items())))
        busy = sorted(d["thread"].items(), key=lambda kv: -kv[1])
        lines.append("  writer thread (s): " + ", ".join(f"{k} {v:.2f}" for k, v in busy if v >= 0.005))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--frameworks", nargs="+", default=["none", "tensorboard", "both"])
    parser.add_argument("--keep", action="store_true", help="keep the workdirs (printed)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args, overrides = parser.parse_known_args()
    bad = [o for o in overrides if not o.startswith("--config.") or "=" not in o]
    if bad:
        parser.error(f"unrecognized arguments: {' '.join(bad)} (only --config.KEY=VALUE)")
    if args.child:
        result = child(args.child, Path(args.workdir), overrides)
        Path(args.result).write_text(json.dumps(result))
        return
    scratch = Path(tempfile.mkdtemp(prefix="logging_overhead_"))
    results = []
    for repeat in range(args.repeats):
        for fw in args.frameworks:
            r = run_child(fw, overrides, scratch, len(results))
            print(f"repeat {repeat + 1} {fw:<12} process {r['process_s']:6.1f} s  run {r['run_s']:6.1f} s  "
                  f"epochs {r['phases'].get('train', float('nan')):5.1f} s  CPU {r['cpu_s']:6.1f} s", flush=True)
            results.append(r)
    print()
    print(report(results))
    if args.keep:
        print(f"\nworkdirs kept in {scratch}")
    else:
        import shutil

        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
