"""The browser path, proven with the real browser SDKs in headless Chromium, offline.

A tiny page and an SDK build from npm (installed by `npm ci` in tests/e2e/browser) are served from a static server
on another port than Orchestrion, so every call the SDK makes to our server is cross-origin and goes through real
CORS preflights, as on a customer's site. The SDK fetches its configuration from Orchestrion (RudderStack:
`/sourceConfig/`; Segment analytics.js: `/v1/projects/{writeKey}/settings`), then sends page, track and identify;
the test reads them back from the warehouse landing views.
"""

from __future__ import annotations

import base64
import functools
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlencode, urlsplit

import httpx
import pytest

from tests.e2e.support_http import metric_value
from tests.support.server import ServerProcess

pytestmark = pytest.mark.browser

BROWSER_DIR = Path(__file__).parent / "browser"
# The package's `exports["./bundled"].import`: every plugin compiled in, so nothing is fetched from a CDN.
RUDDER_BUNDLED_SDK = BROWSER_DIR / "node_modules/@rudderstack/analytics-js/dist/npm/modern/bundled/esm/index.mjs"
# analytics.js as a plain script (global `AnalyticsNext`); its lazy chunks load from beside the page, not a CDN.
SEGMENT_UMD_DIR = BROWSER_DIR / "node_modules/@segment/analytics-next/dist/umd"
CHROMIUM = Path(os.environ.get("ORCHESTRION_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",  # we run as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",  # offline, and proven so
]
WRITE_KEY = "wk_web_test_0001"
LANDING_TIMEOUT_S = 20.0
IN_CI = os.environ.get("CI", "").lower() == "true"


def require_browser_parts(*paths: Path) -> None:
    """Chromium and the npm packages must be there: a failure in CI, a skip with a hint elsewhere."""
    missing = [str(path) for path in paths if not path.exists()]
    if not missing:
        return
    hint = (
        "install Chromium with `apt-get install -y chromium chromium-driver` and the SDKs with "
        "`npm ci` in tests/e2e/browser"
    )
    message = f"browser test parts missing: {', '.join(missing)}; {hint}"
    if IN_CI:
        pytest.fail(message + " (CI=true: .ci/run installs them)")
    pytest.skip(message)


class _QuietStaticHandler(SimpleHTTPRequestHandler):
    extensions_map: ClassVar[dict[str, str]] = {**SimpleHTTPRequestHandler.extensions_map, ".mjs": "text/javascript"}

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        return


@contextmanager
def static_site(files: dict[str, Path], root: Path) -> Iterator[str]:
    """Serve `files` (name in the site → file on disk) from a loopback server of its own: a separate origin."""
    root.mkdir(parents=True, exist_ok=True)
    for name, source in files.items():
        shutil.copyfile(source, root / name)
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietStaticHandler, directory=str(root)))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="static-site", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@dataclass
class BrowserTraffic:
    """What the page asked for: answered requests to our server, failed requests, and requests to other hosts."""

    data_plane: list[dict[str, Any]] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    elsewhere: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        answered = [(hit["method"], hit["path"], hit["status"]) for hit in self.data_plane]
        return (
            f"answered by orchestrion: {answered}\nfailed: {self.failed}\nother hosts: {self.elsewhere}\n"
            f"console errors: {self.console_errors}"
        )


@contextmanager
def headless_page(data_plane: str) -> Iterator[tuple[Any, BrowserTraffic]]:
    """A Chromium page whose requests are watched, never intercepted.

    Intercepting (`route`) would let Playwright answer CORS preflights itself; watching keeps them real. Chromium
    resolves no name but loopback, so a request to any other host fails at once and is recorded.
    """
    from playwright.sync_api import Request, Response, sync_playwright

    traffic = BrowserTraffic()
    ours = urlsplit(data_plane).netloc

    def on_request(request: Request) -> None:
        if urlsplit(request.url).hostname not in ("127.0.0.1", "localhost"):
            traffic.elsewhere.append(request.url)

    def on_response(response: Response) -> None:
        parts = urlsplit(response.url)
        if parts.netloc == ours:
            request = response.request
            traffic.data_plane.append(
                {"method": request.method, "path": parts.path, "status": response.status, "headers": request.headers}
            )

    def on_failure(request: Request) -> None:
        traffic.failed.append(f"{request.method} {request.url}: {request.failure}")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            page.on("request", on_request)
            page.on("response", on_response)
            page.on("requestfailed", on_failure)
            page.on("console", lambda msg: traffic.console_errors.append(msg.text) if msg.type == "error" else None)
            yield page, traffic
        finally:
            browser.close()


def wait_for_rows(server: ServerProcess, page: Any, sql_by_name: dict[str, str], diagnose: Callable[[], str]) -> Any:
    """Poll the admin query API until every query returns rows; the page keeps running meanwhile.

    Waiting through the page (not `time.sleep`) lets Playwright deliver the browser's events as they happen.
    """
    deadline = time.monotonic() + LANDING_TIMEOUT_S
    rows: dict[str, Any] = {}
    while time.monotonic() < deadline:
        for name, sql in sql_by_name.items():
            try:
                rows[name] = server.query(sql)
            except httpx.HTTPStatusError as exc:  # a landing view appears with its first event
                rows[name] = exc.response.text
        if all(isinstance(found, list) and found for found in rows.values()):
            return rows
        page.wait_for_timeout(200)
    pytest.fail(f"timed out after {LANDING_TIMEOUT_S:.0f}s waiting for events to land: {rows}\n{diagnose()}")


def basic_auth_user(headers: dict[str, str]) -> str:
    scheme, _, encoded = headers.get("authorization", "").partition(" ")
    assert scheme == "Basic", headers
    return base64.b64decode(encoded).decode().partition(":")[0]


@dataclass
class SdkRun:
    """What one page load showed: the SDK's anonymous id, the landed rows, the traffic and the server's metrics."""

    anonymous_id: str
    rows: dict[str, list[list[object]]]
    traffic: BrowserTraffic
    page_report: dict[str, Any]
    metrics: str

    def requests(self, **labels: str) -> float:
        return metric_value(self.metrics, "orchestrion_http_requests_total", **labels)

    def deliveries(self) -> list[tuple[str, int]]:
        return sorted((hit["path"], hit["status"]) for hit in self.traffic.data_plane if hit["method"] == "POST")


LANDED_COLUMNS = "anonymous_id, user_id, channel, context_library_name, context_page_path"
LANDING_QUERIES = {
    "pages": f"SELECT {LANDED_COLUMNS}, name, category FROM pages WHERE source = 'web'",
    "tracks": f"SELECT {LANDED_COLUMNS}, event FROM tracks WHERE source = 'web'",
    "identifies": f"SELECT {LANDED_COLUMNS} FROM identifies WHERE source = 'web'",
    "workout_completed": "SELECT anonymous_id, duration_min, kind FROM workout_completed",
}


def run_sdk_page(server: ServerProcess, files: dict[str, Path], site_root: Path) -> SdkRun:
    """Open the page `index.html` of `files` against `server`; return once page, track and identify have landed."""
    with static_site(files, site_root) as site, headless_page(server.url) as (page, traffic):
        assert urlsplit(site).port != server.port  # another origin: CORS is exercised, not bypassed

        def diagnose() -> str:
            return f"page report: {page.evaluate('window.sdkCheck')}\n{traffic.summary()}\n{server.log()[-3000:]}"

        page.goto(f"{site}/index.html?{urlencode({'dataPlaneUrl': server.url, 'writeKey': WRITE_KEY})}")
        try:
            page.wait_for_function("window.sdkCheck && window.sdkCheck.ready", timeout=15_000)
        except Exception as exc:  # Playwright's TimeoutError: say what the page saw
            pytest.fail(f"the SDK did not load: {exc}\n{diagnose()}")
        rows = wait_for_rows(server, page, LANDING_QUERIES, diagnose)
        page.wait_for_timeout(300)  # let a late retry or stray request show up before the traffic is judged
        report = page.evaluate("window.sdkCheck")
    anonymous_id = report["anonymousId"]
    assert isinstance(anonymous_id, str) and anonymous_id, report
    assert report["errors"] == [], report
    assert traffic.failed == [] and traffic.console_errors == [], traffic.summary()
    assert traffic.elsewhere == [], f"the SDK tried to leave the machine: {traffic.elsewhere}"
    assert all(hit["status"] < 300 for hit in traffic.data_plane), traffic.summary()
    return SdkRun(anonymous_id, rows, traffic, report, httpx.get(f"{server.url}/metrics", timeout=10).text)


def assert_landed_under_one_anonymous_id(run: SdkRun, library: str, user_id: str) -> None:
    """Page, track and identify landed once each, with the SDK's own anonymous id and library name."""
    [page_row], [track_row], [identify_row] = run.rows["pages"], run.rows["tracks"], run.rows["identifies"]
    for row in (page_row, track_row, identify_row):
        assert row[0] == run.anonymous_id, run.rows
        assert row[3:5] == [library, "/index.html"], row
    assert identify_row[1] == user_id
    assert page_row[5:] == ["Workout Summary", "Fitness"]
    assert track_row[5] == "Workout Completed"
    # The event's own view flattens its properties, as a warehouse user queries them.
    assert run.rows["workout_completed"] == [[run.anonymous_id, 30, "run"]]


def test_rudderstack_js_sdk_loads_config_from_orchestrion_and_its_events_land(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    require_browser_parts(CHROMIUM, RUDDER_BUNDLED_SDK)
    server = server_factory()
    files = {"index.html": BROWSER_DIR / "rudder.html", "rudder-analytics.mjs": RUDDER_BUNDLED_SDK}
    run = run_sdk_page(server, files, tmp_path / "site")

    # The SDK took its configuration from Orchestrion, once, with the write key as Basic auth.
    config_fetches = [hit for hit in run.traffic.data_plane if hit["path"] == "/sourceConfig/"]
    assert [hit["status"] for hit in config_fetches] == [200], run.traffic.summary()
    assert run.requests(route="/sourceConfig/", method="GET") == 1
    # Authorization and a JSON Content-Type make every call preflighted; the preflights reached us and passed.
    assert run.requests(method="OPTIONS", status="204") >= 2
    # One request per event (the SDK's default XHR queue), each answered 200 once: no retry.
    assert run.deliveries() == [("/v1/identify", 200), ("/v1/page", 200), ("/v1/track", 200)]
    assert all(basic_auth_user(hit["headers"]) == WRITE_KEY for hit in run.traffic.data_plane)

    assert_landed_under_one_anonymous_id(run, "RudderLabs JavaScript SDK", "user-browser-1")
    assert [row[2] for key in ("pages", "tracks", "identifies") for row in run.rows[key]] == ["web"] * 3
    # RudderStack sends in call order: page and track went out before identify named the user.
    assert run.rows["pages"][0][1] is None and run.rows["tracks"][0][1] is None


def test_segment_analytics_js_loads_settings_from_orchestrion_and_its_events_land(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    require_browser_parts(CHROMIUM, SEGMENT_UMD_DIR / "index.js")
    server = server_factory()
    files = {"index.html": BROWSER_DIR / "segment.html", "analytics-next.js": SEGMENT_UMD_DIR / "index.js"}
    files.update({chunk.name: chunk for chunk in SEGMENT_UMD_DIR.glob("*.bundle.*.js")})
    run = run_sdk_page(server, files, tmp_path / "site")

    # The settings came from Orchestrion (cdnURL), and named Orchestrion as the API host.
    assert run.requests(route="/v1/projects/{write_key}/settings", method="GET", status="200") == 1
    # analytics.js posts each event to its one-letter route, text/plain with Basic auth: preflighted, and passed.
    assert run.deliveries() == [("/v1/i", 200), ("/v1/p", 200), ("/v1/t", 200)]
    posts = [hit for hit in run.traffic.data_plane if hit["method"] == "POST"]
    assert all(basic_auth_user(hit["headers"]) == WRITE_KEY for hit in posts)
    assert all(hit["headers"].get("content-type") == "text/plain" for hit in posts)
    assert run.requests(method="OPTIONS", status="204") >= 1

    assert_landed_under_one_anonymous_id(run, "analytics.js", "user-browser-2")
