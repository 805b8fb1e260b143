"""Distance and hashing helpers shared by the SQL compiler and the Python evaluator.

Both sides must compute bit-identical results, so the formulas avoid library shortcuts that
round differently (``math.radians`` vs SQLite ``radians()``): the compiler passes the same
constants as parameters and SQLite's ``cos``/``sin`` call the same libm as Python's ``math``.
"""

from __future__ import annotations

import hashlib
import math
from typing import Final

EARTH_RADIUS_KM: Final = 6371.0088  # IUGG mean radius
DEG: Final = math.pi / 180.0

HASH_PRIME: Final = 2_147_483_647  # 2**31 - 1; keeps every product below 2**63 in SQLite


def unit_vector(lat: float, lon: float) -> tuple[float, float, float]:
    """Point on the unit sphere, computed exactly as the compiled SQL does."""
    return (
        math.cos(lat * DEG) * math.cos(lon * DEG),
        math.cos(lat * DEG) * math.sin(lon * DEG),
        math.sin(lat * DEG),
    )


def chord2_limit(km: float) -> float:
    """Squared chord length on the unit sphere for a great-circle distance of ``km``."""
    half = min(km / EARTH_RADIUS_KM, math.pi) / 2.0
    c = 2.0 * math.sin(half)
    return c * c


def chord2(lat: float, lon: float, centre: tuple[float, float, float]) -> float:
    """Squared chord between a point and a centre (same operation order as the SQL)."""
    x, y, z = unit_vector(lat, lon)
    dx, dy, dz = x - centre[0], y - centre[1], z - centre[2]
    return dx * dx + dy * dy + dz * dz


def within_km(lat: float, lon: float, clat: float, clon: float, km: float) -> bool:
    return chord2(lat, lon, unit_vector(clat, clon)) <= chord2_limit(km)


def bucket_coefficients(salt: str) -> tuple[int, int, int, int]:
    """Two affine rounds mod a prime, keyed by the salt (stable across versions and machines)."""
    d = hashlib.sha256(salt.encode("utf-8")).digest()
    a = int.from_bytes(d[0:8], "big") % (HASH_PRIME - 1) + 1
    b = int.from_bytes(d[8:16], "big") % HASH_PRIME
    c = int.from_bytes(d[16:24], "big") % (HASH_PRIME - 1) + 1
    e = int.from_bytes(d[24:32], "big") % HASH_PRIME
    return a, b, c, e


def bucket(subscriber_id: int, salt: str) -> int:
    """Deterministic bucket 0..99 for a subscriber and a salt (holdouts, A/B splits)."""
    a, b, c, e = bucket_coefficients(salt)
    h = ((subscriber_id % HASH_PRIME) * a + b) % HASH_PRIME
    h = (h * c + e) % HASH_PRIME
    return h % 100
