// Tax-loss harvesting: the opportunities the server found (lots at a loss, the estimated saving, the
// replacements it suggests and what would make the sale a wash sale), each harvested only after a
// confirmation step; then the harvests made, with the end of their wash-sale window.
import { api, newKey } from "../api.js";
import { busy, done, el, field, label, messageOf, money, pct, scrollable, shares } from "../ui.js";

const TERM = { short: "Short-term", long: "Long-term", mixed: "Short- and long-term" };

export async function render({ view, context, app, refresh }) {
  const found = await context.guard(api("/api/v1/tax-harvesting", { signal: context.signal }));
  const names = new Map((app.portfolios || []).map((p) => [p.id, p.name]));
  const opportunities = found.opportunities || [];
  const harvests = found.harvests || [];
  view.replaceChildren(
    el("h2", { text: "Tax-loss harvesting" }),
    el("p", { class: "muted", text: `Positions at a loss on ${found.as_of}: selling them realizes the loss, `
      + "and a similar, not substantially identical security keeps you invested. Figures are the server's." }),
    el("section", { class: "card", id: "harvest-opportunities", "aria-label": "Harvest opportunities" },
      el("h3", { class: "title", text: "Opportunities" }),
      opportunities.length
        ? el("div", { class: "stack" }, opportunities.map((o) => opportunity(o, names, context, refresh)))
        : el("p", { class: "muted", id: "no-opportunities", text: "No position is at a loss worth harvesting today." })),
    el("section", { class: "card", id: "harvests-made", "aria-label": "Harvests made" },
      el("h3", { class: "title", text: "Harvests made" }),
      harvests.length
        ? el("ul", { class: "plain" }, harvests.map((h) => made(h, names)))
        : el("p", { class: "muted", text: "No harvest yet." })),
  );
}

function opportunity(o, names, context, refresh) {
  const candidates = o.replacement_candidates || [];
  const blockers = o.wash_sale_blockers || [];
  const choice = el("select", { id: `replacement-${o.id}`, name: "replacement" },
    candidates.map((c) => el("option", { value: c.symbol, selected: c.symbol === o.replacement_symbol,
      text: `${c.symbol} · ${c.sector || "—"} · similarity ${pct(c.similarity)}` })));
  const message = el("div", { class: "form-message error", role: "alert" });
  const harvest = el("button", { type: "button", class: "small", text: "Harvest", "aria-label": `Harvest ${o.symbol}`,
    disabled: o.blocked || !candidates.length });
  const confirmation = el("div", { class: "review", hidden: true, "aria-label": `Confirm harvesting ${o.symbol}`, role: "group" });
  const card = el("article", { class: "inline-form opportunity", "data-harvest": o.id, "data-symbol": o.symbol },
    el("div", { class: "row spread" },
      el("h4", { text: `${o.symbol} · ${names.get(o.portfolio_id) || "portfolio"}` }),
      el("span", { class: "down", text: `Loss ${money(o.loss_amount)}` })),
    el("dl", { class: "facts" },
      el("dt", { text: "Shares to sell" }), el("dd", { text: `${shares(o.shares)} at ${money(o.price)}` }),
      el("dt", { text: "Basis" }), el("dd", { text: money(o.cost_basis) }),
      el("dt", { text: "Term" }), el("dd", { text: TERM[o.term] || label(o.term) }),
      el("dt", { text: "Estimated tax saving" }), el("dd", { class: "saving", text: money(o.estimated_tax_savings) }),
      el("dt", { text: "Wash-sale window" }),
      el("dd", { class: "window", text: o.wash_sale_window_end
        ? `Do not buy ${o.symbol} in any account until after ${o.wash_sale_window_end}.` : "—" })),
    lotsTable(o),
    blockers.length
      ? el("div", { class: "blockers" }, el("p", { class: "error", text: "Harvesting now would be a wash sale:" }),
        el("ul", {}, blockers.map((b) => el("li", { text: b.detail || `${label(b.kind)} ${b.symbol} on ${b.on}` }))))
      : null,
    candidates.length
      ? field("Replacement", choice)
      : el("p", { class: "muted", text: "No replacement is suggested for this symbol." }),
    el("div", { class: "row" }, harvest),
    message,
    confirmation);

  harvest.addEventListener("click", () => {
    message.textContent = "";
    const replacement = choice.value;
    const key = newKey();  // one per confirmation: a repeated click cannot harvest twice
    const confirm = el("button", { type: "button", text: "Confirm harvest" });
    const back = el("button", { type: "button", class: "secondary", text: "Back" });
    back.addEventListener("click", () => { confirmation.hidden = true; confirmation.replaceChildren(); harvest.disabled = false; harvest.focus(); });
    confirm.addEventListener("click", async () => {
      confirm.disabled = back.disabled = true;
      busy("Harvesting…");
      try {
        const outcome = await api(`/api/v1/tax-harvesting/${o.id}/execute`, {
          method: "POST", key, body: { replacement_symbol: replacement } });
        const sell = outcome.orders && outcome.orders.sell;
        const buy = outcome.orders && outcome.orders.buy;
        const refused = (outcome.refused || []).map((r) => `${r.side} ${r.symbol}: ${messageOf(r.error)}`).join(" ");
        await refresh();
        done(`Harvested ${o.symbol}: sold ${shares(sell && sell.filled_quantity)} ${o.symbol} (${label(sell && sell.status)}), `
          + `bought ${shares(buy && buy.filled_quantity)} ${replacement} (${label(buy && buy.status)}). `
          + `Wash-sale window ends ${outcome.wash_sale_window_end}.${refused ? " Refused: " + refused : ""}`);
      } catch (error) {
        done();
        if (!context.live()) return;
        message.textContent = messageOf(error);
        confirm.disabled = back.disabled = false;
      }
    });
    confirmation.replaceChildren(
      el("h4", { text: "Confirm the harvest" }),
      el("p", { text: `Sell ${shares(o.shares)} ${o.symbol} (a loss of ${money(o.loss_amount)}) and buy ${replacement} `
        + "with the proceeds, at market." }),
      el("p", { text: o.wash_sale_window_end
        ? `Buying ${o.symbol} back in any account on or before ${o.wash_sale_window_end} would disallow the loss.`
        : "Buying the same security back within 30 days would disallow the loss." }),
      el("div", { class: "row" }, confirm, back));
    confirmation.hidden = false;
    harvest.disabled = true;
    confirm.focus();
  });
  return card;
}

function lotsTable(o) {
  const lots = o.lots || [];
  if (!lots.length) return null;
  return scrollable(el("table", { class: "harvest-lots" },
    el("caption", { text: `Lots of ${o.symbol} sold` }),
    el("thead", {}, el("tr", {}, ["Acquired", "Shares", "Term", "Basis", "Value", "Loss"]
      .map((t, i) => el("th", { scope: "col", class: i === 0 || i === 2 ? "l" : "", text: t })))),
    el("tbody", {}, lots.map((lot) => el("tr", {},
      el("td", { class: "l", text: lot.acquired_at }),
      el("td", { text: shares(lot.shares) }),
      el("td", { class: "l", text: TERM[lot.term] || label(lot.term) }),
      el("td", { text: money(lot.basis_of_loss ?? lot.adjusted_basis ?? lot.cost_basis) }),
      el("td", { text: money(lot.market_value) }),
      el("td", { class: "down", text: money(lot.loss) }))))));
}

function made(h, names) {
  const back = h.switch_back;
  return el("li", { "data-harvest": h.id },
    el("div", { class: "row spread" },
      el("strong", { text: `${h.symbol} → ${h.replacement_symbol}` }),
      el("span", { class: "muted", text: `${names.get(h.portfolio_id) || "portfolio"} · loss ${money(h.loss_amount)}` })),
    el("p", { class: "muted window", text: `Wash-sale window ends ${h.wash_sale_window_end}.`
      + (back ? ` ${back.message}` : "") }));
}
