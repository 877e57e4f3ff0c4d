"""Sphinx configuration of the enhance documentation site.

Build it from the repository root (the ``docs`` extra installed)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

The Markdown pages (``docs/*.md``, the changelog) are read by myst-parser,
the API reference is generated from the numpydoc docstrings by autosummary
and autodoc, and the gallery runs the scripts in ``examples/`` on the
bundled sample and shows their figures (sphinx-gallery).
"""

import inspect
import re
import sys
from pathlib import Path

from enhance_hmi import __version__

ROOT = Path(__file__).resolve().parents[1]

project = "enhance"
author = "the enhance developers"
copyright = "the enhance developers; BSD 3-Clause licence"
release = __version__
version = ".".join(__version__.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
templates_path = ["_templates"]

# anchors for the Markdown pages' headings down to ###, so links to #a-section resolve
myst_heading_anchors = 3

autosummary_generate = True
autosummary_ignore_module_all = False  # a module's __all__ is its public API
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "none"  # numpydoc's Parameters sections say the types
numpydoc_show_class_members = False  # autodoc lists them; numpydoc's tables would repeat them
numpydoc_class_members_toctree = False

# A module's docstring lists its References without citing each in its own
# text: its functions and constants cite them ([1]_). docutils calls such an
# entry "not referenced"; it is a bibliography, not a mistake.
suppress_warnings = ["ref.citation"]

sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "generated/gallery",
    "filename_pattern": r"/plot_",
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "write_computation_times": False,  # the build's log prints them
}

html_theme = "pydata_sphinx_theme"
html_title = f"enhance {version}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "header_links_before_dropdown": 4,
}
html_static_path = []
html_show_sourcelink = False


# The package's docstrings keep one References section per module and cite
# it from the functions, classes and constants of that module ("as the paper
# does [1]_"). Each docstring is its own document for numpydoc, so before
# numpydoc reads one, the module's entries it cites are appended to it.
_CITATION = re.compile(r"\[(\w+)\]_")
_REFERENCE = re.compile(r"^\.\. \[(\w+)\]")


def _module_references(module: object) -> dict[str, list[str]]:
    """The entries of a module docstring's References section, by label."""
    lines = (inspect.getdoc(module) or "").splitlines()
    heading = [i for i, line in enumerate(lines[:-1]) if line == "References"]
    if not heading or not lines[heading[0] + 1].startswith("---"):
        return {}
    entries: dict[str, list[str]] = {}
    label = None
    for line in lines[heading[0] + 2 :]:
        if match := _REFERENCE.match(line):
            label = match[1]
            entries[label] = [line]
        elif label is not None and (line.startswith(" ") or not line.strip()):
            entries[label].append(line)
        else:  # the next section, or the end of the list
            break
    return entries


def _home_module(name: str, obj: object) -> object:
    """The module whose source holds ``obj`` (a re-exported name's, not the package's)."""
    target = obj.fget if isinstance(obj, property) else obj
    if inspect.isclass(target) or inspect.isroutine(target):
        return sys.modules.get(getattr(target, "__module__", ""))
    while name and name not in sys.modules:
        name = name.rpartition(".")[0]
    return sys.modules.get(name)


def _cite_module_references(app, what, name, obj, options, lines) -> None:
    if what == "module" or "References" in lines:
        return
    cited = dict.fromkeys(_CITATION.findall("\n".join(lines)))
    if not cited:
        return
    references = _module_references(_home_module(name, obj))
    found = [label for label in cited if label in references]
    if found:
        lines += ["", "References", "----------"]
        for label in found:
            lines += references[label]


def setup(app) -> None:
    app.connect("autodoc-process-docstring", _cite_module_references, priority=100)
