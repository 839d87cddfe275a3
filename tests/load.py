"""Many conversation messages posted at once over real HTTP, for the tests that race
admissions against a budget or a rate limit (tests/budgets, tests/teams)."""

import threading

import httpx
from django.conf import settings

from llm.admission import conversation_input_estimate, worst_case_cost_micros


def bearer(credential: str) -> dict:
    return {"Authorization": f"Bearer {credential}"}


def messages_post_together(
    requests: list[tuple[str, str, dict]], *, content: str, timeout: float = 60.0
) -> list[httpx.Response]:
    """POST ``content`` to every (base URL, conversation id, headers) at once: one thread and
    one client each, released together by one barrier. The responses, in order."""
    barrier = threading.Barrier(len(requests))
    responses: list = [None] * len(requests)

    def post(i: int, base_url: str, conversation_id: str, headers: dict) -> None:
        with httpx.Client(base_url=base_url, timeout=timeout) as client:
            barrier.wait()
            responses[i] = client.post(
                f"/api/v1/conversations/{conversation_id}/messages/",
                json={"content": content},
                headers=headers,
            )

    threads = [threading.Thread(target=post, args=(i, *r)) for i, r in enumerate(requests)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=2 * timeout)
    return responses


def status_counts(responses) -> dict:
    """How many responses of each kind: ``202``, or ``(status, error code)``."""
    counts: dict = {}
    for response in responses:
        key = response.status_code
        if key != 202:
            key = (key, response.json()["error"]["code"])
        counts[key] = counts.get(key, 0) + 1
    return counts


def worst_case_micros(conversation, content: str) -> int:
    """What admitting ``content`` in ``conversation`` holds against a budget."""
    model = conversation.model
    return worst_case_cost_micros(
        model=model,
        input_tokens=conversation_input_estimate(conversation=conversation, content=content),
        max_tokens=min(model.max_output_tokens, settings.LLM_DEFAULT_MAX_TOKENS),
    )
