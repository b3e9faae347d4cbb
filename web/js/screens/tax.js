// Tax documents: Form 8949 of the chosen portfolio and year, as the API writes it (CSV or PDF).
import { api, download } from "../api.js";
import { el, field, messageOf } from "../ui.js";

export async function render({ view, context, app }) {
  const clock = await context.guard(api("/api/v1/market/clock", { signal: context.signal }).catch(() => null));
  const today = clock && (clock.today || clock.market_date || clock.trading_day);
  const year = Number(String(today || "").slice(0, 4)) || new Date().getFullYear();
  const portfolio = app.portfolios.find((p) => p.id === app.portfolioId);
  const years = el("select", { id: "tax-year", name: "year" },
    [0, 1, 2, 3, 4].map((back) => el("option", { value: String(year - back), text: String(year - back) })));
  const status = el("div", { class: "muted", id: "tax-documents-status", role: "status",
    text: "Form 8949 of the selected portfolio: each sale in its box (A–F), wash sales as code W." });
  const save = (format) => async () => {
    if (!app.portfolioId) { status.textContent = "Open a portfolio first."; return; }
    status.textContent = "Preparing…";
    const query = new URLSearchParams({ year: years.value, format });
    try {
      const name = await download(`/api/v1/portfolios/${encodeURIComponent(app.portfolioId)}/realized-gains?${query}`);
      status.textContent = `Saved ${name}.`;
    } catch (error) {
      status.textContent = messageOf(error);
    }
  };
  view.replaceChildren(
    el("h2", { text: "Tax documents" }),
    el("section", { class: "card", id: "tax-documents" },
      el("h3", { class: "title", text: `Form 8949 · ${portfolio ? portfolio.name : "no portfolio"}` }),
      el("div", { class: "row" },
        field("Tax year", years),
        el("button", { class: "small", id: "form-8949-csv", type: "button", text: "Download Form 8949 (CSV)", onclick: save("csv") }),
        el("button", { class: "small", id: "form-8949-pdf", type: "button", text: "Download Form 8949 (PDF)", onclick: save("pdf") })),
      status));
}
