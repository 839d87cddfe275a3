"""Binds the request to the audit context (audit.context) for the length of the request, and
hands the same actor, address and request id to django-auditlog's change history."""

from auditlog.context import set_extra_data
from django.http import HttpRequest, HttpResponse
from django.utils.functional import SimpleLazyObject

from audit.context import bind_request, client_ip, current_origin, unbind_request
from project.middleware import _DualModeMiddleware


class AuditContextMiddleware(_DualModeMiddleware):
    """Placed after AuthenticationMiddleware. The actor is resolved lazily: API requests are
    authenticated by DRF inside the view, after every middleware has run."""

    def before(self, request: HttpRequest) -> None:
        request._audit_token = bind_request(request)
        request._audit_extra = set_extra_data(
            context_data={
                "actor": SimpleLazyObject(lambda: current_origin().actor),
                "remote_addr": client_ip(request),
                "remote_port": None,
            }
        )
        request._audit_extra.__enter__()
        return None

    def after(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        request._audit_extra.__exit__(None, None, None)
        unbind_request(request._audit_token)
        return response
