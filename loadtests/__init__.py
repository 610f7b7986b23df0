"""Benchmarks that drive Voxline like real clients; each prints figures and writes JSON."""
