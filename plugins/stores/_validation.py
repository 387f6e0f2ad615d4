"""Input checks shared by the shipped stores: the same bad input gets the same
ValidationError whichever store is configured."""

from __future__ import annotations

from dziri.core.errors import ValidationError
from dziri.core.models import parse_enum as enum_value  # noqa: F401  (the stores' name for it)


def check(condition: bool, message: str) -> None:
    if not condition:
        raise ValidationError(message)


def check_text(value: object, name: str, allow_empty: bool = True) -> None:
    check(isinstance(value, str), f"{name} must be a string")
    check(allow_empty or bool(value.strip()), f"{name} must not be empty")


def message_fields(content: object, status: object, error: object):
    """The checked status of a message being written (content and error are checked too)."""
    from dziri.core.models import MessageStatus

    status = enum_value(MessageStatus, status, "status")
    check_text(content, "content")
    check(error is None or isinstance(error, str), "error must be a string or None")
    return status


def check_search(terms: object, limit: object, offset: object) -> None:
    check(isinstance(terms, list) and bool(terms) and all(isinstance(t, str) and t for t in terms),
          "terms must be a non-empty list of words")
    check(all(t.isalnum() for t in terms), "search terms are folded words: letters and digits only")
    check(isinstance(limit, int) and limit >= 1, "limit must be an integer of at least 1")
    check(isinstance(offset, int) and offset >= 0, "offset must be an integer of at least 0")


def check_figures(tokens: object, tokens_per_second: object) -> None:
    check(tokens is None or (isinstance(tokens, int) and not isinstance(tokens, bool) and tokens >= 0),
          "tokens must be None or an integer of at least 0")
    check(tokens_per_second is None or (isinstance(tokens_per_second, int | float)
                                        and not isinstance(tokens_per_second, bool) and tokens_per_second >= 0),
          "tokens_per_second must be None or a number of at least 0")


def check_settings(system_prompt: object, temperature: object) -> None:
    check_text(system_prompt, "system_prompt")
    check(temperature is None or (isinstance(temperature, int | float) and not isinstance(temperature, bool)
                                  and 0 <= temperature <= 2), "temperature must be None or a number from 0 to 2")
