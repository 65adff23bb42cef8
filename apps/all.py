"""The whole lab on one page, one session: train on the first tab, see the model on the others.
`panel serve apps/all.py` (or `python -m lab serve`, page /all; /all?tab=curl opens a tab)."""
import panel as pn

from lab.app import servable
from lab.app.curl_view import CurlView
from lab.app.flows_view import FlowsView
from lab.app.gap_view import GapView
from lab.app.guidance_view import GuidanceView
from lab.app.hallucination_view import HallucinationView
from lab.app.session import Session
from lab.app.solver_view import SolverView
from lab.app.train_view import TrainView

pn.extension(inline=True)  # resources from the server, never a CDN: the lab works offline

session = Session()  # this browser session's store, shared by every tab


def later(view):
    """Build a slower tab after the first one shows (a spinner until then)."""
    return pn.panel(lambda: view(session), defer_load=True)


tabs = pn.Tabs(("Train", TrainView(session)), ("Solvers", later(SolverView)), ("Curl", later(CurlView)),
               ("Hallucinations", later(HallucinationView)), ("ODE vs SDE", later(GapView)),
               ("Guidance", later(GuidanceView)), ("Flows", later(FlowsView)), dynamic=True)
TAB_NAMES = ["train", "solvers", "curl", "hallucinations", "gap", "guidance", "flows"]   # ?tab=NAME opens that tab
asked = [a.decode() for a in pn.state.session_args.get("tab", [])]
if asked and asked[0] in TAB_NAMES:
    tabs.active = TAB_NAMES.index(asked[0])
servable(pn.Column("# score-lab", tabs), title="score-lab")
