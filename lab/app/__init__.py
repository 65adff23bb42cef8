"""Panel components of the served lab (issue 6). Only this subpackage and lab/plots.py
import Panel and HoloViews, so ``import lab`` stays fast and runs without them."""
from __future__ import annotations

__all__ = ["notebook", "servable"]


def servable(obj, title: str):
    """``obj.servable(title=title)``, with Panel's own stylesheets taken from this server.

    Panel names its components' stylesheets by CDN address and rewrites them to the
    server's copy only when a process renders the page's HTML. Under ``panel serve
    --num-procs N`` the page's websocket may reach another process, which builds the
    session anew and never rewrites them: offline, that page would lose its styles. So the
    rewrite is done here, as the script builds the document, whichever process runs it
    (the same two steps as Panel's ``server_html_page_for_session``).
    """
    import logging

    import panel as pn
    from panel.io.resources import LOCAL_DIST, patch_model_css

    out = obj.servable(title=title)
    doc = pn.state.curdoc
    if doc is not None and doc.session_context is not None:
        # the server log says when a session's threads stop (the root logger shows WARNING up)
        logging.getLogger("lab.app").setLevel(logging.INFO)
        dist_url = f"{pn.state.rel_path}/{LOCAL_DIST}" if pn.state.rel_path else LOCAL_DIST
        doc._template_variables["dist_url"] = dist_url   # read by Panel for models added later
        for root in doc.roots:
            patch_model_css(root, dist_url=dist_url)
    return out


def notebook(*extensions: str) -> None:
    """Load Panel, Bokeh and HoloViews into a Jupyter notebook from this machine, so that
    plots and views render without internet. The first cell of every lesson calls it.

    ``pn.extension(inline=True)`` inlines Bokeh's and Panel's JavaScript, and Panel inlines
    the stylesheets of the views it displays. Two gaps remain, both closed here:
    ``hv.extension("bokeh")`` loads the JavaScript again from the CDN unless told
    ``inline=True`` too, and a HoloViews plot shown directly (not inside a Panel view)
    keeps its stylesheets' CDN addresses; those are inlined the way Panel inlines its own
    (``panel.io.notebook.patch_inline_stylesheets``, from the installed package's files).
    """
    import functools

    import holoviews as hv
    import holoviews.plotting.renderer as hv_renderer
    import panel as pn
    from bokeh.models import UIElement
    from panel.io.notebook import patch_inline_stylesheets

    pn.extension(*extensions, inline=True)
    hv.extension("bokeh", inline=True)

    def inline_css(render):
        if getattr(render, "_lab_inline_css", False):
            return render                # already wrapped (the cell ran twice)

        @functools.wraps(render)
        def wrapped(model, *args, **kwargs):
            for submodel in model.select({"type": UIElement}):
                patch_inline_stylesheets(submodel)
            return render(model, *args, **kwargs)

        wrapped._lab_inline_css = True
        return wrapped

    # HoloViews' renderer shows a plot through one of these two (static or live)
    for name in ("render_model", "render_mimebundle"):
        setattr(hv_renderer, name, inline_css(getattr(hv_renderer, name)))
