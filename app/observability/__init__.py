"""Observability: Prometheus metrics (``GET /metrics``), ``X-Request-ID`` on every response, structured logs.

``metrics`` names every metric and holds the one-line calls the rest of the app makes where a fact is known (kept
light: the engine and the gateway import it); ``requestid`` is the middleware that ids and times each request;
``logging`` configures structlog's JSON lines; ``endpoints`` serves the scrape, and its :func:`install` wires the
endpoint and the middleware into an app.
"""
