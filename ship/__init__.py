"""Shipping: move a trail from the source host to the target host over mutual TLS 1.3.

``redoline ship`` (source host) sends numbered segments; ``redoline receive`` (target host)
writes them, one trail directory per accepted source id, and acknowledges each sealed segment
by number, size and SHA-256 only once it is durable. The sender records acknowledgements as a
trail consumer, so retention never prunes what a receiver does not hold. Wire protocol and
the choice of transport: docs/ship.md.

Typical use::

    receiver = Receiver(ReceiveOptions(host, port, root, {"shop-db"}, server_context(...), tok))
    receiver.bind(); receiver.serve()

    run_ship(ShipOptions(trail, host, port, client_context(...), token, "shop-db", "dr1"))
"""

from __future__ import annotations

from ship._lag import shipping_lag
from ship._receiver import ReceiveOptions, Receiver, ReceiveResult, file_sha256
from ship._sender import (
    STATE_PREFIX,
    ShipOptions,
    ShipResult,
    consumer_name,
    run_ship,
    run_ship_all,
)
from ship._tls import Token, client_context, init_certs, server_context

__all__ = [
    "STATE_PREFIX",
    "ReceiveOptions",
    "ReceiveResult",
    "Receiver",
    "ShipOptions",
    "ShipResult",
    "Token",
    "client_context",
    "consumer_name",
    "file_sha256",
    "init_certs",
    "run_ship",
    "run_ship_all",
    "server_context",
    "shipping_lag",
]
