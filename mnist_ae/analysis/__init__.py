"""Embedding analysis of test-set codes: 2-D/3-D maps, quality numbers, figures, tables, `--task analyze`.

embed (PCA, t-SNE backends, thread policy, subsamples) -> quality (numbers, per-dimension stats,
outliers) -> tables and figures -> pipeline (`run_analysis`) -> task (`analyze_codes`: files and logging).

Names are re-exported lazily (PEP 562): a sweep that only wants `figures` must not pay for
scikit-learn, and training imports the analysis only when it runs it.
"""

from __future__ import annotations

import importlib
from typing import Any

ANALYSIS_PHASE = "analysis (PCA, t-SNE, quality numbers)"  # its timed phase, for runs and --task analyze

_HOME = {  # name -> submodule that defines it
    "AnalysisResult": "pipeline",
    "run_analysis": "pipeline",
    "TSNE_3D_POINTS": "embed",
    "analyze_codes": "task",
}
__all__ = sorted([*_HOME, "ANALYSIS_PHASE"])


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
