"""Load generator for bench/ingest.py: keep-alive HTTP/1.1 connections posting `/v1/batch` bodies.

Runs as its own process (`python bench/loadgen.py --url ...`) so that it never shares a GIL with the server it
measures. Bodies are built from pre-rendered templates of realistic workout-app events: per request only the
messageIds are new (random, UUID-shaped, as the SDKs make them), spliced in with one `bytes.join`, so the
generator costs little CPU; it reports its own CPU use so a reader can tell whether it was the bottleneck.

Prints one JSON object on stdout: throughput and latency over the measured window, plus every acknowledged
event of the whole run (warm-up included) so the caller can check the store holds exactly those.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import resource
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

MESSAGE_ID_SLOT = b"@@MESSAGE_ID@@"
WORKOUT_TYPES = ("run", "ride", "strength", "yoga", "hiit", "swim", "walk", "rowing")
PLANS = (("p_5k", "Couch to 5K"), ("p_str", "Strength Basics"), ("p_yoga", "Morning Flow"), ("p_hiit", "HIIT 20"))
SCREENS = ("Home", "Workout Detail", "Progress", "Plans", "Settings", "Paywall", "Leaderboard")
DEVICES = (
    ("Apple", "iPhone14,5", "ios", "17.5.1"),
    ("Google", "Pixel 8", "android", "14"),
    ("Samsung", "SM-S911B", "android", "14"),
)


def _context(rng: random.Random, user: int) -> dict[str, Any]:
    maker, model, os_name, os_version = rng.choice(DEVICES)
    return {
        "app": {"name": "Pulse Fitness", "version": "4.12.0", "build": "4120", "namespace": "com.pulse.fitness"},
        "device": {"id": f"dev-{user:06d}", "manufacturer": maker, "model": model, "type": os_name},
        "library": {
            "name": "com.rudderstack.android.sdk.core" if os_name == "android" else "rudder-ios-library",
            "version": "1.22.0",
        },
        "locale": rng.choice(("en-US", "en-GB", "de-DE", "fr-FR")),
        "network": {"carrier": rng.choice(("T-Mobile", "Vodafone", "Orange")), "wifi": rng.random() < 0.6},
        "os": {"name": os_name, "version": os_version},
        "screen": {"width": 1170, "height": 2532, "density": 3},
        "timezone": rng.choice(("America/New_York", "Europe/London", "Europe/Berlin")),
        "traits": {"anonymousId": f"anon-{user:06d}"},
    }


def workout_event(rng: random.Random, sent_at: float) -> dict[str, Any]:
    """One event as a mobile SDK sends it (messageId left as a slot to fill per request): made on the device up
    to five minutes before the batch was sent."""
    user = rng.randrange(50_000)
    made = sent_at - rng.uniform(0, 300)
    original_timestamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(made)) + f".{int(made * 1000) % 1000:03d}Z"
    event: dict[str, Any] = {
        "messageId": MESSAGE_ID_SLOT.decode(),
        "anonymousId": f"anon-{user:06d}",
        "userId": f"user-{user:06d}" if rng.random() < 0.8 else None,
        "channel": "mobile",
        "context": _context(rng, user),
        "originalTimestamp": original_timestamp,
        "integrations": {"All": True},
    }
    kind = rng.random()
    if kind < 0.70:
        name = rng.choice(
            ("Workout Started", "Workout Completed", "Workout Completed", "Streak Updated", "Plan Selected")
        )
        plan_id, plan_name = rng.choice(PLANS)
        properties: dict[str, Any] = {
            "workout_type": rng.choice(WORKOUT_TYPES),
            "plan": {"id": plan_id, "name": plan_name},
        }
        if name == "Workout Completed":
            properties |= {
                "duration_s": rng.randrange(600, 4200),
                "calories": round(rng.uniform(80, 900), 1),
                "distance_km": round(rng.uniform(0, 25), 2),
                "avg_heart_rate": rng.randrange(95, 175),
                "personal_best": rng.random() < 0.1,
            }
        elif name == "Streak Updated":
            properties = {"streak_days": rng.randrange(1, 120), "longest_streak": rng.randrange(1, 365)}
        event |= {"type": "track", "event": name, "properties": properties}
    elif kind < 0.85:
        event |= {"type": "screen", "name": rng.choice(SCREENS), "properties": {"from_push": rng.random() < 0.2}}
    elif kind < 0.95:
        event |= {
            "type": "identify",
            "traits": {
                "plan": rng.choice(("free", "trial", "premium")),
                "goal": rng.choice(("lose weight", "run 10k")),
                "workouts_completed": rng.randrange(0, 400),
                "email": f"user{user}@example.com",
            },
        }
    else:
        event |= {
            "type": "page",
            "name": "Pricing",
            "properties": {"path": "/pricing", "url": "https://pulse.fit/pricing"},
        }
    return event


def body_templates(count: int, events_per_request: int, seed: int) -> list[list[bytes]]:
    """`count` request bodies, each split at its messageId slots (events_per_request + 1 parts)."""
    rng = random.Random(seed)
    now = time.time()
    sent_at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"
    templates = []
    for _ in range(count):
        batch = [workout_event(rng, now) for _ in range(events_per_request)]
        body = orjson.dumps({"batch": batch, "sentAt": sent_at})
        parts = body.split(b'"' + MESSAGE_ID_SLOT + b'"')
        assert len(parts) == events_per_request + 1
        templates.append(parts)
    return templates


def fresh_message_ids(count: int) -> list[bytes]:
    """`count` random UUID-shaped ids, quoted for JSON (one os.urandom call per request)."""
    raw = os.urandom(16 * count).hex().encode()
    return [
        b'"%s-%s-4%s-a%s-%s"'
        % (raw[i : i + 8], raw[i + 8 : i + 12], raw[i + 13 : i + 16], raw[i + 17 : i + 20], raw[i + 20 : i + 32])
        for i in range(0, 32 * count, 32)
    ]


def build_body(parts: list[bytes]) -> bytes:
    ids = fresh_message_ids(len(parts) - 1)
    out = [parts[0]]
    for message_id, part in zip(ids, parts[1:], strict=True):
        out.append(message_id)
        out.append(part)
    return b"".join(out)


def process_cpu_seconds(pid: int) -> float | None:
    """utime + stime of another process, from /proc (None when it is gone or unreadable)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent not idle since boot (/proc/stat)."""
    with open("/proc/stat", "rb") as handle:
        values = [int(v) for v in handle.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Tally:
    """What every connection saw; latencies only for requests that completed inside the window."""

    window_start: float
    window_end: float
    latencies: list[float] = field(default_factory=list)
    window_ok: int = 0
    acked_requests: int = 0
    sent_requests: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    transport_errors: int = 0


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Status code and whether the server asked to close; the body is read and discarded."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = 0
    close = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and value.strip().lower() == b"close":
            close = True
    if length:
        await reader.readexactly(length)
    return status, close


async def connection_loop(
    host: str, port: int, head: bytes, templates: list[list[bytes]], offset: int, tally: Tally
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    index = offset
    try:
        while True:
            body = build_body(templates[index % len(templates)])
            index += 1
            started = time.perf_counter()
            if started >= tally.window_end:
                return
            writer.write(head % len(body) + body)
            tally.sent_requests += 1
            try:
                status, close = await read_response(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                tally.transport_errors += 1
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
                continue
            done = time.perf_counter()
            tally.statuses[str(status)] = tally.statuses.get(str(status), 0) + 1
            if status == 200:
                tally.acked_requests += 1
                if tally.window_start <= done <= tally.window_end:
                    tally.window_ok += 1
                    tally.latencies.append(done - started)
            if close:
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
    finally:
        writer.close()


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    rank = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return sorted_values[rank]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    templates = body_templates(args.templates, args.events_per_request, args.seed)
    auth = base64.b64encode(f"{args.write_key}:".encode()).decode()
    head = (
        f"POST {args.path} HTTP/1.1\r\nHost: {args.host}:{args.port}\r\nAuthorization: Basic {auth}\r\n"
        "Content-Type: application/json\r\nUser-Agent: orchestrion-bench/1\r\nContent-Length: %d\r\n\r\n"
    ).encode()
    now = time.perf_counter()
    tally = Tally(window_start=now + args.warmup, window_end=now + args.warmup + args.duration)
    tasks = [
        asyncio.create_task(connection_loop(args.host, args.port, head, templates, i * 7, tally))
        for i in range(args.connections)
    ]
    await asyncio.sleep(max(0.0, tally.window_start - time.perf_counter()))
    marks = [(own_cpu_seconds(), machine_busy_seconds(), [process_cpu_seconds(p) for p in args.watch_pid])]
    await asyncio.sleep(max(0.0, tally.window_end - time.perf_counter()))
    marks.append((own_cpu_seconds(), machine_busy_seconds(), [process_cpu_seconds(p) for p in args.watch_pid]))
    await asyncio.gather(*tasks)
    (own0, busy0, watched0), (own1, busy1, watched1) = marks
    watched = [
        (b - a) / args.duration if a is not None and b is not None else None
        for a, b in zip(watched0, watched1, strict=True)
    ]
    latencies = sorted(tally.latencies)
    loadgen_cores = (own1 - own0) / args.duration
    machine_cores = (busy1 - busy0) / args.duration
    return {
        "duration_s": args.duration,
        "connections": args.connections,
        "events_per_request": args.events_per_request,
        "requests_per_s": tally.window_ok / args.duration,
        "events_per_s": tally.window_ok * args.events_per_request / args.duration,
        "latency_ms": {
            "p50": percentile(latencies, 0.50) * 1000,
            "p90": percentile(latencies, 0.90) * 1000,
            "p99": percentile(latencies, 0.99) * 1000,
            "max": (latencies[-1] * 1000) if latencies else float("nan"),
        },
        "statuses": tally.statuses,
        "transport_errors": tally.transport_errors,
        "sent_requests": tally.sent_requests,
        "acked_requests": tally.acked_requests,
        "acked_events": tally.acked_requests * args.events_per_request,
        "cpu_cores": {
            "loadgen": loadgen_cores,
            "watched": watched,
            "machine": machine_cores,
            "other": machine_cores - loadgen_cores - sum(w or 0.0 for w in watched),
        },
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/v1/batch")
    parser.add_argument("--write-key", required=True)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--events-per-request", type=int, default=100)
    parser.add_argument("--templates", type=int, default=32)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--watch-pid", type=int, action="append", default=[], help="report this process's CPU use")
    args = parser.parse_args(argv)
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        result = runner.run(run(args))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
