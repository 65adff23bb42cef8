"""The shipped checkpoints: tiny pretrained models, one per data set, so the served lab is
useful at once on a CPU, and the ODE-SDE gap page's models. ``load_pretrained(name)`` and
``gap_path(w, network)`` find them; ``lab.pretrained.recipes`` holds the recipes that make
them (``python -m lab pretrain``). Beside ``gaussian_grid`` ships ``gaussian_grid-2k``: the
paper recipe's run at 2,000 steps, undertrained (it blurs)."""
from __future__ import annotations

from pathlib import Path

from lab.train import load

__all__ = ["PRETRAINED_DIR", "pretrained_path", "load_pretrained", "FLOW_ENDS", "flow_path", "GAP_DATASET", "GAP_WEIGHTS", "gap_path",
           "GAP_DATASETS", "GAP_NETWORKS", "GRID_SCHEDULE", "UNDERTRAINED", "check_gap_model"]

PRETRAINED_DIR = Path(__file__).resolve().parent
GAP_DATASET = "gap_circles"   # the ODE-SDE gap page's data set: Deveney et al.'s circles2, their units
GAP_DATASETS = ("gap_circles", "gap_checker")
GAP_WEIGHTS = (0.0, 0.1, 1.0, 10.0)  # Fokker-Planck weights with a pretrained OU model each
GAP_NETWORKS = ("paper", "lab")     # Deveney et al.'s LogDensityMLP; the lab's ScoreMLP
# The grid model's schedule, Aithal et al. 2024's DDPM (T = 1000, betas linear 0.001..0.2):
# VP with beta(t) = 1..200 on t in [1e-5, 1] (lab.pretrained.recipes: the whole recipe)
GRID_SCHEDULE = dict(beta0=1.0, beta1=200.0, t_min=1e-5)
UNDERTRAINED = 2_000     # the gaussian_grid-2k checkpoint: the paper recipe's run, stopped early
FLOW_ENDS = (("gaussian", "two_moons"),)   # the shipped flows' (source, target): the flows page's default


def pretrained_path(dataset: str) -> Path:
    return PRETRAINED_DIR / f"{dataset}.pt"


def load_pretrained(dataset: str, device=None):
    """The pretrained NetworkField of ``dataset`` (VP schedule), or None if there is none.
    ``"gaussian_grid-2k"`` is the grid's run stopped at 2,000 steps (undertrained: it blurs
    the modes where the full run interpolates between them)."""
    path = pretrained_path(dataset)
    return load(path, device=device) if path.is_file() else None


def flow_path(source: str = "gaussian", target: str = "two_moons") -> Path:
    """The shipped flow (a VelocityField, linear interpolant, independent coupling) from
    ``source`` to ``target``; ``load_pretrained`` reads it as ``"flow-SOURCE-TARGET"``."""
    return PRETRAINED_DIR / f"flow-{source}-{target}.pt"


def gap_path(weight: float, network: str = "paper", dataset: str | None = None) -> Path:
    """The shipped gap model of ``network`` (one of GAP_NETWORKS) trained with Fokker-Planck
    weight ``weight`` on ``dataset`` (default GAP_DATASET)."""
    check_gap_model(network, dataset or GAP_DATASET)
    return PRETRAINED_DIR / f"gap-{dataset or GAP_DATASET}-{network}-w{weight:g}.pt"


def check_gap_model(network: str, dataset: str) -> None:
    """Refuse a gap network or data set the lab has no models of, naming the choices."""
    if network not in GAP_NETWORKS:
        raise ValueError(f"unknown gap network {network!r}; choose one of {', '.join(GAP_NETWORKS)}")
    if dataset not in GAP_DATASETS:
        raise ValueError(f"no gap models for data set {dataset!r}; choose one of {', '.join(GAP_DATASETS)}")
