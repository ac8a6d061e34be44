"""What a run shows in the terminal: a progress bar, timed phases, warnings and an end-of-run summary.

Host side only. The loop reports once per compiled epoch, so the reporter never sees a step. On a
terminal it draws with `rich`; anywhere else (CI, nohup, a log file) it writes one plain line per
event, without ANSI escapes. Only process 0 prints. Library logs and Python warnings are kept off
the terminal by `run_log.configure_logging`, which sends them to WORKDIR/run.log.
"""

from __future__ import annotations

import contextlib
import datetime
import fnmatch
import io
import resource
import shlex
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, SpinnerColumn, Task,
                           TextColumn, TimeElapsedColumn)
from rich.table import Table
from rich.text import Text
from mnist_ae.analysis import ANALYSIS_PHASE
from mnist_ae.workdir import RunDir

# Shown on the bar / log line, in this order; train/loss only when there is no train/recon_mse.
LIVE_METRICS = ("train/recon_mse", "train/loss", "test/recon_mse", "test/elbo", "test/probe_accuracy", "test/accuracy")
# A pattern (`*`) shows every match, in name order (a VAE's per-eval and final bounds: test/nll_iw50, ...)
FINAL_METRICS = ("test/recon_mse", "baseline/pca_recon_mse", "test/recon_sse01", "baseline/pca_recon_sse01",
                 "test/elbo", "test/nll_iw*", "test/active_units", "test/probe_accuracy", "test/accuracy",
                 "analysis/knn5_accuracy",
                 "analysis/trustworthiness", "test/retrieval_map", "baseline/pca_retrieval_map",
                 "baseline/pixels_retrieval_map")
# A sweep's terminal table: one row per member (its name holds its latent size, seed and rate), the main
# numbers under short headers, so it fits a terminal (it was 222 characters wide); sweep_results.md has all.
SWEEP_COLUMNS = {"test/recon_mse": "recon_mse", "baseline/pca_recon_mse": "pca_mse", "test/elbo": "elbo",
                 "test/active_units": "active", "test/probe_accuracy": "probe_acc",
                 "test/accuracy": "accuracy", "analysis/knn5_accuracy": "knn5_acc", "analysis/trustworthiness": "trust"}
# Plain-text renders (logs, the returned summary) are not wrapped: a log has no width.
PLAIN_WIDTH = 10_000
TRAINING_PHASES = ("compiling", "train", "eval", "checkpoint")  # what the end-of-run work is weighed against


def _clock(seconds: float) -> str:
    return str(datetime.timedelta(seconds=round(max(seconds, 0.0))))


def _rate(steps_per_s: float) -> str:
    return f"{steps_per_s:.0f}" if steps_per_s >= 10 else f"{steps_per_s:.2f}"


class _EtaColumn(ProgressColumn):
    """ETA that keeps counting down between the once-per-epoch updates."""

    def render(self, task: Task) -> Text:
        deadline = task.fields["deadline"]
        left = "-:--:--" if deadline is None else _clock(deadline - time.monotonic())
        return Text(f"ETA {left}", style="progress.remaining")


def _plain(renderable: RenderableType) -> str:
    """`renderable` as text without escape codes or trailing blanks."""
    console = Console(file=io.StringIO(), width=PLAIN_WIDTH, force_terminal=False, no_color=True,
                      highlight=False)
    console.print(renderable)
    return "\n".join(line.rstrip() for line in console.file.getvalue().splitlines()) + "\n"


def _peak_rss_bytes() -> int:
    """Peak resident memory of this process (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def _bytes(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def _is_main_process() -> bool:
    import jax  # noqa: PLC0415  (only for the default: it initialises the backend)

    return jax.process_index() == 0


class Reporter:
    """Progress of one run (or one sweep) on `stream`: a live bar on a terminal, log lines elsewhere.

    With `total_epochs=0` (`--task analyze`) there is no bar, only the timed phases and the summary.
    """

    def __init__(self, *, total_epochs: int, rounds_per_epoch: int, start_epoch: int = 0, quiet: bool = False,
                 stream: TextIO | None = None, is_main: bool | None = None, title: str = "train", device: str = "",
                 started: float | None = None):
        self.total_epochs, self.rounds_per_epoch, self.quiet = total_epochs, rounds_per_epoch, quiet
        self.device = device  # one line naming the devices: printed at start and in the summary
        self.stream = sys.stdout if stream is None else stream
        self.is_main = _is_main_process() if is_main is None else is_main
        self.tty = self.stream.isatty()
        # force_terminal both ways: FORCE_COLOR (set by some CI) must not put escapes in a log.
        self.console = Console(file=self.stream, force_terminal=self.tty, no_color=not self.tty,
                               highlight=False, width=None if self.tty else PLAIN_WIDTH)
        self._timings: dict[str, float] = {}
        # `started`: the process's start (launch.py's first line), so the wall time counts imports and set-up too
        self._started = time.perf_counter() if started is None else started
        self._trained: tuple[float, float] | None = None  # (when training ended, its seconds): see training_done
        self._first_report: tuple[int, float] | None = None  # (epoch, monotonic time) of the first epoch_done
        self._latest: dict[str, float] = {}
        self._live: Live | None = None
        self._closed = False
        # The bar fills the terminal's width; the metrics go on their own line below it.
        self._bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(bar_width=None),
                             MofNCompleteColumn(),
                             TextColumn("epochs  step {task.fields[step]}  {task.fields[rate]} steps/s"),
                             _EtaColumn(), console=self.console, expand=True)
        self._bar_task = self._bar.add_task(title, total=total_epochs, completed=start_epoch, step="-", rate="-",
                                            deadline=None)
        self._metrics_line = Text(style="progress.description")
        self._spinners = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                                  console=self.console)

    @property
    def timings(self) -> dict[str, float]:
        """Seconds per phase name, in the order the phases first ran."""
        return dict(self._timings)

    @property
    def _shows_progress(self) -> bool:
        return self.is_main and not self.quiet

    def _ensure_live(self) -> bool:
        """Starts the live display on first use; False where there is none (no terminal, quiet, closed)."""
        if not (self.tty and self._shows_progress) or self._closed:
            return False
        if self._live is None:
            # stderr is redirected above the display only when it is the terminal too.
            shown = (self._spinners,) if self.total_epochs == 0 else (self._bar, self._metrics_line, self._spinners)
            self._live = Live(Group(*shown), console=self.console,
                              refresh_per_second=8, redirect_stderr=sys.stderr.isatty())
            self._live.start()
        return True

    def note(self, line: str) -> None:
        """A plain line above the progress (not when quiet)."""
        if self._shows_progress:
            self._print(line)

    def add_time(self, name: str, seconds: float) -> None:
        self._timings[name] = self._timings.get(name, 0.0) + seconds

    def training_done(self) -> None:
        """Marks the end of training: the summary then weighs the end-of-run work against it."""
        self._trained = time.perf_counter(), sum(self._timings.get(k, 0.0) for k in TRAINING_PHASES)

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Times host work under `name`: a spinner meanwhile on a terminal, then "name ... 2.3 s"."""
        spinner = self._spinners.add_task(name) if self._ensure_live() else None
        start = time.perf_counter()
        try:
            yield
        finally:
            seconds = time.perf_counter() - start
            self.add_time(name, seconds)
            if spinner is not None:
                self._spinners.remove_task(spinner)
            if self._shows_progress:
                self._print(f"{name} ... {seconds:.1f} s")

    def epoch_done(self, epoch: int, step: int, steps_per_s: float, metrics: Mapping[str, float],
                   member: str = "") -> None:
        """`epoch` epochs are done at global `step`; `metrics` update the latest values shown. In a sweep
        they are the best member's, and `member` names it."""
        self._latest.update(metrics)
        eta = self._eta(epoch, steps_per_s)
        shown = [k for k in LIVE_METRICS if k in self._latest
                 and not (k == "train/loss" and "train/recon_mse" in self._latest)]
        text = (f"best {member}: " if member and shown else "") + "  ".join(f"{k} {self._latest[k]:#.3g}"
                                                                         for k in shown)
        if self._ensure_live():
            self._bar.update(self._bar_task, completed=epoch, step=step, rate=_rate(steps_per_s),
                             deadline=None if eta is None else time.monotonic() + eta)
            self._metrics_line.plain = text
        elif self._shows_progress:
            eta_text = "-:--:--" if eta is None else _clock(eta)
            self._print(f"epoch {epoch}/{self.total_epochs}  step {step}  {_rate(steps_per_s)} steps/s  "
                        f"ETA {eta_text}  {text}".rstrip())

    def _eta(self, epoch: int, steps_per_s: float) -> float | None:
        """Seconds left: the wall time per epoch seen so far (eval and checkpoints included); after the
        first report only the training throughput is known."""
        now, left = time.monotonic(), self.total_epochs - epoch
        if self._first_report is None:
            self._first_report = (epoch, now)
            return left * self.rounds_per_epoch / steps_per_s if steps_per_s > 0 else None
        first_epoch, first_time = self._first_report
        return left * (now - first_time) / (epoch - first_epoch) if epoch > first_epoch else None

    def warn(self, message: str) -> None:
        """To stderr even when quiet (above the bar on a terminal: rich redirects stderr while live)."""
        if self.is_main:
            sys.stderr.write(f"warning: {message}\n")
            sys.stderr.flush()

    def _print(self, line: str) -> None:
        if self.tty:
            self.console.print(Text(line, style="dim"))  # a print-level style would leak onto the live bar
        else:
            self.stream.write(line + "\n")
            self.stream.flush()

    def close(self) -> None:
        """Stops the live display, leaving the bar's last state on screen. Idempotent."""
        self._closed = True
        if self._live is not None:
            self._live.stop()
            self._live = None

    def summary(self, *, final: Mapping[str, float] | Sequence[tuple[Mapping[str, Any], Mapping[str, float]]],
                workdir: Path, paths: Mapping[str, Path]) -> str:
        """Final metrics, wall time per phase, peak host memory, where things are and how to look at
        them. Printed by process 0 even when quiet; returned as plain text."""
        self.close()
        table = _final_table(final)
        total = time.perf_counter() - self._started
        other = total - sum(self._timings.values())
        split = {**self._timings, **({"other": other} if other > 0.05 else {})}
        info = Table.grid(padding=(0, 2))
        info.add_column(style="bold")
        info.add_column()
        parts = ", ".join(f"{k} {v:.1f} s" for k, v in split.items())
        info.add_row("wall time", f"{total:.1f} s" + (f" ({parts})" if parts else ""))
        if self._trained is not None and self._trained[1] > 0:
            ended, training = self._trained
            after = time.perf_counter() - ended
            info.add_row("after training", f"{after:.1f} s, {after / training:.1f}x the training's {training:.1f} s "
                         f"({', '.join(TRAINING_PHASES)})")
            if after > 2 * training and ANALYSIS_PHASE in self._timings:
                info.add_row("", f"of which the analysis {self._timings[ANALYSIS_PHASE]:.1f} s: "
                             "--config.analyze_at_end=False skips it (--task analyze runs it later)")
        info.add_row("peak host memory", _bytes(_peak_rss_bytes()))
        if self.device:
            info.add_row("device", self.device)
        for label, path in {"workdir": workdir, **paths}.items():
            info.add_row(label, str(path))
        run = RunDir(workdir)
        if run.tensorboard.exists():
            info.add_row("tensorboard", f"tensorboard --logdir {shlex.quote(str(run.tensorboard))}")
            if (run.tensorboard / "projector_config.pbtxt").exists():  # its config has no default colouring
                info.add_row("", "in the Projector, pick \"Color by: label\" (it opens uncoloured)")
        elif any(run.members.glob(f"*/{run.tensorboard.name}")):  # a sweep: one TensorBoard run per member
            info.add_row("tensorboard", f"tensorboard --logdir {shlex.quote(str(run.members))}")
        if any(run.wandb.glob("offline-run-*")):
            info.add_row("wandb", f"wandb sync {shlex.quote(str(run.wandb))}/offline-run-*")
        summary = Group(table, info)
        text = _plain(summary)
        if self.is_main:
            if self.tty:
                self.console.print(summary)
            else:
                self.stream.write(text)
                self.stream.flush()
        return text


def _final_table(final: Mapping[str, float] | Sequence[tuple[Mapping[str, Any], Mapping[str, float]]]) -> Table:
    """One row per final metric, or for a sweep one row per member: its name, then its main numbers."""
    if isinstance(final, Mapping):
        table = Table(box=box.SIMPLE_HEAD, title="final metrics", title_justify="left")
        table.add_column("metric")
        table.add_column("value", justify="right")
        for pattern in FINAL_METRICS:
            for key in sorted(fnmatch.filter(final, pattern), key=lambda k: (len(k), k)):  # nll_iw50 before nll_iw5000
                table.add_row(key, f"{final[key]:.4g}")
        return table
    table = Table(box=box.SIMPLE_HEAD, title="final metrics (every number: sweep_results.md)", title_justify="left")
    metrics = [k for k in SWEEP_COLUMNS if any(k in m for _, m in final)]
    table.add_column("member")
    for key in metrics:
        table.add_column(SWEEP_COLUMNS[key], justify="right")
    for member_tags, member_metrics in final:
        table.add_row(str(member_tags.get("member", "-")),
                      *(f"{member_metrics[k]:.4g}" if k in member_metrics else "-" for k in metrics))
    return table
