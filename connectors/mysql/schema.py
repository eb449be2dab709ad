"""MySQL/MariaDB table definitions from the binlog: what a TABLE_MAP event proves about a
table (:func:`schema_from_table_map`), and what a DDL statement in a QUERY event does to one
(:func:`classify_query`, :func:`derive_after_ddl`), both without asking the server.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

import sqlglot
from pymysqlreplication.constants import FIELD_TYPE
from pymysqlreplication.row_event import TableMapEvent
from sqlglot import exp

from connectors.errors import PrerequisiteError, SchemaError
from connectors.model import Column, TableId, TableSchema
from connectors.mysql.values import ColumnHints, codec

__all__ = ["Ddl", "classify_query", "derive_after_ddl", "same_shape", "schema_from_table_map"]

_CHARSET_MAXLEN = {"utf8mb4": 4, "utf8mb3": 3, "utf8": 3, "ucs2": 2, "utf16": 4, "utf32": 4}


def _charset(col: Any) -> str | None:
    return (col.collation_name or "").split("_")[0] or None


# --------------------------------------------------------------------------- table map -> schema

_INT_TYPES = {
    FIELD_TYPE.TINY: ("tinyint", 8),
    FIELD_TYPE.SHORT: ("smallint", 16),
    FIELD_TYPE.INT24: ("mediumint", 24),
    FIELD_TYPE.LONG: ("int", 32),
    FIELD_TYPE.LONGLONG: ("bigint", 64),
}
_BLOB_NAMES = {1: "tiny", 2: "", 3: "medium", 4: "long"}


def _quote_labels(labels: tuple[str, ...]) -> str:
    return ",".join("'" + lab.replace("'", "''") + "'" for lab in labels)


def _library_labels(col: Any, labels: Any) -> tuple[str, ...]:
    """ENUM/SET labels as the library decoded them. It turns a label that is not UTF-8 (a
    latin1 column's 'é') into '', which would silently change the data; the server never
    holds two equal labels, so a repeated one means exactly that."""
    out = tuple(labels)
    if len(set(out)) != len(out):
        raise SchemaError(
            f"the ENUM/SET labels of column {col.name!r} are in a charset the library "
            "decoder cannot read",
            hint='capture with decoder = "fast" (the default), which reads them',
        )
    return out


def _schema_column(col: Any, nullable: bool, hint: str | None, generated: bool) -> Column:
    t = col.type
    common: dict[str, Any] = {"name": col.name, "nullable": nullable, "generated": generated}
    if hint == "uuid" and t == FIELD_TYPE.STRING:
        return Column(kind="uuid", source_type="uuid", **common)
    if t in _INT_TYPES:
        name, bits = _INT_TYPES[t]
        unsigned = bool(col.unsigned)
        return Column(
            kind="int",
            source_type=name + (" unsigned" if unsigned else ""),
            bits=bits,
            unsigned=unsigned,
            **common,
        )
    if t == FIELD_TYPE.NEWDECIMAL:
        return Column(
            kind="decimal",
            source_type=f"decimal({col.precision},{col.decimals})",
            precision=col.precision,
            scale=col.decimals,
            unsigned=bool(col.unsigned),
            **common,
        )
    if t == FIELD_TYPE.FLOAT:
        return Column(kind="float", source_type="float", **common)
    if t == FIELD_TYPE.DOUBLE:
        return Column(kind="double", source_type="double", **common)
    if t == FIELD_TYPE.YEAR:
        return Column(kind="year", source_type="year", **common)
    if t in (FIELD_TYPE.DATE, FIELD_TYPE.NEWDATE):
        return Column(kind="date", source_type="date", **common)
    if t in (FIELD_TYPE.TIME2, FIELD_TYPE.TIME):
        fsp = getattr(col, "fsp", 0)
        src = f"time({fsp})" if fsp else "time"
        return Column(kind="duration", source_type=src, precision=fsp, **common)
    if t in (FIELD_TYPE.DATETIME2, FIELD_TYPE.DATETIME):
        fsp = getattr(col, "fsp", 0)
        src = f"datetime({fsp})" if fsp else "datetime"
        return Column(kind="datetime", source_type=src, precision=fsp, **common)
    if t in (FIELD_TYPE.TIMESTAMP2, FIELD_TYPE.TIMESTAMP):
        fsp = getattr(col, "fsp", 0)
        src = f"timestamp({fsp})" if fsp else "timestamp"
        return Column(kind="timestamptz", source_type=src, precision=fsp, **common)
    if t == FIELD_TYPE.BIT:
        return Column(kind="bit", source_type=f"bit({col.bits})", bits=col.bits, **common)
    if t == FIELD_TYPE.ENUM:
        labels = _library_labels(col, col.enum_values[1:] if col.enum_values else ())
        return Column(
            kind="enum",
            source_type=f"enum({_quote_labels(labels)})",
            labels=labels,
            charset=_charset(col),
            **common,
        )
    if t == FIELD_TYPE.SET:
        labels = _library_labels(col, col.set_values or ())
        return Column(
            kind="set",
            source_type=f"set({_quote_labels(labels)})",
            labels=labels,
            charset=_charset(col),
            **common,
        )
    if t in (FIELD_TYPE.VARCHAR, FIELD_TYPE.VAR_STRING, FIELD_TYPE.STRING):
        fixed = t == FIELD_TYPE.STRING
        if codec(col) is None:
            name = "binary" if fixed else "varbinary"
            return Column(
                kind="bytes",
                source_type=f"{name}({col.max_length})",
                length=col.max_length,
                fixed=fixed,
                **common,
            )
        charset = _charset(col)
        length = col.max_length // _CHARSET_MAXLEN.get(charset or "", 1)
        name = "char" if fixed else "varchar"
        return Column(
            kind="str",
            source_type=f"{name}({length})",
            length=length,
            fixed=fixed,
            charset=charset,
            **common,
        )
    if t == FIELD_TYPE.BLOB:
        prefix = _BLOB_NAMES.get(col.length_size, "long")
        if hint == "json":
            return Column(kind="json", source_type="json", charset=_charset(col), **common)
        if codec(col) is None:
            return Column(kind="bytes", source_type=f"{prefix}blob", **common)
        return Column(kind="str", source_type=f"{prefix}text", charset=_charset(col), **common)
    if t == FIELD_TYPE.JSON:
        return Column(kind="json", source_type="json", **common)
    if t == FIELD_TYPE.GEOMETRY:
        return Column(kind="other", source_type="geometry", **common)
    return Column(kind="other", source_type=f"binlog type {t}", **common)


def schema_from_table_map(
    event: TableMapEvent,
    *,
    hints: ColumnHints = ColumnHints(),
    generated: set[str] = frozenset(),  # type: ignore[assignment]
    version: int = 1,
) -> TableSchema:
    """The table definition a TABLE_MAP event (with ``binlog_row_metadata=FULL``) proves
    (``hints``: the kinds only the catalog knows, MariaDB JSON and UUID)."""
    table = TableId(event.schema, event.table)
    nullmask = event.null_bitmask
    cols = []
    for i, col in enumerate(event.columns):
        if not col.name:
            raise PrerequisiteError(
                f"the binlog has no column names for {table} (binlog_row_metadata is not FULL "
                "where this event was written)",
                hint="SET GLOBAL binlog_row_metadata = 'FULL' on the source, then start capture "
                "from a position written after the change (re-snapshot the table)",
            )
        nullable = bool(nullmask[i >> 3] >> (i & 7) & 1)
        cols.append(_schema_column(col, nullable, hints.kind(col.name), col.name in generated))
    meta = event.optional_metadata
    pk_idx = list(meta.simple_primary_key_list) or sorted(meta.primary_keys_with_prefix)
    primary = tuple(cols[i].name for i in pk_idx if i < len(cols))
    return TableSchema(table, tuple(cols), primary, (), version)


def same_shape(a: TableSchema, b: TableSchema) -> bool:
    return a.columns == b.columns and a.primary_key == b.primary_key and a.table == b.table


# --------------------------------------------------------------------------- DDL


def _kind_of(dtype: exp.DataType) -> tuple[str, dict[str, Any]]:
    """Engine-neutral kind of a column type written in a DDL statement (best effort)."""
    name = dtype.this.name.lower()
    text = dtype.sql("mysql").lower()
    extra: dict[str, Any] = {"source_type": text}
    ints = {"tinyint": 8, "smallint": 16, "mediumint": 24, "int": 32, "bigint": 64}
    bits = ints.get(name.removeprefix("u"))
    if bits is not None:
        return "int", {
            **extra,
            "bits": bits,
            "unsigned": name.startswith("u") or "unsigned" in text,
        }
    simple = {
        "decimal": "decimal",
        "float": "float",
        "double": "double",
        "date": "date",
        "time": "duration",
        "datetime": "datetime",
        "timestamp": "timestamptz",
        "timestampltz": "timestamptz",
        "timestamptz": "timestamptz",
        "year": "year",
        "json": "json",
        "uuid": "uuid",
        "bit": "bit",
        "enum": "enum",
        "set": "set",
    }
    params = [
        int(p.this.name)
        for p in dtype.expressions
        if isinstance(p, exp.DataTypeParam) and p.this.name.isdigit()
    ]
    if name in simple:
        kind = simple[name]
        # without these a translated ALTER ... ADD COLUMN gets an unbounded type on the target
        if kind == "decimal":
            extra["precision"] = params[0] if params else 10  # MySQL's DECIMAL = DECIMAL(10,0)
            extra["scale"] = params[1] if len(params) > 1 else 0
        elif kind in ("duration", "datetime", "timestamptz"):
            extra["precision"] = params[0] if params else 0
        return kind, extra
    if "char" in name or "text" in name:
        if params and "char" in name:
            extra["length"] = params[0]
            extra["fixed"] = not name.startswith("var")
        return "str", extra
    if "binary" in name or "blob" in name:
        return "bytes", extra
    return "other", extra


def _coldef_column(coldef: exp.ColumnDef) -> Column:
    dtype = coldef.args.get("kind")
    kind, extra = _kind_of(dtype) if isinstance(dtype, exp.DataType) else ("other", {})
    # sqlglot parses an explicit NULL as NotNullColumnConstraint(allow_null=True)
    nullable = not any(
        isinstance(cons := c.args.get("kind"), exp.PrimaryKeyColumnConstraint)
        or (isinstance(cons, exp.NotNullColumnConstraint) and not cons.args.get("allow_null"))
        for c in coldef.args.get("constraints") or []
    )
    return Column(name=coldef.name, kind=kind, nullable=nullable, **extra)


def derive_after_ddl(
    previous: TableSchema | None, table: TableId, statement: exp.Expression | None
) -> TableSchema | None:
    """The table definition after ``statement``, derived without asking the server.

    Covers CREATE TABLE and ALTER TABLE ADD/DROP/RENAME/CHANGE/MODIFY COLUMN. Anything else
    keeps the previous definition; the TABLE_MAP of the next row change is the authority and
    capture records a corrected definition then if the derivation was short.
    """
    if isinstance(statement, exp.Create):
        schema_def = statement.this
        if isinstance(schema_def, exp.Schema):
            cols = [e for e in schema_def.expressions if isinstance(e, exp.ColumnDef)]
            primary: list[str] = []
            for e in schema_def.expressions:
                if isinstance(e, exp.PrimaryKey):
                    primary += [c.name for c in e.expressions]
            for c in cols:
                for cons in c.args.get("constraints") or []:
                    if isinstance(cons.args.get("kind"), exp.PrimaryKeyColumnConstraint):
                        primary.append(c.name)
            return TableSchema(table, tuple(_coldef_column(c) for c in cols), tuple(primary))
        return previous
    if not isinstance(statement, exp.Alter) or previous is None:
        return previous
    columns = list(previous.columns)
    primary_key = list(previous.primary_key)
    for action in statement.args.get("actions") or []:
        if isinstance(action, exp.ColumnDef):
            columns.append(_coldef_column(action))
        elif isinstance(action, exp.Drop) and (action.args.get("kind") or "").upper() == "COLUMN":
            # (sqlglot keeps the dropped column in `tables`; older versions in `this`)
            node = action.this or next(iter(action.args.get("tables") or []), None)
            gone = node.name if node is not None else ""
            columns = [c for c in columns if c.name != gone]
            primary_key = [c for c in primary_key if c != gone]
        elif isinstance(action, exp.RenameColumn):
            old, new = action.this.name, action.args["to"].name
            columns = [replace(c, name=new) if c.name == old else c for c in columns]
            primary_key = [new if c == old else c for c in primary_key]
        elif isinstance(action, exp.ModifyColumn) and isinstance(action.this, exp.ColumnDef):
            # CHANGE [COLUMN] old new TYPE ... / MODIFY [COLUMN] name TYPE ...: the column is
            # redefined where it stands (FIRST/AFTER are not followed: the table map is)
            changed = _coldef_column(action.this)
            source = action.args.get("rename_from")
            old = source.name if source is not None else changed.name
            if old in primary_key:
                changed = replace(changed, nullable=False)
            columns = [changed if c.name == old else c for c in columns]
            primary_key = [changed.name if c == old else c for c in primary_key]
    return replace(previous, columns=tuple(columns), primary_key=tuple(primary_key))


_DML_WORDS = re.compile(r"^\s*(?:/\*.*?\*/\s*)*(INSERT|UPDATE|DELETE|REPLACE|LOAD)\b", re.I | re.S)
_TABLE_AFTER = re.compile(
    r"\b(?:TABLE|INTO|UPDATE|FROM|ON)\s+(?:IF\s+(?:NOT\s+)?EXISTS\s+)?"
    r"((?:`(?:[^`]|``)+`|\w+)(?:\s*\.\s*(?:`(?:[^`]|``)+`|\w+))?)",
    re.I,
)
_LEAD = r"^\s*(?:/\*.*?\*/\s*)*"
#: one identifier: backquoted, or a bare run (MariaDB takes a reserved word such as `select`
#: bare after a dot, and bare names may be non-ASCII)
_IDENT = r"(?:`(?:[^`]|``)+`|[^\s`.,;()/]+)"
_QNAME = re.compile(rf"\s*({_IDENT})(?:\s*\.\s*({_IDENT}))?")
#: statement heads that name tables, and what they do: the table names follow the match
_HEADS: list[tuple[str, re.Pattern[str]]] = [
    (
        "create",
        re.compile(
            _LEAD
            + r"CREATE\s+(?:OR\s+REPLACE\s+)?(?:TEMPORARY\s+)?TABLE\b\s*(?:IF\s+NOT\s+EXISTS\s+)?",
            re.I | re.S,
        ),
    ),
    (
        "alter",
        re.compile(
            _LEAD + r"CREATE\s+(?:OR\s+REPLACE\s+)?(?:ONLINE\s+|OFFLINE\s+)?"
            r"(?:UNIQUE\s+|FULLTEXT\s+|SPATIAL\s+)?INDEX\s+(?:IF\s+NOT\s+EXISTS\s+)?"
            rf"{_IDENT}\s+(?:USING\s+\w+\s+)?ON\s+",
            re.I | re.S,
        ),
    ),
    (
        "alter",
        re.compile(
            _LEAD + r"ALTER\s+(?:ONLINE\s+)?(?:IGNORE\s+)?TABLE\b\s*(?:IF\s+EXISTS\s+)?",
            re.I | re.S,
        ),
    ),
    (
        "alter",
        re.compile(_LEAD + rf"DROP\s+INDEX\s+(?:IF\s+EXISTS\s+)?{_IDENT}\s+ON\s+", re.I | re.S),
    ),
    (
        "drop",
        re.compile(_LEAD + r"DROP\s+(?:TEMPORARY\s+)?TABLES?\b\s*(?:IF\s+EXISTS\s+)?", re.I | re.S),
    ),
    ("truncate", re.compile(_LEAD + r"TRUNCATE\b\s*(?:TABLE\b\s*)?", re.I | re.S)),
    ("rename", re.compile(_LEAD + r"RENAME\s+TABLES?\b\s*", re.I | re.S)),
    (
        "dropdb",
        re.compile(_LEAD + r"DROP\s+(?:DATABASE|SCHEMA)\s+(?:IF\s+EXISTS\s+)?", re.I | re.S),
    ),
]
#: ALTER TABLE ... RENAME [TO|AS] new (not RENAME COLUMN/INDEX/KEY/CONSTRAINT)
_ALTER_RENAME = re.compile(
    r"[\s,]RENAME\s+(?:TO\s+|AS\s+)?(?!(?:COLUMN|INDEX|KEY|CONSTRAINT)\b)", re.I
)


def _unquote(ident: str) -> str:
    if ident.startswith("`"):
        return ident[1:-1].replace("``", "`")
    return ident


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _name(text: str, default_schema: str) -> TableId:
    m = _QNAME.fullmatch(text.strip())
    if m is None:
        return TableId(default_schema, text.strip())
    if m.group(2) is None:
        return TableId(default_schema, _unquote(m.group(1)))
    return TableId(_unquote(m.group(1)), _unquote(m.group(2)))


@dataclass
class Ddl:
    """What a QUERY event does to tables."""

    kind: str  # create | alter | drop | rename | truncate | dropdb | unknown | dml
    tables: list[TableId]
    renamed: list[tuple[TableId, TableId]] = field(default_factory=list)
    parsed: exp.Expression | None = None
    #: the statement with every table name it names backquoted (what the trail records, so
    #: apply parses `acc.select` as the table it is); None: the query as it came
    text: str | None = None


def _names_at(query: str, pos: int, default_schema: str) -> tuple[TableId, int, int] | None:
    """The (schema.)table name starting at ``pos``: the name, its span's start and end."""
    m = _QNAME.match(query, pos)
    if m is None:
        return None
    word = m.group(1)
    if m.group(2) is None:
        return TableId(default_schema, _unquote(word)), m.start(1), m.end()
    return TableId(_unquote(word), _unquote(m.group(2))), m.start(1), m.end()


def _reads_as(raw: str, table: TableId) -> bool:
    """Whether sqlglot reads the name ``raw`` as ``table`` (no reserved word in it)."""
    try:
        node = sqlglot.parse_one(f"SELECT 1 FROM {raw}", read="mysql").find(exp.Table)
    except Exception:  # sqlglot raises several types
        return False
    return node is not None and node.name == table.name and (not node.db or node.db == table.schema)


def classify_query(query: str, default_schema: str) -> Ddl | None:
    """Tables a DDL (or statement-logged DML) names; None for statements touching no table.

    Table names are read by hand, not by sqlglot, which refuses reserved words that MariaDB
    takes bare after a dot (``TRUNCATE acc.select``): a statement whose names cannot be read
    comes back as kind ``unknown`` and stops capture rather than being dropped.
    """
    if _DML_WORDS.match(query):
        return Ddl("dml", [_name(t, default_schema) for t in _TABLE_AFTER.findall(query)])
    found_head = next(((k, h.match(query)) for k, h in _HEADS if h.match(query)), None)
    if found_head is None:
        # not about a table's data: CREATE/ALTER/DROP of users, views, triggers, routines,
        # events, databases (CREATE DATABASE), SET, GRANT ...
        return None
    kind, m = found_head
    assert m is not None
    if kind == "dropdb":
        word = _QNAME.match(query, m.end())
        if word is None:
            return Ddl("unknown", [])
        return Ddl("dropdb", [TableId(_unquote(word.group(1)), "")])
    spans: list[tuple[int, int, TableId]] = []
    pos = m.end()
    renamed: list[tuple[TableId, TableId]] = []
    while True:
        first = _names_at(query, pos, default_schema)
        if first is None:
            return Ddl("unknown", [])
        spans.append((first[1], first[2], first[0]))
        pos = first[2]
        if kind == "rename":
            to = re.compile(r"\s+TO\s+", re.I).match(query, pos)
            second = _names_at(query, to.end(), default_schema) if to else None
            if second is None:
                return Ddl("unknown", [])
            spans.append((second[1], second[2], second[0]))
            renamed.append((first[0], second[0]))
            pos = second[2]
        if kind not in ("drop", "rename"):
            break
        comma = re.compile(r"\s*,").match(query, pos)
        if comma is None:
            break
        pos = comma.end()
    # a name sqlglot does not read as written (a reserved word) is backquoted in the text
    # the trail records, so apply reads the same table (backquotes change nothing for MariaDB)
    quoted = query
    for a, b, table in reversed(spans):
        raw = query[a:b]
        if not _reads_as(raw, table):
            schema = _quote(table.schema) + "." if "." in raw.replace("``", "") else ""
            quoted = quoted[:a] + schema + _quote(table.name) + quoted[b:]
    names = [t for _a, _b, t in spans]
    if kind == "rename":
        return Ddl("rename", names, renamed, text=quoted if quoted != query else None)
    if kind in ("drop", "truncate"):
        return Ddl(kind, names, text=quoted if quoted != query else None)
    parsed: Any
    try:
        parsed = sqlglot.parse_one(quoted, read="mysql")
    except Exception:  # sqlglot raises several types; a DDL it cannot parse is still a DDL
        parsed = None
    if isinstance(parsed, exp.Command):
        parsed = None
    table = names[0]
    if kind == "alter":
        rename_to: TableId | None = None
        if parsed is not None:
            action = next(
                (a for a in parsed.args.get("actions") or [] if isinstance(a, exp.AlterRename)),
                None,
            )
            if action is not None:
                rename_to = TableId(action.this.db or default_schema, action.this.name)
        elif (r := _ALTER_RENAME.search(quoted, spans[0][1])) is not None:
            found = _names_at(quoted, r.end(), default_schema)
            if found is None:
                return Ddl("unknown", [table])
            rename_to, a, b = found
            raw = quoted[a:b]
            if not _reads_as(raw, rename_to):
                schema = _quote(rename_to.schema) + "." if "." in raw.replace("``", "") else ""
                quoted = quoted[:a] + schema + _quote(rename_to.name) + quoted[b:]
        if rename_to is not None:
            return Ddl(
                "rename",
                [table, rename_to],
                [(table, rename_to)],
                text=quoted if quoted != query else None,
            )
    return Ddl(kind, [table], parsed=parsed, text=quoted if quoted != query else None)
