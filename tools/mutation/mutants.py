"""The mutants of a module: an AST walk that proposes one small change per site (used by mutation.py).

Each mutant is named by its node's position in `ast.walk` order, so it can be rebuilt from the
source alone; `Mutant.key` names it by function and text instead, which survives edits elsewhere.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SWAP_BIN = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult,
            ast.FloorDiv: ast.Div, ast.Mod: ast.FloorDiv, ast.Pow: ast.Mult,
            ast.BitAnd: ast.BitOr, ast.BitOr: ast.BitAnd, ast.LShift: ast.RShift,
            ast.RShift: ast.LShift, ast.MatMult: ast.Mult}
SWAP_CMP = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq,
            ast.NotEq: ast.Eq, ast.Is: ast.IsNot, ast.IsNot: ast.Is, ast.In: ast.NotIn,
            ast.NotIn: ast.In}


@dataclasses.dataclass(frozen=True)
class Mutant:
    module: str
    index: int        # position in the module's list (changes when the module does)
    node: int         # the node's position in ast.walk order
    kind: str
    arg: int          # which operand (for comparisons)
    line: int
    end: int          # last line of the mutated node
    where: str        # enclosing function or class
    desc: str         # before -> after, in source text

    @property
    def key(self) -> str:
        """A name that survives edits elsewhere in the module (for the unobservable list)."""
        return f"{self.module}::{self.where}::{self.desc}"


def _skipped(tree: ast.Module) -> set[int]:
    """ids of nodes never mutated: annotations, docstrings, imports, f-strings, strings."""
    skip: set[int] = set()

    def drop(node: ast.AST | None) -> None:
        if node is not None:
            skip.update(id(n) for n in ast.walk(node))

    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom, ast.JoinedStr)):
            drop(node)
        elif isinstance(node, ast.arg):
            drop(node.annotation)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            drop(node.returns)
        elif isinstance(node, ast.AnnAssign):
            drop(node.annotation)
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                drop(body[0])
    return skip


def _owners(tree: ast.Module) -> dict[int, str]:
    owner: dict[int, str] = {}

    def visit(node: ast.AST, name: str) -> None:
        for child in ast.iter_child_nodes(node):
            inner = name
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                inner = f"{name}.{child.name}" if name else child.name
            owner[id(child)] = inner
            visit(child, inner)

    visit(tree, "")
    return owner


def _variants(node: ast.AST) -> Iterator[tuple[str, int]]:
    """(kind, arg) for each mutation this node offers."""
    if isinstance(node, (ast.BinOp, ast.AugAssign)) and type(node.op) in SWAP_BIN:
        yield "binop", 0
    elif isinstance(node, ast.Compare):
        for i, op in enumerate(node.ops):
            if type(op) in SWAP_CMP:
                yield "compare", i
    elif isinstance(node, ast.BoolOp):
        yield "boolop", 0
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub)):
        yield "unary", 0
    elif isinstance(node, ast.Constant) and isinstance(node.value, (bool, int, float)):
        yield "constant", 0
    elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
        yield "remove", 0
    elif isinstance(node, ast.Raise):
        yield "remove", 0
    elif isinstance(node, ast.Return) and node.value is not None and not (
            isinstance(node.value, ast.Constant) and node.value.value is None):
        yield "return", 0


def _mutate(node: ast.AST, kind: str, arg: int) -> ast.AST:
    """The mutated copy of `node`."""
    new = copy.deepcopy(node)
    if kind == "binop":
        new.op = SWAP_BIN[type(node.op)]()
    elif kind == "compare":
        new.ops[arg] = SWAP_CMP[type(node.ops[arg])]()
    elif kind == "boolop":
        new.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
    elif kind == "unary":
        return new.operand
    elif kind == "constant":
        v = node.value
        new.value = (not v) if isinstance(v, bool) else v + 1
    elif kind == "remove":
        return ast.Pass()
    elif kind == "return":
        new.value = None
    return new


def _text(node: ast.AST) -> str:
    s = ast.unparse(node).replace("\n", "; ")
    return s if len(s) <= 60 else s[:57] + "..."


def mutants(module: str) -> list[Mutant]:
    tree = ast.parse((ROOT / module).read_text())
    skip, owner = _skipped(tree), _owners(tree)
    out = []
    for i, node in enumerate(ast.walk(tree)):
        if id(node) in skip:
            continue
        for kind, arg in _variants(node):
            desc = f"{_text(node)} -> {_text(_mutate(node, kind, arg))}"
            line = getattr(node, "lineno", 0)
            end = line if kind in ("remove", "return") and not isinstance(node, ast.Raise) else \
                getattr(node, "end_lineno", line)
            out.append(Mutant(module, len(out), i, kind, arg, line, end, owner.get(id(node), "<module>"),
                              desc))
    seen: dict[str, int] = {}
    for j, m in enumerate(out):  # the same text twice in one function: number the later ones
        seen[m.key] = seen.get(m.key, 0) + 1
        if seen[m.key] > 1:
            out[j] = dataclasses.replace(m, desc=f"{m.desc} #{seen[m.key]}")
    return out


def mutated_source(m: Mutant) -> str:
    tree = ast.parse((ROOT / m.module).read_text())
    nodes = list(ast.walk(tree))
    target = nodes[m.node]
    new = _mutate(target, m.kind, m.arg)
    for parent in nodes:  # swap the node in its parent
        for field, value in ast.iter_fields(parent):
            if value is target:
                setattr(parent, field, new)
            elif isinstance(value, list) and any(v is target for v in value):
                value[[v is target for v in value].index(True)] = new
    return ast.unparse(ast.fix_missing_locations(tree)) + "\n"
