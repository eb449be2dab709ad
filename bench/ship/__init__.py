"""Shipping throughput and lag benchmark: ``python -m bench.ship.run``."""
