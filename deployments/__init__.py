"""Ray Serve deployments and the FastAPI ingress: thin adapters over :mod:`pipeline`.

This package decides *where* things run (replicas, GPUs, runtime environments); what
happens lives in ``pipeline/``. One deployment per model stage (``stt``, ``llm``,
``tts``, ``reranker``), the background workers (``workers``) and a stateless ingress
(``ingress``, the Gateway) that serves the API of ``deployments/api/`` and drives
:class:`pipeline.LiveSession` over WebSocket, SSE and HTTP; ``app`` places them.
"""
