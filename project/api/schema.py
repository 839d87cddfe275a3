"""OpenAPI pieces shared by every app: the error shape and its responses on every operation."""

ERROR_STATUSES = {
    "400": "Invalid input.",
    "401": "Missing, invalid or expired credentials.",
    "403": "Authenticated but not allowed.",
    "404": "No such object, or it belongs to someone else.",
    "405": "Method not allowed.",
    "409": "Conflicts with the object's current state.",
    "413": "Request body too large.",
    "422": "Well-formed but cannot be processed.",
    "429": "Throttled; see the Retry-After header.",
    "500": "Unexpected server error.",
    "503": "A dependency (database, Redis) is unavailable.",
}

_ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["status", "code", "message", "details", "request_id"],
            "properties": {
                "status": {"type": "integer", "example": 404},
                "code": {"type": "string", "example": "not_found"},
                "message": {"type": "string", "example": "Not found."},
                "details": {
                    "nullable": True,
                    "description": "Field errors for validation failures, else null.",
                },
                "request_id": {"type": "string"},
            },
        }
    },
}


# Statuses every operation can answer; others (409, 422, 503) are opted into per view with
# ``@extend_schema(extensions={"x-error-statuses": ["409"]})``.
COMMON_STATUSES = ("400", "401", "403", "404", "405", "413", "429", "500")


def add_error_responses(result: dict, generator, request, public) -> dict:
    """Postprocessing hook: every operation documents the error shape for its error statuses.

    Operations without security leave out the common 401/403; one that answers 401 anyway
    (bad credentials on token/, a bad refresh token on token/refresh/) opts in explicitly."""
    components = result.setdefault("components", {}).setdefault("schemas", {})
    components["ErrorResponse"] = _ERROR_SCHEMA
    ref = {"$ref": "#/components/schemas/ErrorResponse"}
    for path_item in result.get("paths", {}).values():
        for operation in path_item.values():
            responses = operation.setdefault("responses", {})
            secured = any(operation.get("security", [{}]))
            common = [c for c in COMMON_STATUSES if secured or c not in ("401", "403")]
            for code in (*common, *operation.pop("x-error-statuses", [])):
                description = ERROR_STATUSES[code]
                responses.setdefault(
                    code,
                    {"description": description, "content": {"application/json": {"schema": ref}}},
                )
    return result


def document_empty_query_values(result: dict, generator, request, public) -> dict:
    """Postprocessing hook: an optional query parameter sent empty (``?status=``) is read as
    left out, as DRF reads query strings, so the schema says an empty value is allowed."""
    for path_item in result.get("paths", {}).values():
        for operation in path_item.values():
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "query" and not parameter.get("required"):
                    parameter["allowEmptyValue"] = True
    return result
