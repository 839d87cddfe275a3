"""The start-up check says when the sign-in settings cannot work."""

from sso.checks import sign_in_settings


def ids(settings) -> list[str]:
    return [problem.id for problem in sign_in_settings(None)]


def test_sso_without_a_client_is_an_error(settings):
    settings.OIDC_ISSUER = "https://idp.acme.example"
    settings.OIDC_RP_CLIENT_ID = ""
    assert ids(settings) == ["sso.E001"]


def test_no_way_to_sign_in_is_a_warning(settings):
    settings.OIDC_ISSUER = ""
    settings.PASSWORD_SIGNIN_ENABLED = False
    assert ids(settings) == ["sso.W001"]


def test_a_complete_configuration_passes(settings):
    settings.OIDC_ISSUER = "https://idp.acme.example"
    settings.OIDC_RP_CLIENT_ID = "parley"
    settings.OIDC_RP_CLIENT_SECRET = "s3cret"
    settings.PASSWORD_SIGNIN_ENABLED = False
    assert ids(settings) == []
