"""node's oidc-provider (OpenID Certified) as a real identity provider for the SSO tests, and a
person's way through it: Parley's SSO button, the provider's login and consent forms, back."""

import contextlib
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin

import httpx
import pytest

PROVIDER_DIR = Path(__file__).resolve().parent / "provider"
CLIENT_ID = "parley"
CLIENT_SECRET = "parley-test-client-secret"


def provider_installed() -> None:
    """``npm ci`` once (from the committed lockfile), or skip saying why it cannot run."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("no node/npm: the SSO tests run node's oidc-provider (install nodejs and npm)")
    if (PROVIDER_DIR / "node_modules" / "oidc-provider").is_dir():
        return
    result = subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund"],
        cwd=PROVIDER_DIR,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:
        pytest.skip(f"npm ci failed for the test OpenID provider: {result.stderr[-500:]}")


class Provider:
    def __init__(self, process: subprocess.Popen, issuer: str) -> None:
        self.process = process
        self.issuer = issuer

    def _control(self, what: str, body: dict) -> dict:
        response = httpx.post(f"{self.issuer}/__test__/{what}", json=body, timeout=10)
        response.raise_for_status()
        return response.json()

    def set_users(self, users: dict[str, dict]) -> None:
        self._control("users", users)

    def misbehave(self, mode: str | None) -> None:
        self._control("misbehave", {"mode": mode})

    def hold(self, path: str | None) -> None:
        """Requests to ``path`` (the token endpoint's, the keys', userinfo's) wait unanswered
        from now on, as at a slow provider, until ``hold(None)`` lets them all through."""
        self._control("hold", {"path": path})

    def held(self) -> int:
        """How many requests wait on the held path now."""
        return self._control("held", {})["held"]

    def rotate_keys(self, *, retire_previous: bool) -> list[str]:
        """A new signing key, used from now on; returns the published key ids, newest first."""
        return self._control("rotate", {"retire_previous": retire_previous})["kids"]

    def published_kids(self) -> list[str]:
        return [key["kid"] for key in httpx.get(f"{self.issuer}/jwks").json()["keys"]]


@contextlib.contextmanager
def oidc_provider(*, redirect_uri: str, users: dict[str, dict]) -> Iterator[Provider]:
    provider_installed()
    env = {
        **os.environ,
        "PORT": "0",
        "CLIENT_ID": CLIENT_ID,
        "CLIENT_SECRET": CLIENT_SECRET,
        "REDIRECT_URIS": redirect_uri,
        "USERS": json.dumps(users),
    }
    process = subprocess.Popen(
        ["node", "server.mjs"],
        cwd=PROVIDER_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        issuer = None
        # The first JSON line on stdout says where it listens (readline returns "" if it died).
        for line in iter(process.stdout.readline, ""):
            if line.startswith("{"):
                issuer = json.loads(line)["issuer"]
                break
        if issuer is None:
            raise RuntimeError(f"the test OpenID provider did not start ({process.poll()=})")
        threading.Thread(target=process.stdout.read, daemon=True).start()  # keep the pipe drained
        yield Provider(process, issuer)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class _Forms(HTMLParser):
    """The forms of a page: action and the named inputs' values."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attributes = dict(attrs)
        if tag == "form":
            self.forms.append({"action": attributes.get("action", ""), "fields": {}})
        elif tag == "input" and self.forms and attributes.get("name"):
            self.forms[-1]["fields"][attributes["name"]] = attributes.get("value") or ""


def page_forms(response: httpx.Response) -> list[dict]:
    parser = _Forms()
    parser.feed(response.text)
    return parser.forms


def sign_in_through_provider(
    client: httpx.Client, parley_url: str, *, login: str, next_path: str = "/account/"
) -> httpx.Response:
    """Press "Sign in with SSO" on Parley, sign in as ``login`` on the provider's login page,
    grant consent when asked, and follow the redirects back to Parley; returns the last page."""
    response = client.get(f"{parley_url}/sso/login/", params={"next": next_path})
    for _ in range(3):  # login, then consent (skipped when already given)
        if not str(response.url).startswith(client.provider_issuer):  # type: ignore[attr-defined]
            return response
        forms = page_forms(response)
        assert forms, f"no form on the provider's page {response.url}: {response.text[:300]}"
        form = forms[0]
        fields = dict(form["fields"])
        if fields.get("prompt") == "login":
            fields.update(login=login, password="any")
        response = client.post(urljoin(str(response.url), form["action"]), data=fields)
    return response


def person_client(provider: Provider) -> httpx.Client:
    """A fresh browser-like client (its own cookies) for one person."""
    client = httpx.Client(follow_redirects=True, timeout=20)
    client.provider_issuer = provider.issuer  # type: ignore[attr-defined]
    return client
