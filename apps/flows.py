"""Flows: stochastic interpolants and flow matching beside the exact field: `panel serve apps/flows.py`."""
import panel as pn

from lab.app import servable
from lab.app.flows_view import FlowsView
from lab.app.session import Session

pn.extension(inline=True)  # resources from the server, never a CDN: the lab works offline
servable(pn.Column("# score-lab: flows", FlowsView(Session())), title="score-lab: flows")
