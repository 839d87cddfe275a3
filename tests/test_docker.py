"""The deployment files: the compose file validates, and the image's roles are wired."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker" / "compose.yml"


def compose_command() -> list[str] | None:
    if (
        shutil.which("docker")
        and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0
    ):
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


@pytest.mark.skipif(
    compose_command() is None,
    reason="neither `docker compose` nor docker-compose is installed (.ci/run installs it)",
)
def test_compose_config_validates():
    env = {**os.environ, "SECRET_KEY": "s" * 50, "JWT_SIGNING_KEY": "j" * 50}
    result = subprocess.run(
        [*compose_command(), "-f", str(COMPOSE), "config"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    services = config["services"]
    assert set(services) == {
        "postgres",
        "redis",
        "migrate",
        "web",
        "worker",
        "scheduler",
        "maintenance",
    }
    # `--scale worker=N` needs a worker without a fixed name or published port.
    assert "container_name" not in services["worker"] and "ports" not in services["worker"]
    assert services["maintenance"]["command"] == ["maintenance"]
    for role in ("web", "worker", "scheduler", "maintenance"):
        assert (
            services[role]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        )
        assert services[role]["environment"]["DATABASE_URL"].startswith("postgres://")
    # Only the web role serves HTTP: the others must not inherit the image's /healthz check.
    # (`disable: true` is written back by compose as `test: [NONE]`.)
    assert "healthcheck" not in services["web"]
    for role in ("migrate", "worker", "scheduler", "maintenance"):
        check = services[role]["healthcheck"]
        assert check.get("disable") is True or check.get("test") == ["NONE"], role
        assert services[role]["environment"]["REDIS_URL"].startswith("redis://redis")


def test_compose_refuses_to_start_without_secrets():
    command = compose_command()
    if command is None:
        pytest.skip("no compose tool")
    env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "JWT_SIGNING_KEY")}
    result = subprocess.run(
        [*command, "-f", str(COMPOSE), "config"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_entrypoint_knows_every_role():
    script = (ROOT / "docker" / "entrypoint.sh").read_text()
    for role in ("web)", "worker)", "scheduler)", "maintenance)", "migrate)"):
        assert role in script
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    assert "USER parley" in dockerfile and "HEALTHCHECK" in dockerfile and "AS build" in dockerfile


def test_the_image_is_built_as_it_runs():
    """Defects found by building it (scripts/image-check): metrics set up before
    collectstatic, a health check that ignored PORT, the whole repository copied in."""
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    collect = dockerfile.index("collectstatic")
    assert dockerfile.index("ENV PROMETHEUS_MULTIPROC_DIR") > collect
    healthcheck = dockerfile[dockerfile.index("HEALTHCHECK") :]
    assert "${PORT:-8000}" in healthcheck.split("ENTRYPOINT")[0]
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {"*.md", "tests", "bench", ".git", ".venv"} <= set(ignored)
