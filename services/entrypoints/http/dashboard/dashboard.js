// The planners' page: reads the public API and shows it (docs/dashboard.md). No framework and
// no build step. Routes are the URL's fragment: #/ (overview), #/skus/SKU, #/orders/ID.
// It refreshes every 5 s while the tab is visible, writing only what changed, so that the
// page neither flickers nor loses what the user is typing.
"use strict";

const REFRESH_MS = 5000;
const TOKEN_KEY = "fulfillment.apiToken";
const API_ROOT = document.body.dataset.apiRoot || "";
const EMPTY = "—";
const TABLE_ROWS = 10;

// --- formatting: one way for each kind of figure (the browser tests state the same rules) ---

const integers = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });

function count(value) {
  return value === null || value === undefined ? EMPTY : integers.format(value);
}

function percent(rate) {
  return rate === null || rate === undefined ? EMPTY : `${(rate * 100).toFixed(1)}%`;
}

const NBSP = "\u00a0"; // a number and its unit stay on one line

/** A duration in the two largest units that matter: "45 s", "12 min", "3 h 5 min", "3 d 4 h". */
function age(seconds) {
  if (seconds === null || seconds === undefined) return EMPTY;
  const s = Math.max(0, Math.floor(seconds));
  const unit = (n, name) => `${n}${NBSP}${name}`;
  if (s < 60) return unit(s, "s");
  const minutes = Math.floor(s / 60);
  if (minutes < 60) return unit(minutes, "min");
  const hours = Math.floor(minutes / 60);
  if (hours < 24) {
    return minutes % 60 ? `${unit(hours, "h")} ${unit(minutes % 60, "min")}` : unit(hours, "h");
  }
  const days = Math.floor(hours / 24);
  return hours % 24 ? `${unit(days, "d")} ${unit(hours % 24, "h")}` : unit(days, "d");
}

/** Business time is UTC everywhere in this service: shown as such, to the minute. */
function when(iso) {
  if (!iso) return EMPTY;
  const moment = new Date(iso);
  if (Number.isNaN(moment.getTime())) return iso;
  return `${moment.toISOString().slice(0, 16).replace("T", " ")} UTC`;
}

function day(iso) {
  return iso || EMPTY;
}

function days(value) {
  return value === 1 ? "1 day" : `${count(value)} days`;
}

function words(code) {
  return code ? code.replaceAll("_", " ") : EMPTY;
}

function sentence(text) {
  return text ? text.charAt(0).toUpperCase() + text.slice(1) : text;
}

function nextInbound(id, eta, quantity) {
  return id ? `${count(quantity)} units due ${when(eta)} (${id})` : "none expected";
}

const REASONS = {
  backorders_denied: "backorders denied",
  backorder_limit: "queue at its limit",
  cancelled: "cancelled by the customer",
  expired: "waited too long",
};

function reason(code) {
  return code ? REASONS[code] || words(code) : EMPTY;
}

const DECISIONS = {
  LineAllocated: "Allocated",
  LineBackordered: "Backordered",
  LineRejected: "Rejected",
  BackorderFilled: "Backorder filled",
  BackorderCancelled: "Backorder cancelled",
  AllocationReleased: "Allocation released",
  LineShipped: "Shipped",
  BackorderEtaChanged: "ETA changed",
};

const POLICIES = { allow: "allowed", deny: "denied", limit: "up to a limit" };

function decisionDetails(decision) {
  const parts = [];
  if (decision.queue_position !== null) parts.push(`queue position ${decision.queue_position}`);
  if (decision.remaining !== null) {
    const still = decision.decision === "LineShipped" ? "allocated" : "queued";
    parts.push(`${count(decision.remaining)} still ${still}`);
  }
  if (decision.shipment_id) parts.push(`shipment ${decision.shipment_id}`);
  return parts.join(", ") || EMPTY;
}

// --- the API ----------------------------------------------------------------------------------

class Problem extends Error {
  constructor(message, { needsToken = false, status = 0 } = {}) {
    super(message);
    this.needsToken = needsToken;
    this.status = status; // 404: what the page names does not exist
  }
}

function storedToken() {
  try {
    return localStorage.getItem(TOKEN_KEY) || "";
  } catch {
    return ""; // storage refused (private mode): the token lasts as long as the page
  }
}

let pageToken = storedToken();

/** GET an API path; its JSON, and how many decisions the read model is behind. */
async function api(path, params = {}) {
  const url = new URL(API_ROOT + path, window.location.origin);
  for (const [name, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") url.searchParams.set(name, value);
  }
  const headers = { Accept: "application/json" };
  if (pageToken) headers.Authorization = `Bearer ${pageToken}`;
  let response;
  try {
    response = await fetch(url, { headers, cache: "no-store" });
  } catch {
    throw new Problem("The service did not answer: is it running? Trying again every 5 s.");
  }
  if (response.status === 401) {
    throw new Problem(
      pageToken
        ? "This service refused the API token given: enter the right one under “API token”."
        : "This service needs its API token: enter it under “API token” at the top.",
      { needsToken: true },
    );
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) {
    const said = body && typeof body.error === "string" ? sentence(body.error) : "";
    if (response.status >= 500) {
      throw new Problem(`The service failed to answer (HTTP ${response.status}). ${said}`.trim());
    }
    throw new Problem(said || `The service answered HTTP ${response.status}.`, {
      status: response.status,
    });
  }
  const lag = Number(response.headers.get("X-Projection-Lag") || 0);
  return { body, lag };
}

// --- writing the page: only what changed --------------------------------------------------------

const $ = (selector, root = document) => root.querySelector(selector);

function setText(element, text) {
  if (element && element.textContent !== text) element.textContent = text;
}

/** A figure of the view outside its tables (tiles, facts, headings). */
function figure(scope, name, text) {
  setText($(`[data-figure="${name}"]:not(td)`, scope), text);
}

/** A cell: its figure name, text, and a link or right alignment if it has them. */
function writeCell(td, cell) {
  if (td.dataset.figure !== cell.figure) td.dataset.figure = cell.figure;
  td.classList.toggle("num", Boolean(cell.num));
  if (cell.href) {
    let link = td.firstElementChild;
    if (!link || link.tagName !== "A") {
      link = document.createElement("a");
      td.replaceChildren(link);
    }
    if (link.getAttribute("href") !== cell.href) link.setAttribute("href", cell.href);
    setText(link, cell.text);
  } else if (td.firstElementChild || td.textContent !== cell.text) {
    td.textContent = cell.text;
  }
}

/** Rows by key: kept rows are updated in place (focus and selection survive a refresh). */
function fillTable(table, items, keyOf, cellsOf) {
  const body = table.tBodies[0];
  const existing = new Map([...body.rows].map((row) => [row.dataset.key, row]));
  items.forEach((item, index) => {
    const key = String(keyOf(item, index));
    let row = existing.get(key);
    if (!row) {
      row = document.createElement("tr");
      row.dataset.key = key;
    }
    const cells = cellsOf(item);
    cells.forEach((cell, i) => writeCell(row.cells[i] || row.insertCell(), cell));
    while (row.cells.length > cells.length) row.deleteCell(-1);
    if (body.rows[index] !== row) body.insertBefore(row, body.rows[index] || null);
  });
  while (body.rows.length > items.length) body.deleteRow(-1);
  const empty = table.closest(".panel")?.querySelector(".empty");
  if (empty) empty.hidden = items.length > 0;
}

// --- charts (plotly, from the installed Python package) -----------------------------------------

const COLORS = {
  ordered: "#172033",
  allocated: "#1d4ed8",
  filled: "#60a5fa",
  rejected: "#b91c1c",
  expired: "#ea580c",
  cancelled: "#ca8a04",
  lost: "#dc2626",
  received: "#047857",
  shipped: "#7c3aed",
  expected: "#6ee7b7",
  rate: "#0f766e",
  p50: "#1d4ed8",
  p90: "#ea580c",
  max: "#b91c1c",
};

const PLOT_CONFIG = {
  displaylogo: false,
  responsive: true,
  modeBarButtonsToRemove: ["select2d", "lasso2d", "autoScale2d", "toImage"],
};

const DAY_MS = 86400000;

/** What every chart shares; `series` (the API's buckets) sets the date ticks. */
function baseLayout(bucket, series) {
  const step = bucket === "week" ? 7 * DAY_MS : DAY_MS;
  // Few buckets: one tick each, on the bucket's first day (weeks start on Monday).
  const ticks =
    series.length && series.length <= 7 ? { dtick: step, tick0: series[0].bucket_start } : {};
  return {
    autosize: true,
    margin: { l: 52, r: 52, t: 36, b: 36 },
    font: {
      family: "system-ui, -apple-system, Segoe UI, Roboto, sans-serif",
      size: 12,
      color: "#172033",
    },
    paper_bgcolor: "#ffffff",
    plot_bgcolor: "#ffffff",
    legend: {
      orientation: "h",
      x: 0,
      y: 1.02,
      xanchor: "left",
      yanchor: "bottom",
      traceorder: "normal",
    },
    hovermode: "x unified",
    bargap: 0.2,
    xaxis: {
      type: "date",
      automargin: true,
      gridcolor: "#eef1f6",
      tickformat: "%b %-d",
      hoverformat: bucket === "week" ? "week of %Y-%m-%d" : "%a %Y-%m-%d",
      ...ticks,
    },
    yaxis: {
      automargin: true,
      rangemode: "tozero",
      gridcolor: "#e5e9f0",
      zerolinecolor: "#c8d0dc",
    },
  };
}

// A share from 0 to 100 %, its own ticks (not aligned to the other axis's grid).
const RATE_TICKS = {
  range: [0, 104],
  tickmode: "array",
  tickvals: [0, 25, 50, 75, 100],
  ticktext: ["0%", "25%", "50%", "75%", "100%"],
};
const RATE_AXIS = {
  ...RATE_TICKS,
  overlaying: "y",
  side: "right",
  showgrid: false,
  automargin: true,
};

function draw(element, traces, layout) {
  if (!window.Plotly) throw new Problem("The chart library did not load: reload the page.");
  window.Plotly.react(element, traces, layout, PLOT_CONFIG);
}

function bars(name, x, y, color, extra = {}) {
  return { type: "bar", name, x, y, marker: { color }, hovertemplate: "%{y:,}", ...extra };
}

function line(name, x, y, color, extra = {}) {
  return {
    type: "scatter",
    mode: "lines+markers",
    name,
    x,
    y,
    line: { color, width: 2 },
    marker: { color, size: 5 },
    ...extra,
  };
}

function rateLine(series) {
  const x = series.map((b) => b.bucket_start);
  return line(
    "Fill rate",
    x,
    series.map((b) => (b.fill_rate === null ? null : b.fill_rate * 100)),
    COLORS.rate,
    { yaxis: "y2", hovertemplate: "%{y:.1f}%", connectgaps: false },
  );
}

/** Seconds as hours or days on a chart's axis, whichever reads better for these values. */
function durationAxis(series) {
  const longest = Math.max(0, ...series.map((b) => b.time_to_fill_max_seconds || 0));
  return longest >= 2 * 86400 ? { unit: 86400, suffix: " d" } : { unit: 3600, suffix: " h" };
}

// --- the views ----------------------------------------------------------------------------------

const state = {
  route: { view: "overview", id: "", params: new URLSearchParams() },
  overview: { from: "", to: "", bucket: "day" }, // "" : the API's default range
  skuBucket: "day",
  shown: "", // the route whose figures are on the page
  generation: 0,
  timer: null,
};

// `body`: what shows one SKU or order, hidden until it is loaded and when it is unknown.
const views = {
  overview: { section: $('[data-view="overview"]'), load: loadOverview, body: null },
  sku: { section: $('[data-view="sku"]'), load: loadSku, body: $('[data-view="sku"] .sku-body') },
  order: {
    section: $('[data-view="order"]'),
    load: loadOrder,
    body: $('[data-view="order"] .order-body'),
  },
};

async function loadOverview() {
  const section = views.overview.section;
  const range = { from: state.overview.from, to: state.overview.to };
  if (range.from && range.to && range.from > range.to) {
    throw new Problem("The range starts after it ends: pick a “From” day before its “To” day.");
  }
  const bucket = state.overview.bucket;
  const [overview, shortages] = await Promise.all([
    api("/insights/overview", { ...range, bucket }),
    api("/insights/shortages", { ...range, limit: TABLE_ROWS }),
  ]);
  const o = overview.body;
  // Slow movers over the same days the overview answered for.
  const span = Math.round((Date.parse(o.to) - Date.parse(o.from)) / 86400000) + 1;
  const slow = await api("/insights/slow-movers", { days: span, to: o.to, limit: TABLE_ROWS });

  return {
    lag: Math.max(overview.lag, shortages.lag, slow.lag),
    draw() {
      for (const [input, value] of [
        [$("#range-from"), o.from],
        [$("#range-to"), o.to],
      ]) {
        // The range in effect, unless the user is editing it.
        if (document.activeElement !== input && input.value !== value) input.value = value;
      }
      figure(section, "range", `${o.from} to ${o.to}`);
      figure(section, "open_backorders", count(o.now.open_backorders));
      figure(section, "units_waiting", count(o.now.units_waiting));
      figure(section, "skus_short", count(o.now.skus_short));
      figure(section, "oldest_backorder_age", age(o.now.oldest_backorder_age_seconds));
      figure(section, "fill_rate", percent(o.totals.fill_rate));
      figure(section, "lost", count(o.totals.lost));
      figure(
        section,
        "time_to_fill",
        `${age(o.totals.time_to_fill_p50_seconds)} / ${age(o.totals.time_to_fill_p90_seconds)}`,
      );

      const x = o.series.map((b) => b.bucket_start);
      const take = (name) => o.series.map((b) => b[name]);
      draw(
        $('[data-figure="chart_lost_fill_rate"]', section),
        [
          bars("Rejected", x, take("rejected"), COLORS.rejected),
          bars("Expired", x, take("expired"), COLORS.expired),
          bars("Cancelled while waiting", x, take("cancelled_waiting"), COLORS.cancelled),
          rateLine(o.series),
        ],
        {
          ...baseLayout(o.bucket, o.series),
          barmode: "stack",
          yaxis: { ...baseLayout(o.bucket, o.series).yaxis, title: { text: "units lost" } },
          yaxis2: RATE_AXIS,
        },
      );
      draw(
        $('[data-figure="chart_demand_served"]', section),
        [
          bars("From stock", x, take("allocated"), COLORS.allocated),
          bars("Filled from backorder", x, take("filled"), COLORS.filled),
          bars("Lost", x, take("lost"), COLORS.lost),
          line("Ordered", x, take("ordered"), COLORS.ordered, { hovertemplate: "%{y:,}" }),
        ],
        {
          ...baseLayout(o.bucket, o.series),
          barmode: "stack",
          yaxis: { ...baseLayout(o.bucket, o.series).yaxis, title: { text: "units" } },
        },
      );

      fillTable(
        $('[data-figure="shortages"]', section),
        shortages.body,
        (s) => s.sku,
        (s) => [
          { figure: "sku", text: s.sku, href: `#/skus/${encodeURIComponent(s.sku)}` },
          { figure: "unmet", text: count(s.unmet), num: true },
          { figure: "fill_rate", text: percent(s.fill_rate), num: true },
          { figure: "lost", text: count(s.lost), num: true },
          { figure: "waiting_units", text: count(s.waiting_units), num: true },
          { figure: "oldest_backorder_age", text: age(s.oldest_backorder_age_seconds), num: true },
          { figure: "time_to_fill_p50", text: age(s.time_to_fill_p50_seconds), num: true },
          { figure: "days_out_of_stock", text: count(s.days_out_of_stock), num: true },
          {
            figure: "next_inbound",
            text: nextInbound(s.next_inbound_id, s.next_inbound_eta, s.next_inbound_quantity),
          },
        ],
      );
      fillTable(
        $('[data-figure="slow_movers"]', section),
        slow.body,
        (s) => s.sku,
        (s) => [
          { figure: "sku", text: s.sku, href: `#/skus/${encodeURIComponent(s.sku)}` },
          { figure: "on_hand", text: count(s.on_hand), num: true },
          { figure: "available", text: count(s.available), num: true },
          { figure: "ordered", text: count(s.ordered), num: true },
          {
            figure: "days_of_cover",
            text: s.days_of_cover === null ? "no demand" : `${s.days_of_cover.toFixed(1)} d`,
            num: true,
          },
          { figure: "last_ordered", text: s.last_ordered ? day(s.last_ordered) : "never" },
        ],
      );
    },
  };
}

async function loadSku(route) {
  const section = views.sku.section;
  const body = $(".sku-body", section);
  if (!route.id) {
    return { draw: () => (body.hidden = true) };
  }
  const sku = encodeURIComponent(route.id);
  const [position, queue, first] = await Promise.all([
    api(`/skus/${sku}`),
    api(`/skus/${sku}/backorders`),
    api(`/insights/skus/${sku}`, { bucket: state.skuBucket }),
  ]);
  // The SKU's history ends on its last day of activity; supply expected later belongs on the
  // demand vs supply chart too: up to the next inbound's day (from: still its first day).
  const due = (first.body.summary.next_inbound_eta || "").slice(0, 10);
  const insight =
    due > first.body.to
      ? await api(`/insights/skus/${sku}`, { bucket: state.skuBucket, to: due })
      : first;
  const p = position.body;
  const i = insight.body;
  const summary = i.summary;
  return {
    lag: Math.max(position.lag, queue.lag, insight.lag),
    draw() {
      body.hidden = false;
      for (const name of [
        "available",
        "on_hand",
        "allocated",
        "backordered",
        "open_backorders",
        "shipped",
        "inbound",
      ]) {
        figure(section, name, count(p[name]));
      }
      figure(section, "policy_backorders", POLICIES[p.policy.backorders] || p.policy.backorders);
      figure(
        section,
        "policy_limit",
        p.policy.limit === null ? "none" : `${count(p.policy.limit)} units`,
      );
      figure(
        section,
        "policy_max_wait",
        p.policy.max_wait_days === null ? "no limit" : days(p.policy.max_wait_days),
      );

      figure(section, "range", `${i.from} to ${i.to}`);
      figure(section, "ordered", count(summary.ordered));
      figure(section, "fill_rate", percent(summary.fill_rate));
      figure(section, "lost", count(summary.lost));
      figure(section, "time_to_fill_p50", age(summary.time_to_fill_p50_seconds));
      figure(section, "time_to_fill_p90", age(summary.time_to_fill_p90_seconds));
      figure(section, "time_to_fill_max", age(summary.time_to_fill_max_seconds));
      figure(section, "days_out_of_stock", count(summary.days_out_of_stock));
      figure(
        section,
        "next_inbound",
        nextInbound(
          summary.next_inbound_id,
          summary.next_inbound_eta,
          summary.next_inbound_quantity,
        ),
      );

      const x = i.series.map((b) => b.bucket_start);
      const take = (name) => i.series.map((b) => b[name]);
      draw(
        $('[data-figure="chart_demand_supply"]', section),
        [
          bars("Ordered", x, take("ordered"), COLORS.ordered),
          bars("Received", x, take("received"), COLORS.received),
          bars("Shipped", x, take("shipped"), COLORS.shipped),
          // Supply still to come: the received colour, hatched.
          bars("Expected", x, take("expected"), COLORS.expected, {
            marker: { color: COLORS.expected, pattern: { shape: "/", fgcolor: COLORS.received } },
          }),
        ],
        {
          ...baseLayout(i.bucket, i.series),
          barmode: "group",
          yaxis: { ...baseLayout(i.bucket, i.series).yaxis, title: { text: "units" } },
        },
      );
      const { unit, suffix } = durationAxis(i.series);
      const wait = (name) =>
        i.series.map((b) => (b[name] === null ? null : Math.round((b[name] / unit) * 10) / 10));
      const waitLabels = (name) => i.series.map((b) => age(b[name]));
      draw(
        $('[data-figure="chart_time_to_fill"]', section),
        [
          bars(
            "Fill rate",
            x,
            take("fill_rate").map((r) => (r === null ? null : r * 100)),
            "#99d5cf",
            {
              hovertemplate: "%{y:.1f}%",
            },
          ),
          ...[
            ["Median", "time_to_fill_p50_seconds", COLORS.p50],
            ["p90", "time_to_fill_p90_seconds", COLORS.p90],
            ["Longest", "time_to_fill_max_seconds", COLORS.max],
          ].map(([label, name, color]) =>
            line(label, x, wait(name), color, {
              yaxis: "y2",
              customdata: waitLabels(name),
              hovertemplate: "%{customdata}",
              connectgaps: false,
            }),
          ),
        ],
        {
          ...baseLayout(i.bucket, i.series),
          yaxis: {
            ...baseLayout(i.bucket, i.series).yaxis,
            ...RATE_TICKS,
            title: { text: "fill rate" },
          },
          yaxis2: {
            overlaying: "y",
            side: "right",
            rangemode: "tozero",
            tickmode: "auto",
            ticksuffix: suffix,
            title: { text: "waited" },
            showgrid: false,
            automargin: true,
          },
        },
      );

      fillTable(
        $('[data-figure="queue"]', section),
        queue.body,
        (b) => `${b.order_id}/${b.line_id}`,
        (b) => [
          { figure: "position", text: count(b.position), num: true },
          {
            figure: "order_id",
            text: b.order_id,
            href: `#/orders/${encodeURIComponent(b.order_id)}`,
          },
          { figure: "line_id", text: b.line_id },
          { figure: "customer_id", text: b.customer_id },
          { figure: "priority", text: count(b.priority), num: true },
          { figure: "quantity", text: count(b.quantity), num: true },
          { figure: "placed_at", text: when(b.placed_at) },
          { figure: "age", text: age(b.age_seconds), num: true },
          { figure: "eta", text: b.eta ? when(b.eta) : "no date yet" },
        ],
      );
    },
  };
}

async function loadOrder(route) {
  const section = views.order.section;
  const body = $(".order-body", section);
  if (!route.id) {
    return { draw: () => (body.hidden = true) };
  }
  const id = encodeURIComponent(route.id);
  const [order, decisions] = await Promise.all([
    api(`/orders/${id}`),
    api(`/orders/${id}/decisions`),
  ]);
  const o = order.body;
  return {
    lag: Math.max(order.lag, decisions.lag),
    draw() {
      body.hidden = false;
      figure(section, "customer_id", o.customer_id);
      figure(section, "status", words(o.status));
      fillTable(
        $('[data-figure="lines"]', section),
        o.lines,
        (line) => line.line_id,
        (line) => [
          { figure: "line_id", text: line.line_id },
          { figure: "sku", text: line.sku, href: `#/skus/${encodeURIComponent(line.sku)}` },
          ...["ordered", "allocated", "backordered", "shipped", "cancelled", "rejected"].map(
            (name) => ({ figure: name, text: count(line[name]), num: true }),
          ),
          { figure: "eta", text: when(line.eta) },
        ],
      );
      fillTable(
        $('[data-figure="decisions"]', section),
        decisions.body,
        (d, index) => `${index}:${d.position}`, // one input may cause several decisions
        (d) => [
          { figure: "position", text: String(d.position), num: true },
          { figure: "decision", text: DECISIONS[d.decision] || d.decision },
          { figure: "line_id", text: d.line_id },
          { figure: "sku", text: d.sku, href: `#/skus/${encodeURIComponent(d.sku)}` },
          { figure: "quantity", text: count(d.quantity), num: true },
          { figure: "occurred_at", text: when(d.occurred_at) },
          { figure: "reason", text: reason(d.reason) },
          { figure: "eta", text: when(d.eta) },
          { figure: "details", text: decisionDetails(d) },
        ],
      );
    },
  };
}

// --- routes, refresh, problems --------------------------------------------------------------------

function parseRoute() {
  const raw = window.location.hash.replace(/^#/, "") || "/";
  const cut = raw.indexOf("?");
  const path = cut < 0 ? raw : raw.slice(0, cut);
  const params = new URLSearchParams(cut < 0 ? "" : raw.slice(cut + 1));
  let parts;
  try {
    parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  } catch {
    parts = [];
  }
  const id = parts.slice(1).join("/");
  if (parts[0] === "skus") return { view: "sku", id, params };
  if (parts[0] === "orders") return { view: "order", id, params };
  return { view: "overview", id: "", params };
}

function routeKey(route) {
  return route.id ? `${route.view}:${route.id}` : route.view;
}

/** The current view's choices, kept in the fragment so that a reload or a link keeps them. */
function rememberChoices() {
  const route = state.route;
  const params = new URLSearchParams();
  if (route.view === "overview") {
    if (state.overview.from) params.set("from", state.overview.from);
    if (state.overview.to) params.set("to", state.overview.to);
    if (state.overview.bucket !== "day") params.set("bucket", state.overview.bucket);
  } else if (route.view === "sku" && state.skuBucket !== "day") {
    params.set("bucket", state.skuBucket);
  }
  const base = route.view === "overview" ? "#/" : `#/${route.view === "sku" ? "skus" : "orders"}`;
  const path = route.id ? `${base}/${encodeURIComponent(route.id)}` : base;
  const query = params.toString();
  window.history.replaceState(null, "", query ? `${path}?${query}` : path);
}

function checkRadio(form, value) {
  for (const radio of form.querySelectorAll('input[name="bucket"]'))
    radio.checked = radio.value === value;
}

function onRoute() {
  const route = parseRoute();
  state.route = route;
  const bucket = route.params.get("bucket") === "week" ? "week" : "day";
  if (route.view === "overview") {
    state.overview = {
      from: route.params.get("from") || "",
      to: route.params.get("to") || "",
      bucket,
    };
    checkRadio($("#range-form"), bucket);
  } else if (route.view === "sku") {
    state.skuBucket = bucket;
    checkRadio($("#sku-bucket"), bucket);
    $("#sku-input").value = route.id;
  } else {
    $("#order-input").value = route.id;
  }
  for (const [name, view] of Object.entries(views)) view.section.hidden = name !== route.view;
  // Another SKU or order: none of the last one's figures under its name.
  if (views[route.view].body && routeKey(route) !== state.shown)
    views[route.view].body.hidden = true;
  for (const link of document.querySelectorAll("[data-nav]")) {
    if (link.dataset.nav === route.view) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  setText($('[data-view="sku"] [data-figure="sku"]'), route.view === "sku" ? route.id : "");
  setText(
    $('[data-view="order"] [data-figure="order_id"]'),
    route.view === "order" ? route.id : "",
  );
  const titles = { overview: "Overview", sku: `SKU ${route.id}`, order: `Order ${route.id}` };
  document.title = `${titles[route.view].trim()} · Backorders and shortages`;
  document.body.dataset.rendered = "";
  say(null);
  // Charts drawn while their view was hidden take its width now that it shows.
  if (window.Plotly) {
    for (const chart of views[route.view].section.querySelectorAll(".chart.js-plotly-plot")) {
      window.Plotly.Plots.resize(chart).catch(() => {});
    }
  }
  refresh();
}

function say(problem) {
  const box = $("#problem");
  const text = problem ? problem.message || String(problem) : "";
  setText(box, text);
  box.hidden = !text;
  if (problem && problem.needsToken) $("#token-box").open = true;
}

async function refresh() {
  window.clearTimeout(state.timer);
  if (document.hidden) return; // paused while nobody looks; resumed by visibilitychange
  const generation = ++state.generation;
  const route = state.route;
  try {
    const loaded = await views[route.view].load(route);
    if (generation !== state.generation) return; // the user has moved on meanwhile
    loaded.draw();
    say(null);
    const time = new Date().toLocaleTimeString("en-GB", { hour12: false });
    const behind = loaded.lag > 0 ? ` · ${count(loaded.lag)} decisions still to apply` : "";
    setText($("#updated"), `updated ${time}${behind}`);
    document.body.dataset.rendered = routeKey(route);
    state.shown = routeKey(route);
  } catch (problem) {
    if (generation !== state.generation) return;
    say(problem);
    if (problem.status === 404 && views[route.view].body) {
      views[route.view].body.hidden = true;
      state.shown = "";
    }
    if (!(problem instanceof Problem)) console.error(problem); // a bug of the page's own
  } finally {
    if (generation === state.generation && !document.hidden) {
      state.timer = window.setTimeout(refresh, REFRESH_MS);
    }
  }
}

// --- the user's inputs ------------------------------------------------------------------------

$("#range-form").addEventListener("change", (event) => {
  const form = event.currentTarget;
  if (event.target.type === "date") {
    // A day picked: both fields are the range now (until "Latest 30 days").
    state.overview.from = form.elements.from.value;
    state.overview.to = form.elements.to.value;
  }
  state.overview.bucket = form.elements.bucket.value;
  rememberChoices();
  refresh();
});
$("#range-form").addEventListener("submit", (event) => event.preventDefault());
$("#range-latest").addEventListener("click", () => {
  state.overview.from = "";
  state.overview.to = "";
  $("#range-from").value = "";
  $("#range-to").value = "";
  rememberChoices();
  refresh();
});

$("#sku-bucket").addEventListener("change", (event) => {
  state.skuBucket = event.currentTarget.elements.bucket.value;
  rememberChoices();
  refresh();
});
$("#sku-bucket").addEventListener("submit", (event) => event.preventDefault());

function goTo(form, view, input) {
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const wanted = input.value.trim();
    if (wanted) window.location.hash = `#/${view}/${encodeURIComponent(wanted)}`;
  });
}
goTo($("#sku-search"), "skus", $("#sku-input"));
goTo($("#order-search"), "orders", $("#order-input"));

$("#token-input").value = pageToken;
$("#token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  pageToken = $("#token-input").value.trim();
  try {
    if (pageToken) localStorage.setItem(TOKEN_KEY, pageToken);
    else localStorage.removeItem(TOKEN_KEY);
  } catch {
    // storage refused: the token still serves this page
  }
  $("#token-box").open = false;
  refresh();
});
$("#token-forget").addEventListener("click", () => {
  pageToken = "";
  $("#token-input").value = "";
  try {
    localStorage.removeItem(TOKEN_KEY);
  } catch {
    // nothing kept
  }
  refresh();
});

document.addEventListener("visibilitychange", () => {
  if (document.hidden) window.clearTimeout(state.timer);
  else refresh();
});
window.addEventListener("hashchange", onRoute);
onRoute();
