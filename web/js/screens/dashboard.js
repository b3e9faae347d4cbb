// Dashboard: totals across the portfolios, net worth over a chosen period and allocation by sector.
// The totals and the portfolio list follow the live stream: a deposit or a fill elsewhere shows here.
import { api } from "../api.js";
import { ignorable } from "../router.js";
import { redrawOn } from "../stream.js";
import { barChart, lineChart, widthOf } from "../charts.js";
import { el, figure, messageOf, money, signed } from "../ui.js";

const PERIODS = ["1M", "3M", "YTD", "1Y", "Max"];
let period = "1Y";

function startOf(choice, asOf) {
  const [y, m, d] = asOf.split("-").map(Number);
  const back = (years, months) => {
    const day = new Date(Date.UTC(y - years, m - 1 - months, Math.min(d, 28)));
    return day.toISOString().slice(0, 10);
  };
  if (choice === "1M") return back(0, 1);
  if (choice === "3M") return back(0, 3);
  if (choice === "YTD") return m === 1 && d <= 2 ? back(0, 1) : `${y}-01-01`;
  if (choice === "1Y") return back(1, 0);
  return back(20, 0);
}

export async function render({ view, context, app }) {
  const board = await context.guard(api("/api/v1/dashboard", { signal: context.signal }));
  const chartBox = el("div", { class: "chart-box", id: "net-worth-chart" });
  const periods = el("div", { class: "periods", role: "group", "aria-label": "Period" },
    PERIODS.map((p) => el("button", { type: "button", class: "small toggle", text: p, "aria-pressed": String(p === period),
      onclick: (event) => {
        period = p;
        event.currentTarget.parentElement.querySelectorAll("button").forEach((b) => b.setAttribute("aria-pressed", String(b.textContent === p)));
        drawNetWorth(board, chartBox, context);
      } })));
  const cash = (board.allocation.asset_class || []).find((r) => r.key === "cash");
  const sectors = (board.allocation.sector || []).map((r) => ({ key: r.key, value: Number(r.value), weight: Number(r.weight) }));
  if (cash && Number(cash.value) > 0) sectors.push({ key: "Cash", value: Number(cash.value), weight: Number(cash.weight) });
  sectors.sort((a, b) => b.value - a.value);

  const allocationTitle = el("h3", { class: "title", text: "Allocation by sector" });
  const allocation = el("section", { class: "card", id: "allocation" }, allocationTitle);
  let shownTotals = totals(board);
  let shownList = portfolioList(board);
  view.replaceChildren(
    el("h2", { text: "Dashboard" }),
    shownTotals,
    el("section", { class: "card" },
      el("div", { class: "row spread" }, el("h3", { class: "title", text: "Net worth over time" }), periods),
      chartBox),
    allocation,
    shownList,
  );
  allocation.append(barChart(sectors, "Allocation by sector", widthOf(allocationTitle)));

  const moved = (message) => message.type === "value" || message.type === "reset"
    || (message.type === "event" && ["portfolio.updates", "trades.executed"].includes(message.topic));
  redrawOn(context, moved, async () => {
    const fresh = await context.guard(api("/api/v1/dashboard", { signal: context.signal }));
    const [nextTotals, nextList] = [totals(fresh), portfolioList(fresh)];
    shownTotals.replaceWith(nextTotals);
    shownList.replaceWith(nextList);
    [shownTotals, shownList] = [nextTotals, nextList];
  });

  if (!board.portfolios.length) chartBox.append(el("p", { class: "muted", text: "No portfolio yet." }));
  else await drawNetWorth(board, chartBox, context);
}

function totals(board) {
  return el("section", { class: "card grid", id: "totals", "aria-label": "Totals" },
    figure("Net worth", el("span", { id: "total-value", text: money(board.total_value) })),
    figure("Today", signed(board.day_change)),
    figure("Unrealized gain/loss", signed(board.total_gain_loss)),
    figure("Cash", el("span", { id: "total-cash", text: money(board.cash_balance) })),
    figure("Available cash", el("span", { id: "total-available-cash", text: money(board.available_cash) })),
    figure("Harvestable losses", money(board.harvestable_loss_total)),
    figure("Market date", board.as_of));
}

function portfolioList(board) {
  return el("section", { class: "card", id: "portfolio-list" },
    el("h3", { class: "title", text: "Portfolios" }),
    el("ul", { class: "plain" }, board.portfolios.map((p) => el("li", { class: "row spread", "data-portfolio": p.id },
      el("a", { href: `#/portfolios/${p.id}`, text: p.name }),
      el("span", { class: "muted", text: `${p.account_type} · ${money(p.total_value)} · available ${money(p.available_cash)}` })))));
}

// The net worth series: each portfolio's value series from /performance, added up by date.
async function drawNetWorth(board, box, context) {
  box.setAttribute("aria-busy", "true");
  box.replaceChildren(el("p", { class: "muted", text: "Loading…" }));
  const choice = period;
  const start = startOf(choice, board.as_of);
  try {
    // A portfolio worth nothing today adds nothing to draw (and a new one has no history yet).
    const valued = board.portfolios.filter((p) => Number(p.total_value) !== 0);
    const answers = await context.guard(Promise.allSettled(valued.map((p) =>
      api(`/api/v1/portfolios/${p.id}/performance?${new URLSearchParams({ start })}`, { signal: context.signal }))));
    if (choice !== period) return;  // a newer period was chosen meanwhile
    const total = new Map();
    for (const answer of answers) {
      if (answer.status !== "fulfilled") continue;
      for (const point of answer.value.value_series || []) total.set(point.date, (total.get(point.date) || 0) + Number(point.value));
    }
    let points = [...total.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([date, value]) => ({ date, value }));
    if (choice === "Max") points = points.slice(Math.max(0, points.findIndex((p) => p.value !== 0)));
    if (!points.length) {
      const failed = answers.find((a) => a.status === "rejected");
      const young = !failed || failed.reason.code === "PERFORMANCE_UNAVAILABLE";
      box.replaceChildren(el("p", { class: young ? "muted" : "error",
        text: young ? "Not enough history to draw yet: the line starts after a few trading days." : messageOf(failed.reason) }));
    } else {
      box.replaceChildren(lineChart(points, `Net worth, ${choice}`, widthOf(box)));
    }
  } catch (error) {
    if (ignorable(error)) return;
    box.replaceChildren(el("p", { class: "error", text: messageOf(error) }));
  } finally {
    box.removeAttribute("aria-busy");
  }
}
