"""Panel components of the served lab (issue 6). Only this subpackage and lab/plots.py
import Panel and HoloViews, so ``import lab`` stays fast and runs without them."""
