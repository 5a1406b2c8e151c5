// console.js: "try it live" consoles on the API page.
//
//   unary          POST <origin>/<pkg.Service>/<Method> (Connect, JSON)
//   server stream  over SSE: fetch of its REST binding with
//                  Accept: text/event-stream; without a REST binding, over
//                  the WebSocket bridge
//   client, bidi   over the WebSocket bridge: ws(s)://<host>/<pkg.Service>/<Method>
//                  with subprotocols ["rosetta.json.v1"] (+ "rosetta.bearer.<jwt>")
//
// Credentials: a JWT goes as Authorization: Bearer (fetch) or as the
// rosetta.bearer.<jwt> subprotocol (WebSocket); an API key goes in
// key-auth's header (fetch) or its query parameter (WebSocket, when the
// method's key-auth reads one: browsers cannot set WebSocket headers).

import { authHeaders, credential } from "./api.js";
import { h } from "./dom.js";
import { keyHeader, requestExample, restRequest, wsBase } from "./examples.js";

// consoleFor returns the console of method m, or null.
export function consoleFor(m, cleanup) {
  switch (m.kind) {
    case "server_stream": return serverStreamConsole(m, cleanup);
    case "client_stream":
    case "bidi_stream": return socketConsole(m, cleanup);
    default: return unaryConsole(m);
  }
}

// fetchHeaders are the auth headers for m's fetch calls.
function fetchHeaders(m) {
  return authHeaders(credential(), keyHeader(m));
}

// socketTarget returns the WebSocket URL and subprotocols for m with the
// signed-in credential, and a note when the credential cannot be sent.
export function socketTarget(m) {
  let url = wsBase() + m.full_name;
  const protocols = ["rosetta.json.v1"];
  const cred = credential();
  let note = "";
  if (cred && cred.jwt) {
    protocols.push("rosetta.bearer." + cred.jwt);
  } else if (cred && cred.api_key) {
    if (m.auth_query) {
      url += "?" + encodeURIComponent(m.auth_query) + "=" + encodeURIComponent(cred.api_key);
    } else if ((m.auth || []).includes("key-auth")) {
      note = (m.auth_optional ? "This call is anonymous: " : "") + `Your API key cannot be sent from a browser WebSocket: browsers cannot set the ${keyHeader(m)} header, and this method's key-auth reads no query parameter. Sign in with a JWT, or use grpcurl.`;
    }
  } else if ((m.auth || []).length && !m.auth_optional) {
    note = "Sign in first: this method needs a credential.";
  }
  return { url, protocols, note };
}

// editor is the JSON request textarea, prefilled with the example.
function editor(m, label = "Request message (JSON)") {
  const ta = h("textarea", { class: "json", rows: 5, spellcheck: "false", "aria-label": label });
  ta.value = JSON.stringify(requestExample(m), null, 2);
  return ta;
}

// readMessage reads the editor's message; when it is not JSON it shows
// why in status and returns undefined.
function readMessage(ta, status) {
  try {
    return JSON.parse(ta.value || "{}");
  } catch (e) {
    status.set("The message is not valid JSON: " + e.message, "bad");
    return undefined;
  }
}

// logView is a list of console lines, newest last.
function logView() {
  const list = h("ol", { class: "log", "aria-live": "polite" });
  list.add = (dir, text, cls = "") => {
    let body = text;
    try {
      body = JSON.stringify(JSON.parse(text), null, 2);
    } catch { /* not JSON: as is */ }
    const li = h("li", { class: "frame " + cls }, h("span", { class: "dir" }, dir), h("pre", {}, body));
    list.append(li);
    li.scrollIntoView({ block: "nearest" });
    return li;
  };
  return list;
}

function statusLine() {
  const s = h("span", { class: "console-status" }, "idle");
  s.set = (text, cls = "") => {
    s.textContent = text;
    s.className = "console-status " + cls;
  };
  return s;
}

// unaryConsole sends one message over Connect's unary JSON protocol.
function unaryConsole(m) {
  const ta = editor(m);
  const log = logView();
  const status = statusLine();
  const send = h("button", { type: "button", class: "primary", dataset: { action: "send" } }, "Send");
  send.addEventListener("click", async () => {
    const msg = readMessage(ta, status);
    if (msg === undefined) return;
    status.set("sending…");
    log.replaceChildren();
    log.add("→", JSON.stringify(msg), "sent");
    try {
      const res = await fetch(m.full_name, {
        method: "POST",
        headers: { "Content-Type": "application/json", ...fetchHeaders(m) },
        body: JSON.stringify(msg),
      });
      log.add("←", (await res.text()) || "(empty body)", res.ok ? "received" : "status bad");
      status.set(`HTTP ${res.status}`, res.ok ? "ok" : "bad");
    } catch (e) {
      status.set("network error: " + e.message, "bad");
    }
  });
  return h("div", { class: "console", dataset: { console: "unary" } },
    h("p", { class: "hint" }, "Calls the method over Connect: ", h("code", {}, "POST " + m.full_name), " with a JSON body."),
    ta, h("div", { class: "console-bar" }, send, status), log);
}

// serverStreamConsole streams one call's responses as they arrive: over
// SSE when the method has a REST binding, else over the WebSocket bridge.
function serverStreamConsole(m, cleanup) {
  const binding = m.http.find((b) => b.method.toUpperCase() === "GET") || m.http[0];
  const ta = editor(m);
  const log = logView();
  const status = statusLine();
  const start = h("button", { type: "button", class: "primary", dataset: { action: "start" } }, "Start");
  const stop = h("button", { type: "button", disabled: true, dataset: { action: "stop" } }, "Stop");
  let abort = null;
  const finish = (text, cls) => {
    status.set(text, cls);
    start.disabled = false;
    stop.disabled = true;
    abort = null;
  };
  stop.addEventListener("click", () => abort && abort());
  cleanup.push(() => abort && abort());

  start.addEventListener("click", () => {
    const msg = readMessage(ta, status);
    if (msg === undefined) return;
    log.replaceChildren();
    start.disabled = true;
    stop.disabled = false;
    if (binding) abort = runSSE(m, binding, msg, log, status, finish);
    else abort = runSocket(m, msg, log, status, finish);
  });
  const how = binding
    ? ["Streams over Server-Sent Events: ", h("code", {}, binding.method.toUpperCase() + " " + binding.path), " with ", h("code", {}, "Accept: text/event-stream"), "."]
    : ["Streams over the WebSocket bridge: ", h("code", {}, wsBase() + m.full_name), "."];
  const note = binding ? "" : socketTarget(m).note;
  return h("div", { class: "console", dataset: { console: binding ? "sse" : "websocket" } },
    h("p", { class: "hint" }, how),
    note ? h("p", { class: "banner deprecated" }, note) : null,
    ta, h("div", { class: "console-bar" }, start, stop, status), log);
}

// runSSE calls binding with msg and Accept: text/event-stream and shows
// each event as it arrives; it returns the function that stops it.
function runSSE(m, binding, msg, log, status, finish) {
  const req = restRequest(binding, msg);
  const ctl = new AbortController();
  const headers = { Accept: "text/event-stream", ...fetchHeaders(m) };
  const init = { method: req.method, headers, signal: ctl.signal };
  if (req.body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(req.body);
  }
  log.add("→", `${req.method} ${req.url}`, "sent");
  status.set("connecting…");
  let ended = false;
  (async () => {
    try {
      const res = await fetch(req.url, init);
      if (!res.ok) {
        log.add("←", (await res.text()) || `HTTP ${res.status}`, "status bad");
        finish(`HTTP ${res.status}`, "bad");
        return;
      }
      status.set("streaming", "live");
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let i;
        while ((i = buf.search(/\r?\n\r?\n/)) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(buf.slice(i).match(/^\r?\n\r?\n/)[0].length + i);
          const ev = parseEvent(block);
          if (!ev) continue;
          if (ev.event === "end") {
            ended = true;
            log.add("■", "end of stream", "status ok");
          } else if (ev.event === "error") {
            ended = true;
            log.add("✕ error", ev.data, "status bad");
          } else {
            log.add("← " + (ev.id ? "#" + ev.id : ev.event), ev.data, "received");
          }
        }
      }
      finish(ended ? "ended" : "closed", ended ? "ok" : "");
    } catch (e) {
      if (e.name === "AbortError") finish("stopped", "");
      else finish("network error: " + e.message, "bad");
    }
  })();
  return () => ctl.abort();
}

// parseEvent reads one SSE event block; null for comments only.
function parseEvent(block) {
  const ev = { event: "message", data: [], id: "" };
  let any = false;
  for (const line of block.split(/\r?\n/)) {
    if (!line || line.startsWith(":")) continue;
    const i = line.indexOf(":");
    const field = i < 0 ? line : line.slice(0, i);
    const value = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
    if (field === "data") ev.data.push(value);
    else if (field === "event") ev.event = value;
    else if (field === "id") ev.id = value;
    else continue;
    any = true;
  }
  if (!any) return null;
  ev.data = ev.data.join("\n");
  return ev;
}

// runSocket opens the bridge, sends msg (the gateway half-closes after a
// server-streaming method's one message) and shows every frame.
function runSocket(m, msg, log, status, finish) {
  const t = socketTarget(m);
  const ws = openSocket(t, log, status, (code, reason, ok) => finish(closeText(code, reason), ok ? "ok" : "bad"));
  ws.addEventListener("open", () => {
    const text = JSON.stringify(msg);
    ws.send(text);
    log.add("→", text, "sent");
  });
  return () => ws.close(1000);
}

// openSocket opens the WebSocket of target t and logs what it receives;
// done(code, reason, ok) runs once it closes.
function openSocket(t, log, status, done) {
  status.set("connecting…");
  const ws = new WebSocket(t.url, t.protocols);
  let statusOK = null;
  ws.addEventListener("open", () => status.set("open · " + ws.protocol, "live"));
  ws.addEventListener("message", (e) => {
    const text = typeof e.data === "string" ? e.data : "(binary frame)";
    let frame = null;
    try {
      frame = JSON.parse(text);
    } catch { /* shown as is */ }
    if (frame && typeof frame === "object" && "@status" in frame) {
      statusOK = !frame["@status"] || !frame["@status"].code;
      log.add("■ @status", text, "status " + (statusOK ? "ok" : "bad"));
    } else {
      log.add("←", text, "received");
    }
  });
  ws.addEventListener("close", (e) => done(e.code, e.reason, statusOK ?? e.code === 1000));
  return ws;
}

function closeText(code, reason) {
  return `closed ${code}${reason ? ": " + reason : ""}`;
}

// socketConsole is the client- and bidi-streaming console: connect, send
// messages typed as JSON, half-close with {"@close_send": true}, and watch
// the frames and the final @status frame.
function socketConsole(m, cleanup) {
  const ta = editor(m, "Message to send (JSON)");
  const log = logView();
  const status = statusLine();
  const connect = h("button", { type: "button", class: "primary", dataset: { action: "connect" } }, "Connect");
  const send = h("button", { type: "button", disabled: true, dataset: { action: "send" } }, "Send");
  const closeSend = h("button", { type: "button", disabled: true, title: 'Sends {"@close_send": true}', dataset: { action: "close-send" } }, "Close send");
  const disconnect = h("button", { type: "button", disabled: true, dataset: { action: "disconnect" } }, "Disconnect");
  let ws = null;
  const setOpen = (open) => {
    connect.disabled = open;
    send.disabled = closeSend.disabled = disconnect.disabled = !open;
  };
  cleanup.push(() => ws && ws.close(1000));

  connect.addEventListener("click", () => {
    log.replaceChildren();
    const t = socketTarget(m);
    log.add("→", `connect ${t.url.replace(/([?&][^=]+=)[^&]*/, "$1…")}  [${t.protocols.map((p) => p.startsWith("rosetta.bearer.") ? "rosetta.bearer.…" : p).join(", ")}]`, "sent");
    setOpen(true);
    ws = openSocket(t, log, status, (code, reason, ok) => {
      status.set(closeText(code, reason), ok ? "ok" : "bad");
      setOpen(false);
      ws = null;
    });
  });
  send.addEventListener("click", () => {
    const msg = readMessage(ta, status);
    if (msg === undefined) return;
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    const text = JSON.stringify(msg);
    ws.send(text);
    log.add("→", text, "sent");
  });
  closeSend.addEventListener("click", () => {
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    const text = JSON.stringify({ "@close_send": true });
    ws.send(text);
    log.add("→", text, "sent control");
    send.disabled = closeSend.disabled = true;
  });
  disconnect.addEventListener("click", () => ws && ws.close(1000));

  const note = socketTarget(m).note;
  return h("div", { class: "console", dataset: { console: "websocket" } },
    h("p", { class: "hint" }, "Opens the WebSocket bridge: ", h("code", {}, wsBase() + m.full_name),
      " (subprotocol ", h("code", {}, "rosetta.json.v1"), "). Each message is one frame; ",
      h("strong", {}, "Close send"), " half-closes with ", h("code", {}, '{"@close_send": true}'), "."),
    note ? h("p", { class: "banner deprecated" }, note) : null,
    ta, h("div", { class: "console-bar" }, connect, send, closeSend, disconnect, status), log);
}
