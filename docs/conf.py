"""Sphinx configuration for wdfusb's documentation (``make docs``: HTML, warnings are errors).

Pages are Markdown (MyST); the API pages are autodoc of the installed package. Every code block
in the pages is run by ``tests/test_docs.py``.
"""

from __future__ import annotations

from typing import Any

from docutils import nodes
from sphinx.util.docutils import SphinxDirective

import wdfusb
import wdfusb.wdf

project = "wdfusb"
author = "wdfusb"
copyright = "wdfusb contributors"
release = version = wdfusb.__version__

extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx_click"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns: list[str] = []
myst_heading_anchors = 2

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True}
highlight_language = "text"
html_theme = "alabaster"
html_static_path: list[str] = []


def _no_module_docstring(app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]) -> None:
    """The pages introduce each module in their own words (with examples that run); a module's
    docstring is for ``help()`` and carries fragments that are not whole programs."""
    if what == "module":
        lines.clear()


class WdfConstants(SphinxDirective):
    """``wdf-constants``: a ``py:data`` entry with its value for each constant (neither a class
    nor a function) of ``wdfusb.wdf.__all__`` whose type is the argument (``NTSTATUS``,
    ``USBD_STATUS``, ``int``, ``NoneType``). Autodoc documents module data only where it is
    assigned with a doc comment; these are made by the WDF layer's tables."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        lines = []
        for name in wdfusb.wdf.__all__:
            obj = getattr(wdfusb.wdf, name)
            if not callable(obj) and type(obj).__name__ == self.arguments[0]:
                lines += [f".. py:data:: {name}", "   :module: wdfusb.wdf", f"   :value: {obj!r}", ""]
        if not lines:
            raise self.error(f"wdfusb.wdf has no constant of type {self.arguments[0]}")
        return self.parse_text_to_nodes("\n".join(lines))


def setup(app: Any) -> None:
    app.connect("autodoc-process-docstring", _no_module_docstring)
    app.add_directive("wdf-constants", WdfConstants)
