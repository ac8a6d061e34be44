"""report.html per run and compare.html for any set of runs: self-contained, offline, interactive (Plotly)."""


from mnist_ae.errors import ReportError

__all__ = ["ReportError"]
