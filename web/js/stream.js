// The live stream (GET /api/v1/stream, docs/stream.md): one WebSocket per signed-in tab. It resumes
// after the last event it saw when the socket drops, so a reconnect misses nothing and repeats
// nothing; it waits longer after each failed try (capped, with jitter, so a restarted server is not
// met by every tab at once); it re-authenticates with each refreshed token, and it stops on sign-out.
import { accessToken, endSession, refresh } from "./api.js";
import { ignorable } from "./router.js";

const FIRST_DELAY_MS = 500;
const MAX_DELAY_MS = 30_000;
const UNAUTHORIZED = 4401;
const SILENT_MS = 60_000;  // the server pings every 20 s: a minute of silence is a dead connection

const handlers = new Set();
const stateListeners = new Set();
let socket = null;
let running = false;
let lastEventId = null;
let failures = 0;
let retryTimer = null;
let watchdog = null;
let heardAt = 0;
let state = "off";

/** Calls `handler(message)` with each event, value and reset message; returns the unsubscribe. */
export function subscribe(handler) {
  handlers.add(handler);
  return () => handlers.delete(handler);
}

/** A screen's subscription: dropped when the router leaves the screen, and silent once it is stale. */
export function follow(context, handler) {
  context.onLeave(subscribe((message) => { if (context.live()) handler(message); }));
}

/** A screen part redrawn by `redraw()` when `matches(message)`: a burst of messages (a fill moves
 *  cash and shares) redraws once, `delayMs` after the first of them. */
export function redrawOn(context, matches, redraw, delayMs = 250) {
  let pending = null;
  follow(context, (message) => {
    if (pending || !matches(message)) return;
    pending = setTimeout(async () => {
      pending = null;
      try {
        await redraw();
      } catch (error) {
        if (!ignorable(error)) console.warn("live update failed", error);
      }
    }, delayMs);
  });
  context.onLeave(() => clearTimeout(pending));
}

/** `listener(state)` with "live", "reconnecting" or "off" now and at each change. */
export function onState(listener) {
  stateListeners.add(listener);
  listener(state);
  return () => stateListeners.delete(listener);
}

export function start() {
  if (running) return;
  running = true;
  failures = 0;
  connect();
  watchdog = setInterval(() => {
    if (socket && socket.readyState === WebSocket.OPEN && Date.now() - heardAt > SILENT_MS) socket.close(4000, "silent");
  }, 10_000);
}

export function stop() {
  running = false;
  lastEventId = null;
  clearTimeout(retryTimer);
  clearInterval(watchdog);
  const open = socket;
  socket = null;
  if (open) open.close(1000, "signed out");
  setState("off");
}

/** A refreshed access token replaces the one the socket holds (same person), before it expires. */
export function renew(token) {
  if (socket && socket.readyState === WebSocket.OPEN && token) socket.send(JSON.stringify({ type: "auth", token }));
}

function setState(next) {
  if (next === state) return;
  state = next;
  stateListeners.forEach((listener) => listener(state));
}

function connect() {
  const token = accessToken();
  if (!running || !token) return;
  const url = `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}/api/v1/stream`;
  const opened = new WebSocket(url);
  socket = opened;
  heardAt = Date.now();
  opened.addEventListener("open", () => {
    const hello = { type: "auth", token: accessToken() || token };
    if (lastEventId) hello.after = lastEventId;
    opened.send(JSON.stringify(hello));
  });
  opened.addEventListener("message", (event) => {
    if (socket !== opened) return;
    heardAt = Date.now();
    receive(opened, event.data);
  });
  opened.addEventListener("close", (event) => {
    if (socket !== opened) return;
    socket = null;
    if (running) retry(event.code);
  });
}

function receive(opened, text) {
  let message;
  try { message = JSON.parse(text); } catch { return; }
  if (message.type === "ping") { opened.send(JSON.stringify({ type: "pong" })); return; }
  if (message.type === "ready") { failures = 0; setState("live"); return; }
  if (message.type === "event" && message.event_id) lastEventId = message.event_id;
  if (["event", "value", "reset"].includes(message.type)) {
    handlers.forEach((handler) => {
      try { handler(message); } catch (error) { console.warn("live update failed", error); }
    });
  }
}

async function retry(code) {
  setState("reconnecting");
  if (code === UNAUTHORIZED) {
    // An expired token, or a session ended elsewhere: a refresh tells which.
    if (!(await refresh())) {
      if (running) { stop(); endSession(); }
      return;
    }
  }
  if (!running) return;
  const ceiling = Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** failures);
  failures += 1;
  clearTimeout(retryTimer);
  retryTimer = setTimeout(connect, ceiling / 2 + Math.random() * (ceiling / 2));
}
