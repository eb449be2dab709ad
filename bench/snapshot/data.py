"""The benchmark table: mixed types, about 143 bytes a row, generated inside MariaDB."""

from __future__ import annotations

from typing import Any

TABLE_DDL = """
CREATE TABLE {db}.items (
  id BIGINT NOT NULL PRIMARY KEY,
  customer_id INT NOT NULL,
  sku VARCHAR(32) NOT NULL,
  title VARCHAR(100),
  price DECIMAL(12,2),
  qty SMALLINT,
  weight DOUBLE,
  created DATETIME(6),
  updated TIMESTAMP(6) NULL,
  active TINYINT(1),
  note TEXT,
  payload VARBINARY(16)
) ENGINE=InnoDB
"""

# MariaDB's SEQUENCE engine (seq_1_to_N) generates the rows server-side in seconds.
FILL = """
INSERT INTO {db}.items
SELECT s, s % 10007, CONCAT('SKU-', LPAD(s, 10, '0')),
       CONCAT('Item ', s, ' ', LEFT(MD5(s), 20)),
       (s % 100000) / 100, s % 500, s / 7.0,
       TIMESTAMP('2024-01-01') + INTERVAL s SECOND + INTERVAL (s % 1000) MICROSECOND,
       IF(s % 10 = 0, NULL, TIMESTAMP('2024-06-01') + INTERVAL s SECOND),
       s % 2,
       IF(s % 3 = 0, NULL, CONCAT('note', CHAR(9), s,
          IF(s % 97 = 0, CONCAT(CHAR(10), 'line2 "q" ', CHAR(92)), ''))),
       UNHEX(LEFT(MD5(s), 16))
FROM (SELECT seq + {offset} AS s FROM {db}.seq_1_to_{rows}) g
"""


def create(conn: Any, db: str, rows: int) -> None:
    """(Re)create ``db``.items with ``rows`` rows on a MariaDB connection."""
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {db}")
        cur.execute(f"CREATE DATABASE {db}")
        cur.execute(TABLE_DDL.format(db=db))
        done = 0
        while done < rows:
            n = min(200_000, rows - done)
            cur.execute(FILL.format(db=db, rows=n, offset=done))
            done += n
        cur.execute("COMMIT")
        cur.execute(f"ANALYZE TABLE {db}.items")
        cur.fetchall()
