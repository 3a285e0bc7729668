"""A non-editable install must carry every module, template, stylesheet and data file."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_wheel_ships_every_module_template_static_file_and_data(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(REPO)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    [wheel] = tmp_path.glob("resetd-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        f"resetd/templates/{p.relative_to(REPO / 'templates').as_posix()}"
        for p in (REPO / "templates").rglob("*")
        if p.is_file()
    }
    for folder in ("static", "data", "locale"):
        expected |= {
            f"resetd/{folder}/{p.relative_to(REPO / 'resetd' / folder).as_posix()}"
            for p in (REPO / "resetd" / folder).rglob("*")
            if p.is_file() and p.suffix != ".py" and "__pycache__" not in p.parts
        }
    # Every module, subpackages included: pyproject.toml lists the packages one by one.
    expected |= {
        p.relative_to(REPO).as_posix()
        for p in (REPO / "resetd").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert "resetd/outbox/worker.py" in expected, "the package's modules were not found"
    assert "resetd/locale/es/LC_MESSAGES/messages.mo" in expected
    assert expected, "nothing to check"
    missing = sorted(expected - names)
    assert not missing, f"not in the wheel: {missing}"
