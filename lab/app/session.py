"""One browser session's store: the data set, its exact field, and the learned field.

Each served page makes its own ``Session`` (no module-level state), and every view reads
and writes the lab's objects through it, so training on one page shows on the others.
"""
from __future__ import annotations

import param

from lab.data import DATASETS, dataset_mixture
from lab.fields import MixtureField, ScoreField
from lab.schedules import SCHEDULES

__all__ = ["Session"]


class Session(param.Parameterized):
    """Data set, schedule, exact field and learned field of one user."""

    dataset = param.Selector(default="two_moons", objects=list(DATASETS), doc="data set")
    schedule = param.Selector(default="vp", objects=list(SCHEDULES), doc="noise schedule")
    model = param.Parameter(default=None, doc="the learned ScoreField (None: none yet)")
    message = param.String(default="", doc="the last problem to show the user")

    def __init__(self, pretrained: bool = True, **params):
        super().__init__(**params)
        self._exact = None
        self._pretrained = pretrained
        if pretrained and self.model is None:
            self._load_pretrained()

    @param.depends("dataset", "schedule", watch=True)
    def _load_pretrained(self):
        """Start from the data set's pretrained model (VP only), so every page is useful at once."""
        if not self._pretrained:
            return
        from lab.pretrained import load_pretrained

        model = load_pretrained(self.dataset, device="cpu") if self.schedule == "vp" else None
        self.message = "" if model is not None else (
            f"no pretrained model for {self.dataset} with the {self.schedule} schedule: "
            "showing the exact score until you train one")
        self.model = model

    @property
    def exact(self) -> MixtureField:
        """The exact score of the data set under the schedule."""
        key = (self.dataset, self.schedule)
        if self._exact is None or self._exact[0] != key:
            self._exact = (key, MixtureField(dataset_mixture(self.dataset), self.schedule))
        return self._exact[1]

    def field(self, source: str = "learned") -> ScoreField:
        """The field a view shows: "learned" (falls back to exact while there is no model)
        or "exact"."""
        if source == "learned" and self.model is not None:
            return self.model
        return self.exact
