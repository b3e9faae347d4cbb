// The header's bell: how many notifications are unread, as the API counts them, asked again when the
// live stream says one was made (`notification.created`) and lowered by what is marked read here.
import { api } from "./api.js";
import { subscribe } from "./stream.js";

let unread = 0;
let known = false;
let pending = null;

// A new notification (or a resume that lost events) asks the API again rather than adding one: the
// count loaded at sign-in may already include a notification whose event arrives just after it.
subscribe((message) => {
  if (!known || pending) return;
  if ((message.type === "event" && message.event_type === "notification.created") || message.type === "reset") {
    pending = setTimeout(() => { pending = null; load(); }, 200);
  }
});

/** Asks the API for the count; the bell stays hidden when it cannot say. */
export async function load() {
  try {
    const answer = await api("/api/v1/notifications/unread-count");
    known = true;
    set(answer.unread);
  } catch {
    forget();
  }
}

export function set(count) {
  unread = Math.max(0, Number(count) || 0);
  const bell = document.getElementById("bell");
  bell.hidden = !known;
  bell.setAttribute("aria-label", unread ? `Notifications, ${unread} unread` : "Notifications, none unread");
  const badge = document.getElementById("bell-count");
  badge.textContent = unread > 99 ? "99+" : String(unread);
  badge.hidden = !unread;
}

export function read(count = 1) { set(unread - count); }

export function forget() {
  clearTimeout(pending);
  pending = null;
  known = false;
  set(0);
}
