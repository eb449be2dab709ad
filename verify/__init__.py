"""Verify: cross-database consistency diff, classification, reports and repair SQL.

``run_verify`` compares source tables with their target tables through DB-side chunk
checksums (:mod:`verify.engine`), :mod:`verify.report` renders the result, and
:mod:`verify.repair` turns it into SQL that makes the target equal the source.
"""

from verify.engine import (
    TablePair,
    VerifyError,
    VerifyOptions,
    plan_tables,
    raise_for_errors,
    run_verify,
)
from verify.model import RowDiff, TableResult, VerifyResult

__all__ = [
    "RowDiff",
    "TablePair",
    "TableResult",
    "VerifyError",
    "VerifyOptions",
    "VerifyResult",
    "plan_tables",
    "raise_for_errors",
    "run_verify",
]
