"""The request body limit against a real server (uvicorn, as production runs) and raw HTTP:
declared lengths, chunked bodies without a Content-Length, and honest chunked clients. A
WSGI server (gunicorn's sync worker) is checked for the chunked cases too."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from accounts.models import User
from tests.jobs.worker_process import worker_database_url
from tests.live import asgi_server, free_port, http_answers, wait_until_ready

pytestmark = pytest.mark.django_db(transaction=True)
LIMIT = 4096
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def server(settings):
    settings.MAX_REQUEST_BODY_BYTES = LIMIT
    with asgi_server() as url:
        yield urlsplit(url)


@pytest.fixture
def wsgi_server(db):
    """gunicorn's sync worker serving project.wsgi in its own process."""
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"} | {
        "DJANGO_SETTINGS_MODULE": "project.settings.test",
        "DATABASE_URL": worker_database_url(),
        "MAX_REQUEST_BODY_BYTES": str(LIMIT),
    }
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            *("--bind", f"127.0.0.1:{port}", "--workers", "1", "--worker-class", "sync"),
            "project.wsgi:application",
        ],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_ready(
            process, lambda: http_answers(f"http://127.0.0.1:{port}/healthz"), what="gunicorn"
        )
        yield urlsplit(f"http://127.0.0.1:{port}")
    finally:
        process.terminate()
        process.wait(timeout=30)


def connect(server) -> socket.socket:
    sock = socket.create_connection((server.hostname, server.port), timeout=10)
    return sock


def head(path: str, *headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    return ("\r\n".join([*lines, *headers]) + "\r\n\r\n").encode()


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def read_response(sock: socket.socket) -> tuple[int, dict, bytes]:
    raw = b""
    while b"\r\n\r\n" not in raw:
        piece = sock.recv(65536)
        assert piece, f"connection closed early: {raw!r}"
        raw += piece
    header_block, _, rest = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = header_block.decode("latin-1").split("\r\n")
    headers = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(":") for line in header_lines)
    }
    status = int(status_line.split()[1])
    if "content-length" in headers:
        length = int(headers["content-length"])
        while len(rest) < length and (piece := sock.recv(65536)):
            rest += piece
        return status, headers, rest[:length]
    while piece := sock.recv(65536):  # delimited by the connection closing
        rest += piece
    if "chunked" in headers.get("transfer-encoding", ""):
        decoded = b""
        while True:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line, 16)
            if not size:
                break
            decoded, rest = decoded + rest[:size], rest[size + 2 :]
        rest = decoded
    return status, headers, rest


def test_honest_chunked_json_is_parsed(server):
    body = json.dumps({"email": "Chunked@Example.com", "password": "a-long-unusual-passphrase"})
    with connect(server) as sock:
        sock.sendall(head("/api/v1/auth/register/", "Transfer-Encoding: chunked"))
        encoded = body.encode()
        for start in range(0, len(encoded), 10):  # many small chunks
            sock.sendall(chunk(encoded[start : start + 10]))
        sock.sendall(b"0\r\n\r\n")
        status, _, content = read_response(sock)
    assert status == 201, content
    assert json.loads(content)["email"] == "chunked@example.com"
    assert User.objects.filter(email="chunked@example.com").exists()


def test_chunked_body_over_the_limit_is_413_before_it_ends(server):
    with connect(server) as sock:
        sock.sendall(head("/api/v1/auth/register/", "Transfer-Encoding: chunked"))
        # Past the limit, but the terminating chunk is never sent: the server must answer
        # without waiting for the rest (a 5 MB body used to be read in full).
        sock.sendall(chunk(b"[" + b" " * (LIMIT + 100)))
        status, headers, content = read_response(sock)
    assert status == 413
    error = json.loads(content)["error"]
    assert error["code"] == "request_too_large"
    assert error["request_id"] == headers["x-request-id"]
    assert headers["connection"] == "close"
    assert not User.objects.exists()


def test_chunked_body_at_the_limit_is_accepted(server):
    body = json.dumps({"email": "edge@example.com", "password": "a-long-unusual-passphrase"})
    padded = body[:-1] + " " * (LIMIT - len(body)) + "}"
    assert len(padded) == LIMIT
    with connect(server) as sock:
        sock.sendall(head("/api/v1/auth/register/", "Transfer-Encoding: chunked"))
        sock.sendall(chunk(padded.encode()) + b"0\r\n\r\n")
        status, _, content = read_response(sock)
    assert status == 201, content


def test_declared_length_over_the_limit_is_413_without_reading_the_body(server):
    with connect(server) as sock:
        sock.sendall(head("/api/v1/auth/register/", f"Content-Length: {5 * 1024 * 1024}"))
        status, _, content = read_response(sock)  # nothing of the body was sent
    assert status == 413
    assert json.loads(content)["error"]["code"] == "request_too_large"


def test_declared_length_under_the_limit_is_served(server):
    body = json.dumps({"email": "plain@example.com", "password": "a-long-unusual-passphrase"})
    with connect(server) as sock:
        sock.sendall(head("/api/v1/auth/register/", f"Content-Length: {len(body)}") + body.encode())
        status, _, content = read_response(sock)
    assert status == 201, content


def test_wsgi_chunked_json_is_parsed_and_the_limit_holds(wsgi_server):
    body = json.dumps({"email": "wsgi@example.com", "password": "a-long-unusual-passphrase"})
    with connect(wsgi_server) as sock:
        sock.sendall(head("/api/v1/auth/register/", "Transfer-Encoding: chunked"))
        sock.sendall(chunk(body.encode()[:20]) + chunk(body.encode()[20:]) + b"0\r\n\r\n")
        status, _, content = read_response(sock)
    assert status == 201, content
    assert User.objects.filter(email="wsgi@example.com").exists()

    with connect(wsgi_server) as sock:
        sock.sendall(head("/api/v1/auth/register/", "Transfer-Encoding: chunked"))
        sock.sendall(chunk(b"[" + b" " * (LIMIT + 100)))  # and never the end
        status, headers, content = read_response(sock)
    assert status == 413, (headers, content)
    assert json.loads(content)["error"]["code"] == "request_too_large"
