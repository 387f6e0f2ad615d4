"""Input checks for the API: every field's type and size, with one clear 400 each."""

from __future__ import annotations

import json
import re

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import EmailValidator

from dziri.core.errors import ValidationError

USERNAME = re.compile(r"[A-Za-z0-9_.-]{3,40}")
USERNAME_MAX = 40
EMAIL_MAX = 254
PASSWORD_MIN, PASSWORD_MAX = 8, 128
TITLE_MAX = 200
ID_MAX = 128  # longer than any store's ids: refused as unknown without asking the store
_email = EmailValidator()


def json_object(request) -> dict:
    if not request.body:
        return {}
    try:
        data = json.loads(request.body)
    except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        raise ValidationError("the request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ValidationError("the request body must be a JSON object")
    return data


def text(data: dict, name: str, required: bool = True) -> str | None:
    value = data.get(name)
    if value is None:
        if required:
            raise ValidationError(f"'{name}' is required")
        return None
    if not isinstance(value, str):
        raise ValidationError(f"'{name}' must be a string")
    try:
        value.encode("utf-8")  # JSON allows lone surrogates ("\ud800"); no store can keep them
    except UnicodeEncodeError:
        raise ValidationError(f"'{name}' is not valid UTF-8 text") from None
    return value


def username(value: str) -> str:
    if not USERNAME.fullmatch(value):
        raise ValidationError(
            f"the username must be 3 to {USERNAME_MAX} characters: letters, digits, '_', '.' or '-'"
        )
    return value


def email(value: str) -> str:
    value = value.strip()
    if len(value) > EMAIL_MAX:
        raise ValidationError(f"the email address is longer than {EMAIL_MAX} characters")
    try:
        _email(value)
    except DjangoValidationError:
        raise ValidationError("the email address is not valid") from None
    return value


def password(value: str) -> str:
    if not PASSWORD_MIN <= len(value) <= PASSWORD_MAX:
        raise ValidationError(f"the password must be {PASSWORD_MIN} to {PASSWORD_MAX} characters")
    return value


def title(value: str, allow_empty: bool) -> str:
    value = " ".join(value.split())
    if not value and not allow_empty:
        raise ValidationError("the title must not be empty")
    if len(value) > TITLE_MAX:
        raise ValidationError(f"the title is longer than {TITLE_MAX} characters")
    return value


def integer(request, name: str, default: int, low: int, high: int) -> int:
    raw = request.GET.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationError(f"'{name}' must be an integer") from None
    if not low <= value <= high:
        raise ValidationError(f"'{name}' must be between {low} and {high}")
    return value


SYSTEM_PROMPT_MAX = 4000


def settings(data: dict, current_prompt: str, current_temperature: float | None) -> tuple[str, float | None]:
    """A conversation's settings from a PATCH body: the fields it has, the current values
    for those it leaves out ("" / null: back to the defaults)."""
    prompt, temperature = current_prompt, current_temperature
    if "system_prompt" in data:
        prompt = text(data, "system_prompt", required=False) or ""
        if len(prompt) > SYSTEM_PROMPT_MAX:
            raise ValidationError(f"the system prompt is longer than {SYSTEM_PROMPT_MAX} characters")
    if "temperature" in data:
        temperature = data["temperature"]
        if temperature is not None and (isinstance(temperature, bool) or not isinstance(temperature, int | float)
                                        or not 0 <= temperature <= 2):
            raise ValidationError("'temperature' must be a number from 0 to 2, or null for the default")
    return prompt, temperature
