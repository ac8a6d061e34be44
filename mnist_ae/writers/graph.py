"""A jaxpr as a TensorBoard `GraphDef`, for the Graphs tab: one node per primitive, grouped by module.

tensorboardX's `add_graph` only knows PyTorch modules, so the graph is built here from what JAX
traced. Calls (`jit`, `custom_jvp_call`, ...) are inlined, so every node is one primitive; other
higher-order primitives (`scan`, `cond`, `while`) stay one node each. Each node's group comes from
its name stack: flax pushes the module path (`encoder/Dense_0`) and `core.steps.update_part` the
part being updated (`ae`, `probe`, `classifier`), so TensorBoard draws collapsed boxes `encoder`,
`decoder`, `probe` (the networks, forward and backward) beside `ae_step` and `probe_step` (each
phase's loss and optimizer update), `codes` (the probe's stop-gradient inputs) and `round` (the
round's batches, its metrics and step count).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import jax
from jax.extend import core as jex_core
import tensorboardX  # noqa: F401  (first: importing a proto module before the package is a circular import)
from tensorboardX.proto.attr_value_pb2 import AttrValue
from tensorboardX.proto.graph_pb2 import GraphDef
from tensorboardX.proto.node_def_pb2 import NodeDef
from tensorboardX.proto.tensor_shape_pb2 import TensorShapeProto
from tensorboardX.proto.versions_pb2 import VersionDef

PARTS = ("ae", "probe", "classifier")  # the scopes `core.steps.update_part` opens
_INLINED = {"jit", "pjit", "closed_call", "core_call", "custom_jvp_call", "custom_vjp_call",
            "custom_vjp_call_jaxpr", "remat", "checkpoint"}
MAX_PARAM_CHARS = 200
_TRANSFORM = re.compile(r"^\w+\((.*)\)$")  # "transpose(jvp(MLP))": a scope seen through transforms


def _unwrap(frame: str) -> str:
    while (m := _TRANSFORM.match(frame)) is not None:
        frame = m.group(1)
    return frame


def group(name_stack: str) -> list[str]:
    """The group path of an operation from its name stack.

    `ae/transpose(jvp(Autoencoder.logits))/Autoencoder.encode/encoder/Dense_0` -> encoder/Dense_0;
    `probe/jvp(MLP)/Dense_1` -> probe/Dense_1; `vmap(probe)` (its optimizer, in a sweep) -> probe_step;
    `codes` -> codes; `` -> round.
    A frame that starts with a capital is a top-level flax module (`MLP`) or a method (`Class.method`):
    what follows it, less further method frames, is the module path.
    """
    frames = [f for f in name_stack.split("/") if f]
    phase = _unwrap(frames[0]) if frames and _unwrap(frames[0]) in PARTS else ""  # `vmap(ae)` in a sweep
    for k, frame in enumerate(frames):
        if _unwrap(frame)[:1].isupper():
            path = [_unwrap(f) for f in frames[k + 1:] if "." not in _unwrap(f) and _unwrap(f)]
            if phase in ("probe", "classifier"):
                return [phase, *path]
            return path or ["autoencoder"]
    if phase:
        return [f"{phase}_step"]
    return [_unwrap(frames[0])] if frames and _unwrap(frames[0]) else ["round"]  # another scope: `codes`


def _safe(name: str) -> str:
    """TensorBoard's node-name alphabet: [A-Za-z0-9.][A-Za-z0-9_.\\-/]*."""
    name = re.sub(r"[^A-Za-z0-9_.\-/]", "_", name).strip("/")
    return name if name[:1].isalnum() or name[:1] == "." else f"_{name}"


def input_names(names: Sequence[str], args: Sequence[Any]) -> list[str]:
    """One node name per leaf of `args`, from the argument's name and the leaf's pytree path:
    `state/params/ae/params/encoder/Dense_0/kernel`."""
    out = []
    for name, arg in zip(names, args, strict=True):
        for path, _ in jax.tree_util.tree_flatten_with_path(arg)[0]:
            keys = [str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path]
            out.append(_safe("/".join([name, *keys])))
    return out


def _shape_attr(avals: Sequence[Any]) -> AttrValue:
    shapes = [TensorShapeProto(dim=[TensorShapeProto.Dim(size=int(d)) for d in getattr(a, "shape", ())])
              for a in avals]
    return AttrValue(list=AttrValue.ListValue(shape=shapes))


def _attrs(avals: Sequence[Any], params: dict[str, Any] | None = None) -> dict[str, AttrValue]:
    """Shapes (drawn on the edges), dtypes and the primitive's short parameters (the node's info card)."""
    attrs = {"_output_shapes": _shape_attr(avals),
             "dtype": AttrValue(s=",".join(str(getattr(a, "dtype", "")) for a in avals).encode())}
    for key, value in (params or {}).items():
        if len(text := str(value)) <= MAX_PARAM_CHARS:  # not a sub-jaxpr's listing
            attrs[key] = AttrValue(s=text.encode())
    return attrs


def _sub_jaxpr(eqn: Any) -> jex_core.ClosedJaxpr | jex_core.Jaxpr | None:
    if eqn.primitive.name not in _INLINED:
        return None
    for key in ("jaxpr", "call_jaxpr", "fun_jaxpr"):
        if key in eqn.params:
            return eqn.params[key]
    return None


def graph_def(closed: jex_core.ClosedJaxpr, names: Sequence[str]) -> GraphDef:
    """The GraphDef of a closed jaxpr whose inputs are named `names` (one per invar)."""
    jaxpr = closed.jaxpr
    if len(names) != len(jaxpr.invars):
        raise ValueError(f"{len(names)} input names for {len(jaxpr.invars)} inputs")
    nodes: list[NodeDef] = []
    used: dict[str, int] = {}

    def add(name: str, op: str, inputs: list[str], attrs: dict[str, AttrValue]) -> str:
        count = used.get(name, 0)
        used[name] = count + 1
        unique = name if count == 0 else f"{name}_{count}"
        nodes.append(NodeDef(name=unique, op=op, input=inputs, attr=attrs))
        return unique

    def source(env: dict[Any, str], atom: Any) -> list[str]:
        return [env[atom]] if not isinstance(atom, jex_core.Literal) and atom in env else []

    def walk(jaxpr: jex_core.Jaxpr, consts: Sequence[Any], env: dict[Any, str], stack: str) -> None:
        for var, value in zip(jaxpr.constvars, consts):
            env[var] = add(_safe(f"{'/'.join(group(stack))}/const"), "Const", [],
                           _attrs([getattr(value, "aval", var.aval)]))
        for eqn in jaxpr.eqns:
            here = "/".join(filter(None, [stack, str(eqn.source_info.name_stack)]))
            inputs = [name for atom in eqn.invars for name in source(env, atom)]
            sub = _sub_jaxpr(eqn)
            if sub is not None:  # inline: the callee's inputs are the caller's operands
                inner = getattr(sub, "jaxpr", sub)
                inner_env = {v: env[a] for v, a in zip(inner.invars, eqn.invars)
                             if not isinstance(a, jex_core.Literal) and a in env}
                walk(inner, getattr(sub, "consts", ()), inner_env, here)
                for out, inner_out in zip(eqn.outvars, inner.outvars):
                    if not isinstance(inner_out, jex_core.Literal) and inner_out in inner_env:
                        env[out] = inner_env[inner_out]
                continue
            name = add(_safe(f"{'/'.join(group(here))}/{eqn.primitive.name}"), eqn.primitive.name,
                       list(dict.fromkeys(inputs)), _attrs([v.aval for v in eqn.outvars], eqn.params))
            for k, out in enumerate(eqn.outvars):
                env[out] = name if k == 0 else f"{name}:{k}"

    env: dict[Any, str] = {}
    for var, name in zip(jaxpr.invars, names):
        env[var] = add(name, "Placeholder", [], _attrs([var.aval]))
    walk(jaxpr, closed.consts, env, "")
    return GraphDef(node=nodes, versions=VersionDef(producer=22))
