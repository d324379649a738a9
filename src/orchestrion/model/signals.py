"""Events Orchestrion itself writes into the event log: audience changes and model alerts.

They are `track` events of source `orchestrion` that carry no userId or anonymousId: identity resolution leaves
them alone (a synthetic event must not move a profile's `last_seen` or link identifiers). The profile they are
about is `properties.profile_id`, the canonical id at the time of the change. Their messageIds are deterministic,
so writing the same one twice stores it once (dedup by (source, messageId)).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from orchestrion import __version__
from orchestrion.collect.event import NormalizedEvent
from orchestrion.collect.normalize import iso

SOURCE = "orchestrion"
AUDIENCE_ENTERED = "audience_entered"
AUDIENCE_EXITED = "audience_exited"
MODEL_STALE = "model_stale"


def internal_event(
    name: str, message_id: str, properties: dict[str, Any], at: dt.datetime, received_at: dt.datetime
) -> NormalizedEvent:
    """A track event of source `orchestrion`, shaped like a normalized SDK event."""
    payload: dict[str, Any] = {
        "type": "track",
        "event": name,
        "messageId": message_id,
        "properties": properties,
        "context": {"library": {"name": "orchestrion", "version": __version__}},
        "channel": "server",
        "timestamp": iso(at),
        "originalTimestamp": iso(at),
        "sentAt": iso(received_at),
        "receivedAt": iso(received_at),
    }
    return NormalizedEvent(
        source=SOURCE,
        message_id=message_id,
        type="track",
        event=name,
        user_id=None,
        anonymous_id=None,
        timestamp=at,
        original_timestamp=at,
        sent_at=received_at,
        received_at=received_at,
        payload=payload,
    )


def audience_message_id(audience: str, profile_id: str, build_id: str, change: str) -> str:
    return f"audience:{audience}:{profile_id}:{build_id}:{change}"
