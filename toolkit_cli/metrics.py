"""Progress records and Prometheus metrics for the long-running commands.

``with observe(cfg.state_dir, metrics, metrics_file):`` around a run of capture, apply, sync,
ship or receive writes each stage's progress record every second
(:class:`capture.progress.Reporter`), serves ``/metrics`` on ``--metrics HOST:PORT`` (only
127.0.0.1 unless a host is given) and writes ``--metrics-file`` in node_exporter's textfile
format (each second and once more at the end, atomically) for cron runs.

Every metric is read from the stages' progress at scrape time, so counters are exactly what
the stages counted. The names (all ``redoline_``) are listed in docs/operations.md; labels:
``stage`` (capture, ship, receive, apply) and ``target`` (the stage's name: the target id
for apply, the source id for capture, the destination for ship and receive).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from capture.progress import Reporter, StageProgress, named, registry
from connectors.errors import ConfigError

__all__ = ["MetricsFileOpt", "MetricsOpt", "collect", "observe", "parse_listen"]

MetricsOpt = Annotated[
    str | None,
    typer.Option(
        "--metrics",
        help="Serve Prometheus metrics on [HOST:]PORT (host 127.0.0.1 unless given; "
        "0.0.0.0 to listen on every interface). Metric names: docs/operations.md.",
        show_default=False,
    ),
]
MetricsFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--metrics-file",
        help="Write the metrics to this file in node_exporter's textfile format (every "
        "second and at the end, atomically): for cron runs.",
        show_default=False,
    ),
]

_STATES = ("starting", "running", "retrying", "failed", "stopped", "finished")


def parse_listen(text: str) -> tuple[str, int]:
    """``PORT`` or ``HOST:PORT`` (``[v6]:PORT``); host 127.0.0.1 when not given."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", text
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(
            f"--metrics {text!r}: expected PORT or HOST:PORT with a port from 1 to 65535",
            hint="e.g. --metrics 9464 or --metrics 0.0.0.0:9464",
        )
    return host, int(port)


def collect(stages: list[StageProgress] | None = None) -> list[Any]:
    """The metric families of ``stages`` (default: every stage of this process)."""
    families = _Families()
    now = time.time()
    for st in registry() if stages is None else stages:
        families.add(st, now)
    return families.in_order()


class _Families:
    """One Prometheus family per metric (labels ``stage``, ``target`` first), filled stage by
    stage; :meth:`in_order` lists them in the order docs/operations.md names them."""

    def __init__(self) -> None:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        base = ["stage", "target"]

        def gauge(name: str, doc: str, extra: tuple[str, ...] = ()) -> Any:
            return GaugeMetricFamily(f"redoline_{name}", doc, labels=[*base, *extra])

        def counter(name: str, doc: str, extra: tuple[str, ...] = ()) -> Any:
            return CounterMetricFamily(f"redoline_{name}", doc, labels=[*base, *extra])

        self.lag = gauge(
            "lag_seconds",
            "Seconds this stage is behind the source: from the heartbeat when the source "
            "writes one, else estimated from the last commit time (redoline_lag_estimated = 1).",
        )
        self.estimated = gauge(
            "lag_estimated",
            "1 when redoline_lag_seconds is an estimate, not measured by the heartbeat.",
        )
        self.lag_ops = gauge(
            "lag_operations", "Operations in the trail this stage has not applied."
        )
        self.lag_bytes = gauge("lag_bytes", "Bytes of trail segments holding unapplied operations.")
        self.rows = counter(
            "rows", "Row changes handled, per table and operation.", ("table", "op")
        )
        self.txns = counter(
            "transactions",
            "Transactions handled that touch a table with an operation.",
            ("table", "op"),
        )
        self.all_txns = counter("stage_transactions", "Transactions handled by the stage.")
        self.errors = counter("errors", "Errors by class (retried or fatal).", ("class",))
        self.success = gauge(
            "last_success_timestamp_seconds", "When the stage last did its job (Unix time)."
        )
        self.beat = gauge(
            "heartbeat_timestamp_seconds", "The newest heartbeat this stage has seen (Unix time)."
        )
        self.op = gauge("operation", "The last operation number the stage handled.")
        self.segments = gauge("trail_segments", "Trail segments on disk.")
        self.trail_bytes = gauge("trail_bytes", "Bytes of trail segments on disk.")
        self.state = gauge("stage_state", "1 for the stage's current state.", ("state",))
        self.snap_tables = gauge(
            "snapshot_tables", "Snapshot tables, by state (done, total).", ("state",)
        )
        self.snap_rows = gauge(
            "snapshot_rows", "Snapshot rows copied, and estimated in total.", ("kind",)
        )
        self.shipped = counter(
            "shipped_segments",
            "Segments acknowledged by the receiver (ship) or received and made durable (receive).",
        )
        self.shipped_bytes = counter(
            "shipped_bytes", "Trail bytes sent (ship) or received (receive)."
        )

    def in_order(self) -> list[Any]:
        return [
            self.lag,
            self.estimated,
            self.lag_ops,
            self.lag_bytes,
            self.rows,
            self.txns,
            self.all_txns,
            self.errors,
            self.success,
            self.beat,
            self.op,
            self.segments,
            self.trail_bytes,
            self.state,
            self.snap_tables,
            self.snap_rows,
            self.shipped,
            self.shipped_bytes,
        ]

    def add(self, st: StageProgress, now: float) -> None:
        labels = [st.kind, st.name]
        seconds, method = st.lag_seconds(now)
        if seconds is not None:
            self.lag.add_metric(labels, seconds)
            self.estimated.add_metric(labels, 1.0 if method == "estimate" else 0.0)
        if st.lag_operations is not None:
            self.lag_ops.add_metric(labels, st.lag_operations)
        if st.lag_bytes is not None:
            self.lag_bytes.add_metric(labels, st.lag_bytes)
        for (table, opname), n in sorted(named(st.rows).items()):
            self.rows.add_metric([*labels, table, opname], n)
        for (table, opname), n in sorted(named(st.txns).items()):
            self.txns.add_metric([*labels, table, opname], n)
        self.all_txns.add_metric(labels, st.transactions)
        for cls, n in sorted(dict(st.errors).items()):
            self.errors.add_metric([*labels, cls], n)
        if st.last_success is not None:
            self.success.add_metric(labels, st.last_success)
        if st.heartbeat_time is not None:
            self.beat.add_metric(labels, st.heartbeat_time)
        if st.last_op is not None:
            self.op.add_metric(labels, st.last_op)
        if st.trail_segments is not None:
            self.segments.add_metric(labels, st.trail_segments)
            self.trail_bytes.add_metric(labels, st.trail_bytes or 0)
        for name in _STATES:
            self.state.add_metric([*labels, name], 1.0 if st.state == name else 0.0)
        self._add_stage_specific(st, labels)

    def _add_stage_specific(self, st: StageProgress, labels: list[str]) -> None:
        if st.kind in ("ship", "receive"):
            extra = st.extra
            self.shipped.add_metric(
                labels, extra.get("segments_acknowledged", extra.get("segments_received", 0))
            )
            self.shipped_bytes.add_metric(
                labels, extra.get("bytes_sent", extra.get("bytes_received", 0))
            )
        if st.snapshot:
            snap = st.snapshot
            self.snap_tables.add_metric([*labels, "done"], snap.get("tables_done", 0))
            self.snap_tables.add_metric([*labels, "total"], snap.get("tables_total", 0))
            self.snap_rows.add_metric([*labels, "copied"], snap.get("rows", 0))
            self.snap_rows.add_metric([*labels, "estimated"], snap.get("rows_estimate", 0))


class _Collector:
    def collect(self) -> Iterator[Any]:
        yield from collect()


@contextlib.contextmanager
def observe(
    state_dir: Path | None,
    metrics: str | None = None,
    metrics_file: Path | None = None,
) -> Iterator[None]:
    """Progress records (always), the metrics endpoint and file (when asked) for the run."""
    from prometheus_client import CollectorRegistry, start_http_server, write_to_textfile

    reg = CollectorRegistry(auto_describe=False)
    reg.register(_Collector())
    server = None
    if metrics is not None:
        host, port = parse_listen(metrics)
        try:
            server, _thread = start_http_server(port, addr=host, registry=reg)
        except OSError as exc:
            raise ConfigError(
                f"--metrics {metrics}: cannot listen on {host}:{port}: {exc.strerror or exc}",
                hint="pick a free port, or stop what listens there",
            ) from None
    if metrics_file is not None:
        metrics_file.parent.mkdir(parents=True, exist_ok=True)

    def write_file(_stages: list[StageProgress]) -> None:
        if metrics_file is not None:
            write_to_textfile(str(metrics_file), reg)
            # node_exporter runs as another user: metrics hold no secret, let it read them
            os.chmod(metrics_file, 0o644)

    try:
        with Reporter(state_dir, listeners=[write_file]):
            yield
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
