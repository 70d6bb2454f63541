"""The tagging service (``serve.py``): an HTTP API (``app``) that validates and enqueues, a SQLite job store
(``jobs``), worker processes that own the models (``worker``, ``tagging``) and a web page (``static/``).

Importing this package imports neither Paddle nor FastAPI."""
