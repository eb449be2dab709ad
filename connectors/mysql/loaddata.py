"""The one ``LOAD DATA LOCAL INFILE`` path of MySQL/MariaDB: the writer's staging tables and
the snapshot's chunks both load through :func:`load_file`.

The text is MySQL's default format (tab between fields, newline between rows, backslash
escapes, ``\\N`` for NULL). Two kinds are not text on the server and go through a variable:
bytes are sent as hex (``UNHEX``), BIT values as binary digits (``CONV(.., 2, 10)``: text into
a BIT column would store the digits' characters, not the number). ``LOCAL`` turns what strict
mode would refuse (a duplicate, a truncated value) into warnings: every warning that is not a
note (a rounded fraction) is returned, so the caller refuses the load rather than let data
change silently.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["load_file", "load_statement"]


def load_statement(table_sql: str, columns: Sequence[tuple[str, str]]) -> str:
    """``LOAD DATA`` into ``table_sql`` of ``columns`` ((quoted name, kind) in file order;
    the file name is the statement's one parameter)."""
    targets, sets = [], []
    for i, (name, kind) in enumerate(columns):
        if kind == "bytes":
            targets.append(f"@v{i}")
            sets.append(f"{name} = UNHEX(@v{i})")
        elif kind == "bit":
            targets.append(f"@v{i}")
            sets.append(f"{name} = CAST(CONV(@v{i}, 2, 10) AS UNSIGNED)")
        else:
            targets.append(name)
    return (
        f"LOAD DATA LOCAL INFILE %s INTO TABLE {table_sql} CHARACTER SET utf8mb4 "
        "FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' "
        f"({', '.join(targets)})" + (f" SET {', '.join(sets)}" if sets else "")
    )


def load_file(
    conn: Any, path: str, table_sql: str, columns: Sequence[tuple[str, str]]
) -> tuple[int, list[str]]:
    """Load the file at ``path``; (rows stored, the warnings that refuse the load)."""
    with conn.cursor() as cur:
        loaded = int(cur.execute(load_statement(table_sql, columns), [path]))
        warnings = cur.warning_count
        if not warnings:
            return loaded, []
        cur.execute("SHOW WARNINGS")
        shown = list(cur.fetchall())
    bad = [w for w in shown if str(w[0]) != "Note"]
    if bad or len(shown) < warnings:
        return loaded, [f"({w[1]}) {w[2]}" for w in (bad or shown)[:3]] or [
            f"{warnings} warning(s)"
        ]
    return loaded, []
