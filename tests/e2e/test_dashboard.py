"""The planners' page, /dashboard, in headless Chromium against `fulfillment run` on the real
broker: a seeded history goes through the broker (backorders filled later, a rejection, an
expiry, a cancellation, a shipment, an inbound with its date), and then every page shows the
figures the API answers, in the words and units a planner reads, draws its charts, loads
nothing from another machine, and fits a phone's screen.

Screenshots: data/artefacts/screenshots/dashboard-{overview,sku,order,phone}.png."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from operator import itemgetter
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, ViewportSize, expect

from tests.browser import RunningService, Troubles, screenshot, serving, watched_page
from tests.harness import (
    as_json,
    cancellation,
    inbound,
    order,
    policy,
    publish,
    receipt,
    shipment,
    tick,
    until,
)

pytestmark = pytest.mark.kafka

TEE = "TEE-DASH-M"  # sells out, queues, fills later; an inbound gives its queue a date
MUG = "MUG-DASH"  # backorders may wait 2 days: the tick expires one
VASE = "VASE-DASH"  # takes no backorders: what stock cannot cover is rejected
SCARF = "SCARF-DASH"  # plenty of stock, little demand
CANDLE = "CANDLE-DASH"  # stock and no demand at all
TOKEN = "dashboard-browser-token-90c4"
PHONE: ViewportSize = {"width": 390, "height": 844}
EMPTY = "—"
UPDATED = re.compile(r"^updated \d\d:\d\d:\d\d$")

Api = dict[str, Any]


# --- what the page shows for an API answer: the rules of dashboard.js, stated again -------------


def count(value: int | None) -> str:
    return EMPTY if value is None else f"{value:,}"


def percent(rate: float | None) -> str:
    if rate is None:
        return EMPTY
    # JavaScript's toFixed rounds the double's exact value half up.
    return f"{Decimal(rate * 100).quantize(Decimal('0.1'), rounding=ROUND_HALF_UP)}%"


def age(seconds: int | None) -> str:
    """Two units at most; a number and its unit joined by a no-break space."""
    if seconds is None:
        return EMPTY

    def unit(number: int, name: str) -> str:
        return f"{number}\u00a0{name}"

    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if seconds < 60:
        return unit(seconds, "s")
    if minutes < 60:
        return unit(minutes, "min")
    if hours < 24:
        return (
            f"{unit(hours, 'h')} {unit(minutes % 60, 'min')}" if minutes % 60 else unit(hours, "h")
        )
    return f"{unit(days, 'd')} {unit(hours % 24, 'h')}" if hours % 24 else unit(days, "d")


def when(iso: str | None) -> str:
    if not iso:
        return EMPTY
    return datetime.fromisoformat(iso).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def words(code: str | None) -> str:
    return code.replace("_", " ") if code else EMPTY


def next_inbound(row: Api) -> str:
    if not row["next_inbound_id"]:
        return "none expected"
    quantity, eta = row["next_inbound_quantity"], row["next_inbound_eta"]
    return f"{count(quantity)} units due {when(eta)} ({row['next_inbound_id']})"


REASONS = {
    "backorders_denied": "backorders denied",
    "backorder_limit": "queue at its limit",
    "cancelled": "cancelled by the customer",
    "expired": "waited too long",
}

DECISIONS = {
    "LineAllocated": "Allocated",
    "LineBackordered": "Backordered",
    "LineRejected": "Rejected",
    "BackorderFilled": "Backorder filled",
    "BackorderCancelled": "Backorder cancelled",
    "AllocationReleased": "Allocation released",
    "LineShipped": "Shipped",
    "BackorderEtaChanged": "ETA changed",
}


def decision_details(decision: Api) -> str:
    parts = []
    if decision["queue_position"] is not None:
        parts.append(f"queue position {decision['queue_position']}")
    if decision["remaining"] is not None:
        still = "allocated" if decision["decision"] == "LineShipped" else "queued"
        parts.append(f"{count(decision['remaining'])} still {still}")
    if decision["shipment_id"]:
        parts.append(f"shipment {decision['shipment_id']}")
    return ", ".join(parts) or EMPTY


def overview_view(o: Api, shortages: list[Api], slow: list[Api]) -> Api:
    totals, now = o["totals"], o["now"]
    return {
        "tiles": {
            "range": f"{o['from']} to {o['to']}",
            "open_backorders": count(now["open_backorders"]),
            "units_waiting": count(now["units_waiting"]),
            "skus_short": count(now["skus_short"]),
            "oldest_backorder_age": age(now["oldest_backorder_age_seconds"]),
            "fill_rate": percent(totals["fill_rate"]),
            "lost": count(totals["lost"]),
            "time_to_fill": f"{age(totals['time_to_fill_p50_seconds'])} / "
            f"{age(totals['time_to_fill_p90_seconds'])}",
        },
        "shortages": [
            {
                "sku": s["sku"],
                "unmet": count(s["unmet"]),
                "fill_rate": percent(s["fill_rate"]),
                "lost": count(s["lost"]),
                "waiting_units": count(s["waiting_units"]),
                "oldest_backorder_age": age(s["oldest_backorder_age_seconds"]),
                "time_to_fill_p50": age(s["time_to_fill_p50_seconds"]),
                "days_out_of_stock": count(s["days_out_of_stock"]),
                "next_inbound": next_inbound(s),
            }
            for s in shortages
        ],
        "slow_movers": [
            {
                "sku": s["sku"],
                "on_hand": count(s["on_hand"]),
                "available": count(s["available"]),
                "ordered": count(s["ordered"]),
                "days_of_cover": (
                    "no demand" if s["days_of_cover"] is None else f"{s['days_of_cover']:.1f} d"
                ),
                "last_ordered": s["last_ordered"] or "never",
            }
            for s in slow
        ],
    }


def sku_view(position: Api, queue: list[Api], insight: Api) -> Api:
    summary, rules = insight["summary"], position["policy"]
    stock = ("available", "on_hand", "allocated", "backordered", "open_backorders", "shipped")
    max_wait = rules["max_wait_days"]
    return {
        "tiles": {
            **{name: count(position[name]) for name in (*stock, "inbound")},
            "policy_backorders": {"allow": "allowed", "deny": "denied"}.get(
                rules["backorders"], "up to a limit"
            ),
            "policy_limit": "none" if rules["limit"] is None else f"{count(rules['limit'])} units",
            "policy_max_wait": (
                "no limit"
                if max_wait is None
                else ("1 day" if max_wait == 1 else f"{count(max_wait)} days")
            ),
            "range": f"{insight['from']} to {insight['to']}",
            "ordered": count(summary["ordered"]),
            "fill_rate": percent(summary["fill_rate"]),
            "lost": count(summary["lost"]),
            "time_to_fill_p50": age(summary["time_to_fill_p50_seconds"]),
            "time_to_fill_p90": age(summary["time_to_fill_p90_seconds"]),
            "time_to_fill_max": age(summary["time_to_fill_max_seconds"]),
            "days_out_of_stock": count(summary["days_out_of_stock"]),
            "next_inbound": next_inbound(summary),
        },
        "queue": [
            {
                "position": count(b["position"]),
                "order_id": b["order_id"],
                "line_id": b["line_id"],
                "customer_id": b["customer_id"],
                "priority": count(b["priority"]),
                "quantity": count(b["quantity"]),
                "placed_at": when(b["placed_at"]),
                "age": age(b["age_seconds"]),
                "eta": when(b["eta"]) if b["eta"] else "no date yet",
            }
            for b in queue
        ],
    }


def order_view(found: Api, decisions: list[Api]) -> Api:
    counters = ("ordered", "allocated", "backordered", "shipped", "cancelled", "rejected")
    return {
        "tiles": {"customer_id": found["customer_id"], "status": words(found["status"])},
        "lines": [
            {
                "line_id": line["line_id"],
                "sku": line["sku"],
                **{name: count(line[name]) for name in counters},
                "eta": when(line["eta"]),
            }
            for line in found["lines"]
        ],
        "decisions": [
            {
                "position": str(d["position"]),
                "decision": DECISIONS[d["decision"]],
                "line_id": d["line_id"],
                "sku": d["sku"],
                "quantity": count(d["quantity"]),
                "occurred_at": when(d["occurred_at"]),
                "reason": REASONS[d["reason"]] if d["reason"] else EMPTY,
                "eta": when(d["eta"]),
                "details": decision_details(d),
            }
            for d in decisions
        ],
    }


# --- reading the API and the page ---------------------------------------------------------------


def get(service: RunningService, path: str, **params: Any) -> Any:
    answer = httpx.get(f"{service.url}{path}", params=params, timeout=10)
    answer.raise_for_status()
    return answer.json()


def overview_from_api(service: RunningService, **chosen: str) -> Api:
    o = get(service, "/insights/overview", **chosen)
    span = (datetime.fromisoformat(o["to"]) - datetime.fromisoformat(o["from"])).days + 1
    return overview_view(
        o,
        get(service, "/insights/shortages", **{**chosen, "limit": 10}),
        get(service, "/insights/slow-movers", days=span, to=o["to"], limit=10),
    )


def sku_insight(service: RunningService, sku: str) -> Api:
    """The SKU's history, up to its next inbound's day if that is later (the page asks so)."""
    insight: Api = get(service, f"/insights/skus/{sku}")
    due = (insight["summary"]["next_inbound_eta"] or "")[:10]
    return get(service, f"/insights/skus/{sku}", to=due) if due > insight["to"] else insight


def sku_from_api(service: RunningService, sku: str) -> Api:
    return sku_view(
        get(service, f"/skus/{sku}"),
        get(service, f"/skus/{sku}/backorders"),
        sku_insight(service, sku),
    )


def order_from_api(service: RunningService, order_id: str) -> Api:
    return order_view(
        get(service, f"/orders/{order_id}"), get(service, f"/orders/{order_id}/decisions")
    )


async def shown(page: Page, view: str, tiles: Sequence[str], tables: Sequence[str]) -> Api:
    """The view's figures as the page shows them: each tile's text, each table's rows."""
    found: Api = await page.evaluate(
        """([view, tiles, tables]) => {
            const section = document.querySelector(`[data-view="${view}"]`);
            const text = (name) => section.querySelector(`[data-figure="${name}"]:not(td)`)
                .textContent;
            const rows = (name) => [...section.querySelectorAll(
                `table[data-figure="${name}"] tbody tr`)].map((row) => Object.fromEntries(
                    [...row.cells].map((cell) => [cell.dataset.figure, cell.textContent])));
            return {
                tiles: Object.fromEntries(tiles.map((name) => [name, text(name)])),
                ...Object.fromEntries(tables.map((name) => [name, rows(name)])),
            };
        }""",
        [view, list(tiles), list(tables)],
    )
    return found


async def page_matches_api(
    page: Page, view: str, from_api: Callable[[], Api], *, tables: Sequence[str]
) -> Api:
    """The page's figures equal the API's, read just before or just after them (ages move
    with the wall clock, so either reading is the one the page may have shown)."""
    before = from_api()
    on_page = await shown(page, view, list(before["tiles"]), tables)
    if on_page != before:
        after = from_api()
        assert on_page == after, f"page: {on_page}\napi before: {before}\napi after: {after}"
    return on_page


async def rendered(page: Page, route: str) -> None:
    """Waits until the page has drawn what the API answered for `route`."""
    await expect(page.locator("body")).to_have_attribute("data-rendered", route)


Charts = dict[str, dict[str, list[Any]]]


async def charts_drawn(page: Page, view: str) -> Charts:
    """Each chart of the view, once plotly's SVG shows drawn traces: its traces by name,
    each as its (bucket, value) points."""
    charts: Charts = await page.evaluate(
        """(view) => Object.fromEntries([...document.querySelectorAll(
            `[data-view="${view}"] .chart`)].map((chart) => {
                const drawn = chart.querySelector(".main-svg") !== null && [
                    ...chart.querySelectorAll(".main-svg g.trace path")].some(
                    (path) => (path.getAttribute("d") || "").length > 4);
                const traces = drawn ? chart.data.map((trace) => [
                    trace.name, trace.x.map((x, i) => [x, trace.y[i]])]) : [];
                return [chart.dataset.figure, Object.fromEntries(traces)];
            }))""",
        view,
    )
    for name, traces in charts.items():
        assert traces, f"chart {name} has no drawn trace"
    return charts


def points(series: list[Api], value: Callable[[Api], Any]) -> list[Any]:
    """A chart trace's points for the API's buckets."""
    return [[bucket["bucket_start"], value(bucket)] for bucket in series]


def share(rate: float | None) -> float | None:
    return None if rate is None else rate * 100


async def fits_the_width(page: Page) -> None:
    widths = await page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert widths[0] <= widths[1], f"the page scrolls sideways: {widths}"


# --- the seeded history -------------------------------------------------------------------------


async def _step(
    service: RunningService,
    messages: list[tuple[str, str | None, Api]],
    what: str,
    *checks: tuple[str, str, Any],
) -> None:
    """Publishes `messages` (topic name, key, body), then waits until each (path, field,
    value) check holds in the API: the read models show the step."""
    topics = service.settings.topics
    await publish(
        service.settings,
        [(getattr(topics, topic), key, as_json(body)) for topic, key, body in messages],
    )

    def holds() -> bool:
        for path, field, value in checks:
            answer = httpx.get(f"{service.url}{path}", timeout=10)
            if answer.status_code != 200:
                return False
            found = answer.json()
            for part in field.split("."):
                found = found[int(part)] if isinstance(found, list) else found[part]
            if found != value:
                return False
        return True

    await until(holds, what=what)


@pytest.fixture(scope="module")
async def seeded(running_service: RunningService) -> RunningService:
    """The history, step by step where the order of decisions matters (inputs on different
    topics or partitions have no order of their own)."""
    s = running_service
    await _step(
        s,
        [
            ("policies", MUG, policy(MUG, "allow", max_wait_days=2)),
            ("policies", VASE, policy(VASE, "deny")),
            ("receipts", TEE, receipt("R-TEE-1", TEE, 10)),
            ("receipts", VASE, receipt("R-VASE-1", VASE, 1)),
            ("receipts", SCARF, receipt("R-SCARF-1", SCARF, 20)),
            ("receipts", CANDLE, receipt("R-CANDLE-1", CANDLE, 5)),
            ("inbound", TEE, inbound("PO-TEE-1", TEE, 6, days=5)),
        ],
        "policies, stock and the inbound",
        (f"/skus/{MUG}", "policy.max_wait_days", 2),
        (f"/skus/{VASE}", "policy.backorders", "deny"),
        (f"/skus/{TEE}", "on_hand", 10),
        (f"/skus/{TEE}", "inbound", 6),
        (f"/skus/{VASE}", "on_hand", 1),
        (f"/skus/{SCARF}", "on_hand", 20),
        (f"/skus/{CANDLE}", "on_hand", 5),
    )
    await _step(
        s,
        [
            ("orders", "O-1", order("O-1", [("1", TEE, 4)], minutes=10, customer_id="C-1")),
            ("orders", "O-4", order("O-4", [("1", MUG, 2)], minutes=30, customer_id="C-4")),
            ("orders", "O-6", order("O-6", [("1", VASE, 3)], minutes=50, customer_id="C-6")),
            ("orders", "O-7", order("O-7", [("1", SCARF, 1)], minutes=70, customer_id="C-7")),
        ],
        "the first orders: allocated, backordered (no stock), rejected (policy deny)",
        ("/orders/O-1", "status", "allocated"),
        ("/orders/O-4", "status", "backordered"),
        ("/orders/O-6", "lines.0.rejected", 2),
        ("/orders/O-7", "status", "allocated"),
    )
    await _step(
        s,
        [("orders", "O-2", order("O-2", [("1", TEE, 8)], minutes=60, customer_id="C-2"))],
        "O-2 takes the last 6 tees and queues for 2",
        ("/orders/O-2", "lines.0.backordered", 2),
    )
    await _step(
        s,
        [("orders", "O-3", order("O-3", [("1", TEE, 3)], minutes=120, customer_id="C-3"))],
        "O-3 queues behind O-2",
        ("/orders/O-3", "lines.0.backordered", 3),
    )
    await _step(
        s,
        [("receipts", TEE, receipt("R-TEE-2", TEE, 4, minutes=1440))],
        "a day later 4 tees fill O-2's 2 and 2 of O-3's 3",
        ("/orders/O-2", "lines.0.backordered", 0),
        ("/orders/O-3", "lines.0.backordered", 1),
    )
    await _step(
        s,
        [
            ("shipments", "O-1", shipment("S-1", "O-1", [("1", 4)], minutes=1500)),
            ("cancellations", "O-3", cancellation("O-3", minutes=1600)),
            ("clock", None, tick(days=3)),
        ],
        "O-1 ships, O-3 is cancelled while waiting, and O-4 expires on the tick",
        ("/orders/O-1", "status", "shipped"),
        ("/orders/O-3", "status", "cancelled"),
        ("/orders/O-4", "status", "cancelled"),
    )
    await _step(
        s,
        [("orders", "O-8", order("O-8", [("1", TEE, 5)], minutes=1700, customer_id="C-8"))],
        "O-8 gets the 2 released tees and queues for 3, with the inbound's date",
        ("/orders/O-8", "lines.0.backordered", 3),
    )

    def insights_caught_up() -> bool:
        answer = httpx.get(f"{s.url}/insights/overview", timeout=10)
        totals = answer.json()["totals"]
        return answer.headers["x-projection-lag"] == "0" and totals["ordered"] == 26

    await until(insights_caught_up, what="the insights show every order")
    return s


# --- the pages ----------------------------------------------------------------------------------


async def test_the_seeded_history_has_every_kind_of_outcome(seeded: RunningService) -> None:
    totals = get(seeded, "/insights/overview")["totals"]
    assert (totals["filled"], totals["rejected"], totals["expired"]) == (4, 2, 2)
    assert (totals["cancelled_waiting"], totals["shipped"], totals["lost"]) == (1, 4, 5)
    assert totals["time_to_fill_p50_seconds"] == 22 * 3600  # O-3's 2 units; O-2's waited 23 h
    [waiting] = get(seeded, f"/skus/{TEE}/backorders")
    assert (waiting["order_id"], waiting["quantity"]) == ("O-8", 3)
    assert waiting["eta"] == "2026-11-30T08:00:00Z"


async def test_the_overview_shows_the_apis_figures_and_draws_its_charts(
    seeded: RunningService, page: Page, troubles: Troubles
) -> None:
    service = seeded
    await page.goto(f"{service.url}/dashboard", wait_until="networkidle")
    await rendered(page, "overview")

    on_page = await page_matches_api(
        page, "overview", lambda: overview_from_api(service), tables=["shortages", "slow_movers"]
    )
    # Ranked by unmet units (8, 2, 2), then by units waiting now, then by name.
    assert [row["sku"] for row in on_page["shortages"]] == [TEE, MUG, VASE]
    assert [row["sku"] for row in on_page["slow_movers"]] == [CANDLE, SCARF]
    series = get(service, "/insights/overview")["series"]
    assert await charts_drawn(page, "overview") == {
        "chart_lost_fill_rate": {
            "Rejected": points(series, lambda b: b["rejected"]),
            "Expired": points(series, lambda b: b["expired"]),
            "Cancelled while waiting": points(series, lambda b: b["cancelled_waiting"]),
            "Fill rate": points(series, lambda b: share(b["fill_rate"])),
        },
        "chart_demand_served": {
            "From stock": points(series, lambda b: b["allocated"]),
            "Filled from backorder": points(series, lambda b: b["filled"]),
            "Lost": points(series, lambda b: b["lost"]),
            "Ordered": points(series, lambda b: b["ordered"]),
        },
    }
    await expect(page.locator("#updated")).to_have_text(UPDATED)
    await screenshot(page, "dashboard-overview")

    # Per week: the charts take the API's weekly buckets, and the choice stays in the URL.
    await page.get_by_label("week").first.check()
    weeks = len(get(service, "/insights/overview", bucket="week")["series"])
    await page.wait_for_function(
        "weeks => document.querySelector('[data-figure=chart_demand_served]').data[0].x.length"
        " === weeks",
        arg=weeks,
    )
    assert "bucket=week" in page.url

    # Days of the user's choosing: every figure is the API's for those days.
    await page.get_by_label("From", exact=True).fill("2026-11-25")
    await page.get_by_label("To", exact=True).fill("2026-11-26")
    await expect(page.locator('[data-view="overview"] [data-figure="range"]')).to_have_text(
        "2026-11-25 to 2026-11-26"
    )
    chosen = {"from": "2026-11-25", "to": "2026-11-26"}
    on_page = await page_matches_api(
        page,
        "overview",
        lambda: overview_from_api(service, **chosen),
        tables=["shortages", "slow_movers"],
    )
    # The vase's 2 rejected units and O-3's 1 cancelled while waiting; the expiry was on 11-28.
    assert on_page["tiles"]["lost"] == "3"
    assert "from=2026-11-25&to=2026-11-26" in page.url
    troubles.assert_none()


async def test_a_shortage_links_to_its_sku_page_with_position_policy_queue_and_charts(
    seeded: RunningService, page: Page, troubles: Troubles
) -> None:
    service = seeded
    await page.goto(f"{service.url}/dashboard", wait_until="networkidle")
    await rendered(page, "overview")
    await page.locator('table[data-figure="shortages"]').get_by_role("link", name=TEE).click()
    await rendered(page, f"sku:{TEE}")

    on_page = await page_matches_api(
        page, "sku", lambda: sku_from_api(service, TEE), tables=["queue"]
    )
    assert [row["order_id"] for row in on_page["queue"]] == ["O-8"]
    insight = sku_insight(service, TEE)
    assert insight["to"] == "2026-11-30"  # the inbound's day: its 6 units are on the chart
    series = insight["series"]
    assert sum(bucket["expected"] for bucket in series) == 6
    charts = await charts_drawn(page, "sku")
    assert charts["chart_demand_supply"] == {
        name.capitalize(): points(series, itemgetter(name))
        for name in ("ordered", "received", "shipped", "expected")
    }
    waits = charts["chart_time_to_fill"]
    assert waits["Fill rate"] == points(series, lambda b: share(b["fill_rate"]))
    assert [len(waits[name]) for name in ("Median", "p90", "Longest")] == [len(series)] * 3
    await screenshot(page, "dashboard-sku")

    # It refreshes itself without losing what the user is typing.
    search = page.get_by_label("Go to SKU")
    await search.fill(MUG)
    last = await page.locator("#updated").text_content()
    await page.wait_for_function(
        "last => document.querySelector('#updated').textContent !== last", arg=last, timeout=15000
    )
    await expect(search).to_have_value(MUG)
    await expect(search).to_be_focused()

    await search.press("Enter")
    await rendered(page, f"sku:{MUG}")
    await page_matches_api(page, "sku", lambda: sku_from_api(service, MUG), tables=["queue"])
    await expect(page.locator('[data-view="sku"] dd[data-figure="policy_max_wait"]')).to_have_text(
        "2 days"
    )
    troubles.assert_none()


async def test_the_order_page_lists_its_lines_and_its_decisions_in_order(
    seeded: RunningService, page: Page, troubles: Troubles
) -> None:
    service = seeded
    await page.goto(f"{service.url}/dashboard#/orders", wait_until="networkidle")
    await page.get_by_label("Look up order").fill("O-3")
    await page.get_by_label("Look up order").press("Enter")
    await rendered(page, "order:O-3")

    on_page = await page_matches_api(
        page, "order", lambda: order_from_api(service, "O-3"), tables=["lines", "decisions"]
    )
    decisions = [row["decision"] for row in on_page["decisions"]]
    assert decisions[:2] == ["Backordered", "Backorder filled"]
    assert sorted(decisions[2:]) == ["Allocation released", "Backorder cancelled"]
    positions = [int(row["position"]) for row in on_page["decisions"]]
    assert positions == sorted(positions)
    assert on_page["tiles"]["status"] == "cancelled"
    await screenshot(page, "dashboard-order")
    troubles.assert_none()


async def test_on_a_phone_every_page_fits_the_screen(
    seeded: RunningService, page: Page, troubles: Troubles
) -> None:
    service = seeded
    await page.set_viewport_size(PHONE)
    await page.goto(f"{service.url}/dashboard", wait_until="networkidle")
    await rendered(page, "overview")
    await charts_drawn(page, "overview")
    await fits_the_width(page)
    await screenshot(page, "dashboard-phone")
    for route, key in ((f"#/skus/{TEE}", f"sku:{TEE}"), ("#/orders/O-3", "order:O-3")):
        await page.goto(f"{service.url}/dashboard{route}")
        await rendered(page, key)
        await fits_the_width(page)
    troubles.assert_none()


async def test_with_an_api_token_the_page_asks_for_it_then_shows_the_figures(
    kafka_bootstrap: str, browser: Browser, tmp_path: Path
) -> None:
    troubles = Troubles()
    async with (
        serving(kafka_bootstrap, tmp_path, API_TOKEN=TOKEN) as service,
        watched_page(browser, troubles) as page,
    ):
        await page.goto(f"{service.url}/dashboard", wait_until="networkidle")
        await expect(page.get_by_role("alert")).to_have_text(
            "This service needs its API token: enter it under “API token” at the top."
        )
        await page.get_by_label("The service's API token").fill(TOKEN)
        await page.get_by_role("button", name="Use").click()
        await rendered(page, "overview")
        await expect(page.get_by_role("alert")).to_be_hidden()
        await expect(
            page.locator('[data-view="overview"] dd[data-figure="open_backorders"]')
        ).to_have_text("0")
        # Kept for the next visit, in this browser only.
        await page.reload(wait_until="networkidle")
        await rendered(page, "overview")
    # What went wrong is the API's 401s before the token was given, and nothing else.
    assert troubles.failed_requests, "the page did not ask the API before it had the token"
    assert all("HTTP 401" in failed for failed in troubles.failed_requests)
    assert all("401" in error for error in troubles.console_errors)
    assert not troubles.page_errors
    assert not troubles.outside_requests
