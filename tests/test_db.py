"""Batch inserts: multi-row statements that stay under SQLite's parameter limit."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from resetd.db import MAX_PARAMS, insert_rows, multi_row_inserts

ROWS = [(n, f"name {n}", n * 0.5) for n in range(1000)]


def test_rows_are_split_so_no_statement_exceeds_the_parameter_limit() -> None:
    statements = multi_row_inserts("t", ("a", "b", "c"), ROWS)
    assert all(len(params) <= MAX_PARAMS for _, params in statements)
    # Row counts are powers of two, so few distinct statements are ever prepared.
    assert {len(params) // 3 for _, params in statements} == {256, 128, 64, 32, 8}
    assert [v for _, params in statements for v in params] == [v for r in ROWS for v in r]
    assert multi_row_inserts("t", ("a",), []) == []


def test_every_row_arrives_in_order(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "t.db")
    conn.execute("CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT, c REAL)")
    insert_rows(conn, "t", ("a", "b", "c"), ROWS)
    assert conn.execute("SELECT a, b, c FROM t ORDER BY a").fetchall() == ROWS
    conn.close()
