"""The write-up's figures and the numbers behind its claims, from a checkpoint.

:func:`build_report` is what ``pullback-geom report`` and ``pullback-geom demo`` run;
:mod:`~pullback_geom.experiments.report.analysis` holds the numbers as plain functions and
:mod:`~pullback_geom.viz` the figures.
"""

from .build import Report, ReportOptions, build_report

__all__ = ["Report", "ReportOptions", "build_report"]
