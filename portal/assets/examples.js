// examples.js: the copy-paste examples of a method (grpcurl, curl over
// REST, curl over Connect) and the REST request a message maps to, built
// from the catalog and the page's location.

import { credential } from "./api.js";

// requestExample returns the method's JSON request skeleton as an object.
export function requestExample(m) {
  const ex = m.request_example;
  if (ex == null) return {};
  if (typeof ex === "string") {
    try {
      return JSON.parse(ex);
    } catch {
      return {};
    }
  }
  return structuredClone(ex);
}

// shq quotes s for a POSIX shell.
export function shq(s) {
  return "'" + String(s).replace(/'/g, `'\\''`) + "'";
}

// grpcTarget is the gateway's host:port as grpcurl wants it.
export function grpcTarget() {
  const port = location.port || (location.protocol === "https:" ? "443" : "80");
  return location.hostname + ":" + port;
}

// wsBase is the WebSocket origin of the page: ws://host or wss://host.
export function wsBase() {
  return (location.protocol === "https:" ? "wss://" : "ws://") + location.host;
}

// keyHeader is the header key-auth reads for m.
export function keyHeader(m) {
  return m.auth_header || "X-API-Key";
}

// authScheme picks how examples and consoles authenticate m: "key",
// "jwt" or "" (anonymous). The signed-in credential's kind wins when the
// method accepts it.
export function authScheme(m) {
  const auth = m.auth || [];
  const hasKey = auth.includes("key-auth");
  const hasJWT = auth.includes("jwt-auth");
  const cred = credential();
  if (cred && cred.jwt && hasJWT) return "jwt";
  if (cred && cred.api_key && hasKey) return "key";
  return hasKey ? "key" : hasJWT ? "jwt" : "";
}

// authDescriptions says, per plugin of m, how to authenticate.
export function authDescriptions(m) {
  const auth = m.auth || [];
  if (!auth.length) return ["None: anonymous calls are accepted."];
  const lines = auth.map((p) => {
    if (p === "key-auth") {
      return `API key in the ${keyHeader(m)} header` +
        (m.auth_query ? ` (or the ${m.auth_query} query parameter)` : "") + ".";
    }
    if (p === "jwt-auth") return "JWT in the Authorization: Bearer <token> header (WebSocket: the rosetta.bearer.<token> subprotocol).";
    return `${p} plugin.`;
  });
  if (m.auth_optional) lines.push("Optional: calls without a credential are accepted anonymously (not counted as yours).");
  return lines;
}

// exampleHeaders are the auth headers examples send, with shell variables
// ($API_KEY, $JWT) in place of secrets.
function exampleHeaders(m) {
  switch (authScheme(m)) {
    case "key": return [`${keyHeader(m)}: $API_KEY`];
    case "jwt": return ["Authorization: Bearer $JWT"];
  }
  return [];
}

// compactJSON writes msg on one line.
function compactJSON(msg) {
  return JSON.stringify(msg ?? {});
}

// grpcurlExample is a grpcurl command calling m with msg.
export function grpcurlExample(m, msg) {
  const parts = ["grpcurl"];
  if (location.protocol !== "https:") parts.push("-plaintext");
  for (const hd of exampleHeaders(m)) parts.push(`-H "${hd}"`);
  parts.push("-d " + shq(compactJSON(msg)), grpcTarget(), m.full_name.replace(/^\//, ""));
  return parts.join(" \\\n  ");
}

// curlConnectExample is a curl command calling unary m over Connect.
export function curlConnectExample(m, msg) {
  const parts = ["curl", "-H 'Content-Type: application/json'"];
  for (const hd of exampleHeaders(m)) parts.push(`-H "${hd}"`);
  parts.push("-d " + shq(compactJSON(msg)), shq(location.origin + m.full_name));
  return parts.join(" \\\n  ");
}

// curlRESTExample is a curl command calling m through binding b.
export function curlRESTExample(m, b, msg) {
  const req = restRequest(b, msg, { placeholders: true });
  const parts = ["curl"];
  if (m.kind === "server_stream" || m.kind === "bidi_stream") parts.push("-N");
  if (req.method !== "GET") parts.push("-X " + req.method);
  for (const hd of exampleHeaders(m)) parts.push(`-H "${hd}"`);
  if (req.body !== undefined) {
    parts.push("-H 'Content-Type: application/json'", "-d " + shq(compactJSON(req.body)));
  }
  parts.push(shq(location.origin + req.url));
  return parts.join(" \\\n  ");
}

// curlHTTPExample is a curl command calling a plain HTTP route m with
// method (a prefix route "/web/*" shows "/web/…" as "/web/example").
export function curlHTTPExample(m, method) {
  const path = m.full_name.endsWith("/*") ? m.full_name.slice(0, -1) + "example" : m.full_name;
  const parts = ["curl"];
  if (method !== "GET") parts.push("-X " + method);
  for (const hd of exampleHeaders(m)) parts.push(`-H "${hd}"`);
  if (method === "POST" || method === "PUT" || method === "PATCH") parts.push("-H 'Content-Type: application/json'", "-d '{}'");
  parts.push(shq(location.origin + path));
  return parts.join(" \\\n  ");
}

// templateVar matches a path variable: {name} or {name=pattern}.
const templateVar = /\{([^}=]+)(?:=([^}]*))?\}/g;

// restRequest maps msg to an HTTP request through binding b (the
// google.api.http rules): path variables from their fields, the body per
// b.body ("*": the rest of the message; a field: that field), and the
// remaining set fields as query parameters (not with body "*"). It returns
// {method, url, body}; body is undefined when the binding has none. With
// placeholders, a variable whose field is empty shows as a sample value.
export function restRequest(b, msg, { placeholders = false } = {}) {
  const rest = structuredClone(msg ?? {});
  const path = b.path.replace(templateVar, (_, field, pattern) => {
    const v = getField(rest, field);
    deleteField(rest, field);
    if (isSet(v)) {
      return String(v).split("/").map(encodeURIComponent).join("/");
    }
    if (!placeholders) return "";
    if (pattern && pattern !== "*" && pattern !== "**") return pattern.replace(/\*\*?/g, "1");
    if (typeof v === "number" || /^\d+$/.test(String(v ?? ""))) return "1";
    return field.split(".").pop().toUpperCase();
  });
  let body;
  if (b.body === "*") {
    body = rest;
  } else if (b.body) {
    body = getField(rest, b.body) ?? {};
    deleteField(rest, b.body);
  }
  let query = "";
  if (b.body !== "*") {
    const q = new URLSearchParams();
    flattenQuery(rest, "", q);
    query = q.toString();
  }
  return { method: (b.method || "GET").toUpperCase(), url: path + (query ? "?" + query : ""), body };
}

// isSet reports whether a JSON value is worth sending (not a default).
function isSet(v) {
  if (v == null || v === "" || v === 0 || v === "0" || v === false) return false;
  if (Array.isArray(v)) return v.length > 0;
  if (typeof v === "object") return Object.keys(v).length > 0;
  return true;
}

// flattenQuery writes the set fields of obj as query parameters: nested
// messages as dotted names, repeated fields as repeated parameters.
function flattenQuery(obj, prefix, q) {
  for (const [k, v] of Object.entries(obj || {})) {
    const name = prefix + k;
    if (!isSet(v)) continue;
    if (Array.isArray(v)) {
      for (const x of v) if (typeof x !== "object") q.append(name, String(x));
    } else if (typeof v === "object") {
      flattenQuery(v, name + ".", q);
    } else {
      q.append(name, String(v));
    }
  }
}

function getField(obj, dotted) {
  let v = obj;
  for (const part of dotted.split(".")) {
    if (v == null || typeof v !== "object") return undefined;
    v = v[part] ?? v[camel(part)];
  }
  return v;
}

function deleteField(obj, dotted) {
  const parts = dotted.split(".");
  let v = obj;
  for (const part of parts.slice(0, -1)) {
    v = v?.[part] ?? v?.[camel(part)];
    if (v == null || typeof v !== "object") return;
  }
  const last = parts[parts.length - 1];
  delete v[last];
  delete v[camel(last)];
}

// camel is the proto3 JSON name of a proto field name.
function camel(s) {
  return s.replace(/_([a-z0-9])/g, (_, c) => c.toUpperCase());
}
