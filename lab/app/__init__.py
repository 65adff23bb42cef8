"""Panel components of the served lab (issue 6). Only this subpackage and lab/plots.py
import Panel and HoloViews, so ``import lab`` stays fast and runs without them."""
from __future__ import annotations

__all__ = ["servable"]


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
