"""The web console, served by the gateway at ``/``: server-rendered pages (Jinja2) over the same services and tenancy
as the API, and small scripts that act through the same API with the session cookie and its CSRF token.

Front-end packages (styles, charts, Swagger UI) come from npm (``package.json`` at the repository root, installed by
``make install``) and are served from ``node_modules`` by :mod:`app.console.assets`: nothing is fetched from a CDN.
"""
