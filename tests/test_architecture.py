"""The boundaries the design promises: domain code knows nothing of HTTP, dependencies point
one way, and each domain error reaches clients with its status in the one error shape."""

import ast
from pathlib import Path

import pytest

from project import errors
from project.api.errors import STATUS_BY_ERROR, status_for

ROOT = Path(__file__).resolve().parent.parent


def imports_of(app: str, *, skip: tuple[str, ...] = ()) -> dict[str, set[str]]:
    """Every module imported by the app's Python files, by file (migrations and ``skip`` left out)."""
    found: dict[str, set[str]] = {}
    for path in (ROOT / app).rglob("*.py"):
        relative = path.relative_to(ROOT).as_posix()
        if "/migrations/" in relative or relative.startswith(skip):
            continue
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
        found[relative] = names
    return found


HTTP_LAYERS = ("rest_framework", "drf_spectacular", "project.api")


@pytest.mark.parametrize("app", ["jobs", "accounts"])
def test_domain_code_imports_no_http_layer(app):
    offenders = {
        path: sorted(name for name in names if name.startswith(HTTP_LAYERS))
        for path, names in imports_of(app, skip=(f"{app}/api/", f"{app}/admin.py")).items()
    }
    assert {path: names for path, names in offenders.items() if names} == {}


@pytest.mark.parametrize(("app", "forbidden"), [("jobs", "llm"), ("accounts", "llm")])
def test_dependencies_point_one_way(app, forbidden):
    offenders = {
        path: sorted(n for n in names if n == forbidden or n.startswith(f"{forbidden}."))
        for path, names in imports_of(app).items()
    }
    assert {path: names for path, names in offenders.items() if names} == {}


def test_the_worker_side_imports_no_api_layer():
    worker_side = ["llm/completion.py", "llm/streams.py", "llm/services.py", "llm/selectors.py"]
    found = imports_of("llm")
    offenders = {
        path: sorted(n for n in found[path] if n.startswith(("llm.api", *HTTP_LAYERS)))
        for path in worker_side
    }
    assert {path: names for path, names in offenders.items() if names} == {}


def test_root_urls_import_no_app_code():
    names = imports_of("project")["project/urls.py"]
    assert not {n for n in names if n.split(".")[0] in ("llm", "jobs", "accounts")}


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (errors.InvalidInput("x"), 400),
        (errors.NotAllowed("x"), 403),
        (errors.NotFound("x"), 404),
        (errors.Conflict("x"), 409),
        (errors.InvalidTransition("x"), 409),
        (errors.IdempotencyKeyReused("x"), 422),
        (errors.LimitExceeded("x"), 429),
        (errors.BudgetExceeded("x"), 429),
        (errors.Unavailable("x"), 503),
    ],
)
def test_each_domain_error_has_its_status(error, status):
    assert status_for(error) == status


def test_every_domain_error_class_is_in_the_table():
    classes = {
        value
        for value in vars(errors).values()
        if isinstance(value, type) and issubclass(value, errors.DomainError)
    }
    unmapped = {cls.__name__ for cls in classes if cls not in STATUS_BY_ERROR}
    assert unmapped == set()
