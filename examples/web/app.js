// Rosetta library demo: a chat over the gateway's WebSocket bridge and a
// live book list over Server-Sent Events. No framework, no build step.
//
// The gateway address comes from ?gateway=http://host:port (default
// http://127.0.0.1:8080).
"use strict";

const gateway = (new URLSearchParams(location.search).get("gateway") || "http://127.0.0.1:8080").replace(/\/$/, "");
const wsBase = gateway.replace(/^http/, "ws");
document.getElementById("gateway").textContent = "via " + gateway;

// ---- Chat: LibraryService.Chat (bidi) over WebSocket ------------------

const messages = document.getElementById("messages");
const chatStatus = document.getElementById("chat-status");
let chat = null;

function addMessage(text, cls) {
  const li = document.createElement("li");
  li.textContent = text;
  if (cls) li.className = cls;
  messages.appendChild(li);
  messages.scrollTop = messages.scrollHeight;
}

// openChat opens the socket. Each text frame is one ChatMessage as JSON;
// the last frame is {"@status": {...}} and the close code is 1000 or
// 4000 + the gRPC code.
function openChat() {
  const ws = new WebSocket(wsBase + "/v1/chat", ["rosetta.json.v1"]);
  ws.onopen = () => { chatStatus.textContent = "connected"; };
  ws.onmessage = (ev) => {
    const msg = JSON.parse(ev.data);
    if (msg["@status"]) {
      const st = msg["@status"];
      if (st.code !== 0) addMessage("error " + st.code + ": " + st.message, "status");
      return;
    }
    addMessage(msg.user + ": " + msg.text);
  };
  ws.onclose = (ev) => {
    chatStatus.textContent = "closed (" + ev.code + (ev.reason ? " " + ev.reason : "") + "); sending reconnects";
    chat = null;
  };
  ws.onerror = () => { chatStatus.textContent = "error"; };
  chat = ws;
  return ws;
}

function send(msg) {
  const ws = chat || openChat();
  const data = JSON.stringify(msg);
  if (ws.readyState === WebSocket.OPEN) {
    ws.send(data);
  } else {
    ws.addEventListener("open", () => ws.send(data), { once: true });
  }
}

document.getElementById("chat-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const text = document.getElementById("text");
  if (!text.value.trim()) return;
  const user = document.getElementById("user").value || "anonymous";
  addMessage(user + " (you): " + text.value, "status");
  send({ user: user, text: text.value });
  text.value = "";
});

openChat();

// ---- Books: LibraryService.WatchBooks (server stream) as SSE ----------

const books = document.getElementById("books");
const booksStatus = document.getElementById("books-status");
const rows = new Map(); // book name → <li>

// Each event's data is one BookEvent: {type, book}.
const source = new EventSource(gateway + "/v1/shelves/1/books:watch");
source.onopen = () => { booksStatus.textContent = "live"; };
source.onmessage = (ev) => {
  const event = JSON.parse(ev.data);
  const book = event.book || {};
  let li = rows.get(book.name);
  if (event.type === "TYPE_DELETED") {
    if (li) li.remove();
    rows.delete(book.name);
    return;
  }
  if (!li) {
    li = document.createElement("li");
    li.dataset.name = book.name;
    rows.set(book.name, li);
    books.appendChild(li);
  }
  li.textContent = book.title + " — " + (book.author || "unknown author");
};
// A failed stream ends with an "error" event carrying a google.rpc.Status;
// a clean end with an "end" event.
source.addEventListener("end", () => { source.close(); booksStatus.textContent = "ended"; });
source.addEventListener("error", (ev) => {
  if (ev.data) {
    const st = JSON.parse(ev.data);
    booksStatus.textContent = "error " + st.code + ": " + st.message;
    source.close();
  } else {
    booksStatus.textContent = "reconnecting…";
  }
});
