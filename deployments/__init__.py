"""Ray Serve deployments and the FastAPI ingress: thin adapters over :mod:`pipeline`.

This package decides *where* things run (replicas, GPUs, runtime environments); what
happens lives in ``pipeline/``. It is filled in by the Serve application work: one
deployment per model stage and a stateless ingress that drives
:class:`pipeline.LiveSession` over WebSocket, SSE and HTTP.
"""
