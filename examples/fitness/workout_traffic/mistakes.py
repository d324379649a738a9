"""Planted mistakes: a few events of each violation kind, a hand-rolled batch with broken events, and
retried duplicates. Each changed call says what the server should do with it (`expect`, `mistake`)."""

from __future__ import annotations

import copy
import datetime as dt
from dataclasses import replace

from .calls import Call
from .journeys import Traffic


def pick(traffic: Traffic, count: int, source: str, event: str | None, kind: str = "track") -> list[Call]:
    pool = [
        c
        for c in traffic.calls
        if c.source == source
        and c.kind == kind
        and c.event == event
        and c.mistake is None
        and c.expect == "stored"
        and c.transport == "sdk"
    ]
    return traffic.rng.sample(pool, min(count, len(pool)))


def plant_mistakes(traffic: Traffic) -> None:
    """A few events of each violation kind, and a couple the wire contract refuses."""
    for call in pick(traffic, 3, "app", "workout_completed"):
        shared = replace(
            call,
            event="workout_shared",
            message_id=traffic.uuid(),
            mistake="Unplanned-Event",
            timestamp=min(call.timestamp + dt.timedelta(minutes=2), traffic.end),
            properties={"share_target": traffic.rng.choice(["instagram", "strava", "messages"])},
            context={k: v for k, v in call.context.items() if k != "protocols"},
        )
        traffic.calls.append(shared)  # app is in allow mode: stored, annotated
    v2 = [c for c in pick(traffic, 40, "app", "workout_completed") if "workout_id" in c.properties]
    for call in v2[:3]:
        del call.properties["workout_id"]
        call.mistake = "Required-Missing"
    for call in pick(traffic, 3, "app", "streak_updated"):
        call.properties["streak_days"] = str(call.properties["streak_days"])
        call.mistake = "Datatype-Mismatch"
    for call in pick(traffic, 3, "app", None, kind="identify"):
        call.traits["first_name"] = call.traits["email"].split(".")[0]
        call.mistake = "Additional-Properties"  # identify.yml is in omit mode: stripped, then stored
    for call in pick(traffic, 4, "web", "pricing_viewed"):
        call.properties["coupon_code"] = "SPRING20"
        call.mistake = "Additional-Properties"  # web is in omit mode: stripped, then stored
    clicks = pick(traffic, 5, "acquisition", "paid_search_click")
    for call in clicks[:3]:
        call.context = copy.deepcopy(call.context)
        del call.context["campaign"]["name"]
        call.mistake = "Required-Missing"  # the `common` rule of acquisition.yml
    for call in clicks[3:]:
        call.properties["cost_per_click"] = f"{call.properties['cost_per_click']:.2f}"
        call.mistake = "Datatype-Mismatch"
    # support is in block mode: each of these is quarantined, not stored
    for call in pick(traffic, 2, "support", "csat_submitted"):
        call.properties["csat_score"] = str(call.properties["csat_score"])
        call.expect, call.mistake = "blocked", "Datatype-Mismatch"
    for call in pick(traffic, 2, "support", "ticket_created"):
        del call.properties["ticket_reason"]
        call.expect, call.mistake = "blocked", "Required-Missing"
        traffic.calls.append(
            replace(
                call,
                event="ticket_escalated",
                message_id=traffic.uuid(),
                mistake="Unplanned-Event",
                timestamp=min(call.timestamp + dt.timedelta(hours=1), traffic.end),
                properties={"ticket_id": call.properties["ticket_id"], "tier": 2},
            )
        )
    for call in pick(traffic, 1, "support", "ticket_resolved"):
        call.properties["agent_email"] = "agent.7@support.example.com"
        call.expect, call.mistake = "blocked", "Additional-Properties"
    plant_relay_batch(traffic)


def plant_relay_batch(traffic: Traffic) -> None:
    """The help desk's survey relay posts its own JSON to /v1/batch: two good events, three broken ones."""
    good = pick(traffic, 2, "support", "csat_submitted")
    for call in good:
        call.transport = "http"
    template = good[0] if good else None
    if template is None:
        return
    broken = [
        # neither userId nor anonymousId: nobody to attribute it to
        replace(template, message_id=traffic.uuid(), user_id=None, anonymous_id=None),
        # a track without an event name
        replace(template, message_id=traffic.uuid(), wire_overrides={"event": ""}),
        # a time the server cannot read
        replace(template, message_id=traffic.uuid(), wire_overrides={"timestamp": "last tuesday"}),
    ]
    for call, reason in zip(broken, ["Required-Missing", "Required-Missing", "Datatype-Mismatch"], strict=True):
        call.expect, call.mistake = "invalid", reason
    traffic.calls.extend(broken)


def plant_retries(traffic: Traffic, count: int) -> list[Call]:
    """Events the SDK sends twice with the same messageId (a retried batch): stored once."""
    pool = [c for c in traffic.calls if c.expect == "stored" and c.mistake is None and c.transport == "sdk"]
    return [replace(c, expect="duplicate") for c in traffic.rng.sample(pool, min(count, len(pool)))]
