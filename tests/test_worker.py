"""The views' background worker: latest request wins, draws go through the page's
scheduler, errors reach the page, and the thread ends with the session."""
import threading

from lab.app.worker import Worker


class Page:
    """Stands in for the page's thread: draws are queued, then run by ``run``."""

    def __init__(self):
        self.queue, self.lock = [], threading.Lock()

    def schedule(self, fn):
        with self.lock:
            self.queue.append(fn)

    def run(self):
        with self.lock:
            todo, self.queue = self.queue, []
        for fn in todo:
            fn()


def test_without_a_server_compute_and_draw_happen_at_once():
    w = Worker()
    out = []
    w.submit(lambda: 2 + 2, out.append)
    assert out == [4] and not w.threaded and not w.alive


def test_latest_request_wins_and_draws_run_on_the_page():
    page = Page()
    w = Worker(schedule=page.schedule)
    gate, started, computed, drawn = threading.Event(), threading.Event(), [], []

    def slow():
        started.set()
        gate.wait(10)
        computed.append("first")
        return "first"

    w.submit(slow, drawn.append)
    started.wait(10)
    for i in range(5):                     # a dragged slider while the first one computes
        w.submit(lambda i=i: computed.append(i) or i, drawn.append)
    assert w.indicator.visible
    gate.set()
    for _ in range(200):
        if len(computed) == 2 and page.queue:
            break
        threading.Event().wait(0.01)
    page.run()
    assert computed == ["first", 4]        # the four in between never ran
    assert drawn == [4]                    # the stale first result was not drawn
    assert not drawn or not w.indicator.visible
    w.close()
    w.join(5)
    assert not w.alive


def test_errors_reach_the_page_and_the_worker_lives_on():
    page = Page()
    w = Worker(schedule=page.schedule)
    errors, drawn = [], []
    done = threading.Event()
    w.submit(lambda: 1 / 0, drawn.append, lambda e: (errors.append(e), done.set()))
    for _ in range(500):
        page.run()
        if done.is_set():
            break
        threading.Event().wait(0.01)
    assert isinstance(errors[0], ZeroDivisionError) and not drawn
    w.submit(lambda: "fine", lambda r: (drawn.append(r), done.set()))
    for _ in range(500):
        page.run()
        if drawn:
            break
        threading.Event().wait(0.01)
    assert drawn == ["fine"]
    w.close()
    w.join(5)
    assert not w.alive


def test_on_page_handlers_run_at_once_off_a_served_page_and_fit_bokeh():
    """Off a served page (a notebook, a script) the handler runs at once; Bokeh accepts it
    as an event callback (it checks for exactly one argument)."""
    from bokeh.events import ButtonClick, Tap
    from bokeh.models import Button
    from bokeh.plotting import figure

    from lab.app.worker import on_page

    got = []
    handler = on_page(got.append)
    handler("event")
    assert got == ["event"]
    Button().on_event(ButtonClick, handler)
    figure().on_event(Tap, handler)
