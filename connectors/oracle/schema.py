"""Oracle table definitions from the data dictionary (``ALL_TAB_COLS``, ``ALL_CONSTRAINTS``).

Types map onto the change model's kinds; the type as Oracle spells it is kept in
``source_type``. ``NUMBER(p)`` with ``p <= 18`` is an integer; other ``NUMBER``/``FLOAT`` are
decimals (scale kept); ``DATE`` is a timestamp to the second (Oracle's ``DATE`` has a time of
day); ``TIMESTAMP WITH [LOCAL] TIME ZONE`` is an absolute instant. Types LogMiner cannot
render as SQL values (``XMLTYPE``, objects, ``INTERVAL``...) are kind ``other``: capture
stops on their changes, naming them.
"""

from __future__ import annotations

import re
from typing import Any, Final

from connectors.errors import MissingObjectError
from connectors.model import Column, TableId, TableSchema
from connectors.oracle.session import Session

__all__ = ["COLUMNS_SQL", "column", "introspect"]

COLUMNS_SQL: Final = (
    "SELECT COLUMN_NAME, DATA_TYPE, DATA_LENGTH, CHAR_LENGTH, DATA_PRECISION, DATA_SCALE, "
    "NULLABLE, VIRTUAL_COLUMN FROM ALL_TAB_COLS WHERE OWNER = :owner AND TABLE_NAME = :name "
    "AND HIDDEN_COLUMN = 'NO' ORDER BY COLUMN_ID"
)
KEYS_SQL: Final = (
    "SELECT c.CONSTRAINT_NAME, c.CONSTRAINT_TYPE, k.COLUMN_NAME FROM ALL_CONSTRAINTS c "
    "JOIN ALL_CONS_COLUMNS k ON k.OWNER = c.OWNER AND k.CONSTRAINT_NAME = c.CONSTRAINT_NAME "
    "WHERE c.OWNER = :owner AND c.TABLE_NAME = :name AND c.CONSTRAINT_TYPE IN ('P', 'U') "
    "AND c.STATUS = 'ENABLED' ORDER BY c.CONSTRAINT_TYPE, c.CONSTRAINT_NAME, k.POSITION"
)

_TEXT: Final = {"VARCHAR2", "NVARCHAR2", "CHAR", "NCHAR", "CLOB", "NCLOB", "LONG", "VARCHAR"}
_BYTES: Final = {"RAW", "BLOB", "LONG RAW"}
_TS: Final = re.compile(r"^TIMESTAMP(?:\((\d)\))?( WITH (LOCAL )?TIME ZONE)?$")


def column(
    name: str,
    data_type: str,
    data_length: int | None,
    char_length: int | None,
    precision: int | None,
    scale: int | None,
    nullable: bool,
    virtual: bool = False,
) -> Column:
    """One ``ALL_TAB_COLS`` row as a :class:`Column`."""
    common: dict[str, Any] = {"name": name, "nullable": nullable, "generated": virtual}
    t = data_type.upper()
    if t == "NUMBER":
        if precision is not None and (scale or 0) == 0 and precision <= 18:
            return Column(kind="int", bits=64, source_type=f"NUMBER({precision})", **common)
        spelled = "NUMBER" if precision is None else f"NUMBER({precision},{scale or 0})"
        return Column(
            kind="decimal", precision=precision, scale=scale, source_type=spelled, **common
        )
    if t == "FLOAT":
        return Column(kind="decimal", source_type=f"FLOAT({precision or 126})", **common)
    if t == "BINARY_FLOAT":
        return Column(kind="float", source_type=t, **common)
    if t == "BINARY_DOUBLE":
        return Column(kind="double", source_type=t, **common)
    if t in _TEXT:
        fixed = t in ("CHAR", "NCHAR")
        length = char_length or None if t not in ("CLOB", "NCLOB", "LONG") else None
        spelled = t if length is None else f"{t}({length})"
        return Column(kind="str", length=length, fixed=fixed, source_type=spelled, **common)
    if t in _BYTES:
        length = data_length if t == "RAW" else None
        spelled = t if length is None else f"RAW({length})"
        return Column(kind="bytes", length=length, source_type=spelled, **common)
    if t == "DATE":
        return Column(kind="datetime", precision=0, source_type="DATE", **common)
    m = _TS.match(t)
    if m:
        digits = int(m.group(1)) if m.group(1) is not None else 6
        kind = "timestamptz" if m.group(2) else "datetime"
        return Column(kind=kind, precision=digits, source_type=t, **common)
    return Column(kind="other", source_type=t, **common)


def introspect(session: Session, table: TableId) -> TableSchema:
    """``table``'s current definition."""
    args = {"owner": table.schema, "name": table.name}
    rows = session.query(COLUMNS_SQL, args)
    if not rows:
        raise MissingObjectError(
            f"table {table} does not exist on the Oracle database (or this user cannot see it)",
            hint=f'GRANT SELECT ON "{table.schema}"."{table.name}" TO the capture user',
        )
    columns = tuple(
        column(
            str(n),
            str(t),
            dl,
            cl,
            p,
            s,
            str(null) == "Y",
            str(virt) == "YES",
        )
        for n, t, dl, cl, p, s, null, virt in rows
    )
    keys: dict[tuple[str, str], list[str]] = {}
    for cname, ctype, col in session.query(KEYS_SQL, args):
        keys.setdefault((str(ctype), str(cname)), []).append(str(col))
    primary: tuple[str, ...] = ()
    uniques: list[tuple[str, ...]] = []
    not_null = {c.name for c in columns if not c.nullable}
    for (ctype, _), cols in keys.items():
        if ctype == "P":
            primary = tuple(cols)
        elif all(c in not_null for c in cols):
            uniques.append(tuple(cols))
    # full before images only with ALL COLUMNS supplemental logging (checked by capture)
    return TableSchema(table, columns, primary, tuple(uniques), full_before_image=False)
