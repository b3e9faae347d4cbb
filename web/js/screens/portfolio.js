// A portfolio: its figures, holdings (sortable), tax lots, and cash in and out, kept current by the
// live stream.
import { api, newKey } from "../api.js";
import { redrawOn } from "../stream.js";
import { busy, done, el, field, figure, messageOf, money, pct, shares, signed, sortableTable } from "../ui.js";

export async function render({ view, context, params, refresh }) {
  const id = params.id;
  const load = () => context.guard(Promise.all([
    api(`/api/v1/portfolios/${id}`, { signal: context.signal }),
    api(`/api/v1/portfolios/${id}/lots`, { signal: context.signal }),
  ]));
  const [p, lots] = await load();
  let parts = sections(id, p, lots);
  view.replaceChildren(
    el("h2", { id: "portfolio-name", text: p.name }),
    parts.figures,
    el("section", { class: "card", id: "cash" },
      el("h3", { class: "title", text: "Cash" }),
      parts.cashLine,
      el("div", { class: "grid two" },
        cashForm("deposit", "Deposit", id, null, refresh),
        cashForm("withdraw", "Withdraw", id, p.available_cash, refresh))),
    parts.holdings,
    parts.lots,
  );

  // This portfolio's changes made elsewhere (another tab, an order filling) redraw its figures and
  // tables in place, leaving the cash forms and what is typed in them alone.
  const mine = (message) => message.type === "reset" || (message.type === "value" && message.portfolio_id === id)
    || (message.type === "event" && message.data && message.data.portfolio_id === id);
  redrawOn(context, mine, async () => {
    const next = sections(id, ...await load());
    for (const key of Object.keys(parts)) parts[key].replaceWith(next[key]);
    parts = next;
  });
}

function sections(id, p, lots) {
  const holdings = sortableTable([
    { key: "symbol", title: "Symbol" },
    { key: "sector", title: "Sector" },
    { key: "shares", title: "Shares", numeric: true, render: (h) => shares(h.shares) },
    { key: "average_cost", title: "Avg cost", numeric: true, render: (h) => money(h.average_cost) },
    { key: "current_price", title: "Price", numeric: true, render: (h) => money(h.current_price) },
    { key: "market_value", title: "Value", numeric: true, render: (h) => money(h.market_value) },
    { key: "unrealized_gain_loss", title: "Gain/loss", numeric: true, render: (h) => signed(h.unrealized_gain_loss) },
    { key: "weight", title: "Weight", numeric: true, render: (h) => pct(h.weight) },
  ], p.holdings, { id: "holdings", caption: "Holdings" });
  const lotTable = sortableTable([
    { key: "symbol", title: "Symbol" },
    { key: "acquired_at", title: "Acquired" },
    { key: "shares", title: "Shares", numeric: true, render: (l) => shares(l.shares) },
    { key: "term", title: "Term", render: (l) => l.term === "long" ? "Long-term" : "Short-term" },
    { key: "cost_basis", title: "Basis", numeric: true, render: (l) => money(l.cost_basis) },
    { key: "adjusted_basis", title: "Adjusted basis", numeric: true, render: (l) => money(l.adjusted_basis) },
    { key: "wash_sale_disallowed", title: "Wash sale", numeric: true, render: (l) => Number(l.wash_sale_disallowed) ? money(l.wash_sale_disallowed) : "—" },
    { key: "unrealized_gain_loss", title: "Gain/loss", numeric: true, render: (l) => l.unrealized_gain_loss === null ? "—" : signed(l.unrealized_gain_loss) },
  ], lots, { id: "lots", caption: "Open tax lots" });
  return {
    figures: el("section", { class: "card grid", "aria-label": "Figures" },
      figure("Value", el("span", { id: "portfolio-value", text: money(p.total_value) })),
      figure("Invested", money(p.invested_value)),
      figure("Gain/loss", signed(p.total_gain_loss)),
      figure("Cash", el("span", { id: "cash-balance", text: money(p.cash_balance) })),
      figure("Available cash", el("span", { id: "available-cash", text: money(p.available_cash) })),
      figure("Risk score", p.risk_score ?? "—"),
      figure("Account", p.account_type),
      figure("Lot method", String(p.lot_method).toUpperCase())),
    cashLine: el("p", { class: "muted", text: `Available to withdraw: ${money(p.available_cash)} (cash ${money(p.cash_balance)}, held for open orders ${money(p.reserved_cash)}).` }),
    holdings: el("section", { class: "card" },
      p.holdings.length ? holdings : el("p", { class: "muted", id: "no-holdings", text: "No holdings yet." }),
      el("p", {}, el("a", { href: `#/portfolios/${id}/trade`, text: "Trade this portfolio" }))),
    lots: el("section", { class: "card" }, lots.length ? lotTable : el("p", { class: "muted", text: "No open tax lots." })),
  };
}

function cashForm(kind, verb, id, available, refresh) {
  const amount = el("input", { id: `${kind}-amount`, name: "amount", inputmode: "decimal", required: true,
    pattern: "^\\d+(\\.\\d{1,4})?$", autocomplete: "off", placeholder: "0.00" });
  const message = el("p", { class: "form-message", id: `${kind}-message`, role: "status" });
  let key = null;
  const form = el("form", { class: "inline-form", id: `${kind}-form`, "aria-label": verb, novalidate: true,
    onsubmit: async (event) => {
      event.preventDefault();
      message.textContent = "";
      message.classList.remove("error");
      const value = amount.value.trim();
      if (!/^\d+(\.\d{1,4})?$/.test(value) || Number(value) <= 0) {
        message.textContent = "Enter an amount such as 250 or 250.00.";
        message.classList.add("error");
        amount.focus();
        return;
      }
      key = key || newKey();  // a retried click after a failed answer reuses the key: one movement at most
      button.disabled = true;
      busy(kind === "deposit" ? "Depositing…" : "Withdrawing…");
      try {
        await api(`/api/v1/portfolios/${id}/cash`, { method: "POST", key, body: { amount: kind === "deposit" ? value : "-" + value } });
        key = null;
        await refresh();
        done(`${verb === "Deposit" ? "Deposited" : "Withdrew"} ${money(value)}.`);
      } catch (error) {
        if (error.status && error.status < 500) key = null;  // refused: a new attempt is a new request
        done();
        message.textContent = messageOf(error);
        message.classList.add("error");
      } finally {
        button.disabled = false;
      }
    } });
  const button = el("button", { type: "submit", text: verb });
  form.append(...[
    el("h4", { text: verb }),
    available === null ? null : el("p", { class: "muted", text: `Available cash: ${money(available)}` }),
    field(`Amount to ${verb.toLowerCase()} (USD)`, amount),
    button, message].filter(Boolean));
  return form;
}
