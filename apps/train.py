"""Train a model live: `panel serve apps/train.py` (or `python -m lab serve`)."""
import panel as pn

from lab.app import servable
from lab.app.session import Session
from lab.app.train_view import TrainView

pn.extension(inline=True)  # resources from the server, never a CDN: the lab works offline
servable(pn.Column("# score-lab: train", TrainView(Session())), title="score-lab: train")
