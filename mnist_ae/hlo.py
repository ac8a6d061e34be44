"""Reading a compiled XLA program's HLO text: where a device layout communicates."""

from __future__ import annotations

import re

_COLLECTIVE = re.compile(r" (all-reduce|all-gather|reduce-scatter|collective-permute|all-to-all)(-start)?\(")


def collective_lines(hlo: str) -> list[str]:
    """The collectives (and the async "-start" halves) in the text: what the layout tests and the sweep
    scaling benchmark count."""
    return [line for line in hlo.splitlines() if _COLLECTIVE.search(line)]
