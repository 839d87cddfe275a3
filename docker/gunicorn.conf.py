"""gunicorn for production: uvicorn workers serve the ASGI app, so Server-Sent Events streams
are cheap coroutines. Worker counts and timeouts come from the environment."""

import os

from prometheus_client import multiprocess

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "uvicorn_worker.UvicornWorker"
# Async workers heartbeat to the arbiter; this does not cut off long SSE responses.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
# On SIGTERM: stop accepting, give open requests (and streams) this long, then exit.
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
keepalive = 5
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "10000"))
max_requests_jitter = 1000
accesslog = None  # Parley writes its own JSON access line per request
errorlog = "-"
# X-Forwarded-For/-Proto are believed only from these proxy addresses (comma-separated; default
# none). Trusting 127.0.0.1 by default let any local client pick the address the throttles see.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "")


def child_exit(server, worker) -> None:
    # A dead worker's live gauges must stop counting in the multiprocess /metrics view.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(worker.pid)
