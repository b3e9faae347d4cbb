"use strict";
const state = { token: sessionStorage.getItem("wa_token"), refresh: sessionStorage.getItem("wa_refresh") };
const $ = (id) => document.getElementById(id);
const money = (s) => s == null ? "—" : Number(s).toLocaleString(undefined, { style: "currency", currency: "USD" });
const pct = (s) => s == null ? "—" : (Number(s) * 100).toFixed(2) + " %";
const signed = (s) => `<span class="${Number(s) < 0 ? "down" : "up"}">${money(s)}</span>`;
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));

async function api(path, options = {}) {
  const headers = { "Content-Type": "application/json", ...(options.headers || {}) };
  if (state.token) headers.Authorization = "Bearer " + state.token;
  let response = await fetch(path, { ...options, headers });
  if (response.status === 401 && state.refresh && !options.retried) {
    if (await refresh()) return api(path, { ...options, retried: true });
  }
  const body = response.status === 204 ? {} : await response.json();
  if (!response.ok) throw new Error(body.error ? body.error.message : response.statusText);
  return body.data;
}

// A file download (CSV, PDF): fetched with the bearer token, then saved from a blob.
async function download(path) {
  const headers = state.token ? { Authorization: "Bearer " + state.token } : {};
  let response = await fetch(path, { headers });
  if (response.status === 401 && state.refresh && await refresh()) {
    response = await fetch(path, { headers: { Authorization: "Bearer " + state.token } });
  }
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw new Error(body.error ? body.error.message : response.statusText);
  }
  const named = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") || "");
  const url = URL.createObjectURL(await response.blob());
  const link = document.createElement("a");
  link.href = url; link.download = named ? named[1] : "download";
  document.body.appendChild(link); link.click(); link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
  return link.download;
}

async function refresh() {
  const response = await fetch("/api/v1/auth/refresh", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ refresh_token: state.refresh }),
  });
  if (!response.ok) { signOut(); return false; }
  remember((await response.json()).data);
  return true;
}

function remember(tokens) {
  state.token = tokens.access_token; state.refresh = tokens.refresh_token;
  sessionStorage.setItem("wa_token", state.token); sessionStorage.setItem("wa_refresh", state.refresh);
}

function signOut() {
  if (state.refresh) fetch("/api/v1/auth/logout", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ refresh_token: state.refresh }) });
  sessionStorage.clear(); state.token = state.refresh = null;
  $("app").hidden = true; $("login").hidden = false; $("signout").hidden = true; $("who").textContent = "";
}

$("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("login-error").textContent = "";
  const body = { email: $("email").value, password: $("password").value };
  if ($("totp").value) body.totp_code = $("totp").value;
  try {
    state.token = null;
    remember(await api("/api/v1/auth/login", { method: "POST", body: JSON.stringify(body) }));
    await show();
  } catch (error) { $("login-error").textContent = error.message; }
});
$("signout").addEventListener("click", signOut);

function figure(label, value) { return `<div class="figure"><div class="label">${label}</div><div class="value">${value}</div></div>`; }

async function show() {
  const [me, board, portfolios] = await Promise.all([api("/api/v1/me"), api("/api/v1/dashboard"), api("/api/v1/portfolios")]);
  $("who").textContent = `${me.email} · ${me.role}`;
  $("login").hidden = true; $("app").hidden = false; $("signout").hidden = false;
  $("figures").innerHTML = figure("Total value", money(board.total_value)) + figure("Today", signed(board.day_change))
    + figure("Unrealized gain/loss", signed(board.total_gain_loss)) + figure("Cash", money(board.cash_balance))
    + figure("Available cash", money(board.available_cash)) + figure("Harvestable losses", money(board.harvestable_loss_total)) + figure("Market date", esc(board.as_of));
  const year = Number(String(board.as_of).slice(0, 4)) || new Date().getFullYear();
  $("tax-year").innerHTML = [0, 1, 2, 3, 4].map((back) => `<option>${year - back}</option>`).join("");
  $("tabs").innerHTML = portfolios.map((p) => `<button data-id="${esc(p.id)}">${esc(p.name)}</button>`).join("");
  $("tabs").querySelectorAll("button").forEach((b) => b.addEventListener("click", () => showPortfolio(b.dataset.id)));
  if (portfolios.length) await showPortfolio(portfolios[0].id);
}

async function showPortfolio(id) {
  state.portfolio = id;
  $("tabs").querySelectorAll("button").forEach((b) => b.classList.toggle("on", b.dataset.id === id));
  const p = await api(`/api/v1/portfolios/${id}`);
  $("portfolio-figures").innerHTML = figure("Value", money(p.total_value)) + figure("Invested", money(p.invested_value))
    + figure("Gain/loss", signed(p.total_gain_loss)) + figure("Cash", money(p.cash_balance))
    + figure("Available to withdraw", money(p.available_cash)) + figure("Risk score", esc(p.risk_score ?? "—"))
    + figure("Account", esc(p.account_type)) + figure("Lot method", esc(p.lot_method).toUpperCase());
  $("holdings").innerHTML = "<tr><th>Symbol</th><th class=l>Sector</th><th>Shares</th><th>Avg cost</th><th>Price</th><th>Value</th><th>Gain/loss</th><th>Weight</th></tr>"
    + p.holdings.map((h) => `<tr><td>${esc(h.symbol)}</td><td class=l>${esc(h.sector)}</td><td>${Number(h.shares)}</td><td>${money(h.average_cost)}</td>`
      + `<td>${money(h.current_price)}</td><td>${money(h.market_value)}</td><td>${signed(h.unrealized_gain_loss)}</td><td>${pct(h.weight)}</td></tr>`).join("");
  const allocation = await api(`/api/v1/portfolios/${id}/allocation`);
  $("sectors").innerHTML = "<tr><th>Sector</th><th>Current</th><th>Target</th><th class='barcol'></th></tr>"
    + allocation.by_sector.map((r) => `<tr><td>${esc(r.key)}</td><td>${pct(r.current_weight)}</td><td>${pct(r.target_weight)}</td>`
      + `<td><div class="bar" data-width="${Math.min(100, Number(r.current_weight) * 100)}"></div></td></tr>`).join("");
  // Widths set through the DOM: the page's policy refuses style attributes in markup.
  $("sectors").querySelectorAll(".bar").forEach((bar) => { bar.style.width = bar.dataset.width + "%"; });
  try {
    const perf = await api(`/api/v1/portfolios/${id}/performance`);
    const rows = [["Time-weighted return", pct(perf.time_weighted_return)], ["Money-weighted return (annual)", pct(perf.money_weighted_return)],
      ["S&P 500 over the same days", pct(perf.benchmark_return)], ["Volatility (annual)", pct(perf.volatility)],
      ["Sharpe", perf.sharpe ?? "—"], ["Sortino", perf.sortino ?? "—"], ["Max drawdown", pct(perf.max_drawdown)], ["Beta", perf.beta ?? "—"]];
    $("performance").innerHTML = rows.map(([k, v]) => `<tr><td>${k}</td><td>${esc(v)}</td></tr>`).join("");
  } catch (error) { $("performance").innerHTML = `<tr><td class="muted">${esc(error.message)}</td></tr>`; }
}

async function downloadForm(format) {
  if (!state.portfolio) return;
  const status = $("tax-documents-status");
  status.textContent = "Preparing…";
  const query = new URLSearchParams({ year: $("tax-year").value, format });
  try {
    const name = await download(`/api/v1/portfolios/${encodeURIComponent(state.portfolio)}/realized-gains?${query}`);
    status.textContent = `Saved ${name}.`;
  } catch (error) { status.textContent = error.message; }
}
$("form-8949-csv").addEventListener("click", () => downloadForm("csv"));
$("form-8949-pdf").addEventListener("click", () => downloadForm("pdf"));

if (state.token) show().catch(signOut);
