"""The run command's supervision and web server, run for real: scripts/lib/supervise.bash on
tiny children, scripts/web (uvicorn as scripts/run starts it) against the test database, and
the whole scripts/run with SQLite and an embedded Redis in a temporary directory."""

import contextlib
import os
import queue
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.jobs.worker_process import worker_database_url
from tests.live import free_port

ROOT = Path(__file__).resolve().parent.parent
SUPERVISE = ROOT / "scripts" / "lib" / "supervise.bash"


class Console:
    """A process whose combined output is read line by line in the background."""

    def __init__(self, command: list[str], **options) -> None:
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group, as a terminal would give it
            **options,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.used: set[int] = set()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def expect(self, pattern: str, timeout: float) -> re.Match:
        """The first line not matched before that matches ``pattern``, waiting for it."""
        deadline = time.monotonic() + timeout
        while True:
            for index, line in enumerate(self.seen):
                match = re.search(pattern, line) if index not in self.used else None
                if match:
                    self.used.add(index)
                    return match
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no line matching {pattern!r}; output:\n" + self.output())
            try:
                self.seen.append(self.lines.get(timeout=remaining))
            except queue.Empty:
                continue

    def output(self) -> str:
        while not self.lines.empty():
            self.seen.append(self.lines.get_nowait())
        return "\n".join(self.seen[-80:])

    def stop(self, timeout: float) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        finally:
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


def is_running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def gone_soon(pid: int, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while is_running(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def session_members(session: int) -> list[int]:
    """Live processes of a session (a Console's process started one)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[3]) == session and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


def supervisor(*programs: str) -> Console:
    lines = [f"source {SUPERVISE}", 'trap "supervised_stop; exit 0" TERM INT']
    lines += [f"supervise {program}" for program in programs]
    lines.append("wait")
    return Console(["bash", "-c", "\n".join(lines)])


def test_a_killed_child_is_named_and_restarted_and_sigterm_stops_everything():
    console = supervisor("sleeper sleep 300", "neighbour sleep 300")
    try:
        first = int(console.expect(r"sleeper started \(pid (\d+)\)", 10)[1])
        neighbour = int(console.expect(r"neighbour started \(pid (\d+)\)", 10)[1])

        os.kill(first, signal.SIGKILL)
        console.expect(rf"sleeper \(pid {first}\) killed by SIGKILL; restarting", 10)
        second = int(console.expect(r"sleeper started \(pid (\d+)\)", 10)[1])

        assert second != first and is_running(second)
        assert is_running(neighbour)  # the others were left alone
    finally:
        status = console.stop(timeout=15)
    assert status == 0
    assert gone_soon(second) and gone_soon(neighbour)


def test_a_command_that_keeps_failing_is_restarted_with_backoff():
    console = supervisor("broken sh -c 'exit 3'")
    try:
        console.expect(r"broken \(pid \d+\) exited with status 3; restarting in 1s", 10)
        console.expect(r"broken \(pid \d+\) exited with status 3; restarting in 2s", 10)
        console.expect(r"broken \(pid \d+\) exited with status 3; restarting in 4s", 10)
    finally:
        assert console.stop(timeout=15) == 0
    # Stopped in a back-off pause: nothing of it is left behind, not even the pause.
    deadline = time.monotonic() + 5
    while session_members(console.process.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert session_members(console.process.pid) == []


def run_command_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a fresh clone: no DATABASE_URL / REDIS_URL / provider keys, so the
    run command uses SQLite and an embedded Redis, here inside ``tmp_path``."""
    dropped = {"DATABASE_URL", "REDIS_URL", "OPENAI_API_KEY", "ANTHROPIC_API_KEY"}
    dropped |= {"DJANGO_SETTINGS_MODULE", "PROMETHEUS_MULTIPROC_DIR", "SECRET_KEY"}
    env = {k: v for k, v in os.environ.items() if k not in dropped and not k.startswith("JWT_")}
    env.update(
        PORT=str(free_port()),
        STANDIN_PORT=str(free_port()),
        VAR_DIR=str(tmp_path / "var"),
        TMPDIR=str(tmp_path),
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return env


def reply_written(http: httpx.Client, token: str) -> bool:
    """Post a message through the API and wait for a worker to complete its reply."""
    auth = {"Authorization": f"Bearer {token}"}
    conversation = http.post(
        "/api/v1/conversations/", json={"model": "standin-gpt"}, headers=auth
    ).json()["id"]
    posted = http.post(
        f"/api/v1/conversations/{conversation}/messages/", json={"content": "hi"}, headers=auth
    )
    assert posted.status_code == 202, posted.text
    url = (
        f"/api/v1/conversations/{conversation}/messages/{posted.json()['assistant_message']['id']}/"
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if http.get(url, headers=auth).json()["status"] == "completed":
            return True
        time.sleep(0.2)
    return False


def test_the_run_command_restarts_a_killed_worker_and_stops_cleanly(tmp_path):
    env = run_command_env(tmp_path)
    console = Console([str(ROOT / "scripts" / "run")], cwd=ROOT, env=env)
    redis_pid = None
    try:
        redis_dir = console.expect(r"embedded Redis at unix://(.+)/redis\.sock", 300)[1]
        redis_pid = int(Path(redis_dir, "redis.pid").read_text())
        console.expect(r"Parley is running at", 300)
        worker = int(console.expect(r"==> worker started \(pid (\d+)\)", 10)[1])
        maintenance = int(console.expect(r"maintenance-worker started \(pid (\d+)\)", 10)[1])
        web = int(console.expect(r"==> web started \(pid (\d+)\)", 10)[1])
        with httpx.Client(base_url=f"http://127.0.0.1:{env['PORT']}", timeout=10) as http:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if http.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, console.output()
                time.sleep(0.2)
            token = http.post(
                "/api/v1/auth/token/",
                json={"email": "demo@parley.local", "password": "parley-demo-password"},
            ).json()["access"]

            os.kill(worker, signal.SIGKILL)
            console.expect(rf"worker \(pid {worker}\) killed by SIGKILL; restarting", 10)
            restarted = int(console.expect(r"==> worker started \(pid (\d+)\)", 15)[1])
            assert restarted != worker

            assert reply_written(http, token), console.output()  # the new worker serves
            assert http.get("/healthz").status_code == 200
            assert is_running(maintenance) and is_running(web)  # nothing else restarted
    finally:
        console.stop(timeout=90)
    for pid in (restarted, maintenance, web, redis_pid):
        assert gone_soon(pid), f"pid {pid} still running after the run command stopped"
    assert "stopping" in console.output()


# The two ways Parley's web server is started: scripts/run's (scripts/web, uvicorn) and the
# image's (gunicorn with uvicorn workers and docker/gunicorn.conf.py, production settings).
WEB_SERVERS = {
    "run-command": (
        [str(ROOT / "scripts" / "web")],
        {"DJANGO_SETTINGS_MODULE": "project.settings.development", "DEBUG": "false"},
    ),
    "image": (
        [
            str(ROOT / ".venv" / "bin" / "gunicorn"),
            *("-c", "docker/gunicorn.conf.py", "project.asgi:application"),
        ],
        {
            "DJANGO_SETTINGS_MODULE": "project.settings.production",
            "SECRET_KEY": "s" * 50,
            "JWT_SIGNING_KEY": "j" * 50,
            "SECURE_SSL_REDIRECT": "false",
            "WEB_CONCURRENCY": "1",
        },
    ),
}


@contextlib.contextmanager
def web_server(tmp_path: Path, server: str, **env: str):
    """A web server started as ``server`` says, on a free port, against the test database and
    Redis; yields an HTTP client for it once it answers."""
    command, settings_env = WEB_SERVERS[server]
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    environment.update(DATABASE_URL=worker_database_url(), VAR_DIR=str(tmp_path), PORT=str(port))
    environment.update(settings_env, **env)
    if server == "image":  # gunicorn binds 0.0.0.0; tests stay on the loopback
        command = [*command, "--bind", f"127.0.0.1:{port}"]
    console = Console(command, cwd=ROOT, env=environment)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if http.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, console.output()
                time.sleep(0.2)
            yield http
    finally:
        console.stop(timeout=20)


def failed_logins(http: httpx.Client, count: int) -> list[int]:
    """Wrong passwords for different accounts, each claiming a new X-Forwarded-For address:
    only the per-address limit can stop them."""
    return [
        http.post(
            "/api/v1/auth/token/",
            json={"email": f"guess{attempt}@example.com", "password": "wrong"},
            headers={"X-Forwarded-For": f"203.0.113.{attempt}"},
        ).status_code
        for attempt in range(1, count + 1)
    ]


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(
    "postgres" not in os.environ.get("DATABASE_URL", ""),
    reason="a server in another process needs a shared database (PostgreSQL; CI has one)",
)
@pytest.mark.parametrize("server", WEB_SERVERS)
def test_a_rotating_x_forwarded_for_does_not_escape_the_login_throttle(tmp_path, db, server):
    with web_server(tmp_path, server, THROTTLE_LOGIN_FAILURES_PER_IP="3/minute") as http:
        statuses = failed_logins(http, 5)
    # All five came from 127.0.0.1, whatever they claimed.
    assert statuses == [401, 401, 401, 429, 429], statuses


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(
    "postgres" not in os.environ.get("DATABASE_URL", ""),
    reason="a server in another process needs a shared database (PostgreSQL; CI has one)",
)
@pytest.mark.parametrize("server", WEB_SERVERS)
def test_forwarding_headers_are_used_from_a_configured_proxy(tmp_path, db, server):
    # Here the test itself, on 127.0.0.1, stands for the trusted proxy.
    with web_server(
        tmp_path,
        server,
        FORWARDED_ALLOW_IPS="127.0.0.1",
        THROTTLE_LOGIN_FAILURES_PER_IP="3/minute",
    ) as http:
        statuses = failed_logins(http, 5)
    assert statuses == [401] * 5, statuses  # five different clients, one attempt each


@pytest.mark.parametrize("taken", ["PORT", "STANDIN_PORT", "both the same"])
def test_a_port_in_use_is_said_at_once(tmp_path, taken):
    """A port another program holds (or one port for both servers) stops the run command
    with a sentence saying which, instead of a web server restarting forever."""
    env = run_command_env(tmp_path)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        if taken == "both the same":
            env["STANDIN_PORT"] = env["PORT"]
        else:
            env[taken] = str(holder.getsockname()[1])
        finished = subprocess.run(
            [str(ROOT / "scripts" / "run")],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
    assert finished.returncode == 1
    port = env["PORT"] if taken != "STANDIN_PORT" else env["STANDIN_PORT"]
    assert f"{port}" in finished.stderr
    assert "in use" in finished.stderr or "a port each" in finished.stderr
    assert "Parley is running" not in finished.stdout
