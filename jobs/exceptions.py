"""How a handler tells the runner what went wrong."""


class JobError(Exception):
    """Base of the outcomes a handler may signal. The message is shown to the job's owner:
    never put secrets in it."""


class TransientJobError(JobError):
    """Trying again later may succeed (timeouts, rate limits, overloaded providers).
    ``retry_after`` is the earliest sensible retry, in seconds, when known."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentJobError(JobError):
    """Trying again cannot succeed (bad request, unknown model, refused credentials)."""


class JobStopped(JobError):
    """The runner told the handler to stop between two units of work (``Watchdog.check``).
    Handlers keep what they have done so far and let it propagate."""


class JobCancelled(JobStopped):
    """Someone cancelled the job; it is already marked ``cancelled``."""


class JobInterrupted(JobStopped):
    """The worker is shutting down: the job goes back to its queue and the attempt does not
    count."""


class JobTimedOut(JobStopped, PermanentJobError):
    """The attempt ran longer than JOBS_TIMEOUT: the job fails."""
