"""Mode interpolation on the 5x5 grid: `panel serve apps/hallucinations.py`."""
import panel as pn

from lab.app import servable
from lab.app.hallucination_view import HallucinationView
from lab.app.session import Session

pn.extension(inline=True)  # resources from the server, never a CDN: the lab works offline
servable(pn.Column("# score-lab: hallucinations",
          HallucinationView(Session(dataset="gaussian_grid"))), title="score-lab: hallucinations")
