"""Which binlog events a capture may pass over, and why it stops at the others.

The binlog reader (:mod:`connectors.mysql.binlog`) handles the events that carry
transactions, rows and DDL; every other event is either known to carry nothing to capture
(listed here) or stops capture with an error naming the server setting that produced it
(partial JSON updates, compressed transactions or events), rather than risk dropping rows.
"""

from __future__ import annotations

from typing import Final

from pymysqlreplication.event import (
    FormatDescriptionEvent,
    IntvarEvent,
    MariadbAnnotateRowsEvent,
    MariadbBinLogCheckPointEvent,
    MariadbGtidListEvent,
    MariadbStartEncryptionEvent,
    PreviousGtidsEvent,
    RandEvent,
    RowsQueryLogEvent,
    StopEvent,
    UserVarEvent,
)

from connectors.errors import ReplicationError

__all__ = ["BENIGN_CLASSES", "BENIGN_EVENTS", "refuse_unknown"]

# Event types with no table data that may appear anywhere (unknown to the library, so they
# reach us as NotImplementedEvent): ignoring them loses nothing.
BENIGN_EVENTS: Final = {
    5,  # INTVAR (auto-increment for statement logging)
    13,  # RAND
    14,  # USER_VAR
    27,  # HEARTBEAT
    28,  # IGNORABLE
    29,  # ROWS_QUERY (MySQL binlog_rows_query_log_events)
    34,  # ANONYMOUS_GTID (MySQL without GTIDs: a transaction starts)
    35,  # PREVIOUS_GTIDS
    160,  # MariaDB ANNOTATE_ROWS
    161,  # MariaDB BINLOG_CHECKPOINT
    163,  # MariaDB GTID_LIST
    164,  # MariaDB START_ENCRYPTION
}
#: event classes the library parses that carry nothing to capture (or are checked elsewhere:
#: statement-logged DML is caught at its QUERY event). Any other class stops capture.
BENIGN_CLASSES: Final = frozenset(
    {
        FormatDescriptionEvent,
        PreviousGtidsEvent,
        StopEvent,
        IntvarEvent,
        RandEvent,
        UserVarEvent,
        RowsQueryLogEvent,
        MariadbAnnotateRowsEvent,
        MariadbBinLogCheckPointEvent,
        MariadbGtidListEvent,
        MariadbStartEncryptionEvent,
    }
)
_MYSQL_PARTIAL_JSON_EVENT = 39  # PARTIAL_UPDATE_ROWS: binlog_row_value_options=PARTIAL_JSON
_MYSQL_PAYLOAD_EVENT = 40  # binlog_transaction_compression
_MARIADB_COMPRESSED = range(165, 172)  # log_bin_compress: QUERY and ROWS *_COMPRESSED_EVENT


def refuse_unknown(code: int, where: str, xid: str | None) -> None:
    """Pass an event the library does not parse when it carries nothing to capture; else the
    error that stops capture (``where``: file:position of the event; ``xid``: its
    transaction), naming the setting that produced it where one did."""
    if code in BENIGN_EVENTS:
        return
    if code == _MYSQL_PARTIAL_JSON_EVENT:
        raise ReplicationError(
            "the binlog holds partial JSON updates (binlog_row_value_options=PARTIAL_JSON), "
            "which carry only a diff of the JSON document and cannot be replicated as rows",
            hint="SET GLOBAL binlog_row_value_options = '' on the source, then re-snapshot "
            "the tables whose JSON columns were updated",
        )
    if code == _MYSQL_PAYLOAD_EVENT:
        raise ReplicationError(
            "the binlog holds compressed transactions (binlog_transaction_compression), "
            "which redoline does not decode",
            hint="SET GLOBAL binlog_transaction_compression = OFF on the source, then "
            "re-snapshot the tables whose changes were compressed",
        )
    if code in _MARIADB_COMPRESSED:
        raise ReplicationError(
            "the binlog holds compressed events (log_bin_compress), which redoline does not decode",
            hint="SET GLOBAL log_bin_compress = OFF on the source, then re-snapshot the "
            "tables whose changes were compressed",
        )
    raise ReplicationError(
        f"binlog event type {code} at {where} is unknown to "
        f"redoline (transaction {xid}); stopping rather than risk dropping rows",
        hint="report this with the server version; mysqlbinlog shows the event",
    )
