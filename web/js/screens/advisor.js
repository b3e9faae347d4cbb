// The advisor's client picker: the investors linked to this advisor, each opened read-only.
import { api } from "../api.js";
import { go } from "../router.js";
import { el, field } from "../ui.js";

export async function render({ view, context, app }) {
  const links = await context.guard(api("/api/v1/advisor/clients", { signal: context.signal }));
  const clients = links.filter((l) => l.advisor_id === app.me.id);
  const name = (l) => (l.client_name ? `${l.client_name} (${l.client_email})` : l.client_email);
  if (!clients.length) {
    view.replaceChildren(el("h2", { text: "Clients" }), el("section", { class: "card" },
      el("p", { class: "muted", id: "no-clients", text: app.me.role === "admin"
        ? "An admin opens anyone's accounts from Admin › Users."
        : "No client is linked to you yet: an investor links you from their settings, or an admin does." })));
    return;
  }
  const choice = el("select", { id: "client-select", name: "client" },
    clients.map((l) => el("option", { value: l.client_id, text: name(l) })));
  view.replaceChildren(
    el("h2", { text: "Clients" }),
    el("form", { class: "card", id: "client-picker", "aria-label": "Choose a client", onsubmit: (event) => {
      event.preventDefault();
      go(`/advisor/${choice.value}`);
    } },
    el("div", { class: "row" }, field("Client", choice), el("button", { type: "submit", class: "small", text: "Open client" }))),
    el("section", { class: "card" },
      el("h3", { class: "title", text: "Your clients" }),
      el("ul", { class: "plain", id: "client-list" }, clients.map((l) => el("li", { class: "row spread" },
        el("a", { href: `#/advisor/${l.client_id}`, text: name(l) }),
        el("span", { class: "muted", text: `linked ${String(l.created_date).slice(0, 10)} · ${l.source || ""}` }))))));
}
