// A client's accounts as their advisor (or an admin) reads them: figures, holdings, lots, orders,
// risk, recommendations and harvest opportunities, with nothing that could change them.
import { api } from "../api.js";
import { go } from "../router.js";
import { el, field, figure, label, messageOf, money, pct, scrollable, shares, signed, sortableTable } from "../ui.js";

const capital = (s) => s.charAt(0).toUpperCase() + s.slice(1);

export async function render({ view, context, params, app }) {
  const client = params.client;
  const get = (path) => api(path, { signal: context.signal });
  const [portfolios, links] = await context.guard(Promise.all([
    get(`/api/v1/portfolios?${new URLSearchParams({ user_id: client })}`),
    get("/api/v1/advisor/clients").catch(() => []),
  ]));
  const link = links.find((l) => l.client_id === client && l.advisor_id === app.me.id);
  const who = link ? (link.client_name ? `${link.client_name} (${link.client_email})` : link.client_email) : "this client";
  const header = [
    el("h2", { id: "client-name", text: `Client · ${who}` }),
    el("p", { class: "banner", id: "read-only", role: "note",
      text: `Read-only: you see ${who}'s accounts as ${app.me.role === "admin" ? "an admin" : "their advisor"}; nothing here changes them.` }),
  ];
  if (!portfolios.length) {
    view.replaceChildren(...header, el("p", { class: "muted card", id: "client-no-portfolios", text: "This client has no portfolio yet." }));
    return;
  }
  const pid = portfolios.some((p) => p.id === params.pid) ? params.pid : portfolios[0].id;
  const choice = el("select", { id: "client-portfolio", name: "portfolio", onchange: () => go(`/advisor/${client}/${choice.value}`) },
    portfolios.map((p) => el("option", { value: p.id, text: p.name, selected: p.id === pid })));
  const [p, lots, orders, risk, recs, harvest] = await context.guard(Promise.allSettled([
    get(`/api/v1/portfolios/${pid}`),
    get(`/api/v1/portfolios/${pid}/lots`),
    get(`/api/v1/trades?${new URLSearchParams({ portfolio_id: pid, limit: "50" })}`),
    get(`/api/v1/portfolios/${pid}/risk`),
    get(`/api/v1/recommendations?${new URLSearchParams({ portfolio_id: pid })}`),
    get(`/api/v1/tax-harvesting?${new URLSearchParams({ portfolio_id: pid })}`),
  ]));
  if (p.status === "rejected") throw p.reason;
  const portfolio = p.value;
  const part = (answer, draw, id, title) => el("section", { class: "card", id },
    el("h3", { class: "title", text: title }),
    answer.status === "rejected" ? el("p", { class: "error", role: "alert", text: messageOf(answer.reason) }) : draw(answer.value));

  view.replaceChildren(...header,
    el("div", { class: "card row" }, field("Portfolio", choice)),
    el("section", { class: "card grid", "aria-label": "Figures", id: "client-figures" },
      figure("Value", money(portfolio.total_value)),
      figure("Gain/loss", signed(portfolio.total_gain_loss)),
      figure("Cash", money(portfolio.cash_balance)),
      figure("Available cash", money(portfolio.available_cash)),
      figure("Account", portfolio.account_type),
      figure("Risk score", portfolio.risk_score ?? "—")),
    el("section", { class: "card" }, portfolio.holdings.length ? sortableTable([
      { key: "symbol", title: "Symbol" },
      { key: "shares", title: "Shares", numeric: true, render: (h) => shares(h.shares) },
      { key: "current_price", title: "Price", numeric: true, render: (h) => money(h.current_price) },
      { key: "market_value", title: "Value", numeric: true, render: (h) => money(h.market_value) },
      { key: "unrealized_gain_loss", title: "Gain/loss", numeric: true, render: (h) => signed(h.unrealized_gain_loss) },
      { key: "weight", title: "Weight", numeric: true, render: (h) => pct(h.weight) },
    ], portfolio.holdings, { id: "client-holdings", caption: "Holdings" }) : el("p", { class: "muted", text: "No holdings." })),
    part(lots, (rows) => (rows.length ? sortableTable([
      { key: "symbol", title: "Symbol" },
      { key: "acquired_at", title: "Acquired" },
      { key: "shares", title: "Shares", numeric: true, render: (l) => shares(l.shares) },
      { key: "term", title: "Term", render: (l) => (l.term === "long" ? "Long-term" : "Short-term") },
      { key: "adjusted_basis", title: "Adjusted basis", numeric: true, render: (l) => money(l.adjusted_basis) },
    ], rows, { id: "client-lots", caption: "Open tax lots" }) : el("p", { class: "muted", text: "No open lots." })), "client-lots-card", "Tax lots"),
    part(orders, (rows) => (rows.length ? scrollable(el("table", { id: "client-orders", "aria-label": "Orders, newest first" },
      el("thead", {}, el("tr", {}, ["Placed", "Symbol", "Side", "Quantity", "Status"].map((t, i) => el("th", { scope: "col", class: i === 3 ? "" : "l", text: t })))),
      el("tbody", {}, rows.map((o) => el("tr", {},
        el("td", { class: "l", text: new Date(o.created_date).toLocaleString() }),
        el("td", { class: "l", text: o.symbol }),
        el("td", { class: "l", text: o.side === "buy" ? "Buy" : "Sell" }),
        el("td", { text: shares(o.quantity) }),
        el("td", { class: "l", text: label(o.status) })))))) : el("p", { class: "muted", text: "No orders." })), "client-orders-card", "Orders"),
    part(risk, (r) => el("div", { class: "grid" },
      figure("VaR 95 %", `${pct(r.var_historical)} · ${money(r.var_historical_amount)}`),
      figure("CVaR 95 %", `${pct(r.cvar_historical)} · ${money(r.cvar_historical_amount)}`),
      figure("Beta", r.beta === null ? "—" : Number(r.beta).toFixed(2)),
      figure("Concentration (HHI)", Number(r.hhi).toFixed(2))), "client-risk", "Risk"),
    part(recs, (rows) => (rows.length ? el("ul", { class: "plain" }, rows.map((r) => el("li", { "data-kind": r.kind },
      el("strong", { text: `${capital(label(r.kind))}${r.symbol ? " " + r.symbol : ""}` }), ` · ${label(r.status)} · confidence ${pct(r.confidence)}`,
      el("p", { class: "muted", text: r.rationale })))) : el("p", { class: "muted", text: "No recommendation." })), "client-recommendations", "Recommendations"),
    part(harvest, (h) => (h.opportunities.length ? el("ul", { class: "plain" }, h.opportunities.map((o) => el("li", {},
      `${o.symbol}: loss ${money(o.loss_amount)}, estimated saving ${money(o.estimated_tax_savings)}`
      + (o.wash_sale_window_end ? `, wash-sale window to ${o.wash_sale_window_end}` : "")))) : el("p", { class: "muted", text: "No harvestable loss." })),
    "client-harvest", "Harvestable losses"));
}
