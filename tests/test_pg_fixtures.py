"""The PostgreSQL tests cannot disappear from CI: without a server there they fail."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_postgresql_tests_fail_rather_than_skip_under_ci_without_a_server() -> None:
    env = {k: v for k, v in os.environ.items() if k != "RESETD_TEST_POSTGRES"}
    env["CI"] = "true"
    run = subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"),
            "tests/test_pg_migrations.py::test_a_current_schema_is_left_as_it_is",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode != 0
    assert "RESETD_TEST_POSTGRES is not set while CI is" in run.stdout
    assert "skipped" not in run.stdout.splitlines()[-1]
