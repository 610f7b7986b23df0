"""Sealing an event's payload with its session's data key: AES-256-GCM-SIV.

What is sealed: the ``data`` JSON (text, transcripts, settings with their prompts, tool
calls and outputs) and the ``audio`` field. What stays clear: the entry's id, ``type``,
``turn``, ``ts`` and its number, so ordering, resume, metrics and traces work without
the key. Each field's associated data is ``session|event id|field``: a sealed field moved
to another event, field or session does not open.

GCM-SIV rather than plain GCM because the append must be repeatable: a write retried
after a lost reply is compared field by field with what the log holds, so the same event
must seal to the same bytes. The nonce is therefore derived from the key and the
associated data (HMAC-SHA256), which only GCM-SIV tolerates (a repeated nonce reveals at
most that the same field of the same event was sealed twice, which it was).
"""

from __future__ import annotations

import functools
import hashlib
import hmac

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV

from schemas import EventLogError

__all__ = ["SEALED", "open_field", "seal_field"]

#: the clear field that marks an entry whose payload is sealed
SEALED = b"sealed"
_NONCE = 12


@functools.lru_cache(maxsize=4096)
def _cipher(key: bytes) -> AESGCMSIV:
    """One cipher per data key (its key schedule made once, not per field)."""
    return AESGCMSIV(key)


def _aad(session_id: str, event_id: str, field: bytes) -> bytes:
    return b"|".join((session_id.encode(), event_id.encode(), field))


def seal_field(key: bytes, session_id: str, event_id: str, field: bytes,
               plain: bytes) -> bytes:
    aad = _aad(session_id, event_id, field)
    nonce = hmac.new(key, aad, hashlib.sha256).digest()[:_NONCE]
    return nonce + _cipher(key).encrypt(nonce, plain, aad)


def open_field(key: bytes, session_id: str, event_id: str, field: bytes,
               sealed: bytes) -> bytes:
    try:
        return _cipher(key).decrypt(sealed[:_NONCE], sealed[_NONCE:],
                                      _aad(session_id, event_id, field))
    except InvalidTag:
        raise EventLogError(f"a sealed field of event {event_id} does not open with the "
                            "session's key", transient=False) from None
