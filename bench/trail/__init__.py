"""Trail write/read throughput benchmark: ``python -m bench.trail.run``."""
