"""One user's way through the four sources: acquisition, anonymous web visits, signup, workouts over
days, upgrades or abandoned checkouts, and help-desk tickets."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from dataclasses import dataclass
from typing import Any

from .calls import Call

HISTORY_DAYS = 56

COUNTRIES = {"US": 30, "GB": 12, "DE": 10, "FR": 8, "BR": 10, "IN": 12, "CA": 8, "AU": 6, "ES": 4}
CURRENCIES = {"US": "USD", "GB": "GBP", "DE": "EUR", "FR": "EUR", "ES": "EUR", "BR": "BRL", "IN": "INR"}
LOCALES = {"US": "en-US", "GB": "en-GB", "DE": "de-DE", "FR": "fr-FR", "BR": "pt-BR", "IN": "en-IN", "CA": "en-CA"}
TIMEZONES = {
    "US": "America/New_York",
    "GB": "Europe/London",
    "DE": "Europe/Berlin",
    "FR": "Europe/Paris",
    "ES": "Europe/Madrid",
    "BR": "America/Sao_Paulo",
    "IN": "Asia/Kolkata",
    "CA": "America/Toronto",
    "AU": "Australia/Sydney",
}
FIRST_NAMES = ["ana", "ben", "chen", "dara", "eli", "fatima", "gus", "hana", "ivan", "jo", "kemal", "lena", "mo"]
LAST_NAMES = ["silva", "smith", "okafor", "muller", "dubois", "sharma", "kim", "garcia", "novak", "haddad"]
WORKOUT_TYPES = {"strength": 30, "running": 20, "cycling": 10, "yoga": 15, "hiit": 15, "walking": 10}
PROGRAMS = ["couch_to_5k", "strength_foundations", "mobility_30", "hiit_blast"]
KEYWORDS = ["home workout app", "strength training plan", "running app", "yoga for beginners", "hiit timer"]
PRICES = {"premium_monthly": 12.99, "premium_annual": 89.99}
TICKET_REASONS = {"billing": 30, "bug": 25, "workout_content": 15, "account_access": 15, "cancellation": 10, "other": 5}
NEW_APP_VERSION = "4.2.0"
OLD_APP_VERSION = "3.9.1"  # sends workout_completed version 1 of the plan


@dataclass
class User:
    number: int
    user_id: str
    email: str
    country: str
    device_os: str
    marketing_opt_in: bool
    web_anonymous_id: str
    device_id: str
    app_version: str
    channel: str  # paid_search | organic | referral | direct
    engagement: str  # committed | casual | drop_off

    @property
    def currency(self) -> str:
        return CURRENCIES.get(self.country, "USD")


def _weighted(rng: random.Random, weights: dict[str, int]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


class Traffic:
    """The calls of every simulated user, built one journey at a time from one seeded random generator."""

    def __init__(self, users: int, seed: int, end: dt.datetime) -> None:
        self.rng = random.Random(seed)
        self.end = end
        self.start = end - dt.timedelta(days=HISTORY_DAYS)
        self.calls: list[Call] = []
        self.users = [self._user(n) for n in range(1, users + 1)]

    def uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _user(self, number: int) -> User:
        rng = self.rng
        country = _weighted(rng, COUNTRIES)
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        return User(
            number=number,
            user_id=f"u_{number:05d}",
            email=f"{first}.{last}.{number}@example.com",
            country=country,
            device_os=rng.choices(["ios", "android"], weights=[55, 45])[0],
            marketing_opt_in=rng.random() < 0.6,
            web_anonymous_id=self.uuid(),
            device_id=self.uuid(),
            app_version=OLD_APP_VERSION if rng.random() < 0.15 else NEW_APP_VERSION,
            channel=rng.choices(["paid_search", "organic", "referral", "direct"], weights=[35, 35, 15, 15])[0],
            engagement=rng.choices(["committed", "casual", "drop_off"], weights=[25, 40, 35])[0],
        )

    # -- building blocks -------------------------------------------------------------------------
    def add(self, source: str, kind: str, at: dt.datetime, **fields: Any) -> Call | None:
        """Record a call; one that would happen after the end of the history is not made."""
        if at >= self.end:
            return None
        call = Call(source=source, kind=kind, timestamp=at, message_id=self.uuid(), **fields)
        self.calls.append(call)
        return call

    def later(self, at: dt.datetime, low_minutes: float, high_minutes: float) -> dt.datetime:
        return at + dt.timedelta(minutes=self.rng.uniform(low_minutes, high_minutes))

    def time_of_day(self, day: dt.datetime) -> dt.datetime:
        hour = self.rng.choice([6, 7, 7, 8, 12, 12, 17, 18, 18, 19, 20, 21])
        return day.replace(hour=hour, minute=self.rng.randrange(60), second=self.rng.randrange(60))

    def web_context(self, user: User, path: str, title: str) -> dict[str, Any]:
        return {
            "page": {"path": path, "url": f"https://fitness.example.com{path}", "title": title},
            "userAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Safari/605.1.15",
            "locale": LOCALES.get(user.country, "en-US"),
            "timezone": TIMEZONES[user.country],
        }

    def app_context(self, user: User, event_version: int | None = None) -> dict[str, Any]:
        ios = user.device_os == "ios"
        context: dict[str, Any] = {
            "app": {"name": "Fitness Example", "version": user.app_version, "build": user.app_version.replace(".", "")},
            "os": {"name": "iOS" if ios else "Android", "version": "17.5" if ios else "14"},
            "device": {
                "id": user.device_id,
                "type": user.device_os,
                "manufacturer": "Apple" if ios else "Google",
                "model": "iPhone15,2" if ios else "Pixel 8",
            },
            "locale": LOCALES.get(user.country, "en-US"),
            "timezone": TIMEZONES[user.country],
        }
        if event_version is not None:
            context["protocols"] = {"event_version": event_version}
        return context

    # -- one user's path ---------------------------------------------------------------------------
    def journey(self, user: User) -> None:
        rng = self.rng
        first_day = self.start + dt.timedelta(days=rng.randrange(HISTORY_DAYS - 5))
        at = self.time_of_day(first_day)
        self.acquisition(user, at)
        at = self.later(at, 0.2, 2)
        self.add(
            "web",
            "page",
            at,
            anonymous_id=user.web_anonymous_id,
            name="Home",
            context=self.web_context(user, "/", "Home"),
        )
        if rng.random() < 0.6:
            self.pricing_visit(user, self.later(at, 1, 5), known=False)
        if rng.random() < 0.25:
            at = self.later(at, 2, 10)
            self.add(
                "web",
                "track",
                at,
                anonymous_id=user.web_anonymous_id,
                event="faq_viewed",
                properties={
                    "question_id": f"q{rng.randrange(1, 40):02d}",
                    "topic": rng.choice(["billing", "workouts", "account", "devices", "privacy"]),
                },
                context=self.web_context(user, "/faq", "FAQ"),
            )
        if rng.random() > 0.88:
            return  # visited, never signed up
        signup = self.later(at, 5, 60 * 24 * rng.choice([0, 0, 0, 1, 2]))
        self.add(
            "web",
            "identify",
            signup,
            user_id=user.user_id,
            anonymous_id=user.web_anonymous_id,
            traits={
                "email": user.email,
                "plan": "free",
                "country": user.country,
                "marketing_opt_in": user.marketing_opt_in,
            },
            context=self.web_context(user, "/signup", "Sign up"),
        )
        installed = self.later(signup, 3, 60 * 6)
        plan = "trial" if rng.random() < 0.4 else "free"
        self.add(
            "app",
            "identify",
            installed,
            user_id=user.user_id,
            anonymous_id=user.device_id,
            traits={"email": user.email, "plan": plan, "device_os": user.device_os, "country": user.country},
            context=self.app_context(user),
        )
        self.add(
            "app",
            "track",
            self.later(installed, 1, 4),
            user_id=user.user_id,
            anonymous_id=user.device_id,
            event="plan_selected",
            properties={
                "plan_id": plan,
                "billing_period": "none",
                "goal": rng.choice(["lose_weight", "build_strength", "run_5k", "stay_active"]),
            },
            context=self.app_context(user),
        )
        workouts = self.workouts(user, installed)
        if workouts >= 3 and rng.random() < (0.6 if user.engagement == "committed" else 0.3):
            self.upgrade(user, installed + dt.timedelta(days=rng.uniform(3, 20)))
        if rng.random() < (0.35 if user.engagement != "drop_off" else 0.15):
            self.ticket(user, installed + dt.timedelta(days=rng.uniform(0.5, 30)))

    def acquisition(self, user: User, at: dt.datetime) -> None:
        rng = self.rng
        context = self.web_context(user, "/", "Home")
        if user.channel == "paid_search":
            keyword = rng.choice(KEYWORDS)
            context["campaign"] = {
                "source": "google",
                "medium": "cpc",
                "name": rng.choice(["spring_strength", "run_club"]),
                "term": keyword,
                "content": rng.choice(["ad_a", "ad_b"]),
            }
            self.add(
                "acquisition",
                "track",
                at,
                anonymous_id=user.web_anonymous_id,
                event="paid_search_click",
                properties={
                    "keyword": keyword,
                    "ad_group": keyword.split()[0],
                    "cost_per_click": round(rng.uniform(0.4, 3.5), 2),
                },
                context=context,
            )
        elif user.channel == "organic":
            engine = rng.choice(["google", "google", "bing", "duckduckgo"])
            context["campaign"] = {"source": engine, "medium": "organic"}
            self.add(
                "acquisition",
                "track",
                at,
                anonymous_id=user.web_anonymous_id,
                event="organic_search",
                properties={"search_engine": engine, "landing_page": rng.choice(["/", "/programs", "/blog"])},
                context=context,
            )
        elif user.channel == "referral":
            referrer = rng.randrange(1, max(2, user.number))
            context["campaign"] = {"source": "referral", "medium": "referral", "name": "friend_invite"}
            self.add(
                "acquisition",
                "track",
                at,
                anonymous_id=user.web_anonymous_id,
                event="referral_code_used",
                properties={"referral_code": f"FIT-{referrer:05d}", "referrer_user_id": f"u_{referrer:05d}"},
                context=context,
            )

    def pricing_visit(self, user: User, at: dt.datetime, known: bool) -> dt.datetime:
        rng = self.rng
        user_id = user.user_id if known else None
        period = rng.choice(["monthly", "annual"])
        self.add(
            "web",
            "page",
            at,
            user_id=user_id,
            anonymous_id=user.web_anonymous_id,
            name="Pricing",
            context=self.web_context(user, "/pricing", "Pricing"),
        )
        self.add(
            "web",
            "track",
            self.later(at, 0.1, 1),
            user_id=user_id,
            anonymous_id=user.web_anonymous_id,
            event="pricing_viewed",
            properties={
                "currency": user.currency,
                "billing_period": period,
                "referrer_page": rng.choice(["/", "/programs", "/faq"]),
            },
            context=self.web_context(user, "/pricing", "Pricing"),
        )
        at = self.later(at, 1, 4)
        if rng.random() < 0.5:
            self.add(
                "web",
                "track",
                at,
                user_id=user_id,
                anonymous_id=user.web_anonymous_id,
                event="plan_comparison_viewed",
                properties={"plans_compared": ["free", "premium_monthly", "premium_annual"], "billing_period": period},
                context=self.web_context(user, "/pricing/compare", "Compare plans"),
            )
        return at

    def workouts(self, user: User, installed: dt.datetime) -> int:
        rng = self.rng
        gaps = {"committed": [1, 1, 1, 2, 2, 3], "casual": [1, 2, 3, 4, 5, 7], "drop_off": [2, 4, 6]}[user.engagement]
        limit = {"committed": 60, "casual": 25, "drop_off": rng.randrange(0, 3)}[user.engagement]
        version = 1 if user.app_version == OLD_APP_VERSION else 2
        day = installed.replace(hour=0, minute=0, second=0, microsecond=0) + dt.timedelta(days=rng.choice([0, 1]))
        streak, previous_day, count = 0, None, 0
        while count < limit and day < self.end:
            at = self.time_of_day(day)
            if at <= installed:
                at = self.later(installed, 10, 60)
            kind = _weighted(rng, WORKOUT_TYPES)
            minutes = rng.choice([10, 15, 20, 25, 30, 30, 45, 45, 60])
            if version == 1:
                properties: dict[str, Any] = {"workout_type": kind, "duration_minutes": minutes}
            else:
                properties = {
                    "workout_id": f"w_{self.rng.getrandbits(40):010x}",
                    "workout_type": kind,
                    "duration_minutes": minutes,
                    "calories": round(minutes * rng.uniform(5, 11)),
                    "intensity": rng.choice(["low", "moderate", "high"]),
                }
                if rng.random() < 0.4:
                    properties["program"] = rng.choice(PROGRAMS)
            if rng.random() < 0.3:
                self.add(
                    "app",
                    "screen",
                    self.later(at, -3, -1),
                    user_id=user.user_id,
                    anonymous_id=user.device_id,
                    name="Workout Player",
                    properties={"workout_type": kind},
                    context=self.app_context(user),
                )
            self.add(
                "app",
                "track",
                at,
                user_id=user.user_id,
                anonymous_id=user.device_id,
                event="workout_completed",
                properties=properties,
                context=self.app_context(user, event_version=version),
            )
            count += 1
            previous = streak
            streak = streak + 1 if previous_day is not None and (day - previous_day).days == 1 else 1
            if streak >= 2:
                self.add(
                    "app",
                    "track",
                    self.later(at, 0.1, 1),
                    user_id=user.user_id,
                    anonymous_id=user.device_id,
                    event="streak_updated",
                    properties={"streak_days": streak, "previous_streak_days": previous},
                    context=self.app_context(user),
                )
            previous_day = day
            day += dt.timedelta(days=rng.choice(gaps))
            if user.engagement == "casual" and rng.random() < 0.06:
                break  # lost interest
        return count

    def upgrade(self, user: User, at: dt.datetime) -> None:
        rng = self.rng
        at = self.pricing_visit(user, self.time_of_day(at), known=True)
        plan = rng.choice(["premium_monthly", "premium_annual"])
        period = "monthly" if plan == "premium_monthly" else "annual"
        if rng.random() < 0.55:
            trial = rng.random() < 0.5
            self.add(
                "app",
                "track",
                self.later(at, 2, 30),
                user_id=user.user_id,
                anonymous_id=user.device_id,
                event="subscription_started",
                properties={
                    "plan_id": plan,
                    "billing_period": period,
                    "price": PRICES[plan],
                    "currency": user.currency,
                    "trial": trial,
                    "trial_days": 7 if trial else 0,
                    "is_upgrade": True,
                },
                context=self.app_context(user),
            )
            self.add(
                "app",
                "identify",
                self.later(at, 31, 40),
                user_id=user.user_id,
                anonymous_id=user.device_id,
                traits={"email": user.email, "plan": "premium"},
                context=self.app_context(user),
            )
        else:
            self.add(
                "web",
                "track",
                self.later(at, 2, 10),
                user_id=user.user_id,
                anonymous_id=user.web_anonymous_id,
                event="checkout_abandoned",
                properties={
                    "plan_id": plan,
                    "step": rng.choice(["plan", "account", "payment"]),
                    "cart_value": PRICES[plan],
                    "currency": user.currency,
                },
                context=self.web_context(user, "/checkout", "Checkout"),
            )

    def ticket(self, user: User, at: dt.datetime) -> None:
        rng = self.rng
        ticket_id = f"T-{rng.randrange(10_000, 99_999)}"
        self.add(
            "support",
            "track",
            at,
            user_id=user.user_id,
            event="ticket_created",
            properties={
                "ticket_id": ticket_id,
                "ticket_reason": _weighted(rng, TICKET_REASONS),
                "channel": rng.choice(["email", "chat", "in_app"]),
                "priority": rng.choice(["low", "normal", "normal", "high"]),
            },
        )
        hours = round(min(rng.lognormvariate(2.3, 0.9), 240), 1)
        resolved = at + dt.timedelta(hours=hours)
        resolution = self.add(
            "support",
            "track",
            resolved,
            user_id=user.user_id,
            event="ticket_resolved",
            properties={
                "ticket_id": ticket_id,
                "resolution_time": hours,
                "resolution": rng.choice(["solved", "solved", "solved", "workaround", "wont_fix"]),
            },
        )
        if resolution is not None and rng.random() < 0.7:
            score = max(1, min(5, round(rng.gauss(4.6 - hours / 40, 0.8))))
            self.add(
                "support",
                "track",
                self.later(resolved, 30, 600),
                user_id=user.user_id,
                event="csat_submitted",
                properties={"ticket_id": ticket_id, "csat_score": score},
            )
