"""Figures and the self-contained report.html of a run folder."""
