"""Serializer fields shared by the apps' APIs."""

from decimal import Decimal

from rest_framework import serializers

from project.money import micros, usd


class UsdFromMicrosField(serializers.DecimalField):
    """An amount stored as integer micro-dollars, shown as a dollar decimal string with six
    decimals (the API's money format since the first version); input dollars become micros."""

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("max_digits", 14)
        kwargs.setdefault("decimal_places", 6)
        kwargs.setdefault("coerce_to_string", True)
        super().__init__(**kwargs)

    def to_representation(self, value: int | None) -> str | Decimal | None:
        if value is None:
            return None
        return super().to_representation(usd(value))

    def to_internal_value(self, data) -> int:
        return micros(super().to_internal_value(data))
