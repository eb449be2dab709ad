"""Shipping lag for ``redoline status``: what each receiver has not yet confirmed."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from capture.trail import list_segment_files
from ship._sender import STATE_PREFIX

__all__ = ["shipping_lag"]


def shipping_lag(trail: Path, now: float | None = None) -> list[dict[str, Any]]:
    """Per destination: segments and bytes not yet confirmed by the receiver, and seconds
    since its last confirmation while something is pending (0 when nothing is)."""
    now = time.time() if now is None else now
    files = list_segment_files(trail)
    out = []
    for path in sorted(Path(trail).glob(f"{STATE_PREFIX}*.json")):
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        acked = state.get("acked_seq")
        open_seq, open_offset = state.get("open_seq"), int(state.get("open_offset") or 0)
        segments = 0
        pending = 0
        for seq, (seg, _sealed) in files.items():
            if acked is not None and seq <= acked:
                continue
            size = seg.stat().st_size
            done = open_offset if seq == open_seq and not _sealed else 0
            if size > done:
                segments += 1
                pending += size - done
        out.append(
            {
                "name": state.get("name"),
                "receiver": state.get("receiver"),
                "acked_segment": acked,
                "lag_segments": segments,
                "lag_bytes": pending,
                "lag_seconds": round(max(0.0, now - float(state.get("updated") or now)), 3)
                if pending
                else 0.0,
            }
        )
    return out
