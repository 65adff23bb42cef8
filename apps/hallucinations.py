"""Mode interpolation on the 5x5 grid: `panel serve apps/hallucinations.py`."""
import panel as pn

from lab.app.hallucination_view import HallucinationView
from lab.app.session import Session

pn.extension(inline=True)  # resources from the server, never a CDN: the lab works offline
pn.Column("# score-lab: hallucinations",
          HallucinationView(Session(dataset="gaussian_grid"))).servable(title="score-lab: hallucinations")
