"""The solver race: every solver at a few NFE budgets on the exact and on the learned field,
so the sampler's discretisation error and the network's learning error are told apart."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from lab import _check
from lab.distances import truth_and_floor, w2
from lab.fields import MixtureField
from lab.solvers import SOLVERS, NonFiniteError, sample

__all__ = ["RACE_BUDGETS", "RaceResult", "solver_race"]

RACE_BUDGETS = (5, 10, 20, 50)   # NFE per run of the solver race


@dataclass
class RaceResult:
    """``solver_race``'s table: ``w2[source][solver]`` one W2 to the truth per budget (None
    where one step of the solver costs more than the budget, infinity where it diverged),
    ``nfe[solver]`` the NFE each run used, ``floor`` the W2 between two true sets of ``n``
    points."""

    budgets: tuple
    floor: float
    n: int
    w2: dict
    nfe: dict

    def split(self, solver: str, budget: int, learned: str = "learned", exact: str = "exact") -> dict | None:
        """The two errors of ``solver`` at ``budget``, read off the race: discretisation
        (the exact field's W2 above the floor: what the solver alone gets wrong) and learning
        (the learned field's W2 above the exact field's: what the network adds), and which
        dominates ("neither" when the learned run is within 1.5x the floor, "diverged" when
        either run did)."""
        k = self.budgets.index(budget)
        e, le = self.w2[exact][solver][k], self.w2[learned][solver][k]
        if e is None or le is None:
            return None
        disc = max(e - self.floor, 0.0)
        learn = max(le - e, 0.0) if math.isfinite(e) else math.nan   # unknown when the solver itself diverged
        dominant = ("diverged" if math.isinf(e) or math.isinf(le) else "neither" if le <= 1.5 * self.floor
                    else "discretisation" if disc >= learn else "learning")
        return {"discretisation": disc, "learning": learn, "dominant": dominant}

    def markdown(self, learned: str = "learned", exact: str = "exact") -> str:
        """A Markdown table: per solver and budget, W2 on the exact / learned field and which
        error dominates (D: discretisation, L: learning, blank: neither, near the floor)."""
        mark = {"discretisation": " D", "learning": " L", "neither": "", "diverged": " (diverged)"}
        rows = ["| solver | " + " | ".join(f"{b} NFE" for b in self.budgets) + " |",
                "|---" * (len(self.budgets) + 1) + "|"]
        for s in self.w2[exact]:
            cells = []
            for b, e, le in zip(self.budgets, self.w2[exact][s], self.w2[learned][s]):
                split = self.split(s, b, learned, exact)
                cells.append("—" if split is None else f"{e:.3f} / {le:.3f}{mark[split['dominant']]}")
            rows.append(f"| {s} | " + " | ".join(cells) + " |")
        return (f"{exact} / {learned} W2 to the truth, {self.n} points (floor {self.floor:.3f}; "
                "D: discretisation error dominates, L: the network's)\n\n" + "\n".join(rows))


def solver_race(fields: dict, reference: MixtureField, solvers=None, budgets=RACE_BUDGETS, n: int = 1000,
                seed: int = 0, callback=None) -> RaceResult:
    """Every solver (default: all of ``SOLVERS`` but ode_adaptive, whose NFE its tolerance
    sets) at each NFE budget on each field of ``fields`` (name -> field, e.g. {"learned":
    network, "exact": the mixture's}), from the same n starting points and noise, each run's
    exact W2 to one set of n true samples of ``reference`` at t_min, beside the floor.

    On the exact field only the solver's discretisation error is left; on the learned one
    the network's error adds to it: ``RaceResult.split`` reads off which dominates.
    ``callback(done, total, source, solver)`` after each run (progress)."""
    solvers = [s for s in SOLVERS if s != "ode_adaptive"] if solvers is None else list(solvers)
    for s in solvers:
        if s not in SOLVERS:
            raise ValueError(f"unknown solver {s!r}; choose among {', '.join(SOLVERS)}")
    budgets = tuple(_check.integer(b, "budget", 1, 100_000) for b in budgets)
    if not budgets or not fields:
        raise ValueError("the race needs at least one budget and one field")
    n = _check.integer(n, "n", 2, 20_000)
    truth, floor = truth_and_floor(reference, n, seed=seed)
    x_T = reference.schedule.prior_sample(n, generator=torch.Generator().manual_seed((_check.seed(seed) + 1) % 2**63))
    out = RaceResult(budgets, floor, n, {}, {})
    total, done = len(fields) * len(solvers), 0
    for source, f in fields.items():
        out.w2[source] = {}
        for s in solvers:
            per = SOLVERS[s].nfe_per_step
            row, nfes = [], []
            for b in budgets:
                if b < per:
                    row.append(None)
                    nfes.append(None)
                    continue
                try:
                    traj = sample(f, x_T=f.as_input(x_T), solver=s, steps=b // per, seed=seed, keep_last=1)
                except NonFiniteError:          # a solver that diverges at this budget: infinitely far
                    row.append(math.inf)
                    nfes.append(per * (b // per))
                    continue
                row.append(float(w2(traj.samples, truth)))
                nfes.append(traj.nfe)
            out.w2[source][s], out.nfe[s] = row, nfes
            done += 1
            if callback is not None:
                callback(done, total, source, s)
    return out
