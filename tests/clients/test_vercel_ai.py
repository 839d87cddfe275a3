"""The Vercel AI SDK (node: ``ai`` with ``@ai-sdk/openai`` and ``@ai-sdk/anthropic``) as its
users write it: ``generateText`` with a tool and ``stopWhen`` for the tool loop, ``streamText``
with the same tool, and ``generateObject`` with a zod schema, through the OpenAI provider's
default Responses model (``openai(model)``), its Chat Completions model (``openai.chat``) and
the Anthropic provider, against a model of each family. The packages are pinned by the
committed ``vercel_ai/package-lock.json`` and installed with ``npm ci``."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.live import with_worker

PROJECT = Path(__file__).resolve().parent / "vercel_ai"


@pytest.fixture(scope="module")
def node_project() -> Path:
    """``npm ci`` once (from the committed lockfile), or skip saying why it cannot run."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("no node/npm: the Vercel AI SDK is a node library (install nodejs and npm)")
    if not (PROJECT / "node_modules" / "ai").is_dir():
        result = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"],
            cwd=PROJECT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if result.returncode != 0:
            pytest.skip(f"npm ci failed for the Vercel AI SDK: {result.stderr[-500:]}")
    return PROJECT


def run_sdk(project: Path, parley: str, key: str, provider: str, model: str) -> dict:
    result = subprocess.run(
        ["node", "run.mjs", parley, provider, model],
        cwd=project,
        env={**os.environ, "PARLEY_API_KEY": key},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


@pytest.mark.parametrize("provider", ["responses", "chat", "anthropic"])
def test_vercel_ai_sdk(node_project, parley, api_key, model, provider):
    # The Responses model stores its responses (the SDK sends ``store: true`` by default):
    # each is a reply written by a real worker.
    out = with_worker(lambda: run_sdk(node_project, parley, api_key.secret, provider, model))
    # One tool call in generateText's loop and one in streamText's, each answered.
    assert out["calls"] == [out["calls"][0]] * 2 and "Paris" in out["calls"][0]
    assert out["steps"] == out["streamedSteps"] == 2
    assert out["text"].startswith('The tool returned: "sunny in')
    assert out["streamedText"].startswith('The tool returned: "sunny in')
    assert out["streamedUsage"]["inputTokens"] > 0 and out["streamedUsage"]["outputTokens"] > 0
    person = out["object"]
    assert 0 <= person["age"] <= 130 and person["role"] in {"admin", "member", "guest"}
    assert isinstance(person["address"]["city"], str) and isinstance(person["tags"], list)
