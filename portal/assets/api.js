// api.js: the portal's JSON API (api/… relative to the page) and the
// credentials the browser keeps in sessionStorage (gone when the tab
// closes): the developer's API key or JWT, and the operator's admin token.

const CRED_KEY = "rosetta.portal.credential";
const ADMIN_KEY = "rosetta.portal.admin";

// credential returns the signed-in credential, {api_key} or {jwt}, or null.
export function credential() {
  try {
    const c = JSON.parse(sessionStorage.getItem(CRED_KEY));
    return c && (c.api_key || c.jwt) ? c : null;
  } catch {
    return null;
  }
}

// setCredential keeps cred ({api_key} or {jwt}); null forgets it.
export function setCredential(cred) {
  if (cred) sessionStorage.setItem(CRED_KEY, JSON.stringify(cred));
  else sessionStorage.removeItem(CRED_KEY);
}

// adminToken returns the operator's admin token, or "".
export function adminToken() {
  return sessionStorage.getItem(ADMIN_KEY) || "";
}

// setAdminToken keeps the admin token; "" forgets it.
export function setAdminToken(t) {
  if (t) sessionStorage.setItem(ADMIN_KEY, t);
  else sessionStorage.removeItem(ADMIN_KEY);
}

// authHeaders are the headers that carry cred to the gateway: the key in
// keyHeader (key-auth's header, X-API-Key by default) or the JWT as a
// bearer token.
export function authHeaders(cred = credential(), keyHeader = "X-API-Key") {
  if (!cred) return {};
  if (cred.api_key) return { [keyHeader || "X-API-Key"]: cred.api_key };
  return { Authorization: "Bearer " + cred.jwt };
}

// APIError is a failed portal API call; status is the HTTP status.
export class APIError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// call sends one portal API request and returns the decoded JSON answer,
// or throws an APIError with the answer's {"error"} message.
export async function call(path, { method = "GET", body, headers = {} } = {}) {
  const init = { method, headers: { Accept: "application/json", ...headers } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch("api/" + path, init);
  const text = await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = { error: text };
    }
  }
  if (!res.ok) throw new APIError(res.status, (data && data.error) || `HTTP ${res.status}`);
  return data;
}

// me calls an api/me… path with the signed-in credential.
export function me(path, opts = {}) {
  return call(path, { ...opts, headers: { ...authHeaders(), ...(opts.headers || {}) } });
}

// admin calls an operator path with the admin token, or without one
// when none was given (a gateway without an admin token answers loopback
// clients).
export function admin(path) {
  const token = adminToken();
  return call(path, { headers: token ? { Authorization: "Bearer " + token } : {} });
}

let configP, catalogP;

// config returns {title, self_service}, fetched once per page load.
export function config() {
  configP ??= call("config").catch((e) => {
    configP = null;
    throw e;
  });
  return configP;
}

// catalog returns the catalog, fetched once per page load (refresh
// fetches it again).
export function catalog(refresh = false) {
  if (refresh) catalogP = null;
  catalogP ??= call("catalog").then((c) => normalizeCatalog(c)).catch((e) => {
    catalogP = null;
    throw e;
  });
  return catalogP;
}

// normalizeCatalog fills missing lists so pages need not check them.
function normalizeCatalog(c) {
  c = c || {};
  c.apis = (c.apis || []).map((a) => ({
    ...a,
    versions: (a.versions || []).map((v) => ({
      ...v,
      methods: (v.methods || []).map((m) => ({ ...m, http: m.http || [], auth: m.auth || [] })),
    })),
  }));
  return c;
}
