"""Curl of the learned score beside the exact one: `panel serve apps/curl.py`."""
import panel as pn

from lab.app.curl_view import CurlView
from lab.app.session import Session

pn.extension(inline=True)  # resources from the server, never a CDN: the lab works offline
pn.Column("# score-lab: curl", CurlView(Session())).servable(title="score-lab: curl")
