// dom.js: building DOM nodes and formatting values. Everything the portal
// shows goes through h() and text nodes, never innerHTML, so text from the
// catalog (proto comments) or from the APIs cannot inject markup.

// h creates an element: h("a", {href: "#/", class: "x", onclick: fn}, "text", child).
// Attributes that are null, undefined or false are left out; children may
// be nodes, strings, numbers, arrays, or null (skipped).
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "href") el.setAttribute("href", safeHref(v));
    else if (k === "value" || k === "checked" || k === "disabled" || k === "selected") el[k] = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

// append adds children (see h) to el.
export function append(el, children) {
  for (const c of [children].flat(Infinity)) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

// safeHref keeps portal routes, relative links and http(s) URLs, and turns
// anything else (javascript:, data:) into "#".
export function safeHref(v) {
  v = String(v);
  if (v.startsWith("#")) return v;
  try {
    const u = new URL(v, location.href);
    return u.protocol === "http:" || u.protocol === "https:" ? v : "#";
  } catch {
    return "#";
  }
}

// paragraphs renders plain text with blank lines between paragraphs.
export function paragraphs(text, cls = "prose") {
  if (!text) return null;
  return h("div", { class: cls },
    String(text).split(/\n\s*\n/).map((p) => h("p", {}, p.trim())));
}

// num reads a count or a measure tolerantly: missing, null or not a number
// (and int64 values sent as JSON strings) become numbers, 0 by default.
export function num(v) {
  const n = Number(v);
  return Number.isFinite(n) ? n : 0;
}

const intFmt = new Intl.NumberFormat("en-US");

// fmtInt formats a count: 12,345.
export function fmtInt(v) {
  return intFmt.format(Math.round(num(v)));
}

// fmtBytes formats a byte count: 1.5 MB.
export function fmtBytes(v) {
  let n = num(v);
  const units = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) {
    n /= 1000;
    i++;
  }
  return (i === 0 ? String(Math.round(n)) : n.toFixed(n < 10 ? 1 : 0)) + " " + units[i];
}

// fmtMs formats a latency in milliseconds.
export function fmtMs(v) {
  if (v == null || v === "") return "–";
  const n = num(v);
  return (n < 10 ? n.toFixed(2) : n < 100 ? n.toFixed(1) : Math.round(n).toString()) + " ms";
}

// fmtPct formats a ratio as a percentage.
export function fmtPct(part, whole) {
  const w = num(whole);
  if (!w) return "–";
  return ((100 * num(part)) / w).toFixed(1) + " %";
}

// toDate reads an RFC 3339 string or Unix seconds; null when neither.
export function toDate(v) {
  if (v == null || v === "" || v === "0001-01-01T00:00:00Z") return null;
  const d = typeof v === "number" ? new Date(v * 1000) : new Date(v);
  return Number.isNaN(d.getTime()) ? null : d;
}

// fmtDate formats a time as "2025-03-01 14:05 UTC"; "–" when missing.
export function fmtDate(v) {
  const d = toDate(v);
  if (!d) return "–";
  return d.toISOString().slice(0, 16).replace("T", " ") + " UTC";
}

// fmtRelative says how far a time is from now: "in 3 h", "5 min ago".
export function fmtRelative(v) {
  const d = toDate(v);
  if (!d) return "";
  const s = Math.round((d.getTime() - Date.now()) / 1000);
  const a = Math.abs(s);
  const [n, u] = a < 90 ? [a, "s"] : a < 5400 ? [Math.round(a / 60), "min"]
    : a < 129600 ? [Math.round(a / 3600), "h"] : [Math.round(a / 86400), "d"];
  return s >= 0 ? `in ${n} ${u}` : `${n} ${u} ago`;
}

// lifecycleBadge marks a deprecated or retired version or method:
// "Deprecated · sunset 2025-12-31 · successor →". Null when lc is unset.
export function lifecycleBadge(kind, lc) {
  if (!lc) return null;
  const parts = [kind === "retired" ? "Retired" : "Deprecated"];
  if (lc.sunset) parts.push((kind === "retired" ? "since " : "sunset ") + lc.sunset);
  else if (lc.since) parts.push("since " + lc.since);
  return h("span", { class: "badge " + kind, title: lc.message || null },
    parts.join(" · "),
    lc.link ? [" · ", h("a", { href: lc.link, class: "successor" }, "successor →")] : null);
}

// lifecycleNote is the sentence a banner shows for a deprecated or retired
// thing named what.
export function lifecycleNote(kind, lc, what) {
  if (!lc) return null;
  let s;
  if (kind === "retired") {
    s = `${what} was retired${lc.sunset ? " on " + lc.sunset : lc.since ? " on " + lc.since : ""}: calls no longer succeed.`;
  } else {
    s = `${what} is deprecated${lc.since ? " since " + lc.since : ""}` +
      (lc.sunset ? ` and stops answering on ${lc.sunset}.` : ".");
  }
  return h("div", { class: "banner " + kind, role: "note" },
    h("strong", {}, s),
    lc.message ? [" ", lc.message] : null,
    lc.link ? [" ", h("a", { href: lc.link }, "Use the successor →")] : null);
}

// kindLabel names a method kind for people.
export function kindLabel(kind) {
  return { unary: "unary", server_stream: "server stream", client_stream: "client stream", bidi_stream: "bidi stream" }[kind] || kind || "unary";
}

// copyButton copies text to the clipboard (or selects target's text when
// the clipboard is not available, outside a secure context).
export function copyButton(text, target) {
  const b = h("button", { type: "button", class: "copy", title: "Copy to the clipboard" }, "Copy");
  b.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(typeof text === "function" ? text() : text);
      b.textContent = "Copied";
    } catch {
      if (target) getSelection().selectAllChildren(target);
      b.textContent = "Press Ctrl+C";
    }
    setTimeout(() => (b.textContent = "Copy"), 1500);
  });
  return b;
}

// codeBlock is a labeled, copyable <pre>.
export function codeBlock(label, code, cls = "") {
  const pre = h("pre", { class: "code " + cls }, h("code", {}, code));
  return h("div", { class: "codeblock" },
    h("div", { class: "codeblock-head" }, h("span", {}, label), copyButton(code, pre)), pre);
}

// errorBox shows a failure.
export function errorBox(err) {
  return h("div", { class: "banner error", role: "alert" }, h("strong", {}, "Error: "), String(err && err.message ? err.message : err));
}

// table builds a <table> from column headers and rows of cells; a column
// header starting with "#" is numeric (right-aligned), the "#" dropped.
export function table(headers, rows, opts = {}) {
  const num = headers.map((x) => x.startsWith("#"));
  return h("table", { class: "data " + (opts.class || "") },
    h("thead", {}, h("tr", {}, headers.map((x, i) => h("th", { class: num[i] ? "num" : null }, num[i] ? x.slice(1) : x)))),
    h("tbody", {}, rows.map((r) => h("tr", { class: r.class || null },
      (r.cells || r).map((c, i) => h("td", { class: num[i] ? "num" : null }, c))))),
    opts.foot ? h("tfoot", {}, h("tr", {}, opts.foot.map((c, i) => h("td", { class: num[i] ? "num" : null }, c)))) : null);
}
