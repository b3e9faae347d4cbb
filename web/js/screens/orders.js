// Orders of a portfolio, newest first, with Cancel on those still open. An order's status follows
// the live stream: a fill, a cancel or a new order made elsewhere shows without a reload.
import { api } from "../api.js";
import { redrawOn } from "../stream.js";
import { busy, done, el, fail, label, money, scrollable, shares } from "../ui.js";

const OPEN = new Set(["open", "pending", "submitted", "partially_filled"]);

export async function render({ view, context, params, refresh }) {
  const id = params.id;
  const list = () => api(`/api/v1/trades?${new URLSearchParams({ portfolio_id: id, limit: "100" })}`, { signal: context.signal });
  const [p, orders] = await context.guard(Promise.all([
    api(`/api/v1/portfolios/${id}`, { signal: context.signal }), list()]));
  let shown = listing(orders, refresh);
  view.replaceChildren(
    el("h2", { text: `Orders · ${p.name}` }),
    el("section", { class: "card" },
      shown,
      el("p", {}, el("a", { href: `#/portfolios/${id}/trade`, text: "Place an order" }))));

  const mine = (message) => message.type === "reset"
    || (message.type === "event" && message.topic === "trades.executed" && message.data && message.data.portfolio_id === id);
  redrawOn(context, mine, async () => {
    const next = listing(await context.guard(list()), refresh);
    shown.replaceWith(next);
    shown = next;
  }, 150);
}

function listing(orders, refresh) {
  if (!orders.length) return el("p", { class: "muted", id: "no-orders", text: "No orders yet." });
  return scrollable(el("table", { id: "orders" },
    el("caption", { text: "Orders, newest first" }),
    el("thead", {}, el("tr", {}, ["Placed", "Symbol", "Side", "Type", "Quantity", "Filled", "Avg price", "Status", "Action"]
      .map((t, i) => el("th", { scope: "col", class: [0, 1, 2, 3, 7].includes(i) ? "l" : "", text: t })))),
    el("tbody", {}, orders.map((o) => row(o, refresh)))));
}

function row(o, refresh) {
  const when = new Date(o.created_date);
  const cancel = OPEN.has(o.status)
    ? el("button", { type: "button", class: "small secondary", text: "Cancel", "aria-label": `Cancel ${o.side} ${shares(o.quantity)} ${o.symbol}`,
      onclick: async (event) => {
        event.currentTarget.disabled = true;
        busy("Cancelling…");
        try {
          await api(`/api/v1/trades/${o.id}`, { method: "DELETE" });
          await refresh();
          done("Order cancelled.");
        } catch (error) {
          fail(error);
          event.target.disabled = false;
        }
      } })
    : null;
  return el("tr", { "data-order": o.id, "data-status": o.status },
    el("td", { class: "l", text: isNaN(when) ? "" : when.toLocaleString() }),
    el("td", { class: "l", text: o.symbol }),
    el("td", { class: "l", text: o.side === "buy" ? "Buy" : "Sell" }),
    el("td", { class: "l", text: label(o.order_type) }),
    el("td", { text: shares(o.quantity) }),
    el("td", { text: shares(o.filled_quantity) }),
    el("td", { text: money(o.average_fill_price) }),
    el("td", { class: "l status", text: label(o.status) + (o.reject_reason ? `: ${o.reject_reason}` : "") }),
    el("td", {}, cancel));
}
