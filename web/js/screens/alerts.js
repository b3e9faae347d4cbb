// Price alerts: tell me when a symbol rises to or falls to a level. The server checks the level
// against the current quote (a level already reached is refused) and fires each alert once.
import { api } from "../api.js";
import { busy, done, el, fail, field, messageOf, money, scrollable } from "../ui.js";

export async function render({ view, context, refresh }) {
  const alerts = await context.guard(api("/api/v1/alerts", { signal: context.signal }));
  const symbol = el("input", { id: "alert-symbol", name: "symbol", required: true, autocomplete: "off", maxLength: 12,
    placeholder: "AAPL", class: "upper" });
  const direction = el("select", { id: "alert-direction", name: "direction" },
    el("option", { value: "above", text: "Rises to or above" }), el("option", { value: "below", text: "Falls to or below" }));
  const level = el("input", { id: "alert-level", name: "level", required: true, inputmode: "decimal", autocomplete: "off", placeholder: "180.00" });
  const note = el("input", { id: "alert-note", name: "note", maxLength: 200, autocomplete: "off" });
  const message = el("div", { id: "alert-message", class: "form-message error", role: "alert" });
  const form = el("form", { id: "alert-form", class: "card", "aria-label": "New price alert", novalidate: true,
    onsubmit: async (event) => {
      event.preventDefault();
      message.textContent = "";
      const body = { symbol: symbol.value.trim().toUpperCase(), direction: direction.value, level: level.value.trim() };
      if (note.value.trim()) body.note = note.value.trim();
      if (!/^[A-Z.^-]{1,12}$/.test(body.symbol)) { message.textContent = "Enter a symbol such as AAPL."; symbol.focus(); return; }
      if (!/^\d+(\.\d+)?$/.test(body.level) || Number(body.level) <= 0) { message.textContent = "Enter a price above zero."; level.focus(); return; }
      const submit = form.querySelector("button[type=submit]");
      submit.disabled = true;
      busy("Setting the alert…");
      try {
        const made = await api("/api/v1/alerts", { method: "POST", body });
        await refresh();
        done(`Alert set: ${made.symbol} ${made.direction === "above" ? "rising to" : "falling to"} ${money(made.level)}.`);
      } catch (error) {
        done();
        if (!context.live()) return;
        message.textContent = messageOf(error);
        submit.disabled = false;
      }
    } },
  el("h3", { class: "title", text: "New price alert" }),
  el("div", { class: "grid tight" }, field("Symbol", symbol), field("When the price", direction),
    field("Level (USD)", level), field("Note (optional)", note)),
  el("button", { type: "submit", class: "small", text: "Set alert" }),
  message);

  const rows = alerts.map((a) => el("tr", { "data-alert": a.id, "data-symbol": a.symbol },
    el("td", { class: "l", text: a.symbol }),
    el("td", { class: "l", text: a.direction === "above" ? "Rises to" : "Falls to" }),
    el("td", { text: money(a.level) }),
    el("td", { text: money(a.reference_price) }),
    el("td", { class: "l status", text: a.status === "triggered" ? `Triggered ${new Date(a.triggered_at).toLocaleString()}` : "Armed" }),
    el("td", { class: "l wrap", text: a.note || "" }),
    el("td", {}, el("button", { type: "button", class: "small secondary", text: "Delete",
      "aria-label": `Delete alert ${a.symbol} ${a.direction} ${a.level}`,
      onclick: async (event) => {
        const button = event.currentTarget;
        button.disabled = true;
        busy("Deleting…");
        try {
          await api(`/api/v1/alerts/${a.id}`, { method: "DELETE" });
          await refresh();
          done("Alert deleted.");
        } catch (error) {
          fail(error);
          button.disabled = false;
        }
      } }))));
  view.replaceChildren(
    el("h2", { text: "Price alerts" }),
    form,
    el("section", { class: "card" },
      alerts.length
        ? scrollable(el("table", { id: "alerts" },
          el("caption", { text: "Your price alerts, newest first" }),
          el("thead", {}, el("tr", {}, ["Symbol", "When", "Level", "Price when set", "Status", "Note", "Action"]
            .map((t, i) => el("th", { scope: "col", class: [0, 1, 4, 5].includes(i) ? "l" : "", text: t })))),
          el("tbody", {}, rows)))
        : el("p", { class: "muted", id: "no-alerts", text: "No price alert yet." })));
}
