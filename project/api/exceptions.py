"""Domain errors raised by services and selectors; project.api.errors renders them.

Kept free of DRF's views module so services can import it without an import cycle."""

from typing import Any

from rest_framework import exceptions, status


class ApiError(exceptions.APIException):
    """A domain error with its own status and code, raised by services and selectors."""

    def __init__(
        self, message: str, *, code: str, status_code: int = 400, details: Any = None
    ) -> None:
        super().__init__(detail=message, code=code)
        self.status_code = status_code
        self.error_code = code
        self.details = details


class Conflict(ApiError):
    def __init__(self, message: str, *, code: str = "conflict", details: Any = None) -> None:
        super().__init__(message, code=code, status_code=status.HTTP_409_CONFLICT, details=details)
