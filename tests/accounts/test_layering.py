"""accounts' domain (models, services, selectors, quotas, commands) knows nothing of HTTP: only
its API layer and its admin import DRF, simplejwt or project.api."""

import ast
from pathlib import Path

ACCOUNTS = Path(__file__).resolve().parents[2] / "accounts"
HTTP_MODULES = ("rest_framework", "rest_framework_simplejwt", "project.api")


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_only_the_api_layer_and_admin_import_http_modules():
    offenders = {}
    for path in ACCOUNTS.rglob("*.py"):
        relative = path.relative_to(ACCOUNTS)
        if relative.parts[0] in ("api", "migrations") or relative.name == "admin.py":
            continue
        bad = {
            name
            for name in imported_modules(path)
            if any(name == m or name.startswith(f"{m}.") for m in HTTP_MODULES)
        }
        if bad:
            offenders[str(relative)] = sorted(bad)
    assert offenders == {}
