// Routes live in the URL hash: #/dashboard, #/portfolios/{id}, #/portfolios/{id}/trade,
// #/portfolios/{id}/orders, #/portfolios/{id}/insights, #/tax, #/harvest, #/alerts, #/settings,
// #/advisor (the client picker), #/advisor/{client}[/{portfolio}], #/admin/{users|audit|health},
// #/notifications, #/learn[/{article}], #/signin. Each navigation starts a new generation: an
// answer that arrives for an older one is dropped, so it never renders under the current screen.

const ROUTES = [
  [/^\/signin$/, "signin", []],
  [/^\/dashboard$/, "dashboard", []],
  [/^\/portfolios\/([0-9a-f-]{36})$/i, "portfolio", ["id"]],
  [/^\/portfolios\/([0-9a-f-]{36})\/trade$/i, "trade", ["id"]],
  [/^\/portfolios\/([0-9a-f-]{36})\/orders$/i, "orders", ["id"]],
  [/^\/tax$/, "tax", []],
  [/^\/harvest$/, "harvest", []],
  [/^\/portfolios\/([0-9a-f-]{36})\/insights$/i, "insights", ["id"]],
  [/^\/alerts$/, "alerts", []],
  [/^\/settings$/, "settings", []],
  [/^\/advisor$/, "advisor", []],
  [/^\/advisor\/([0-9a-f-]{36})$/i, "client", ["client"]],
  [/^\/advisor\/([0-9a-f-]{36})\/([0-9a-f-]{36})$/i, "client", ["client", "pid"]],
  [/^\/admin\/(users|audit|health)$/, "admin", ["tab"]],
  [/^\/notifications$/, "notifications", []],
  [/^\/learn$/, "learn", []],
  [/^\/learn\/([a-z0-9-]{1,100})$/, "learn", ["slug"]],
];

export function parse(hash) {
  const path = (hash || "").replace(/^#/, "") || "/dashboard";
  for (const [pattern, name, keys] of ROUTES) {
    const found = pattern.exec(path);
    if (found) return { name, path, params: Object.fromEntries(keys.map((k, i) => [k, found[i + 1]])) };
  }
  return { name: "notfound", path, params: {} };
}

export function go(path) {
  if (location.hash === "#" + path) window.dispatchEvent(new HashChangeEvent("hashchange"));
  else location.hash = path;
}

export class Stale extends Error {
  constructor() { super("stale"); this.name = "Stale"; }
}

let generation = 0;
let controller = null;
let leaving = [];

/** A new screen: the previous one's requests are aborted, its answers ignored and what it
 *  registered with `onLeave` (its live subscriptions) run. */
export function begin() {
  generation += 1;
  if (controller) controller.abort();
  controller = new AbortController();
  const previous = leaving;
  leaving = [];
  previous.forEach((cleanup) => cleanup());
  const mine = generation;
  const signal = controller.signal;
  return {
    signal,
    live: () => mine === generation,
    /** Runs `cleanup` when the router leaves this screen (at once if it already has). */
    onLeave: (cleanup) => { if (mine === generation) leaving.push(cleanup); else cleanup(); },
    /** Resolves with the value only while this screen is still the current one. */
    guard: async (promise) => {
      const value = await promise;
      if (mine !== generation) throw new Stale();
      return value;
    },
  };
}

export function ignorable(error) {
  return error instanceof Stale || (error && error.name === "AbortError");
}
