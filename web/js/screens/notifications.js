// Notifications, newest first: each marked read on its own or all at once, with the newest arriving
// live while the screen is open. Where each kind goes (app, e-mail) is chosen in Settings.
import { api, apiPage } from "../api.js";
import * as bell from "../bell.js";
import { follow } from "../stream.js";
import { busy, done, el, fail } from "../ui.js";

const PAGE = "50";

export async function render({ view, context }) {
  let unreadOnly = false;
  let next = null;
  const list = el("ul", { class: "plain", id: "notifications", "aria-label": "Notifications, newest first" });
  const empty = el("p", { class: "muted", id: "no-notifications", text: "Nothing to tell you yet.", hidden: true });
  const older = el("button", { type: "button", class: "small secondary", text: "Older notifications", hidden: true });
  const markAll = el("button", { type: "button", class: "small", id: "mark-all-read", text: "Mark all read" });
  const filter = el("div", { class: "periods", role: "group", "aria-label": "Show" },
    [["All", false], ["Unread", true]].map(([text, value]) => el("button", {
      type: "button", class: "small toggle", text, "aria-pressed": String(value === unreadOnly),
      onclick: async (event) => {
        unreadOnly = value;
        filter.querySelectorAll("button").forEach((b) => b.setAttribute("aria-pressed", String(b === event.currentTarget)));
        await load(true);
      } })));

  async function load(replace) {
    const query = new URLSearchParams({ limit: PAGE });
    if (unreadOnly) query.set("unread", "true");
    const path = replace || !next ? `/api/v1/notifications?${query}` : next;
    try {
      const page = await context.guard(apiPage(path, { signal: context.signal }));
      if (replace) list.replaceChildren();
      list.append(...page.data.map(item));
      next = page.links.next || null;
      older.hidden = !next;
      empty.hidden = list.children.length > 0;
    } catch (error) {
      if (error.name !== "Stale" && error.name !== "AbortError") fail(error);
      else throw error;
    }
  }

  function item(n) {
    const unread = !n.read_at;
    const when = new Date(n.created_at);
    const mark = unread
      ? el("button", { type: "button", class: "small secondary", text: "Mark read", "aria-label": `Mark read: ${n.title}`,
        onclick: async (event) => {
          event.currentTarget.disabled = true;
          try {
            const updated = await api(`/api/v1/notifications/${n.id}/read`, { method: "POST" });
            bell.read(1);
            const replacement = item(updated);
            row.replaceWith(replacement);
            if (unreadOnly) replacement.remove();
            empty.hidden = list.children.length > 0;
          } catch (error) {
            fail(error);
            event.target.disabled = false;
          }
        } })
      : null;
    const row = el("li", { class: "notification" + (unread ? " unread" : ""), "data-notification": n.id, "data-kind": n.kind,
      "data-read": String(!unread) },
      el("div", {},
        el("div", { class: "n-title", text: n.title }),
        el("p", { class: "n-body", text: n.body }),
        el("div", { class: "muted" }, isNaN(when) ? "" : when.toLocaleString(),
          n.link && String(n.link).startsWith("#/") ? [" · ", el("a", { href: n.link, text: "Open" })] : null)),
      el("div", {}, mark));
    return row;
  }

  markAll.addEventListener("click", async () => {
    markAll.disabled = true;
    busy("Marking all read…");
    try {
      const { marked } = await api("/api/v1/notifications/read-all", { method: "POST" });
      bell.set(0);
      await load(true);
      done(marked === 1 ? "1 notification marked read." : `${marked} notifications marked read.`);
    } catch (error) {
      fail(error);
    } finally {
      markAll.disabled = false;
    }
  });
  older.addEventListener("click", async () => {
    older.disabled = true;
    try { await load(false); } finally { older.disabled = false; }
  });

  view.replaceChildren(
    el("h2", { text: "Notifications" }),
    el("section", { class: "card" },
      el("div", { class: "row spread" }, filter, markAll),
      list, empty, older,
      el("p", { class: "muted" }, "Choose where each kind reaches you in ", el("a", { href: "#/settings", text: "Settings" }), ".")));

  // A notification made while the screen is open goes on top (the bell has counted it).
  follow(context, (message) => {
    if (message.type === "event" && message.event_type === "notification.created" && message.data && message.data.id) {
      if (list.querySelector(`[data-notification="${CSS.escape(message.data.id)}"]`)) return;
      list.prepend(item(message.data));
      empty.hidden = true;
    } else if (message.type === "reset") {
      load(true).catch(() => {});
    }
  });
  await load(true);
}
