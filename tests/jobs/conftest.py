import pytest

from tests.jobs.kinds import terminal_hook_calls


@pytest.fixture(autouse=True)
def fast_backoff(settings):
    settings.JOBS_BACKOFF_BASE = 0.05
    settings.JOBS_BACKOFF_MAX = 0.2
    terminal_hook_calls.clear()
