// Insights of a portfolio: its risk (VaR and CVaR, beta, concentration, sectors), each holding's
// anomaly score from the served model, and the recommendations with their evidence and confidence,
// each accepted or dismissed here. Each part loads on its own, and says so when it cannot.
import { api, newKey } from "../api.js";
import { barChart, widthOf } from "../charts.js";
import { busy, done, el, field, figure, label, messageOf, money, pct, scrollable, shares } from "../ui.js";

const capital = (s) => s.charAt(0).toUpperCase() + s.slice(1);
const ratio = (s) => (s === null || s === undefined ? "—" : Number(s).toFixed(2));

export async function render({ view, context, params, refresh }) {
  const id = params.id;
  const get = (path) => api(path, { signal: context.signal });
  const [p, risk, anomalies, recommendations] = await context.guard(Promise.allSettled([
    get(`/api/v1/portfolios/${id}`),
    get(`/api/v1/portfolios/${id}/risk`),
    get(`/api/v1/portfolios/${id}/anomalies`),
    get(`/api/v1/recommendations?${new URLSearchParams({ portfolio_id: id })}`),
  ]));
  if (p.status === "rejected") throw p.reason;
  const riskCard = el("section", { class: "card", id: "risk", "aria-labelledby": "risk-title" },
    el("h3", { class: "title", id: "risk-title", text: "Risk" }));
  view.replaceChildren(
    el("h2", { text: `Insights · ${p.value.name}` }),
    riskCard,
    section("anomalies", "Anomalies", anomalies, anomalyPart),
    section("recommendations", "Recommendations", recommendations, (recs) => recommendationPart(recs, context, refresh)),
  );
  if (risk.status === "rejected") riskCard.append(failure(risk.reason));
  else riskPart(riskCard, risk.value);
}

function failure(error) {
  return el("p", { class: "error", role: "alert", text: messageOf(error) });
}

function section(id, title, answer, draw) {
  return el("section", { class: "card", id, "aria-labelledby": `${id}-title` },
    el("h3", { class: "title", id: `${id}-title`, text: title }),
    answer.status === "rejected" ? failure(answer.reason) : draw(answer.value));
}

function riskPart(card, r) {
  const confidence = pct(r.confidence).replace(".00 ", " ");
  card.append(
    el("p", { class: "muted", text: `${r.observations} trading days to ${r.end}, ${r.horizon_days}-day horizon, beta against ${r.benchmark}.` }),
    el("div", { class: "grid", "aria-label": "Risk figures", role: "group" },
      figure("Risk score", el("span", { id: "risk-score", text: `${ratio(r.risk_score)} / 100` })),
      figure("Volatility (annual)", pct(r.volatility)),
      figure(`VaR ${confidence}`, el("span", { id: "risk-var", text: `${pct(r.var_historical)} · ${money(r.var_historical_amount)}` })),
      figure(`CVaR ${confidence}`, el("span", { id: "risk-cvar", text: `${pct(r.cvar_historical)} · ${money(r.cvar_historical_amount)}` })),
      figure("Beta", el("span", { id: "risk-beta", text: ratio(r.beta) })),
      figure("Concentration (HHI)", el("span", { id: "risk-hhi", text: ratio(r.hhi) })),
      figure("Effective positions", ratio(r.effective_positions)),
      figure("Cash", pct(r.cash_weight))),
    el("p", { class: "muted", text: `Parametric VaR ${pct(r.var_parametric)}, CVaR ${pct(r.cvar_parametric)}: `
      + "the loss a normal distribution of the same mean and spread gives." }));
  const sectors = Object.entries(r.sector_exposure || {}).map(([key, w]) => ({ key, weight: Number(w), value: Number(w) * Number(r.portfolio_value || 0) }));
  const title = el("h4", { text: "Sector exposure" });
  card.append(title);
  card.append(barChart(sectors, "Sector exposure", widthOf(title)));
}

function anomalyPart(a) {
  const intro = el("p", { class: "muted", id: "anomaly-model",
    text: `Model ${a.model_version ?? "—"} as of ${a.as_of}: ${a.anomalies} of ${a.holdings.length} holdings unusual (reconstruction error above the threshold).` });
  if (!a.holdings.length) return el("div", {}, intro, el("p", { class: "muted", text: "Nothing held to score." }));
  return el("div", {}, intro, scrollable(el("table", { id: "anomaly-table" },
    el("caption", { text: "Anomaly score per holding" }),
    el("thead", {}, el("tr", {}, ["Symbol", "Verdict", "Error", "Threshold", "Window end", "Model"]
      .map((t, i) => el("th", { scope: "col", class: [0, 1, 4, 5].includes(i) ? "l" : "", text: t })))),
    el("tbody", {}, a.holdings.map((h) => el("tr", { "data-symbol": h.symbol },
      el("td", { class: "l", text: h.symbol }),
      el("td", { class: h.is_anomaly ? "l down" : "l", text: h.status !== "scored" ? label(h.status) : (h.is_anomaly ? "Unusual" : "Normal") }),
      el("td", { text: h.reconstruction_error === null || h.reconstruction_error === undefined ? "—" : Number(h.reconstruction_error).toFixed(4) }),
      el("td", { text: h.threshold === null || h.threshold === undefined ? "—" : Number(h.threshold).toFixed(4) }),
      el("td", { class: "l", text: h.window_end || "—" }),
      el("td", { class: "l", text: h.model_version || a.model_version || "—" })))))));
}

function recommendationPart(recs, context, refresh) {
  if (!recs.length) return el("p", { class: "muted", id: "no-recommendations", text: "No recommendation for this portfolio." });
  return el("div", { class: "stack" }, recs.map((r) => recommendation(r, context, refresh)));
}

function recommendation(r, context, refresh) {
  const open = r.status === "open";
  const message = el("div", { class: "form-message error", role: "alert" });
  const card = el("article", { class: "inline-form recommendation", "data-recommendation": r.id, "data-kind": r.kind },
    el("div", { class: "row spread" },
      el("h4", { text: `${capital(label(r.kind))}${r.symbol ? " " + r.symbol : ""}` }),
      el("span", { class: "muted status", text: `${label(r.status)} · confidence ${pct(r.confidence)}` })),
    el("p", { class: "rationale", text: r.rationale }),
    (r.orders || []).length
      ? el("ul", { class: "orders-planned", "aria-label": "Orders it places" }, r.orders.map((o) => el("li", {
        text: `${o.side === "buy" ? "Buy" : "Sell"} ${shares(o.quantity)} ${o.symbol}` + (o.order ? ` · ${label(o.order.status)}` : "") })))
      : null,
    evidence(r.evidence),
    r.dismiss_reason ? el("p", { class: "muted", text: `Dismissed: ${r.dismiss_reason}` }) : null);
  if (!open) return card;

  const accept = el("button", { type: "button", class: "small", text: "Accept", "aria-label": `Accept ${label(r.kind)}${r.symbol ? " " + r.symbol : ""}` });
  const reason = el("input", { name: "reason", maxLength: 500, autocomplete: "off", placeholder: "Not now" });
  const dismiss = el("button", { type: "submit", class: "small secondary", text: "Dismiss", "aria-label": `Dismiss ${label(r.kind)}${r.symbol ? " " + r.symbol : ""}` });
  const key = newKey();  // accepting twice places the orders once
  accept.addEventListener("click", async () => {
    accept.disabled = dismiss.disabled = true;
    message.textContent = "";
    busy("Placing the recommended orders…");
    try {
      await api(`/api/v1/recommendations/${r.id}/accept`, { method: "POST", key, body: {} });
      await refresh();
      done("Recommendation accepted: its orders are placed.");
    } catch (error) {
      done();
      if (!context.live()) return;
      message.textContent = messageOf(error);
      accept.disabled = dismiss.disabled = false;
    }
  });
  const dismissForm = el("form", { class: "row", novalidate: true, onsubmit: async (event) => {
    event.preventDefault();
    message.textContent = "";
    if (!reason.value.trim()) { message.textContent = "Say why you dismiss it (a few words)."; reason.focus(); return; }
    accept.disabled = dismiss.disabled = true;
    busy("Dismissing…");
    try {
      await api(`/api/v1/recommendations/${r.id}/dismiss`, { method: "POST", body: { reason: reason.value.trim() } });
      await refresh();
      done("Recommendation dismissed.");
    } catch (error) {
      done();
      if (!context.live()) return;
      message.textContent = messageOf(error);
      accept.disabled = dismiss.disabled = false;
    }
  } }, field("Reason to dismiss", reason), dismiss);
  card.append(el("div", { class: "row" }, accept), dismissForm, message);
  return card;
}

// The evidence is the server's own record of why: shown as it is, one line a figure.
function evidence(value) {
  if (!value || typeof value !== "object" || !Object.keys(value).length) return null;
  return el("details", { class: "evidence" }, el("summary", { text: "Evidence" }), facts(value));
}

function facts(value) {
  return el("dl", { class: "facts" }, Object.entries(value).flatMap(([key, v]) => [
    el("dt", { text: label(key) }),
    el("dd", {}, v !== null && typeof v === "object"
      ? (Array.isArray(v) && v.every((x) => typeof x !== "object") ? v.join(", ") : facts(v))
      : String(v ?? "—"))]));
}
