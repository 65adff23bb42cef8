"""Curl of the learned score beside the exact one: `panel serve apps/curl.py`."""
import panel as pn

from lab.app import servable
from lab.app.curl_view import CurlView
from lab.app.session import Session

pn.extension(inline=True)  # resources from the server, never a CDN: the lab works offline
servable(pn.Column("# score-lab: curl", CurlView(Session())), title="score-lab: curl")
