"""Guidance and composition against the exact target (FKC): `panel serve apps/guidance.py`."""
import panel as pn

from lab.app import servable
from lab.app.guidance_view import GuidanceView
from lab.app.session import Session

pn.extension(inline=True)  # resources from the server, never a CDN: the lab works offline
servable(pn.Column("# score-lab: guidance", GuidanceView(Session())), title="score-lab: guidance")
