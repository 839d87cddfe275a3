"""Per-install secrets for development, so no signing key is a constant anyone can read.

The first process that needs one generates it and keeps it in ``var/dev-secrets.json`` (mode
0600); every later process (the web server, workers, commands) reads the same value, so tokens
survive restarts. Production never uses this: it refuses to start without its secrets."""

import fcntl
import json
import os
import secrets
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

FILE_NAME = "dev-secrets.json"


def install_secret(name: str, *, var_dir: Path) -> str:
    """The install's value for ``name``, generated (256 random bits) on first use."""
    var_dir.mkdir(parents=True, exist_ok=True)
    path = var_dir / FILE_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    with os.fdopen(fd, "r+") as file:
        # Processes started together (scripts/run) must agree on one value: take turns.
        fcntl.flock(file, fcntl.LOCK_EX)
        os.fchmod(file.fileno(), 0o600)
        text = file.read()
        try:
            values = json.loads(text) if text.strip() else {}
        except ValueError:
            raise ImproperlyConfigured(
                f"{path} is not valid JSON; delete it to generate new development secrets."
            ) from None
        if not isinstance(values.get(name), str) or not values[name]:
            values[name] = secrets.token_urlsafe(32)
            file.seek(0)
            file.truncate()
            json.dump(values, file, indent=2)
            file.flush()
            os.fsync(file.fileno())
        return values[name]
