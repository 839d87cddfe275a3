from rest_framework import exceptions, pagination


class PageNumberPagination(pagination.PageNumberPagination):
    """One envelope for every list: ``{"count", "next", "previous", "results"}``."""

    page_size_query_param = "page_size"
    max_page_size = 200

    def get_page_size(self, request) -> int:
        """``page_size`` as asked (at most ``max_page_size``); empty means the default. DRF
        quietly uses the default for ``page_size=abc`` or ``0``: here that is a 400."""
        raw = request.query_params.get(self.page_size_query_param, "")
        if raw == "":
            return self.page_size
        digits = raw.lstrip("0")
        if not (raw.isascii() and raw.isdigit()) or not digits:
            raise exceptions.ValidationError(
                {self.page_size_query_param: ["A whole number of at least 1."]}
            )
        # Never int() thousands of digits (Python refuses past 4300): that many is "the most".
        return self.max_page_size if len(digits) > 6 else min(int(digits), self.max_page_size)

    def get_schema_operation_parameters(self, view) -> list[dict]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"]["minimum"] = 1
                parameter["description"] = (
                    f"Results per page, at most {self.max_page_size} (larger asks get that many)."
                )
        return parameters
