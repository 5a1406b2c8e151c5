// analytics.js: the operator's page (#/analytics). It draws GET
// api/analytics?window=&group_by= as charts of calls, errors, latency and
// bytes, a totals table, and the calls on deprecated methods by consumer.
// It asks for the admin token (kept in sessionStorage) when the gateway
// answers 401: a gateway without an admin token answers its loopback
// clients without one (make run's demo).

import { admin, adminToken, APIError, catalog, setAdminToken } from "./api.js";
import { alignSeries, seriesLabel } from "./account.js";
import { chartBox, timeChart } from "./charts.js";
import { errorBox, fmtBytes, fmtDate, fmtInt, fmtMs, fmtPct, h, lifecycleBadge, num, table } from "./dom.js";

const windows = [["1h", "Last hour"], ["24h", "Last 24 hours"], ["30d", "Last 30 days"]];
const groupings = ["api", "route", "method", "protocol", "consumer", "status_class"];
// maxLines caps the lines of one chart; the table lists every series.
const maxLines = 8;

// analyticsPage is #/analytics.
export async function analyticsPage(view, _args, ctx) {
  const state = ctx.state.analytics ??= { window: "24h", group_by: "api", pct: "p95", bytes: "total" };
  const sel = (id, options, key) => {
    const s = h("select", { id }, options.map(([v, label]) => h("option", { value: v, selected: v === state[key] }, label)));
    s.addEventListener("change", () => {
      state[key] = s.value;
      ctx.rerender();
    });
    return s;
  };

  // Without a token, ask anyway: the form comes only with a 401 (and the
  // error only when a token was refused).
  let res;
  try {
    res = await admin(`analytics?window=${encodeURIComponent(state.window)}&group_by=${encodeURIComponent(state.group_by)}`);
  } catch (err) {
    if (err instanceof APIError && err.status === 401) {
      const refused = adminToken() !== "";
      setAdminToken("");
      view.replaceChildren(tokenForm(ctx, refused ? err : null));
      return;
    }
    throw err;
  }
  let forget = null;
  if (adminToken()) {
    forget = h("button", { type: "button", id: "forget-token" }, "Forget admin token");
    forget.addEventListener("click", () => {
      setAdminToken("");
      ctx.rerender();
    });
  }
  view.append(h("div", { class: "page-head" },
    h("div", {}, h("h1", {}, "Analytics"), h("p", { class: "muted" }, "Calls through the gateway, for operators.")),
    forget));
  view.append(h("div", { class: "toolbar" },
    h("label", {}, "Window ", sel("an-window", windows, "window")),
    h("label", {}, "Group by ", sel("an-group", groupings.map((g) => [g, g.replace("_", " ")]), "group_by"))));
  res = res || {};
  const list = (res.series || []).map((s) => ({ ...s, total: totals(s) }))
    .sort((a, b) => b.total.calls - a.total.calls);
  view.append(h("p", { class: "muted small" }, fmtDate(res.from), " – ", fmtDate(res.to),
    res.step_seconds ? ` · step ${res.step_seconds}s` : res.step ? ` · step ${res.step}` : ""));
  if (!list.length) {
    view.append(h("p", { class: "empty" }, "No calls in this window."));
  } else {
    const top = list.slice(0, maxLines);
    const pct = sel("an-pct", [["p50", "p50"], ["p95", "p95"], ["p99", "p99"]], "pct");
    const dir = sel("an-bytes", [["total", "in + out"], ["bytes_in", "in"], ["bytes_out", "out"]], "bytes");
    const charts = [
      ["Calls", (p) => num(p.calls), fmtInt, 0, null, true],
      ["Errors", (p) => num(p.errors), fmtInt, 0, null, true],
      ["Latency", (p) => (ms(p, state.pct) == null ? null : num(ms(p, state.pct))), fmtMs, null, pct, false],
      ["Bytes", (p) => (state.bytes === "total" ? num(p.bytes_in) + num(p.bytes_out) : num(p[state.bytes])), fmtBytes, 0, dir, true],
    ];
    const grid = h("div", { class: "grid charts" });
    view.append(grid);
    for (const [title, value, fmt, missing, extra, integer] of charts) {
      const box = chartBox(title + (list.length > maxLines ? ` (top ${maxLines})` : ""), extra);
      box.dataset.chart = title.toLowerCase();
      grid.append(box);
      const { times, series } = alignSeries(top, value, { missing });
      requestAnimationFrame(() => ctx.cleanup.push(timeChart(box.plot, times, series, fmt, { integer })));
    }
    view.append(h("section", { class: "card" }, h("h2", {}, "Totals by " + state.group_by.replace("_", " ")),
      table([state.group_by.replace("_", " "), "#Calls", "#Errors", "#Error rate", "#p50", "#p95", "#p99", "#Bytes in", "#Bytes out"],
        list.map((s) => ({
          cells: [seriesLabel(s), fmtInt(s.total.calls), fmtInt(s.total.errors), fmtPct(s.total.errors, s.total.calls),
            fmtMs(s.total.p50), fmtMs(s.total.p95), fmtMs(s.total.p99), fmtBytes(s.total.bytes_in), fmtBytes(s.total.bytes_out)],
        })), { class: "totals-table" })));
  }
  view.append(await deprecatedSection(state));
}

// ms reads a latency percentile (p50, p95, p99) in milliseconds: the
// gateway names it p50_ms.
function ms(p, k) {
  return p[k + "_ms"] ?? p[k];
}

// totals are a series' totals, or the sums of its points when the answer
// has none (latency percentiles cannot be summed: then unknown).
function totals(s) {
  const t = s.totals;
  if (t) {
    return { calls: num(t.calls), errors: num(t.errors), bytes_in: num(t.bytes_in), bytes_out: num(t.bytes_out), p50: ms(t, "p50"), p95: ms(t, "p95"), p99: ms(t, "p99") };
  }
  const sum = { calls: 0, errors: 0, bytes_in: 0, bytes_out: 0, p50: null, p95: null, p99: null };
  for (const p of s.points || []) {
    sum.calls += num(p.calls);
    sum.errors += num(p.errors);
    sum.bytes_in += num(p.bytes_in);
    sum.bytes_out += num(p.bytes_out);
  }
  return sum;
}

// deprecatedSection lists calls on the catalog's deprecated methods by
// consumer: GET api/analytics?window=…&group_by=method,consumer&method=<full
// name>&method=… (filters are label=value, repeated for any of them).
async function deprecatedSection(state) {
  const box = h("section", { class: "card", id: "deprecated-calls" }, h("h2", {}, "Calls on deprecated methods"));
  let cat;
  try {
    cat = await catalog();
  } catch (err) {
    box.append(errorBox(err));
    return box;
  }
  const deprecated = new Map();
  for (const api of cat.apis) {
    for (const v of api.versions) {
      for (const m of v.methods) {
        const lc = m.deprecated || v.deprecated;
        if (lc && !m.retired && !v.retired) deprecated.set(m.full_name, { api, v, m, lc });
      }
    }
  }
  if (!deprecated.size) {
    box.append(h("p", { class: "muted" }, "No method in the catalog is deprecated."));
    return box;
  }
  const q = new URLSearchParams({ window: state.window, group_by: "method,consumer" });
  for (const name of deprecated.keys()) q.append("method", name);
  let res;
  try {
    res = await admin("analytics?" + q.toString());
  } catch (err) {
    box.append(errorBox(err));
    return box;
  }
  const rows = [];
  for (const s of (res && res.series) || []) {
    const labels = s.labels || {};
    const d = deprecated.get(labels.method);
    if (!d) continue; // a source that ignores the filter: keep deprecated ones only
    const t = totals(s);
    if (!t.calls) continue;
    let last = null;
    for (const p of s.points || []) if (num(p.calls) > 0 && (last == null || num(p.t) > last)) last = num(p.t);
    rows.push({ d, consumer: labels.consumer || "(anonymous)", calls: t.calls, last });
  }
  rows.sort((a, b) => b.calls - a.calls);
  if (!rows.length) {
    box.append(h("p", { class: "empty" }, "No calls on deprecated methods in this window."));
    return box;
  }
  box.append(table(["Consumer", "Method", "Lifecycle", "#Calls", "Last call"],
    rows.map((r) => [h("strong", {}, r.consumer), h("a", { href: `#/api/${encodeURIComponent(r.d.api.name)}/${encodeURIComponent(r.d.v.version)}` }, h("code", {}, r.d.m.full_name)),
      lifecycleBadge("deprecated", r.d.lc), fmtInt(r.calls), r.last ? fmtDate(r.last) : "–"]),
    { class: "deprecated-table" }));
  return box;
}

// tokenForm asks for the admin token.
function tokenForm(ctx, err) {
  const input = h("input", { type: "password", id: "admin-token", autocomplete: "off", required: true, placeholder: "admin.token from the gateway's config" });
  const form = h("form", { class: "card signin", id: "admin-form" },
    h("h1", {}, "Analytics"),
    h("p", { class: "muted" }, "Operators only: enter the gateway's admin token. It stays in this browser tab (sessionStorage)."),
    err ? errorBox(err) : null,
    h("label", {}, "Admin token", input),
    h("div", { class: "form-bar" }, h("button", { type: "submit", class: "primary" }, "Open analytics")));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    setAdminToken(input.value.trim());
    ctx.rerender();
  });
  return form;
}
