"""report.html per run and compare.html for any set of runs: self-contained, offline, interactive (Plotly)."""


class ReportError(ValueError):
    """A workdir the report cannot be written for: one line naming it and the fix."""
