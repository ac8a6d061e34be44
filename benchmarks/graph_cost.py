"""What writing the training round's graph for TensorBoard's Graphs tab adds to a run, per experiment.

    python benchmarks/graph_cost.py [--repeats 3]

For each shipped experiment: the `graph` hook's work as a run does it at step 0 (trace the round,
build the GraphDef, write it into a fresh event file), timed in this process after the program and its
state exist (they exist in a run anyway). The first call is reported apart: it is the one a run pays.
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
import time
from pathlib import Path

import numpy as np

from mnist_ae import parallel
from mnist_ae.run import program as program_lib
from mnist_ae.run.device_data import DeviceData
from mnist_ae.writers import TensorBoardWriter
from mnist_ae.writers.graph import graph_def

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = ("reconstruction", "conv_reconstruction", "deep_autoencoder", "classification", "sweep")


def _config(name: str):  # noqa: ANN202
    spec = importlib.util.spec_from_file_location(name, REPO / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def _write_graph(program: program_lib.Program, state, data: DeviceData, logdir: Path) -> int:  # noqa: ANN001
    graph = graph_def(*program.round_jaxpr(state, data))
    with TensorBoardWriter(logdir) as writer:
        writer.write_graph(graph)
    return len(graph.node)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    mesh = parallel.make_mesh(0)
    print(f"{'experiment':20s} {'nodes':>6s} {'first s':>8s} {'then s':>7s}")
    for name in EXPERIMENTS:
        config = _config(name)
        make = program_lib.sweep_program if config.task == "sweep" else program_lib.single_program
        program, state = make(config, mesh)
        data = DeviceData(np.zeros((1, 28, 28), np.uint8), None, None, None, np.zeros((1, 28, 28)), ())
        times = []
        with tempfile.TemporaryDirectory() as tmp:
            for i in range(1 + args.repeats):
                t = time.perf_counter()
                nodes = _write_graph(program, state, data, Path(tmp) / str(i))
                times.append(time.perf_counter() - t)
        print(f"{name:20s} {nodes:6d} {times[0]:8.3f} {min(times[1:]):7.3f}", flush=True)


if __name__ == "__main__":
    main()
