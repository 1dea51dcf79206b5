"""Time-ordered job ids (UUID version 7, RFC 9562), so the primary-key index grows at its right edge."""

from __future__ import annotations

import os
import time
import uuid

_RAND_A_BITS = 12
_RAND_B_BITS = 62


def uuid7(unix_ms: int | None = None, random_bytes: bytes | None = None) -> uuid.UUID:
    """A UUIDv7: 48 bits of Unix milliseconds, then random bits (``random_bytes``: 10 of them, else fresh)."""
    ms = time.time_ns() // 1_000_000 if unix_ms is None else unix_ms
    rand = int.from_bytes(random_bytes or os.urandom(10), "big")
    rand_a = rand >> (80 - _RAND_A_BITS)
    rand_b = rand & ((1 << _RAND_B_BITS) - 1)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b
    return uuid.UUID(int=value)


def uuid7_many(count: int) -> list[uuid.UUID]:
    """``count`` UUIDv7s with one read of the random source (bulk enqueue makes thousands at once)."""
    ms = time.time_ns() // 1_000_000
    pool = os.urandom(10 * count)
    return [uuid7(ms, pool[i * 10 : i * 10 + 10]) for i in range(count)]


def uuid7_time_ms(value: uuid.UUID) -> int:
    """The Unix milliseconds a UUIDv7 was made at."""
    return value.int >> 80
