"""Landing data for the identity benchmark: a seeded workout-app event stream (seed 000), cached under bench/data/.

Each person walks the path of the fitness example: anonymous visits to the website (`web`: page views, a look at
the pricing page), an app install and signup on a phone (`app`: anonymous, then `identify` with an email and a
marketing opt-in), workouts logged over the following weeks, and for most a login on the website that links the web
visitor to the account (an `identify`, or for some an `alias(previousId=web anonymous id, userId)`). A few share a
family iPad with an earlier person (a device id on two user ids: the merge must be refused), change their email, or
send a placeholder `anonymousId: "null"`; a few percent of events arrive hours late (a phone that was offline), so
arrival order is not event-time order.

`events(n)` gives the first n events in arrival order (deterministic for a given n). `cached_store(n)` is a DuckDB
file under bench/data/ with those events in the `events` table (seq = arrival order); `cached_links(n)` adds the
`identity_links` rows processing writes for them. Both are built once and copied for each run.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from orchestrion.collect.event import NormalizedEvent
from orchestrion.identity.config import IdentityPolicy
from orchestrion.identity.identifiers import link_of
from orchestrion.identity.resolver import IdentityResolver
from orchestrion.identity.stage import link_row
from orchestrion.store import open_store
from orchestrion.store.duckdb_backend import DuckDBStore
from orchestrion.store.ports import IngestBatch
from orchestrion.store.profile_rows import ProcessingStep

DATA_DIR = Path(__file__).resolve().parent / "data"
SEED = 0  # seed 000
EPOCH = dt.datetime(2025, 9, 1, tzinfo=dt.UTC)
HISTORY = dt.timedelta(days=90)
EVENTS_PER_PERSON = 22  # about what the path below makes; used to size the population
DATA_VERSION = 1  # bump when the generator changes: cached files are named by it

WORKOUTS = ("run", "ride", "strength", "yoga", "hiit", "swim")
WEB_PAGES = (("Home", "/"), ("Pricing", "/pricing"), ("Blog", "/blog/couch-to-5k"), ("Features", "/features"))
TIMEZONES = ("Europe/Berlin", "Europe/London", "America/New_York", "America/Los_Angeles", "Asia/Tokyo")
LOCALES = ("de-DE", "en-GB", "en-US", "en-US", "ja-JP")
COUNTRIES = ("DE", "GB", "US", "US", "JP")


class _Person:
    __slots__ = ("anon_app", "anon_web", "contexts", "device", "email", "index", "os", "region", "user_id")

    def __init__(self, index: int, rng: random.Random) -> None:
        self.index = index
        self.user_id = f"u_{index:07d}"
        self.anon_web = f"{rng.getrandbits(128):032x}"
        self.anon_app = f"{rng.getrandbits(128):032x}"
        self.device = f"dev-{rng.getrandbits(64):016x}"
        self.email = f"athlete{index}@example.com"
        self.os = "iOS" if rng.random() < 0.55 else "Android"
        self.region = rng.randrange(len(TIMEZONES))
        self.contexts: dict[tuple[str, str | None], dict[str, Any]] = {}

    def context(self, source: str, device: str | None) -> dict[str, Any]:
        """The context of this person's calls from one source; shared by those events (nothing mutates it)."""
        key = (source, device)
        found = self.contexts.get(key)
        if found is not None:
            return found
        context: dict[str, Any] = {
            "library": {"name": "analytics.js" if source == "web" else "analytics-ios", "version": "4.1.0"},
            "locale": LOCALES[self.region],
            "timezone": TIMEZONES[self.region],
            "location": {"country": COUNTRIES[self.region]},
        }
        if source == "app":
            context["os"] = {"name": self.os, "version": "17.4" if self.os == "iOS" else "14"}
            context["app"] = {"name": "Pulse", "version": "3.12.0", "build": "3120"}
            context["device"] = {"id": device or self.device, "model": "iPhone15,2", "type": self.os.lower()}
        else:
            context["page"] = {"path": "/", "url": "https://pulse.example.com/"}
            context["userAgent"] = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15"
        self.contexts[key] = context
        return context


class _Stream:
    """Collects (arrival, event) pairs for the people generated so far."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.items: list[tuple[dt.datetime, int, NormalizedEvent]] = []

    def _message_id(self) -> str:
        h = f"{self.rng.getrandbits(128):032x}"
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{h[16:20]}-{h[20:]}"

    def add(
        self,
        source: str,
        kind: str,
        at: dt.datetime,
        person: _Person,
        *,
        user_id: str | None = None,
        anonymous_id: str | None = None,
        event: str | None = None,
        properties: dict[str, Any] | None = None,
        traits: dict[str, Any] | None = None,
        device: str | None = None,
        previous_id: str | None = None,
    ) -> None:
        rng = self.rng
        late = rng.random() < 0.03
        delay = dt.timedelta(hours=rng.uniform(1, 36)) if late else dt.timedelta(seconds=rng.uniform(0.05, 20))
        received = at + delay
        message_id = self._message_id()
        context = person.context(source, device)
        stamp = at.isoformat().replace("+00:00", "Z")
        payload: dict[str, Any] = {"type": kind, "context": context, "messageId": message_id}
        if user_id is not None:
            payload["userId"] = user_id
        if anonymous_id is not None:
            payload["anonymousId"] = anonymous_id
        if event is not None:
            payload["event" if kind == "track" else "name"] = event
        if properties is not None:
            payload["properties"] = properties
        if traits is not None:
            payload["traits"] = traits
        if previous_id is not None:
            payload["previousId"] = previous_id
        payload["originalTimestamp"] = stamp
        payload["sentAt"] = received.isoformat().replace("+00:00", "Z")
        payload["receivedAt"] = payload["sentAt"]
        payload["timestamp"] = stamp
        normalized = NormalizedEvent(
            source=source,
            message_id=message_id,
            type=kind,
            event=event if kind == "track" else None,
            user_id=user_id,
            anonymous_id=anonymous_id,
            timestamp=at,
            original_timestamp=at,
            sent_at=received,
            received_at=received,
            payload=payload,
        )
        self.items.append((received, len(self.items), normalized))


def _journey(stream: _Stream, person: _Person, people: list[_Person]) -> None:
    rng = stream.rng
    start = EPOCH + HISTORY * rng.random()
    at = start
    has_web = rng.random() < 0.7
    if has_web:
        for _ in range(rng.randint(1, 3)):  # anonymous web sessions
            for _ in range(rng.randint(1, 3)):
                name, path = rng.choice(WEB_PAGES)
                stream.add("web", "page", at, person, anonymous_id=person.anon_web, event=name,
                           properties={"path": path, "title": name})  # fmt: skip
                at += dt.timedelta(seconds=rng.uniform(5, 120))
            if rng.random() < 0.6:
                stream.add("web", "track", at, person, anonymous_id=person.anon_web, event="pricing_viewed",
                           properties={"plan": rng.choice(("monthly", "annual"))})  # fmt: skip
            at += dt.timedelta(hours=rng.uniform(2, 72))
    # A family iPad: this person signs up on a device an earlier person already uses.
    device = person.device
    if people and rng.random() < 0.03:
        device = rng.choice(people[-50:]).device
    anon_app = person.anon_app
    stream.add("app", "track", at, person, anonymous_id=anon_app, event="app_installed",
               properties={"campaign": rng.choice(("spring_ads", "organic", "referral"))}, device=device)  # fmt: skip
    at += dt.timedelta(minutes=rng.uniform(1, 10))
    traits: dict[str, Any] = {"email": person.email, "name": f"Athlete {person.index}", "plan": "free"}
    if rng.random() < 0.7:
        traits["marketing_opt_in"] = rng.random() < 0.6
    stream.add("app", "identify", at, person, user_id=person.user_id, anonymous_id=anon_app, traits=traits,
               device=device)  # fmt: skip
    stream.add("app", "track", at + dt.timedelta(seconds=1), person, user_id=person.user_id, anonymous_id=anon_app,
               event="signed_up", properties={"method": "email"}, device=device)  # fmt: skip
    if has_web:
        login = at + dt.timedelta(days=rng.uniform(0.5, 10))
        roll = rng.random()
        if roll < 0.06:
            stream.add("web", "alias", login, person, user_id=person.user_id, anonymous_id=person.anon_web,
                       previous_id=person.anon_web)  # fmt: skip
        elif roll < 0.66:
            stream.add("web", "identify", login, person, user_id=person.user_id, anonymous_id=person.anon_web,
                       traits={"email": person.email})  # fmt: skip
            stream.add("web", "page", login + dt.timedelta(seconds=3), person, user_id=person.user_id,
                       anonymous_id=person.anon_web, event="Dashboard", properties={"path": "/app"})  # fmt: skip
    email = person.email
    for _ in range(rng.randint(4, 26)):  # workouts over the following weeks
        at += dt.timedelta(hours=rng.uniform(12, 96))
        anonymous_id = "null" if rng.random() < 0.01 else anon_app  # a buggy build sends String(null)
        stream.add("app", "track", at, person, user_id=person.user_id, anonymous_id=anonymous_id,
                   event="workout_completed", device=device,
                   properties={"workout_type": rng.choice(WORKOUTS), "duration_min": rng.randint(10, 90),
                               "calories": rng.randint(80, 900)})  # fmt: skip
        if rng.random() < 0.004:  # an email change in the app's settings
            email = f"athlete{person.index}.{rng.randint(1, 99)}@example.org"
            stream.add("app", "identify", at + dt.timedelta(minutes=1), person, user_id=person.user_id,
                       anonymous_id=anon_app, traits={"email": email}, device=device)  # fmt: skip


def events(n: int, seed: int = SEED) -> list[NormalizedEvent]:
    """The first `n` events of the stream in arrival order (the order they are appended to the log)."""
    rng = random.Random(seed)
    stream = _Stream(rng)
    people: list[_Person] = []
    target = int(n * 1.15) + 100  # the last people's tails fall after the cut
    while len(stream.items) < target:
        person = _Person(len(people), rng)
        _journey(stream, person, people)
        people.append(person)
    stream.items.sort(key=lambda item: (item[0], item[1]))
    return [event for _, _, event in stream.items[:n]]


def chunks(items: list[NormalizedEvent], size: int) -> Iterator[list[NormalizedEvent]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _build(path: Path, n: int, with_links: bool) -> None:
    started = time.perf_counter()
    generated = events(n)
    partial = path.with_suffix(f".{os.getpid()}.partial")  # two benchmarks building at once do not collide
    partial.unlink(missing_ok=True)
    store = open_store(f"duckdb:///{partial}")
    assert isinstance(store, DuckDBStore)
    try:
        for chunk in chunks(generated, 20_000):
            store.append([IngestBatch(events=chunk)])
        if with_links:
            write_links(store)
        store.checkpoint()
    except BaseException:
        store.close()
        partial.unlink(missing_ok=True)
        Path(f"{partial}.wal").unlink(missing_ok=True)
        raise
    store.close()
    partial.rename(path)
    print(f"  built {path.name}: {n:,} events in {time.perf_counter() - started:.1f}s")


def write_links(store: DuckDBStore) -> None:
    """The `identity_links` rows processing writes for the stored events: each event's link and the profile it
    resolved to when it was processed in log order (what `IdentityStage.process` records)."""
    policy = IdentityPolicy.default()
    resolver = IdentityResolver(policy)
    position = 0
    while page := store.read_events_after(position, 50_000):
        rows = []
        for stored in page:
            link = link_of(stored.event, policy).link
            if link is None:
                continue
            outcome = resolver.add(link)
            if not outcome.duplicate:
                rows.append(link_row(stored, link, outcome.profile_id))
        store.commit_processing(ProcessingStep(links=rows))
        position = page[-1].seq


def cached_store(n: int, *, with_links: bool = False) -> Path:
    """A DuckDB file holding the first `n` events (and, with `with_links`, their identity_links); built once."""
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    suffix = "_links" if with_links else ""
    path = DATA_DIR / f"identity_v{DATA_VERSION}_{n}{suffix}.duckdb"
    if not path.exists():
        _build(path, n, with_links)
    return path


def copy_of(path: Path, directory: Path) -> Path:
    target = directory / path.name
    shutil.copyfile(path, target)
    return target
