"""Staff set budgets in dollars in the admin; they are stored in micro-dollars."""

import pytest

from budgets.models import Budget
from budgets.services import budget_reserve

pytestmark = pytest.mark.django_db
LEDGER_INLINE = {"ledgers-TOTAL_FORMS": "0", "ledgers-INITIAL_FORMS": "0"}


def test_staff_type_a_dollar_limit_and_see_dollars(client, staff_user, user):
    client.force_login(staff_user)
    response = client.post(
        "/admin/budgets/budget/add/",
        {
            "user": user.pk,
            "period": "daily",
            "limit_usd": "2.000215",
            "limit_tokens": "",
            **LEDGER_INLINE,
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    budget = Budget.objects.get(user=user)
    assert budget.limit_micros == 2_000_215
    budget_reserve(user=user, amount_micros=215, amount_tokens=1)
    listing = client.get("/admin/budgets/budget/").content.decode()
    assert "$2.000215" in listing and "$0.000000 ($0.000215)" in listing
    form = client.get(f"/admin/budgets/budget/{budget.pk}/change/").content.decode()
    assert 'value="2.000215"' in form


def test_a_negative_dollar_limit_is_refused(client, staff_user, user):
    client.force_login(staff_user)
    response = client.post(
        "/admin/budgets/budget/add/",
        {
            "user": user.pk,
            "period": "daily",
            "limit_usd": "-1",
            "limit_tokens": "",
            **LEDGER_INLINE,
        },
    )
    assert response.status_code == 200 and not Budget.objects.exists()
    assert "limit_usd" in response.context["adminform"].form.errors
