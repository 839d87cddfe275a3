from django.http import HttpRequest


def sign_in_options(request: HttpRequest) -> dict:
    """Which ways of signing in the sign-in pages (ours and the admin's) offer."""
    from selfservice.views import sign_in_options as options

    return options()
