// The order ticket: side, symbol, quantity and order type; a review step with the estimated cost
// from the current quote; then Place order, with one Idempotency-Key per reviewed order.
import { api, newKey } from "../api.js";
import { busy, done, el, field, label, messageOf, money, shares } from "../ui.js";

const TYPES = [["market", "Market"], ["limit", "Limit"], ["stop", "Stop"], ["stop_limit", "Stop limit"]];

function select(id, options, value) {
  return el("select", { id, name: id }, options.map(([v, text]) => el("option", { value: v, text, selected: v === value })));
}

export async function render({ view, context, params }) {
  const id = params.id;
  const p = await context.guard(api(`/api/v1/portfolios/${id}`, { signal: context.signal }));
  const side = select("order-side", [["buy", "Buy"], ["sell", "Sell"]], "buy");
  const symbol = el("input", { id: "order-symbol", name: "symbol", required: true, autocomplete: "off", maxLength: 12,
    pattern: "[A-Za-z.^\\-]{1,12}", placeholder: "AAPL", class: "upper" });
  const quantity = el("input", { id: "order-quantity", name: "quantity", required: true, inputmode: "decimal", autocomplete: "off", placeholder: "10" });
  const type = select("order-type", TYPES, "market");
  const limit = el("input", { id: "order-limit", name: "limit_price", inputmode: "decimal", autocomplete: "off" });
  const stop = el("input", { id: "order-stop", name: "stop_price", inputmode: "decimal", autocomplete: "off" });
  const tif = select("order-tif", [["day", "Day"], ["gtc", "Good till cancelled"]], "day");
  const limitField = field("Limit price (USD)", limit);
  const stopField = field("Stop price (USD)", stop);
  const message = el("div", { id: "order-message", class: "form-message", role: "alert" });
  const review = el("section", { id: "order-review", class: "review", "aria-label": "Review order", hidden: true });
  const held = new Map(p.holdings.map((h) => [h.symbol, h.shares]));

  const showPrices = () => {
    limitField.hidden = !["limit", "stop_limit"].includes(type.value);
    stopField.hidden = !["stop", "stop_limit"].includes(type.value);
    limit.required = !limitField.hidden;
    stop.required = !stopField.hidden;
  };
  type.addEventListener("change", showPrices);
  showPrices();

  const ticket = el("form", { id: "order-ticket", class: "card", "aria-label": "Order ticket", novalidate: true,
    onsubmit: async (event) => {
      event.preventDefault();
      message.textContent = "";
      review.replaceChildren();
      const order = read();
      if (typeof order === "string") { message.textContent = order; return; }
      busy("Fetching the quote…");
      try {
        const quote = await context.guard(api(`/api/v1/quotes/${encodeURIComponent(order.symbol)}`, { signal: context.signal }));
        done();
        showReview(order, quote);
      } catch (error) {
        done();
        if (context.live()) message.textContent = messageOf(error);
      }
    } },
  el("div", { class: "grid tight" },
    field("Side", side), field("Symbol", symbol), field("Quantity (shares)", quantity),
    field("Order type", type), limitField, stopField, field("Time in force", tif)),
  el("button", { type: "submit", id: "review-order", text: "Review order" }),
  message);

  function read() {
    const decimal = /^\d+(\.\d+)?$/;
    const order = { portfolio_id: id, side: side.value, symbol: symbol.value.trim().toUpperCase(),
      quantity: quantity.value.trim(), order_type: type.value, time_in_force: tif.value };
    if (!/^[A-Z.^-]{1,12}$/.test(order.symbol)) return "Enter a symbol such as AAPL.";
    if (!decimal.test(order.quantity) || Number(order.quantity) <= 0) return "Enter a quantity of shares above zero.";
    if (!limitField.hidden) {
      if (!decimal.test(limit.value.trim()) || Number(limit.value) <= 0) return "Enter a limit price above zero.";
      order.limit_price = limit.value.trim();
    }
    if (!stopField.hidden) {
      if (!decimal.test(stop.value.trim()) || Number(stop.value) <= 0) return "Enter a stop price above zero.";
      order.stop_price = stop.value.trim();
    }
    return order;
  }

  function showReview(order, quote) {
    // The estimate uses the price the order would likely meet: the ask to buy, the bid to sell,
    // or the limit when one is set. The server decides the fill and the cash held back.
    const market = order.side === "buy" ? quote.ask : quote.bid;
    const price = order.limit_price ?? order.stop_price ?? market;
    const estimate = Number(price) * Number(order.quantity);
    const key = newKey();
    const place = el("button", { type: "button", id: "place-order", text: "Place order" });
    const back = el("button", { type: "button", class: "secondary", text: "Edit order" });
    const outcome = el("div", { id: "order-outcome", role: "status" });
    back.addEventListener("click", () => { review.hidden = true; review.replaceChildren(); ticket.hidden = false; symbol.focus(); });
    place.addEventListener("click", async () => {
      place.disabled = back.disabled = true;
      outcome.textContent = "";
      busy("Placing the order…");
      try {
        const placed = await api("/api/v1/trades", { method: "POST", key, body: order });
        done(`Order ${label(placed.status)}.`);
        outcome.replaceChildren(el("p", { class: "ok", text:
          `${placed.side === "buy" ? "Buy" : "Sell"} order ${label(placed.status)}: ${shares(placed.filled_quantity)} of ${shares(placed.quantity)} ${placed.symbol} filled`
          + (placed.average_fill_price ? ` at ${money(placed.average_fill_price)}.` : ".") }),
        el("p", {}, el("a", { href: `#/portfolios/${id}/orders`, text: "See the orders" }), " · ",
          el("a", { href: `#/portfolios/${id}`, text: "See the holdings" })));
        back.disabled = false;
        back.textContent = "New order";
        back.addEventListener("click", () => { ticket.reset(); showPrices(); }, { once: true });
      } catch (error) {
        done();
        outcome.replaceChildren(el("p", { class: "error", id: "order-error", text: messageOf(error) }));
        if (error.code === "QUOTE_STALE") {
          // The order was not placed; a limit order does not trade on the stale quote's price.
          const asLimit = el("button", { type: "button", id: "order-as-limit", text: "Make it a limit order" });
          asLimit.addEventListener("click", () => {
            type.value = "limit";
            showPrices();
            review.hidden = true;
            review.replaceChildren();
            ticket.hidden = false;
            limit.focus();
          });
          outcome.append(el("p", {}, asLimit));
        }
        place.disabled = back.disabled = false;
      }
    });
    review.replaceChildren(
      el("h3", { class: "title", text: "Review order" }),
      el("dl", { class: "facts" },
        el("dt", { text: "Order" }), el("dd", { text: `${order.side === "buy" ? "Buy" : "Sell"} ${order.quantity} ${order.symbol}, ${TYPES.find(([v]) => v === order.order_type)[1].toLowerCase()}, ${order.time_in_force}` }),
        el("dt", { text: "Quote" }), el("dd", { text: `bid ${money(quote.bid)} · ask ${money(quote.ask)} · last ${money(quote.last)}${quote.stale ? " (delayed)" : ""}` }),
        el("dt", { text: order.side === "buy" ? "Estimated cost" : "Estimated proceeds" }), el("dd", { id: "estimated-cost", text: money(estimate.toFixed(2)) }),
        el("dt", { text: order.side === "buy" ? "Available cash" : "Shares held" }),
        el("dd", { text: order.side === "buy" ? money(p.available_cash) : shares(held.get(order.symbol) ?? 0) })),
      el("p", { class: "muted", text: "Commission, if any, is added when the order fills." }),
      el("div", { class: "row" }, place, back),
      outcome);
    ticket.hidden = true;
    review.hidden = false;
    place.focus();
  }

  view.replaceChildren(
    el("h2", { text: `Trade · ${p.name}` }),
    el("p", { class: "muted", id: "trade-cash", text: `Available cash: ${money(p.available_cash)}` }),
    ticket, el("div", { class: "card-wrap" }, review));
}
