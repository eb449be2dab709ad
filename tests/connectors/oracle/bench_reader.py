"""The LogMiner reader's throughput on the fake (not a test; no live server can run here).

    python -m tests.connectors.oracle.bench_reader [--rows 20000] [--sqlglot]

Rows of a 4-column keyed table (NUMBER, VARCHAR2, NUMBER(12,2), DATE) inserted in
transactions of 1,000 plus one update each, then read by the reader from V$LOGMNR_CONTENTS
rows to change events. ``--sqlglot`` parses every SQL_REDO with sqlglot alone (no scanner).
The fake answers from memory, so this measures the reader (joining, buffering, parsing), not
LogMiner or the network.
"""

from __future__ import annotations

import argparse
import datetime as dt
import decimal
import time

from connectors.base import TableFilter, open_database
from connectors.endpoint import Endpoint
from connectors.log import RowEvent
from connectors.model import TableId
from connectors.oracle import redo
from connectors.oracle.session import use_sessions
from tests.connectors.oracle.fake import FakeOracle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--sqlglot", action="store_true")
    args = parser.parse_args()
    if args.sqlglot:
        redo._scan = lambda sql: None  # type: ignore[assignment]
    fake = FakeOracle()
    fake.create(
        "SHOP",
        "ITEMS",
        [
            ("ID", "NUMBER", 22, None, 10, 0, "N"),
            ("NAME", "VARCHAR2", 40, 40, None, None, "Y"),
            ("PRICE", "NUMBER", 22, None, 12, 2, "Y"),
            ("AT", "DATE", 7, None, None, None, "Y"),
        ],
        ["ID"],
    )
    fake.tables[TableId("SHOP", "ITEMS")].log_groups.add("PRIMARY KEY LOGGING")
    with use_sessions(fake.session):
        db = open_database(Endpoint.parse("oracle://u@h/ORCL"))
        start = db.end_position()
        for b in range(max(1, args.rows // 1000)):
            t = fake.txn()
            for i in range(1000):
                k = b * 1000 + i
                values = {
                    "ID": k,
                    "NAME": f"n{k}",
                    "PRICE": decimal.Decimal("1.25"),
                    "AT": dt.datetime(2024, 1, 1, 2, 3, 4),
                }
                t.insert("SHOP", "ITEMS", values)
            t.update("SHOP", "ITEMS", {"ID": b * 1000}, NAME="u")
            t.commit()
        reader = db.open_log(start, tables=TableFilter(("SHOP.*",)), until_caught_up=True)
        began = time.perf_counter()
        n = sum(1 for ev in reader.events() if isinstance(ev, RowEvent))
        took = time.perf_counter() - began
        reader.close()
    path = "sqlglot only" if args.sqlglot else "scanner"
    print(f"{n} row events in {took:.2f}s: {n / took:,.0f} rows/s ({path})")


if __name__ == "__main__":
    main()
