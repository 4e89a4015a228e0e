"""Schemathesis hooks for test_schemathesis.py (loaded through SCHEMATHESIS_HOOKS): the check
that every error Hearth answers is OpenAI's envelope, exactly as the SDKs parse it."""

import json

import schemathesis

FIELDS = {"message", "type", "param", "code"}


@schemathesis.check
def openai_error_envelope(ctx, response, case):
    """A 4xx or 5xx body is `{"error": {"message", "type", "param", "code"}}`: message and type
    non-empty strings, param and code strings or null."""
    if response.status_code < 400:
        return None
    head = response.content[:300]
    try:
        body = json.loads(response.content)
    except ValueError:
        raise AssertionError(f"a {response.status_code} whose body is not JSON: {head!r}") from None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict) or set(error) != FIELDS or set(body) != {"error"}:
        raise AssertionError(f"a {response.status_code} not in the OpenAI envelope: {head!r}")
    for field in ("message", "type"):
        if not isinstance(error[field], str) or not error[field]:
            raise AssertionError(f"error.{field} must be a non-empty string: {head!r}")
    for field in ("param", "code"):
        if error[field] is not None and not isinstance(error[field], str):
            raise AssertionError(f"error.{field} must be a string or null: {head!r}")
    return None
