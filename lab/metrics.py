"""The lab's measurements under one name, as they were before each found its own module:
this module only re-exports (every name here keeps working).

- ``lab.distances``: ``w2``, ``w2_binned``, ``sliced_w2``, ``mmd``, ``histogram``,
  ``w2_histograms``, ``truth_and_floor``;
- ``lab.fields``: ``score_error`` (a field's relative error to the exact score),
  ``noised_samples``, ``fingerprint``;
- ``lab.fokker_planck``: ``fokker_planck_residual``, ``fokker_planck_norm``,
  ``log_density_residual``;
- ``lab.likelihood``: ``nll``;
- ``lab.gap``: ``ode_sde_gap``, ``gap_binned``, ``GAP_PROTOCOL`` (Deveney et al.);
- ``lab.race``: ``solver_race``, ``RaceResult``, ``RACE_BUDGETS``.
"""
from __future__ import annotations

from lab._check import MAX_COORD
from lab.distances import MMD_BANDWIDTH, MMD_MEDIAN_POINTS, histogram, mmd, sliced_w2, truth_and_floor, w2, \
    w2_binned, w2_histograms
from lab.fields import fingerprint, noised_samples, score_error
from lab.fokker_planck import fokker_planck_norm, fokker_planck_residual, log_density_residual
from lab.gap import GAP_CHUNK, GAP_PROTOCOL, gap_binned, ode_sde_gap
from lab.likelihood import nll
from lab.race import RACE_BUDGETS, RaceResult, solver_race

__all__ = ["score_error", "noised_samples", "w2", "sliced_w2", "mmd", "nll", "fokker_planck_residual",
           "log_density_residual", "histogram", "w2_histograms", "gap_binned", "GAP_PROTOCOL", "GAP_CHUNK",
           "ode_sde_gap", "w2_binned", "truth_and_floor", "fokker_planck_norm",
           "RACE_BUDGETS", "RaceResult", "solver_race", "fingerprint", "MAX_COORD", "MMD_BANDWIDTH",
           "MMD_MEDIAN_POINTS"]
