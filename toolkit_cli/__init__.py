"""The ``redoline`` command line (see :mod:`toolkit_cli.app`).

A SIGTERM that arrives while the command is still starting (importing its modules takes a
second or two) ends it with the documented "interrupted" code 130 rather than as killed by a
signal: nothing has started yet, so there is nothing to finish. ``main()`` and the long
commands replace this handler with ones that finish the current transaction first.
"""

from __future__ import annotations

import os
import signal
import threading


def _terminated_while_starting(signum: int, frame: object) -> None:
    os._exit(130)


if threading.current_thread() is threading.main_thread() and (
    signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
):
    signal.signal(signal.SIGTERM, _terminated_while_starting)
