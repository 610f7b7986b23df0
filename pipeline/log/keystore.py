"""Each session's data key, kept apart from its log and wrapped by the operator's master key.

Encryption at rest (``VOXLINE_LOG__ENCRYPT``) seals the sensitive fields of a session's
events with a data key of its own (AES-256-GCM). :class:`KeyStore` is the seam: a data key
per session, made on first use, and destroyed on erasure. Destroying it is the erasure
of every copy of the payloads: replicas, AOF, RDB snapshots and backups still hold the
sealed bytes, and nothing can open them any more (crypto-shredding).

:class:`RedisKeyStore`, the default, keeps each data key in Redis under its own prefix
(``{prefix}:dek:{session}``), wrapped (AES-GCM) with a master key the operator holds
outside Redis (``VOXLINE_LOG__MASTER_KEY``, base64 of 32 bytes, or a file of them):
a dump of Redis alone opens nothing. A KMS is another :class:`KeyStore`: ``data_key``
unwraps with the KMS (or asks it for a new key), ``destroy`` deletes the wrapped copy.
"""

from __future__ import annotations

import abc
import base64
import os
from collections import OrderedDict
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from pipeline.log.keys import LogKeys
from schemas import ConfigurationError, EventLogSettings

__all__ = ["KeyStore", "RedisKeyStore", "master_key"]

_NONCE = 12
#: data keys held in memory at most (a replica's live sessions and readers)
_CACHED = 4096


def master_key(settings: EventLogSettings) -> bytes:
    """The operator's master key: ``master_key`` (base64), else ``master_key_file``."""
    raw: str | None = None
    if settings.master_key is not None:
        raw = settings.master_key.get_secret_value()
    elif settings.master_key_file is not None:
        raw = Path(settings.master_key_file).read_text(encoding="ascii").strip()
    if raw is None:
        raise ConfigurationError(
            "encryption at rest needs a master key: VOXLINE_LOG__MASTER_KEY (base64 of 32 "
            "random bytes: `python -c \"import os,base64;print(base64.b64encode("
            "os.urandom(32)).decode())\"`) or VOXLINE_LOG__MASTER_KEY_FILE",
            setting="VOXLINE_LOG__MASTER_KEY")
    try:
        key = base64.b64decode(raw, validate=True)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise ConfigurationError("the master key must be 32 bytes, base64-encoded",
                                 setting="VOXLINE_LOG__MASTER_KEY")
    return key


class KeyStore(abc.ABC):
    """Data keys by session (see the module docstring)."""

    @abc.abstractmethod
    async def data_key(self, session_id: str, *, create: bool) -> bytes | None:
        """The session's 32-byte data key; made when ``create`` and it has none;
        ``None``: it has none (never made, or destroyed)."""

    @abc.abstractmethod
    async def destroy(self, session_id: str) -> bool:
        """Destroy the session's data key; whether there was one."""


class RedisKeyStore(KeyStore):
    """Data keys in Redis, wrapped with the master key (see the module docstring)."""

    def __init__(self, redis: Redis | RedisCluster, keys: LogKeys, master: bytes) -> None:
        self.redis = redis
        self.keys = keys
        self._wrap = AESGCM(master)
        self._cache: OrderedDict[str, bytes] = OrderedDict()

    async def data_key(self, session_id: str, *, create: bool) -> bytes | None:
        cached = self._cache.get(session_id)
        if cached is not None:
            self._cache.move_to_end(session_id)
            return cached
        name = self.keys.data_key(session_id)
        wrapped: bytes | None = await self.redis.get(name)  # type: ignore[assignment]
        if wrapped is None and create:
            fresh = AESGCM.generate_key(bit_length=256)
            nonce = os.urandom(_NONCE)
            sealed = nonce + self._wrap.encrypt(nonce, fresh, session_id.encode())
            await self.redis.set(name, sealed, nx=True)  # two makers: the first one stands
            wrapped = await self.redis.get(name)  # type: ignore[assignment]
        if wrapped is None:
            return None
        key = self._wrap.decrypt(wrapped[:_NONCE], wrapped[_NONCE:], session_id.encode())
        self._cache[session_id] = key
        if len(self._cache) > _CACHED:
            self._cache.popitem(last=False)
        return key

    async def destroy(self, session_id: str) -> bool:
        self._cache.pop(session_id, None)
        return bool(await self.redis.delete(self.keys.data_key(session_id)))
