"""A job whose reply no longer exists (its conversation was deleted): retrying it is refused up
front, and a worker that meets one fails it cleanly instead of crashing."""

import logging

import pytest

from jobs.models import Job
from llm.models import Message
from tests.live import work_until_idle
from tests.llm.test_completion_flow import model, send, start_conversation

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def provider(standin):
    return standin


def test_retrying_the_job_of_a_deleted_conversation_is_a_409(auth_client):
    conversation = start_conversation(auth_client, model("openai", "standin-400").slug)
    job_id = send(auth_client, conversation)["job"]["id"]
    work_until_idle()
    assert auth_client.get(f"/api/v1/jobs/{job_id}/").json()["status"] == "failed"
    assert auth_client.delete(f"/api/v1/conversations/{conversation}/").status_code == 204

    response = auth_client.post(f"/api/v1/jobs/{job_id}/retry/")

    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "not_retryable"
    assert "deleted" in error["message"]
    assert Job.objects.get(pk=job_id).status == "failed"  # nothing was queued


def test_a_failed_job_of_a_live_conversation_can_still_be_retried(auth_client):
    conversation = start_conversation(auth_client, model("openai", "standin-400").slug)
    job_id = send(auth_client, conversation)["job"]["id"]
    work_until_idle()

    response = auth_client.post(f"/api/v1/jobs/{job_id}/retry/")

    assert response.status_code == 200
    assert response.json()["status"] == "queued"


def test_a_worker_fails_a_job_whose_reply_vanished_without_a_crash(auth_client, caplog):
    conversation = start_conversation(auth_client, model().slug)
    posted = send(auth_client, conversation)
    # The reply disappears while its job waits (a delete racing the queue).
    Message.objects.filter(pk=posted["assistant_message"]["id"]).delete()

    with caplog.at_level(logging.ERROR):
        work_until_idle()

    job = Job.objects.get(pk=posted["job"]["id"])
    assert job.status == "failed"
    assert job.last_error == "The conversation was deleted."
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR and r.exc_info]
