"""Change the solver live: `panel serve apps/solvers.py` (or `python -m lab serve`)."""
import panel as pn

from lab.app import servable
from lab.app.session import Session
from lab.app.solver_view import SolverView

pn.extension(inline=True)  # resources from the server, never a CDN: the lab works offline
servable(pn.Column("# score-lab: solvers", SolverView(Session())), title="score-lab: solvers")
