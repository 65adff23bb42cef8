"""Server time of a live solver change on the solver page, driven in-process (no browser).

Issue 6's budget: a change of solver, steps, spacing or eta re-samples 4,000 points at 20
NFE in at most 150 ms of server time on this CPU with the default model.

The page is attached to a Bokeh document, as ``panel serve`` does, so each change runs all
the server's work: sampling, the sliced W2, the new figure data and the text, the
document's change events, and their serialisation into the patch message a browser would
be sent (collected with a document listener and encoded with Bokeh's protocol). What is not
counted: the websocket write and the browser's drawing.

Baseline, measured in the same run: the previous way of drawing the same two plots,
a new HoloViews element per change (``lab.plots``) in a HoloViews pane.

    python benchmarks/app_latency.py [--threads 1 2] [--repeats 5] [--train]     # 11 s here

The default model is the pretrained two_moons checkpoint (TrainConfig defaults);
``--train`` trains a fresh one first (about 20 s).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from bokeh.document import Document
from bokeh.protocol import Protocol

from lab.app.session import Session
from lab.app.solver_view import N_SAMPLES, SolverView

# (parameter, value, the value to step away to between timed repeats)
CHANGES = [("solver", "ddim", "dpm++2m"), ("solver", "dpm++2m", "ddim"), ("steps", 10, 20),
           ("steps", 20, 10), ("spacing", "karras", "logsnr"), ("spacing", "logsnr", "karras"),
           ("solver", "euler_maruyama", "dpm++2m"), ("eta", 0.5, 1.0), ("eta", 1.0, 0.5),
           ("solver", "deis", "dpm++2m"), ("seed", 1, 0), ("solver", "dpm++2m", "deis")]


class Patches:
    """Collects a document's change events and encodes them as the server would."""

    def __init__(self, doc: Document):
        self.doc, self.events = doc, []
        doc.on_change(self.events.append)
        self.protocol = Protocol()

    def flush(self) -> int:
        """Encode what changed since the last flush; return the message's size in bytes."""
        events, self.events[:] = list(self.events), []
        if not events:
            return 0
        msg = self.protocol.create("PATCH-DOC", events)
        return len(msg.header_json) + len(msg.content_json) + sum(len(b.to_bytes()) for b in msg.buffers)


def time_changes(view: SolverView, patches: Patches, repeats: int):
    rows, totals = [], []
    for name, value, away in CHANGES:
        times, nbytes = [], 0
        for r in range(repeats):
            if r:  # repeat the same change: step away and back without timing the step away
                setattr(view, name, away)
                patches.flush()
            t0 = time.perf_counter()
            setattr(view, name, value)
            nbytes = patches.flush()
            times.append((time.perf_counter() - t0) * 1e3)
        totals.extend(times)
        rows.append((f"{name} = {value}", view.last.nfe, statistics.median(times), nbytes))
    return rows, totals


def network_floor(view: SolverView, repeats: int = 30) -> float:
    """Median ms of one evaluation of the model at N_SAMPLES points: 20 of them are the
    floor of a 20-NFE change on this CPU, whatever the page does around them."""
    field, x = view.session.field("learned"), torch.randn(N_SAMPLES, 2)
    times = []
    with torch.no_grad():
        for _ in range(repeats):
            t0 = time.perf_counter()
            field.eps(x, 0.3)
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def baseline(view: SolverView, repeats: int) -> list[float]:
    """The previous page's drawing: new HoloViews elements in HoloViews panes, per change."""
    import panel as pn

    from lab import plots
    from lab.solvers import sample

    samples_pane, paths_pane = pn.pane.HoloViews(), pn.pane.HoloViews()
    doc = Document()
    doc.add_root(pn.Row(samples_pane, paths_pane).get_root(doc))
    patches = Patches(doc)
    truth, _ = view._truth_samples(view.session.exact, view.session.key)
    times = []
    for i in range(repeats):
        t0 = time.perf_counter()
        traj = sample(view.session.field("learned"), n=N_SAMPLES, steps=20, seed=i)
        samples_pane.object = plots.samples_plot(traj.samples, truth)
        paths_pane.object = plots.trajectories_plot(traj, 24)
        patches.flush()
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch threads to measure with")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--train", action="store_true", help="train a fresh default model first")
    args = ap.parse_args()
    session = Session(dataset="two_moons")
    if args.train:
        from lab.data import make_dataset
        from lab.train import TrainConfig, train

        session.model, _ = train(make_dataset("two_moons", 20_000, seed=0), TrainConfig(device="cpu"))
    view = SolverView(session)
    doc = Document()
    doc.add_root(view.__panel__().get_root(doc))
    patches = Patches(doc)
    patches.flush()
    print(f"default model ({type(session.model.model).__name__}, width {session.model.model.kwargs['hidden']}); "
          f"{N_SAMPLES} points per update; server time = the change's work up to its encoded patch")
    for threads in args.threads:
        torch.set_num_threads(threads)
        rows, totals = time_changes(view, patches, args.repeats)
        floor = network_floor(view)
        print(f"\ntorch threads {threads}: one network evaluation {floor:.2f} ms, so 20 NFE cost "
              f"{20 * floor:.0f} ms of every 20-NFE change")
        print(f"{'change':26s} {'NFE':>4s} {'median ms':>10s} {'patch KB':>9s}")
        for label, nfe, ms, nbytes in rows:
            print(f"{label:26s} {nfe:4d} {ms:10.1f} {nbytes / 1024:9.1f}")
        at20 = [ms for (label, nfe, ms, _) in rows if nfe == 20]
        print(f"median over all changes {statistics.median(totals):.1f} ms; changes at 20 NFE: median "
              f"{statistics.median(at20):.1f}, worst median {max(at20):.1f} ms; single worst "
              f"{max(totals):.1f} ms (budget 150 ms at 20 NFE); beyond the network: "
              f"{statistics.median(at20) - 20 * floor:.0f} ms")
        base = baseline(view, args.repeats)
        print(f"baseline (HoloViews re-render, 20 NFE): median {statistics.median(base):.1f} ms "
              f"-> live figures are {statistics.median(base) / statistics.median(at20):.1f}x faster")


if __name__ == "__main__":
    main()
