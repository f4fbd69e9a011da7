"""Sphinx configuration for the trisup documentation."""

from __future__ import annotations

import sys
from pathlib import Path

# Document the package from this checkout when it is not installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import trisup  # noqa: E402

project = "trisup"
author = "trisup developers"
copyright = "trisup developers"
release = trisup.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
]

source_suffix = {
    ".rst": "restructuredtext",
    ".md": "markdown",
}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

# Backquoted names in docstrings (`Manager`) are Python cross-references.
default_role = "py:obj"
nitpicky = False

# autodoc / napoleon: Google-style docstrings, signatures in source order.
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True
napoleon_use_rtype = False
napoleon_attr_annotations = False

# MyST: anchors for headings down to level 3, so pages can link to sections.
myst_heading_anchors = 3

html_theme = "furo"
html_title = f"trisup {release}"
