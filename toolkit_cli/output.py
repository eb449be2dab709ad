"""How the CLI talks: rich tables and progress for people on stderr/stdout, JSON for scripts."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import logging
import sys
import uuid
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

__all__ = ["console", "err_console", "print_json", "print_table", "setup_logging", "to_jsonable"]


def _console(stderr: bool) -> Console:
    # Piped or under cron there is no terminal width to respect: rich would wrap messages
    # and cut table cells (a fix statement, a table name) at 80 columns. Never do that.
    stream = sys.stderr if stderr else sys.stdout
    wide = not stream.isatty()
    return Console(stderr=stderr, width=100_000 if wide else None, soft_wrap=wide)


console = _console(stderr=False)
err_console = _console(stderr=True)


def setup_logging(verbose: int = 0, quiet: bool = False) -> None:
    """Log to stderr; -v for debug. Nothing we log contains a password (Endpoint.display)."""
    level = logging.WARNING if quiet else logging.DEBUG if verbose > 0 else logging.INFO
    handler: logging.Handler
    if err_console.is_terminal:
        handler = RichHandler(console=err_console, show_path=False, rich_tracebacks=False)
        fmt = "%(message)s"
    else:
        handler = logging.StreamHandler(sys.stderr)
        fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    handler.setFormatter(logging.Formatter(fmt))
    handler.set_name("redoline")
    root = logging.getLogger()
    # replace only our own handler, so embedding (and pytest's log capture) keeps theirs
    root.handlers[:] = [h for h in root.handlers if h.get_name() != "redoline"] + [handler]
    root.setLevel(level)
    for noisy in ("pymysqlreplication", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def to_jsonable(value: Any) -> Any:
    """Plain JSON types for values we print (decimals as strings keep their scale)."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in value]
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, bytes):
        return value.hex()
    if hasattr(value, "__dataclass_fields__"):
        return to_jsonable({k: getattr(value, k) for k in value.__dataclass_fields__})
    if isinstance(value, float) and value != value:
        return "NaN"
    return value


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(to_jsonable(value), indent=2, sort_keys=False) + "\n")
    sys.stdout.flush()


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    table = Table(title=title, title_justify="left")
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*(str(v) if not isinstance(v, str) else v for v in row))
    console.print(table)
