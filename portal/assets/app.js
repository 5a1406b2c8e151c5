// app.js: the portal's single page. Hash routes:
//
//   #/                 the catalog of APIs
//   #/api/<name>[/<v>] one API, one version at a time: methods, examples,
//                      consoles, and the REST reference (swagger-ui)
//   #/signin           sign in with an API key or a JWT
//   #/me               the signed-in consumer: keys, plan, quota, usage
//   #/analytics        the operator's analytics (admin token)
//
// Plain ES modules, no framework and no build step; the libraries are
// vendored (vendor/, see portal/web/vendor.sh).

import { analyticsPage } from "./analytics.js";
import { mePage, signinPage } from "./account.js";
import { authHeaders, catalog, config, credential } from "./api.js";
import { consoleFor } from "./console.js";
import { append, codeBlock, errorBox, h, kindLabel, lifecycleBadge, lifecycleNote, paragraphs } from "./dom.js";
import { authDescriptions, curlConnectExample, curlHTTPExample, curlRESTExample, grpcurlExample, keyHeader, requestExample, wsBase } from "./examples.js";

const routes = [
  [/^#?\/?$/, catalogPage, "catalog"],
  [/^#\/api\/([^/]+)(?:\/([^/]+))?\/?$/, apiPage, "catalog"],
  [/^#\/signin\/?$/, signinPage, "me"],
  [/^#\/me\/?$/, mePage, "me"],
  [/^#\/analytics\/?$/, analyticsPage, "analytics"],
];

// ctx is what pages share: cleanup functions run when the page is left
// (charts, sockets), state kept across re-renders, and navigation.
const ctx = {
  cleanup: [],
  state: {},
  navigate(hash) {
    if (location.hash === hash) render();
    else location.hash = hash;
  },
  rerender() {
    render();
  },
};

let generation = 0;

// render draws the page of the current hash into <main>.
async function render() {
  const gen = ++generation;
  for (const fn of ctx.cleanup.splice(0)) {
    try {
      fn();
    } catch { /* already gone */ }
  }
  const main = document.getElementById("main");
  const hash = location.hash || "#/";
  let route = null;
  let args = [];
  for (const [re, page, nav] of routes) {
    const m = hash.match(re);
    if (m) {
      route = { page, nav };
      args = m.slice(1).map((x) => (x == null ? x : decodeURIComponent(x)));
      break;
    }
  }
  updateNav(route ? route.nav : "");
  const view = h("div", { class: "view", dataset: { route: route ? route.nav : "none" } });
  main.replaceChildren(view);
  if (!route) {
    view.append(h("h1", {}, "Not found"), h("p", {}, "No page at ", h("code", {}, hash), ". ", h("a", { href: "#/" }, "See every API")));
    return;
  }
  view.setAttribute("aria-busy", "true");
  try {
    await route.page(view, args, ctx);
  } catch (err) {
    if (gen === generation) view.append(errorBox(err));
  } finally {
    view.removeAttribute("aria-busy");
    if (gen === generation) view.dataset.ready = "true";
  }
}

// updateNav marks the current section and names the account link.
function updateNav(active) {
  for (const a of document.querySelectorAll("[data-nav]")) {
    a.classList.toggle("active", a.dataset.nav === active);
  }
  const meLink = document.getElementById("nav-me");
  meLink.textContent = credential() ? "My account" : "Sign in";
  meLink.setAttribute("href", credential() ? "#/me" : "#/signin");
}

// catalogPage lists every API with its versions side by side.
async function catalogPage(view) {
  const [cfg, cat] = await Promise.all([config(), catalog(true)]);
  const filter = h("input", { type: "search", id: "catalog-filter", placeholder: "Filter APIs and methods…", "aria-label": "Filter APIs" });
  const grid = h("div", { class: "catalog" });
  view.append(
    h("section", { class: "hero" },
      h("h1", {}, cfg.title),
      h("p", { class: "lead" }, "Every API of this gateway: read the docs, try calls (streams too) from your browser, and ",
        h("a", { href: credential() ? "#/me" : "#/signin" }, credential() ? "see your keys and usage" : "sign in"), " to use your key."),
      filter),
    grid);
  const cards = cat.apis.map((api) => [api, apiCard(api)]);
  grid.append(...cards.map(([, c]) => c));
  if (!cards.length) grid.append(h("p", { class: "empty" }, "No API is published yet."));
  filter.addEventListener("input", () => {
    const q = filter.value.trim().toLowerCase();
    for (const [api, card] of cards) {
      const text = [api.name, api.title, api.description, ...api.versions.flatMap((v) => [v.service, ...v.methods.map((m) => m.name)])].join(" ").toLowerCase();
      card.hidden = q !== "" && !text.includes(q);
    }
  });
}

// apiCard is one API in the catalog.
function apiCard(api) {
  const href = `#/api/${encodeURIComponent(api.name)}`;
  return h("article", { class: "card api-card", dataset: { api: api.name } },
    h("h2", {}, h("a", { href }, api.title || api.name), " ", h("code", { class: "muted small" }, api.name)),
    paragraphs(api.description),
    h("div", { class: "versions" }, api.versions.map((v) => {
      const streams = v.methods.filter((m) => (m.kind || "").endsWith("_stream")).length;
      return h("a", {
        class: "version" + (v.retired ? " is-retired" : v.deprecated ? " is-deprecated" : ""),
        href: `${href}/${encodeURIComponent(v.version)}`,
        dataset: { version: v.version },
      },
      h("div", { class: "version-head" }, h("strong", {}, v.version || v.service), lifecycleBadge("retired", v.retired) || lifecycleBadge("deprecated", v.deprecated)),
      h("code", { class: "small" }, v.service),
      h("span", { class: "muted small" }, `${v.methods.length} method${v.methods.length === 1 ? "" : "s"}` + (streams ? ` · ${streams} streaming` : "")));
    })));
}

// defaultVersion picks the version an API page opens on: the newest that
// is neither deprecated nor retired, else the newest not retired, else the
// last.
function defaultVersion(api) {
  const vs = api.versions;
  return [...vs].reverse().find((v) => !v.deprecated && !v.retired) ||
    [...vs].reverse().find((v) => !v.retired) || vs[vs.length - 1];
}

// apiPage shows one API: version tabs, then the chosen version's methods
// and REST reference.
async function apiPage(view, [name, version]) {
  const cat = await catalog();
  const api = cat.apis.find((a) => a.name === name);
  if (!api) {
    view.append(h("h1", {}, "No such API"), h("p", {}, "The catalog has no API ", h("code", {}, name), ". ", h("a", { href: "#/" }, "See every API")));
    return;
  }
  const v = version ? api.versions.find((x) => x.version === version) : defaultVersion(api);
  append(view, [
    h("nav", { class: "crumbs" }, h("a", { href: "#/" }, "APIs"), " / ", api.title || api.name),
    h("h1", {}, api.title || api.name),
    paragraphs(api.description),
    h("div", { class: "tabs", role: "tablist" }, api.versions.map((x) => h("a", {
      role: "tab",
      class: "tab" + (x === v ? " active" : ""),
      "aria-selected": x === v ? "true" : "false",
      href: `#/api/${encodeURIComponent(api.name)}/${encodeURIComponent(x.version)}`,
      dataset: { version: x.version },
    }, x.version || x.service, x.retired ? h("span", { class: "dot retired", title: "retired" }) : x.deprecated ? h("span", { class: "dot deprecated", title: "deprecated" }) : null)))]);
  if (!v) {
    view.append(h("p", {}, "No version ", h("code", {}, version), " of this API."));
    return;
  }
  view.append(versionSection(api, v));
}

// versionSection is one version: lifecycle, methods, REST reference.
function versionSection(api, v) {
  const plain = v.methods.length > 0 && v.methods.every((m) => m.kind === "http");
  const ref = h("div", { class: "swagger", id: "swagger" }, h("p", { class: "muted" }, "Loading the OpenAPI document…"));
  const sec = h("section", { class: "version-page", dataset: { service: v.service } },
    lifecycleNote("retired", v.retired, `${v.version || v.service}`) || lifecycleNote("deprecated", v.deprecated, `${v.version || v.service}`),
    paragraphs(v.description),
    h("dl", { class: "meta" },
      h("div", {}, h("dt", {}, plain ? "Plain HTTP service" : "gRPC service"), h("dd", {}, h("code", {}, v.service))),
      v.upstream ? h("div", {}, h("dt", {}, "Upstream"), h("dd", {}, v.upstream)) : null,
      h("div", {}, h("dt", {}, "OpenAPI"), h("dd", {}, h("a", { href: "api/openapi/" + encodeURIComponent(v.service) }, "JSON document")))),
    h("h2", {}, plain ? "Routes" : "Methods"),
    h("div", { class: "methods" }, v.methods.map((m) => methodCard(v, m))),
    h("h2", {}, "REST reference"),
    h("p", { class: "muted" }, "Unary REST calls can be tried here (", h("strong", {}, "Try it out"), "); they go to this gateway with your signed-in credential. Streams are easier to watch in the method consoles above."),
    ref);
  renderSwagger(ref, v);
  return sec;
}

// methodCard is one method: kind, lifecycle, how to authenticate,
// endpoints, examples and a console.
function methodCard(v, m) {
  if (m.kind === "http") return routeCard(v, m);
  const msg = requestExample(m);
  const lc = m.retired ? lifecycleBadge("retired", m.retired) : lifecycleBadge("deprecated", m.deprecated || v.deprecated);
  const examples = [codeBlock("grpcurl", grpcurlExample(m, msg))];
  for (const b of m.http) examples.push(codeBlock(`curl · REST ${b.method.toUpperCase()} ${b.path}`, curlRESTExample(m, b, msg)));
  if (!m.kind || m.kind === "unary") examples.push(codeBlock("curl · Connect", curlConnectExample(m, msg)));
  const endpoints = [
    ["gRPC, gRPC-Web", m.full_name],
    ...m.http.map((b) => ["REST", `${b.method.toUpperCase()} ${b.path}` + (b.body ? `  (body: ${b.body})` : "")]),
    ["Connect", (!m.kind || m.kind === "unary" ? "POST " : "POST (streaming) ") + m.full_name],
    ["WebSocket", wsBase() + m.full_name],
  ];
  const body = h("div", { class: "method-body" });
  let built = false;
  const card = h("details", { class: "method" + (m.retired ? " is-retired" : ""), dataset: { method: m.full_name, kind: m.kind || "unary" } },
    h("summary", {},
      h("span", { class: "method-name" }, m.name),
      h("span", { class: "kind " + (m.kind || "unary") }, kindLabel(m.kind)),
      m.http.slice(0, 1).map((b) => h("code", { class: "binding" }, `${b.method.toUpperCase()} ${b.path}`)),
      lc,
      h("span", { class: "summary-desc" }, (m.description || "").split("\n")[0])),
    body);
  // Build the body when first opened: a page with many methods stays light.
  card.addEventListener("toggle", () => {
    if (!card.open || built) return;
    built = true;
    append(body, [
      paragraphs(m.description),
      m.retired ? lifecycleNote("retired", m.retired, m.name) : lifecycleNote("deprecated", m.deprecated, m.name),
      h("div", { class: "grid two" },
        h("div", {}, h("h4", {}, "Authentication"), h("ul", { class: "auth" }, authDescriptions(m).map((d) => h("li", {}, d)))),
        h("div", {}, h("h4", {}, "Endpoints"), h("ul", { class: "endpoints" }, endpoints.map(([k, e]) => h("li", {}, h("span", { class: "muted" }, k + ": "), h("code", {}, e)))))),
      h("h4", {}, "Examples"),
      h("div", { class: "examples" }, examples),
      h("h4", {}, m.kind === "server_stream" || m.kind === "bidi_stream" || m.kind === "client_stream" ? "Try the stream" : "Try it"),
      consoleFor(m, ctx.cleanup)]);
  });
  return card;
}

// routeCard is one uri route of a plain HTTP upstream: its HTTP
// methods, how to authenticate and a curl example per method; it is
// tried in the OpenAPI section (no gRPC shapes, no console).
function routeCard(v, m) {
  const lc = m.retired ? lifecycleBadge("retired", m.retired) : lifecycleBadge("deprecated", m.deprecated || v.deprecated);
  const path = m.full_name.endsWith("/*") ? m.full_name.slice(0, -1) + "…" : m.full_name;
  const examples = (m.http || []).map((b) => codeBlock(`curl · ${b.method}`, curlHTTPExample(m, b.method)));
  const card = h("details", { class: "method" + (m.retired ? " is-retired" : ""), dataset: { method: m.full_name, kind: "http" } },
    h("summary", {},
      h("span", { class: "method-name" }, m.name),
      h("span", { class: "kind http" }, "HTTP"),
      h("code", { class: "binding" }, (m.http || []).map((b) => b.method).join(", ")),
      lc),
    h("div", { class: "method-body" },
      m.retired ? lifecycleNote("retired", m.retired, m.name) : lifecycleNote("deprecated", m.deprecated, m.name),
      h("div", { class: "grid two" },
        h("div", {}, h("h4", {}, "Authentication"), h("ul", { class: "auth" }, authDescriptions(m).map((d) => h("li", {}, d)))),
        h("div", {}, h("h4", {}, "Endpoint"), h("ul", { class: "endpoints" }, h("li", {}, h("code", {}, location.origin + path))))),
      h("h4", {}, "Examples"),
      h("div", { class: "examples" }, examples),
      h("p", { class: "muted" }, "Try it in the OpenAPI section below.")));
  return card;
}

let swaggerP = null;

// loadSwagger loads swagger-ui's bundle and stylesheet once, on the first
// API page (1.7 MB the catalog does not need).
function loadSwagger() {
  if (window.SwaggerUIBundle) return Promise.resolve();
  swaggerP ??= new Promise((resolve, reject) => {
    document.head.append(h("link", { rel: "stylesheet", href: "vendor/swagger-ui.css" }));
    const s = h("script", { src: "vendor/swagger-ui-bundle.js" });
    s.addEventListener("load", resolve);
    s.addEventListener("error", () => {
      swaggerP = null;
      reject(new Error("could not load swagger-ui"));
    });
    document.head.append(s);
  });
  return swaggerP;
}

// renderSwagger renders the version's OpenAPI document (GET
// api/openapi/<service>) with swagger-ui. Requests it sends to this origin
// carry the signed-in credential; a document without servers is pointed
// at this origin.
async function renderSwagger(el, v) {
  let spec;
  try {
    const res = await fetch("api/openapi/" + encodeURIComponent(v.service), { headers: { Accept: "application/json" } });
    if (res.status === 404) {
      el.replaceChildren(h("p", { class: "muted" }, "No REST reference for this version."));
      return;
    }
    if (!res.ok) throw new Error(`OpenAPI document: HTTP ${res.status}`);
    spec = await res.json();
    await loadSwagger();
  } catch (err) {
    el.replaceChildren(errorBox(err));
    return;
  }
  if (!Array.isArray(spec.servers) || !spec.servers.length) spec.servers = [{ url: location.origin }];
  const keyAuth = v.methods.find((m) => (m.auth || []).includes("key-auth"));
  const header = keyAuth ? keyHeader(keyAuth) : "X-API-Key";
  el.replaceChildren();
  window.SwaggerUIBundle({
    domNode: el,
    spec,
    deepLinking: false,
    validatorUrl: null,
    displayRequestDuration: true,
    defaultModelsExpandDepth: 0,
    docExpansion: "list",
    requestInterceptor: (req) => {
      // Only this gateway gets the credential, never another server the
      // document may list.
      let sameOrigin = false;
      try {
        sameOrigin = new URL(req.url, location.href).origin === location.origin;
      } catch { /* not a URL */ }
      const has = (name) => Object.keys(req.headers || {}).some((k) => k.toLowerCase() === name.toLowerCase());
      if (sameOrigin && credential()) {
        const [k, val] = Object.entries(authHeaders(credential(), header))[0];
        if (!has(k)) req.headers[k] = val;
      }
      return req;
    },
  });
}

async function start() {
  try {
    const cfg = await config();
    document.title = cfg.title;
    document.getElementById("brand").textContent = cfg.title;
  } catch (err) {
    document.getElementById("main").replaceChildren(errorBox(err));
    return;
  }
  window.addEventListener("hashchange", render);
  render();
}

start();
