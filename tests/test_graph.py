"""The training round in TensorBoard's Graphs tab: one node per primitive, grouped by network and phase."""

from __future__ import annotations

import collections
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from helpers import tiny, tiny_run, tiny_sweep
from mnist_ae import parallel, tasks
from mnist_ae.run import program as program_lib
from mnist_ae.run.device_data import DeviceData
from mnist_ae.writers import graph

CALLS = {"jit", "pjit", "custom_jvp_call"}  # what the round's jaxpr calls; graph_def inlines them


def _primitives(jaxpr) -> collections.Counter:  # noqa: ANN001
    """The round's primitives with calls opened, counted independently of graph_def's walk."""
    count = collections.Counter()
    for eqn in jaxpr.eqns:
        inner = eqn.params.get("jaxpr", eqn.params.get("call_jaxpr"))
        if eqn.primitive.name in CALLS:
            count += _primitives(getattr(inner, "jaxpr", inner))
        else:
            assert inner is None, f"{eqn.primitive.name}: a sub-jaxpr this test does not open"
            count[eqn.primitive.name] += 1
    return count


def _check(nodes, closed, names) -> None:  # noqa: ANN001
    """Every edge ends at a node; one node per input and per primitive, each of its primitive's kind."""
    by_name = {n.name: n for n in nodes}
    assert len(by_name) == len(nodes), "node names are unique"
    assert all(i.split(":")[0] in by_name for n in nodes for i in n.input)
    inputs = [n for n in nodes if n.op == "Placeholder"]
    assert [n.name for n in inputs] == names and len(names) == len(closed.jaxpr.invars)
    assert collections.Counter(n.op for n in nodes if n.op != "Placeholder") == _primitives(closed.jaxpr)
    assert all(n.attr["_output_shapes"].list.shape for n in nodes if n.op != "Placeholder")


def _tops(nodes) -> set[str]:  # noqa: ANN001
    return {n.name.split("/")[0] for n in nodes}


@pytest.mark.parametrize("stack, expected", [
    ("ae/transpose(jvp(Autoencoder.logits))/Autoencoder.encode/encoder/Dense_0", ["encoder", "Dense_0"]),
    ("ae/jvp(Autoencoder.logits)/decoder/mlp/Dense_2", ["decoder", "mlp", "Dense_2"]),
    ("ae/transpose(ae)/jvp(Autoencoder.logits)/decoder/mlp", ["decoder", "mlp"]),
    ("Autoencoder.encode/encoder/Dense_1", ["encoder", "Dense_1"]),  # the probe's codes, outside a phase
    ("ae/jvp(Autoencoder.logits)", ["autoencoder"]),
    ("probe/transpose(jvp(MLP))/Dense_1", ["probe", "Dense_1"]),
    ("probe/jvp(MLP)", ["probe"]),
    ("classifier/jvp(MLP)/Dense_0", ["classifier", "Dense_0"]),
    ("vmap(probe)/jvp(MLP)/Dense_0", ["probe", "Dense_0"]),  # a sweep's vmapped round
    ("ae", ["ae_step"]), ("vmap(ae)/jvp()", ["ae_step"]), ("probe/transpose(jvp())", ["probe_step"]),
    ("codes", ["codes"]), ("vmap(codes)", ["codes"]), ("", ["round"]), ("vmap()", ["round"]),
])
def test_an_operation_is_grouped_by_its_network_or_its_phase(stack, expected):
    assert graph.group(stack) == expected


def test_a_run_writes_its_round_once_with_the_three_networks_as_groups(tmp_path_factory):
    """The event file holds the graph; every node's inputs exist; nodes = inputs + the round's primitives."""
    config = tiny(epochs=2)
    workdir = tiny_run(tmp_path_factory, epochs=2)[0]  # the session's shared run of this config
    event_graph = EventAccumulator(str(workdir / "tb")).Reload().Graph()
    learner_program, state = program_lib.single_program(config, parallel.make_mesh(0))
    data = DeviceData(jnp.zeros((64, 28, 28), jnp.uint8), None, None, None, np.zeros((1, 28, 28)), ())
    closed, names = learner_program.round_jaxpr(state, data)
    _check(event_graph.node, closed, names)
    assert {"encoder", "decoder", "probe", "ae_step", "probe_step", "state"} <= _tops(event_graph.node)
    assert any(n.name.startswith("encoder/Dense_0/dot_general") for n in event_graph.node)
    assert "state/params/ae/params/encoder/Dense_0/kernel" in names
    # the alternation, as docs/monitoring.md reads it: the probe reads codes from the encoder, and nothing
    # of the probe phase flows back into the autoencoder or its update
    assert _edges(event_graph.node, {"probe_step", "probe", "codes"}, {"encoder", "decoder", "ae_step"}) == 0
    assert _edges(event_graph.node, {"encoder"}, {"codes"}) > 0 and _edges(event_graph.node, {"codes"}, {"probe"}) > 0
    assert {n.op for n in event_graph.node if n.name.startswith("codes/")} == {"stop_gradient"}
    graphs = [e for f in (workdir / "tb").glob("events.*") for e in _events(f) if e.HasField("graph_def")]
    assert len(graphs) == 1, "written at the start only, not at each epoch"


def _edges(nodes, sources: set[str], targets: set[str]) -> int:  # noqa: ANN001
    """Edges from a node in one of the `sources` groups into one in the `targets` groups."""
    top = {n.name: n.name.split("/")[0] for n in nodes}
    return sum(top[i.split(":")[0]] in sources for n in nodes if top[n.name] in targets for i in n.input)


def _events(path: Path):  # noqa: ANN202
    from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader

    return list(LegacyEventFileLoader(str(path)).Load())


@pytest.mark.slow  # second check of the graph writer
def test_a_classifier_and_a_sweep_get_their_own_round():
    mesh = parallel.make_mesh(0)
    data = DeviceData(jnp.zeros((64, 28, 28), jnp.uint8), None, None, None, np.zeros((1, 28, 28)), ())
    classifier, state = program_lib.single_program(tiny(task="classification"), mesh)
    closed, names = classifier.round_jaxpr(state, data)
    nodes = graph.graph_def(closed, names).node
    _check(nodes, closed, names)
    assert {"classifier", "classifier_step"} <= _tops(nodes) and not {"encoder", "probe"} & _tops(nodes)

    sweep, states = program_lib.sweep_program(tiny_sweep(), mesh)
    closed, names = sweep.round_jaxpr(states, data)
    nodes = graph.graph_def(closed, names).node
    _check(nodes, closed, names)
    assert {"encoder", "decoder", "probe", "ae_step", "probe_step", "mask_ml"} <= _tops(nodes)
    kernel = next(n for n in nodes if n.name == "state/params/ae/params/encoder/Dense_0/kernel")
    assert kernel.attr["_output_shapes"].list.shape[0].dim[0].size == 4  # the stacked members


def test_input_names_must_match_the_inputs():
    closed = jax.make_jaxpr(lambda a, b: a + b)(1.0, 2.0)
    with pytest.raises(ValueError, match="1 input names for 2 inputs"):
        graph.graph_def(closed, ["a"])


@pytest.mark.slow  # second check of the graph writer
def test_a_graph_that_cannot_be_built_is_one_warning_and_the_run_trains_on(tmp_path, monkeypatch, capsys):
    def broken(*args):
        raise NotImplementedError("no graph for this primitive")

    monkeypatch.setattr(graph, "graph_def", broken)
    final = tasks.run(tiny(epochs=1), tmp_path, log_framework="tensorboard", quiet=True)
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert warnings == ["warning: no graph for TensorBoard's Graphs tab (NotImplementedError: no graph for "
                        "this primitive); training goes on"]
    assert np.isfinite(final["test/recon_mse"]) and (tmp_path / "checkpoints").exists()
    assert not EventAccumulator(str(tmp_path / "tb")).Reload().Tags()["graph"]


def test_names_are_tensorboards_and_repeats_are_numbered():
    assert [graph._safe(n) for n in ("x/y z", "/a/", ".a", "-a", "x_gbhw")] == ["x/y_z", "a", ".a", "_-a", "x_gbhw"]
    closed = jax.make_jaxpr(lambda x: x + x + x)(1.0)
    assert [n.name for n in graph.graph_def(closed, ["x"]).node] == ["x", "round/add", "round/add_1"]
    with pytest.raises(ValueError):
        graph.input_names(["state"], [1.0, 2.0])  # a name per argument


def test_calls_are_opened_outputs_keep_their_index_and_long_parameters_stay_out():
    def f(x):
        y, one = jax.jit(lambda v: (v, 1.0))(x)  # a call that passes its input through and returns a literal
        values, indices = jax.lax.top_k(y * one, 2)  # a primitive with two outputs
        carry, _ = jax.lax.scan(lambda c, v: (c + v, None), 0.0, values)  # a sub-jaxpr that stays one node
        return carry + indices[0]

    closed = jax.make_jaxpr(f)(jnp.arange(4.0))
    nodes = {n.name: n for n in graph.graph_def(closed, ["x"]).node}
    assert list(nodes["round/mul"].input)[0] == "x"  # through the opened call, to the caller's input
    assert list(nodes["round/convert_element_type"].input) == []  # the call's literal 1.0: no edge
    [consumer] = [n for n in nodes.values() if "round/top_k:1" in n.input]
    assert "round/top_k" in [i for n in nodes.values() for i in n.input]
    assert consumer.op in ("slice", "squeeze", "gather", "dynamic_slice")
    assert nodes["round/scan"].attr["length"].s == b"2"  # a short parameter: on the node's info card
    branchy = jax.make_jaxpr(lambda x: jax.lax.cond(x > 0, lambda v: jnp.sin(v) * 2 + 1 - 3, lambda v: v - 1, x))
    cond = next(n for n in graph.graph_def(branchy(1.0), ["x"]).node if n.op == "cond")
    assert "branches" not in cond.attr  # two listed jaxprs (208 characters): not an info-card line
    passthrough = jax.make_jaxpr(lambda x: x + jax.jit(lambda v: v)(2.0))(1.0)  # a call given a literal
    assert [list(n.input) for n in graph.graph_def(passthrough, ["x"]).node] == [[], ["x"]]
