"""Peer frameworks measured beside Voxline (``loadtests/bench_peers.py``).

What lives here runs in the peer's own virtualenv (``scripts/setup-peers.sh``), never in
Voxline's: it imports nothing of Voxline's, and Voxline imports none of it.
"""
