"""``{{ amount_micros|usd }}``: micro-dollars (how money is stored) as a dollar Decimal."""

from decimal import Decimal

from django import template

from project.money import usd as usd_of

register = template.Library()


@register.filter
def usd(amount_micros: int | None) -> Decimal | None:
    return None if amount_micros is None else usd_of(amount_micros)
