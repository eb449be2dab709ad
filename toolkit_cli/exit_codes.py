"""Exit codes: what cron and scripts can rely on. Documented in docs/exit-codes.md."""

from __future__ import annotations

from typing import Final

__all__ = ["EXIT_CODES"]

#: code -> meaning; error classes carry their code (connectors.errors)
EXIT_CODES: Final = {
    0: "success; for `--until-caught-up`: caught up; for verify: no differences",
    1: "verify/repair found differences; check found a blocking prerequisite; undo found "
    "rows changed since (nothing was undone); status: a stage is failing or its state cannot "
    "be read",
    2: "usage or configuration error (bad flag, malformed TOML, unknown key, bad URL)",
    3: "cannot connect: host unreachable, login refused, database missing",
    4: "a server is not configured for replication (see `redoline check`)",
    5: "the log can no longer be read from our position (binlog purged, slot missing)",
    6: "schema or data problem: unmappable type, missing key, the target rejected a row",
    7: "the trail is corrupt, discontinuous or cannot be decrypted",
    8: "another run holds the lock (cron overlap); nothing was done",
    9: "a local file or directory cannot be written (disk full, permission, not a directory)",
    10: "apply read transactions but the loop guard (--ignore-origin) skipped every one",
    11: "the point in time asked for cannot be reached (target, snapshot or retained trail is "
    "past it; or the trail ends before it)",
    75: "a transient error persisted after retries (try again later)",
    130: "interrupted (Ctrl-C / SIGTERM) after finishing the current transaction",
}
