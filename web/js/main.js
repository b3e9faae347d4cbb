// The app shell: sign-in gate, the navigation and portfolio choice, and one screen at a time
// chosen by the URL.
import { api, onSignedOut, onToken, signedIn, signOut } from "./api.js";
import { begin, go, ignorable, parse } from "./router.js";
import * as live from "./stream.js";
import * as bell from "./bell.js";
import { busy, clearAlert, done, el, fail, label, money, shares, toast } from "./ui.js";
import { showSignIn } from "./screens/signin.js";
import * as dashboard from "./screens/dashboard.js";
import * as portfolio from "./screens/portfolio.js";
import * as trade from "./screens/trade.js";
import * as orders from "./screens/orders.js";
import * as tax from "./screens/tax.js";
import * as harvest from "./screens/harvest.js";
import * as insights from "./screens/insights.js";
import * as alerts from "./screens/alerts.js";
import * as settings from "./screens/settings.js";
import * as advisor from "./screens/advisor.js";
import * as client from "./screens/client.js";
import * as admin from "./screens/admin.js";
import * as notifications from "./screens/notifications.js";
import * as learn from "./screens/learn.js";

const SCREENS = {
  dashboard, portfolio, trade, orders, tax, harvest, insights, alerts, settings, advisor, client, admin, notifications,
  learn,
};
const $ = (id) => document.getElementById(id);

// What every screen may read: the signed-in person's portfolios and the one chosen.
export const app = {
  me: null,
  portfolios: null,
  portfolioId: null,
  async load(context) {
    if (!this.portfolios) {
      const [me, portfolios] = await context.guard(Promise.all([
        api("/api/v1/me", { signal: context.signal }), api("/api/v1/portfolios", { signal: context.signal })]));
      this.me = me;
      this.portfolios = portfolios;
      $("who").textContent = `${me.email} · ${me.role}`;
      // An advisor picks a client; an admin runs the platform (and opens anyone's accounts from Users).
      $("nav-advisor").hidden = me.role !== "advisor";
      $("nav-admin").hidden = me.role !== "admin";
      fillPortfolioChoice();
      bell.load();
      $("portfolio-select").parentElement.hidden = !portfolios.length;  // an advisor or admin may hold none
    }
  },
  choose(id) {
    if (id && this.portfolios && this.portfolios.some((p) => p.id === id)) this.portfolioId = id;
    if (!this.portfolioId && this.portfolios && this.portfolios.length) this.portfolioId = this.portfolios[0].id;
    $("portfolio-select").value = this.portfolioId || "";
    const base = this.portfolioId ? `#/portfolios/${this.portfolioId}` : "#/dashboard";
    $("nav-portfolio").href = base;
    $("nav-trade").href = this.portfolioId ? base + "/trade" : base;
    $("nav-orders").href = this.portfolioId ? base + "/orders" : base;
    $("nav-insights").href = this.portfolioId ? base + "/insights" : base;
  },
  forget() {
    this.me = this.portfolios = this.portfolioId = null;
    bell.forget();
  },
};

function fillPortfolioChoice() {
  const select = $("portfolio-select");
  select.replaceChildren(...app.portfolios.map((p) => {
    const option = document.createElement("option");
    option.value = p.id;
    option.textContent = p.name;
    return option;
  }));
}

$("portfolio-select").addEventListener("change", (event) => {
  const route = parse(location.hash);
  const id = event.target.value;
  const tail = { trade: "/trade", orders: "/orders", insights: "/insights" }[route.name] ?? "";
  if (["portfolio", "trade", "orders", "insights"].includes(route.name)) go(`/portfolios/${id}${tail}`);
  else { app.choose(id); render(); }
});

function markCurrent(route) {
  const current = {
    dashboard: "nav-dashboard", portfolio: "nav-portfolio", trade: "nav-trade", orders: "nav-orders", tax: "nav-tax",
    insights: "nav-insights", harvest: "nav-harvest", alerts: "nav-alerts", settings: "nav-settings",
    advisor: "nav-advisor", client: "nav-advisor", admin: "nav-admin", learn: "nav-learn",
  }[route.name];
  document.querySelectorAll("#nav a").forEach((a) => {
    if (a.id === current) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  });
  if (route.name === "notifications") $("bell").setAttribute("aria-current", "page");
  else $("bell").removeAttribute("aria-current");
}

// The header says whether updates arrive live; fills and cancels show as toasts on any screen.
live.onState((state) => {
  const badge = $("live");
  badge.hidden = state === "off";
  badge.textContent = state === "live" ? "Live" : "Reconnecting…";
  badge.className = "live " + (state === "live" ? "on" : "off");
});

live.subscribe((message) => {
  if (message.type !== "event") return;
  const d = message.data || {};
  const order = `${d.side === "sell" ? "Sell" : "Buy"} ${shares(d.quantity)} ${d.symbol}`;
  if (message.event_type === "trades.executed") {
    const partly = d.order_status === "partially_filled" ? "Partly filled" : "Filled";
    toast(`${partly}: ${order} at ${money(d.price)}`);
  } else if (message.event_type === "trades.order_cancelled") {
    toast(`Order cancelled: ${d.side && d.quantity ? order : d.symbol}`);
  } else if (message.event_type === "trades.order_rejected") {
    toast(`Order rejected: ${d.symbol}${d.reason ? " (" + label(d.reason) + ")" : ""}`, "bad");
  }
});

onToken((token) => live.renew(token));

function showApp(on) {
  $("login").hidden = on;
  $("nav").hidden = !on;
  $("view").hidden = !on;
  $("signout").hidden = !on;
  if (!on) $("who").textContent = "";
}

let shownPath = null;

async function render() {
  const route = parse(location.hash);
  const context = begin();
  clearAlert();
  if (!signedIn()) {
    shownPath = null;
    live.stop();
    showApp(false);
    done();
    if (route.name !== "signin") { go("/signin"); return; }
    showSignIn(() => go("/dashboard"));
    return;
  }
  if (route.name === "signin" || !SCREENS[route.name]) { go("/dashboard"); return; }
  showApp(true);
  live.start();
  const view = $("view");
  const screen = SCREENS[route.name];
  busy();
  view.replaceChildren(el("p", { class: "muted", text: "Loading…" }));
  try {
    await app.load(context);
    app.choose(route.params.id);
    markCurrent(route);
    view.setAttribute("aria-busy", "true");
    await screen.render({ view, context, params: route.params, app, refresh: render });
    if (context.live()) {
      done();
      // A new screen takes the focus, so a keyboard or screen reader starts at its heading.
      if (route.path !== shownPath && shownPath !== null) view.focus({ preventScroll: false });
      shownPath = route.path;
    }
  } catch (error) {
    if (ignorable(error)) return;
    fail(error);
  } finally {
    if (context.live()) view.removeAttribute("aria-busy");
  }
}

$("signout").addEventListener("click", async () => {
  live.stop();
  await signOut();
  app.forget();
  go("/signin");
});

onSignedOut(() => { live.stop(); app.forget(); go("/signin"); });
window.addEventListener("hashchange", render);
render();
