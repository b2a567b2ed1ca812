"""Sphinx configuration: MyST-NB pages executed at build time (cached under build/), Furo, autodoc, exercises.

Build with ``python -m sphinx -W --keep-going -n -b html docs build/docs`` from the repository root.
"""
import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))  # autodoc imports this checkout's cnnkit, not an installed copy

# The notebook kernels are child processes: they inherit these variables. The inline backend keeps figures in
# the cell outputs (under MPLBACKEND=Agg they would be drawn and silently dropped); CNNKIT_DOCS_WORK is where
# an earlier page saves trained weights for the later pages to load.
os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), str(DOCS / "_support"),
                                                         os.environ.get("PYTHONPATH", "")]))
os.environ.setdefault("CNNKIT_DOCS_WORK", str(ROOT / "build" / "docs-work"))

project = "cnnkit"
author = "the cnnkit authors"
copyright = "the cnnkit authors, MIT licence"
release = "0.1.0"

# sphinx-mathjax-offline copies MathJax into the build, so formulas render without a network (and offline here)
extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.viewcode", "sphinx_exercise", "sphinx-mathjax-offline"]
exclude_patterns = ["_build", "_support", "Thumbs.db", ".DS_Store"]

html_theme = "furo"
html_title = "cnnkit: the CNN canon on NumPy"
html_static_path = []

myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3

# Every page runs at build time; a cell that raises fails the build. Results are cached by cell contents under
# build/ (ignored by git), so an unchanged page is not run again; cells run in a temporary directory, so the
# files they write never land in docs/.
nb_execution_mode = "cache"
nb_execution_cache_path = str(ROOT / "build" / "jupyter_cache")
nb_execution_in_temp = True
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_execution_timeout = 180
nb_render_markdown_format = "myst"  # tables that the code prints as Markdown render as tables
nb_merge_streams = True

autodoc_default_options = {"members": True, "undoc-members": False}
autodoc_member_order = "bysource"
# cnnkit's annotations are plain names; nitpicky mode would flag every NumPy or builtin type it cannot link
# without intersphinx (kept off: it needs the network).
autodoc_typehints = "none"

# These docstrings write formulas with |x| and (*, n), which reStructuredText reads as markup. Their files are
# being rewritten by another change, so instead of editing them here they are shown as preformatted text;
# remove a name once its docstring marks the formula up as ``code``.
PLAIN_TEXT_DOCSTRINGS = {"cnnkit.functional.linear.linear", "cnnkit.functional.pooling.lp_pool2d",
                         "cnnkit.nn.pooling.LPPool2d"}


def _plain_text_docstring(app, what, name, obj, options, lines):
    """Turn a listed docstring into one literal block, so its |x| and * are not taken as markup."""
    if name in PLAIN_TEXT_DOCSTRINGS and lines:
        lines[:] = ["::", ""] + ["   " + line for line in lines] + [""]


def setup(app):
    app.connect("autodoc-process-docstring", _plain_text_docstring)
