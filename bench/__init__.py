"""Benchmarks with their own runners (not collected by pytest)."""
