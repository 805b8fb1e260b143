"""Which trait column holds the latest time of each event type.

Shared by ingest (which keeps ``trait`` equal to a recomputation from the raw events) and the
rule compiler (which relies on that invariant to read a trait instead of scanning events). One
table in a module of its own, so the compiler does not import the ingest path (and with it
libphonenumber's start-up).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

# event type -> trait column (segmentation/schema.py, table ``trait``)
LAST_TS_TRAIT: Final = MappingProxyType({
    "link_click": "last_click_ms",
    "product_view": "last_view_ms",
    "cart_add": "last_cart_ms",
    "purchase": "last_purchase_ms",
    "reply": "last_reply_ms",
    "sent": "last_sent_ms",
    "delivered": "last_delivered_ms",
})

OUTBOUND_TYPES: Final = frozenset({"sent", "delivered", "failed"})
"""Events about messages to the subscriber, not from them: they do not move ``last_seen_ms``."""
INTERACTION_TYPES: Final = frozenset({"link_click", "product_view", "cart_add", "purchase",
                                      "reply"})
"""The types whose latest time is the ``last_interaction_ms`` trait."""
