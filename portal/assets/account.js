// account.js: sign-in (#/signin) and the consumer's page (#/me): keys,
// plan, quota and usage.

import { APIError, call, config, credential, me, setCredential } from "./api.js";
import { barChart, chartBox, timeChart } from "./charts.js";
import { codeBlock, errorBox, fmtBytes, fmtDate, fmtInt, fmtRelative, h, num, table } from "./dom.js";

// signinPage asks for an API key or a JWT and checks it with POST
// api/signin; on success the credential is kept in sessionStorage.
export async function signinPage(view, _args, ctx) {
  const cred = credential();
  const kind = h("select", { id: "signin-kind", "aria-label": "Credential kind" },
    h("option", { value: "api_key" }, "API key"), h("option", { value: "jwt" }, "JWT"));
  const secret = h("textarea", { id: "signin-secret", rows: 2, spellcheck: "false", autocomplete: "off", placeholder: "Paste your API key", required: true });
  kind.addEventListener("change", () => {
    secret.placeholder = kind.value === "jwt" ? "Paste your JWT (eyJ…)" : "Paste your API key";
  });
  const msg = h("div", { class: "form-msg" });
  const form = h("form", { class: "card signin", id: "signin-form" },
    h("h1", {}, "Sign in"),
    h("p", { class: "muted" }, "Sign in with the API key or the JWT your team gave you. It stays in this browser tab only (sessionStorage), and the portal sends it with each of its calls and with the calls you try."),
    h("label", {}, "Credential", kind),
    h("label", {}, "Secret", secret),
    h("div", { class: "form-bar" }, h("button", { type: "submit", class: "primary" }, "Sign in")),
    msg);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const value = secret.value.trim();
    if (!value) return;
    const body = kind.value === "jwt" ? { jwt: value } : { api_key: value };
    msg.replaceChildren("Checking…");
    try {
      await call("signin", { method: "POST", body });
      setCredential(body);
      ctx.navigate("#/me");
    } catch (err) {
      msg.replaceChildren(errorBox(err));
    }
  });
  view.append(form);
  if (cred) {
    view.prepend(h("div", { class: "banner" }, "You are signed in. ",
      h("a", { href: "#/me" }, "Go to your account"), " or sign in with another credential below."));
  }
}

// mePage shows the signed-in consumer.
export async function mePage(view, _args, ctx) {
  if (!credential()) {
    ctx.navigate("#/signin");
    return;
  }
  let c;
  try {
    c = await me("me");
  } catch (err) {
    if (err instanceof APIError && err.status === 401) {
      setCredential(null);
      view.append(errorBox(new Error("Your credential was refused (" + err.message + "). Sign in again.")),
        h("p", {}, h("a", { href: "#/signin" }, "Sign in")));
      return;
    }
    throw err;
  }
  const cfg = await config();
  const signOut = h("button", { type: "button", id: "signout" }, "Sign out");
  signOut.addEventListener("click", () => {
    setCredential(null);
    ctx.navigate("#/");
  });
  view.append(
    h("div", { class: "page-head" },
      h("div", {}, h("h1", { id: "me-name" }, c.name || "(unnamed)"),
        h("p", { class: "muted" }, "Plan ", h("strong", {}, c.plan || (c.quota && c.quota.plan) || "default"))),
      signOut),
    h("div", { class: "grid two" }, quotaCard(c.quota), keysCard(c, cfg, ctx)),
    usageCard(ctx));
}

// quotaCard shows used, limit, remaining and the reset time.
function quotaCard(q) {
  if (!q) return h("section", { class: "card" }, h("h2", {}, "Quota"), h("p", { class: "muted" }, "No quota: your calls are not counted against a limit."));
  const limit = num(q.limit);
  const used = num(q.used);
  const remaining = q.remaining != null ? num(q.remaining) : Math.max(0, limit - used);
  const pct = limit > 0 ? Math.min(100, (100 * used) / limit) : 0;
  return h("section", { class: "card", id: "quota" },
    h("h2", {}, "Quota", q.period ? h("span", { class: "muted small" }, " per " + q.period) : null),
    h("div", { class: "meter", role: "meter", "aria-valuenow": used, "aria-valuemin": 0, "aria-valuemax": limit },
      h("div", { class: "meter-fill" + (pct >= 90 ? " hot" : ""), style: `width:${pct.toFixed(1)}%` })),
    h("dl", { class: "stats" },
      h("div", {}, h("dt", {}, "Used"), h("dd", {}, fmtInt(used))),
      h("div", {}, h("dt", {}, "Limit"), h("dd", {}, fmtInt(limit))),
      h("div", {}, h("dt", {}, "Remaining"), h("dd", { id: "quota-remaining" }, fmtInt(remaining))),
      h("div", {}, h("dt", {}, "Resets"), h("dd", { title: fmtDate(q.reset_at) }, fmtRelative(q.reset_at) || "–"))));
}

// keysCard lists the consumer's keys; with self-service it can create a
// key (shown once) and revoke self-service keys.
function keysCard(c, cfg, ctx) {
  const keys = c.keys || [];
  const box = h("section", { class: "card", id: "keys" }, h("h2", {}, "API keys"));
  const msg = h("div", { class: "form-msg" });
  const rows = keys.map((k) => {
    let action = null;
    if (cfg.self_service && k.source === "self-service") {
      action = h("button", { type: "button", class: "danger small", dataset: { revoke: k.id } }, "Revoke");
      action.addEventListener("click", async () => {
        if (!confirm(`Revoke key ${k.masked || k.id}? Clients using it stop working at once.`)) return;
        try {
          await me("me/keys/" + encodeURIComponent(k.id), { method: "DELETE" });
          ctx.rerender();
        } catch (err) {
          msg.replaceChildren(errorBox(err));
        }
      });
    }
    return [h("code", {}, k.masked || k.id), h("span", { class: "badge " + (k.source === "self-service" ? "self" : "config") }, k.source || "config"), fmtDate(k.created), action || ""];
  });
  box.append(keys.length ? table(["Key", "Source", "Created", ""], rows) : h("p", { class: "muted" }, "No keys."));
  if (cfg.self_service) {
    const create = h("button", { type: "button", class: "primary", id: "create-key" }, "Create key");
    create.addEventListener("click", async () => {
      create.disabled = true;
      try {
        const res = await me("me/keys", { method: "POST" });
        msg.replaceChildren(h("div", { class: "banner ok", id: "new-key" },
          h("strong", {}, "Your new key. "), "Copy it now: it is shown only once.",
          codeBlock("key " + (res.key && res.key.id ? res.key.id : ""), res.secret || "")));
        const list = h("p", {}, h("a", { href: "#/me", onclick: (e) => { e.preventDefault(); ctx.rerender(); } }, "Done: refresh the list"));
        msg.append(list);
      } catch (err) {
        msg.replaceChildren(errorBox(err));
      } finally {
        create.disabled = false;
      }
    });
    box.append(h("div", { class: "form-bar" }, create));
  } else {
    box.append(h("p", { class: "muted small" }, "Ask the API's operators for a new key."));
  }
  box.append(msg);
  return box;
}

// usageCard draws the consumer's usage for a window: a chart and a table
// by API, method and status class.
function usageCard(ctx) {
  const windowSel = h("select", { id: "usage-window", "aria-label": "Window" },
    h("option", { value: "24h" }, "Last 24 hours"), h("option", { value: "30d" }, "Last 30 days"));
  const body = h("div", {});
  const box = h("section", { class: "card", id: "usage" },
    h("div", { class: "card-head" }, h("h2", {}, "Usage"), windowSel), body);
  const load = async () => {
    body.replaceChildren(h("p", { class: "muted" }, "Loading…"));
    try {
      const u = await me("me/usage?window=" + encodeURIComponent(windowSel.value));
      renderUsage(body, u || {}, ctx);
    } catch (err) {
      body.replaceChildren(errorBox(err));
    }
  };
  windowSel.addEventListener("change", load);
  load();
  return box;
}

// isError reports whether a status class counts as a failure.
export function isError(sc) {
  sc = String(sc || "").toLowerCase();
  return !(sc === "" || sc === "ok" || sc.startsWith("1") || sc.startsWith("2") || sc.startsWith("3"));
}

function renderUsage(body, u, ctx) {
  const rows = (u.rows || []).map((r) => ({
    api: r.api || "", method: r.method || "", status: r.status_class || "",
    calls: num(r.calls), bytesIn: num(r.bytes_in), bytesOut: num(r.bytes_out),
  })).sort((a, b) => b.calls - a.calls);
  body.replaceChildren();
  const range = h("p", { class: "muted small" }, fmtDate(u.from), " – ", fmtDate(u.to));
  if (!rows.length && !(u.series || []).length) {
    body.append(range, h("p", { class: "empty" }, "No calls in this window."));
    return;
  }
  const chart = chartBox("Calls by method");
  body.append(range, chart);
  if ((u.series || []).length) {
    // Tolerated: a usage answer shaped like analytics (points over time).
    const { times, series } = alignSeries(u.series, (p) => num(p.calls));
    chart.querySelector("figcaption span").textContent = "Calls over time";
    requestAnimationFrame(() => ctx.cleanup.push(timeChart(chart.plot, times, series, (v) => fmtInt(v))));
  } else {
    const by = new Map();
    for (const r of rows) {
      const k = r.method || r.api || "(all)";
      const e = by.get(k) || { ok: 0, err: 0 };
      if (isError(r.status)) e.err += r.calls;
      else e.ok += r.calls;
      by.set(k, e);
    }
    const top = [...by.entries()].sort((a, b) => b[1].ok + b[1].err - (a[1].ok + a[1].err)).slice(0, 10);
    const labels = top.map(([k]) => methodLabel(k));
    requestAnimationFrame(() => ctx.cleanup.push(barChart(chart.plot, labels, [
      { label: "succeeded", values: top.map(([, e]) => e.ok) },
      { label: "failed", values: top.map(([, e]) => e.err) },
    ], (v) => fmtInt(v), "Method")));
  }
  const total = rows.reduce((t, r) => ({ calls: t.calls + r.calls, in: t.in + r.bytesIn, out: t.out + r.bytesOut }), { calls: 0, in: 0, out: 0 });
  body.append(table(["API", "Method", "Status", "#Calls", "#Bytes in", "#Bytes out"],
    rows.map((r) => ({
      class: isError(r.status) ? "row-error" : null,
      cells: [r.api, h("code", {}, r.method), h("span", { class: "status " + (isError(r.status) ? "bad" : "ok") }, r.status || "–"), fmtInt(r.calls), fmtBytes(r.bytesIn), fmtBytes(r.bytesOut)],
    })),
    { class: "usage-table", foot: ["Total", "", "", fmtInt(total.calls), fmtBytes(total.in), fmtBytes(total.out)] }));
}

// methodLabel shortens "/library.v1.LibraryService/ListBooks" to
// "v1 ListBooks" (the package's version, if any, and the method).
function methodLabel(full) {
  const m = String(full).match(/^\/?(?:(.*)\.)?[^./]+\/([^/]+)$/);
  if (!m) return full;
  const version = (m[1] || "").split(".").pop();
  return /^v\d/.test(version) ? `${version} ${m[2]}` : m[2];
}

// alignSeries puts the points of several analytics series on one time
// axis: the union of their times; a missing point is 0 for counts (no
// calls in that step) and null for latencies, as value says.
export function alignSeries(list, value, { missing = 0 } = {}) {
  const ts = new Set();
  for (const s of list) for (const p of s.points || []) ts.add(num(p.t));
  const times = [...ts].sort((a, b) => a - b);
  const index = new Map(times.map((t, i) => [t, i]));
  const series = list.map((s) => {
    const values = times.map(() => missing);
    for (const p of s.points || []) values[index.get(num(p.t))] = value(p);
    return { label: seriesLabel(s), values };
  });
  return { times, series };
}

// seriesLabel names a series by its label values: "library · 2xx"; "all"
// without labels (nothing grouped). An empty value is a group of its own:
// the anonymous calls when grouped by consumer.
export function seriesLabel(s) {
  const labels = Object.entries(s.labels || {});
  if (!labels.length) return "all";
  return labels.map(([k, v]) => (v !== "" ? v : k === "consumer" ? "(anonymous)" : "(none)")).join(" · ");
}
