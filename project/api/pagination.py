from rest_framework import pagination


class PageNumberPagination(pagination.PageNumberPagination):
    """One envelope for every list: ``{"count", "next", "previous", "results"}``."""

    page_size_query_param = "page_size"
    max_page_size = 200
