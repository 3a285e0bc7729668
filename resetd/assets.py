"""Where the Jinja2 templates and the stylesheet live, in a checkout and in a wheel.

The top-level ``templates/`` directory is installed as ``resetd/templates`` by
pyproject's package-dir mapping, so a non-editable ``pip install .`` finds it
next to this file; a checkout or editable install finds it one level up.
"""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent

STATIC_DIR = _HERE / "static"


def template_dir() -> Path:
    for candidate in (_HERE / "templates", _HERE.parent / "templates"):
        if (candidate / "base.html").is_file():
            return candidate
    raise FileNotFoundError("resetd templates not found; reinstall the package")
