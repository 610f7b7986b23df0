"""Field types shared by the models."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema


def _decode_base64(value: object) -> object:
    """Strings are base64 (standard alphabet; URL-safe accepted too); bytes pass through."""
    if not isinstance(value, str):
        return value
    try:
        if "-" in value or "_" in value:
            return base64.urlsafe_b64decode(value)
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"not valid base64: {exc}") from None


#: Raw bytes in Python and in Redis; standard base64 in JSON (what browsers' atob reads).
Base64Bytes = Annotated[
    bytes,
    BeforeValidator(_decode_base64),
    PlainSerializer(lambda raw: base64.b64encode(raw).decode("ascii"), when_used="json"),
    WithJsonSchema({"type": "string", "contentEncoding": "base64"}),
]
