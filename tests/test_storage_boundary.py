"""SQL and the database driver stay inside the storage layer.

Logic modules (everything in the package outside ``resetd/storage/``, the
SQLite plumbing in ``resetd/db.py`` and ``resetd/schema.py``, and the dev
inbox, which keeps a SQLite store of its own) import no driver, hold no SQL
in their string literals and never import the SQLite implementation: only
the app factory and the entry points that open a storage choose it. Read
from the source with ``ast``; nothing is imported.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from .test_import_graph import PACKAGE, import_graph

DRIVERS = {"sqlite3", "aiosqlite", "psycopg", "psycopg_pool", "asyncpg"}
# A statement's opening words, as SQL is written here.
SQL = re.compile(
    r"\b(SELECT\s+\S.*\bFROM|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|"
    r"CREATE\s+(TABLE|INDEX)|PRAGMA\s+\w+|BEGIN\s+IMMEDIATE)\b",
    re.IGNORECASE | re.DOTALL,
)
# Where an implementation is chosen; and the PostgreSQL storage, which opens an
# app's users table in a SQLite file with the SQLite implementation's store.
WIRING = {"resetd.storage.open", "resetd.storage.postgres.storage"}


def _name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _logic_modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        name = _name(path)
        if name.startswith(("resetd.storage", "resetd.inbox")):
            continue
        if name in ("resetd.db", "resetd.schema"):
            continue
        out[name] = path
    return out


def _imports(tree: ast.AST) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_logic_modules_import_no_database_driver() -> None:
    offenders = {
        name: sorted(_imports(ast.parse(path.read_text())) & DRIVERS)
        for name, path in _logic_modules().items()
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_logic_modules_hold_no_sql() -> None:
    found: dict[str, list[str]] = {}
    for name, path in _logic_modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if SQL.search(node.value) and not _is_docstring_like(node.value):
                    found.setdefault(name, []).append(node.value[:60])
    assert found == {}


def _is_docstring_like(text: str) -> bool:
    """Prose that names a statement (``DELETE … WHERE`` in a docstring) is
    not a statement: it has no placeholders and reads as sentences."""
    return "?" not in text and "%s" not in text and ". " in text


def test_only_the_wiring_imports_the_sqlite_implementation() -> None:
    graph = import_graph()
    reaching = {
        name
        for name, targets in graph.items()
        if any(
            t == "resetd.storage.sqlite" or t.startswith("resetd.storage.sqlite.") for t in targets
        )
        and not name.startswith(("resetd.storage.sqlite", "resetd.inbox"))
    }
    assert reaching <= WIRING, reaching - WIRING


def test_the_check_finds_sql_and_drivers_where_they_are() -> None:
    """The checks above are not vacuous: the storage itself trips both."""
    storage = PACKAGE / "storage" / "sqlite" / "outbox.py"
    tree = ast.parse(storage.read_text())
    assert "sqlite3" in _imports(tree)
    literals = [
        n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
    ]
    assert any(SQL.search(v) and not _is_docstring_like(v) for v in literals)
