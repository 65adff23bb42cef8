"""The ODE-SDE gap and the Fokker-Planck regulariser: `panel serve apps/gap.py`."""
import panel as pn

from lab.app import servable
from lab.app.gap_view import GapView
from lab.app.session import Session

pn.extension(inline=True)  # resources from the server, never a CDN: the lab works offline
servable(pn.Column("# score-lab: ODE vs SDE", GapView(Session())), title="score-lab: ODE vs SDE")
