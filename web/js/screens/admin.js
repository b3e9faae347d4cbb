// The operator's screens: users (lock and unlock, role), the audit trail, and system health.
// Each is its own URL: #/admin/users, #/admin/audit, #/admin/health.
import { api } from "../api.js";
import { ignorable } from "../router.js";
import { busy, done, el, fail, field, label, messageOf, scrollable } from "../ui.js";

const TABS = [["users", "Users"], ["audit", "Audit trail"], ["health", "System health"]];
const ROLES = ["investor", "advisor", "admin"];

export async function render(screen) {
  const { view, params } = screen;
  const tabs = el("nav", { class: "tabs", "aria-label": "Admin" }, el("ul", { class: "periods" }, TABS.map(([tab, text]) =>
    el("li", {}, el("a", { href: `#/admin/${tab}`, id: `admin-tab-${tab}`, text, class: "tab", "aria-current": tab === params.tab ? "page" : null })))));
  const body = el("div", {});
  view.replaceChildren(el("h2", { text: `Admin · ${TABS.find(([t]) => t === params.tab)[1]}` }), tabs, body);
  await ({ users, audit, health })[params.tab](body, screen);
}

// Users --------------------------------------------------------------------------------------------

async function users(body, { context, app }) {
  const from = el("input", { id: "users-from", name: "from", type: "search", autocomplete: "off", placeholder: "ada@" });
  const reason = el("input", { id: "lock-reason", name: "reason", maxLength: 500, autocomplete: "off" });
  const message = el("div", { class: "form-message error", role: "alert", id: "users-message" });
  const tbody = el("tbody", {});
  const more = el("button", { type: "button", class: "small secondary", text: "More users", hidden: true });
  const PAGE = 100;
  let last = null;

  async function load(after, replace) {
    const query = new URLSearchParams({ limit: String(PAGE) });
    if (after) query.set("after", after);
    const page = await context.guard(api(`/api/v1/admin/users?${query}`, { signal: context.signal }));
    if (replace) tbody.replaceChildren();
    tbody.append(...page.map(row));
    last = page.length ? page[page.length - 1].email : null;
    more.hidden = page.length < PAGE;
    if (replace && !page.length) tbody.append(el("tr", {}, el("td", { class: "l", colSpan: 7, text: "No user from there on." })));
  }

  async function act(button, text, work, outcome) {
    message.textContent = "";
    button.disabled = true;
    busy(text);
    try {
      await work();
      await refreshRows();
      done(outcome);
    } catch (error) {
      done();
      if (context.live()) message.textContent = messageOf(error);
      button.disabled = false;
    }
  }

  // After a change the rows from the same starting point are read again.
  let start = null;
  const refreshRows = () => load(start, true);

  function row(u) {
    const locked = Boolean(u.disabled_at);
    const role = el("select", { name: "role", "aria-label": `Role of ${u.email}` },
      ROLES.map((r) => el("option", { value: r, text: r, selected: r === u.role })));
    const setRole = el("button", { type: "button", class: "small secondary", text: "Change role", "aria-label": `Change role of ${u.email}`,
      onclick: () => {
        if (role.value === u.role) { message.textContent = `${u.email} is already ${u.role}.`; return; }
        act(setRole, "Changing the role…", () => api(`/api/v1/admin/users/${u.id}`, { method: "PATCH", body: { role: role.value } }),
          `${u.email} is now ${role.value}; they sign in again to use it.`);
      } });
    const lock = el("button", { type: "button", class: "small", text: locked ? "Unlock" : "Lock", "aria-label": `${locked ? "Unlock" : "Lock"} ${u.email}`,
      onclick: () => {
        if (locked) {
          act(lock, "Unlocking…", () => api(`/api/v1/admin/users/${u.id}/enable`, { method: "POST", body: reason.value.trim() ? { reason: reason.value.trim() } : {} }),
            `${u.email} is unlocked.`);
          return;
        }
        if (!reason.value.trim()) { message.textContent = "Give the reason for locking (kept in the audit trail)."; reason.focus(); return; }
        act(lock, "Locking…", () => api(`/api/v1/admin/users/${u.id}/disable`, { method: "POST", body: { reason: reason.value.trim() } }),
          `${u.email} is locked: their sessions have ended.`);
      } });
    return el("tr", { "data-user": u.id, "data-email": u.email },
      el("td", { class: "l", text: u.email }),
      el("td", { class: "l", text: u.full_name || "—" }),
      el("td", { class: "l" }, el("div", { class: "row" }, role, setRole)),
      el("td", { class: "l", text: u.tier }),
      el("td", { class: "l", text: u.mfa_enabled ? "On" : "Off" }),
      el("td", { class: "l status wrap", text: locked ? `Locked since ${new Date(u.disabled_at).toLocaleString()}: ${u.disabled_reason || ""}` : "Active" }),
      el("td", { class: "l" }, el("div", { class: "row" }, lock,
        u.id !== app.me.id ? el("a", { href: `#/advisor/${u.id}`, text: "Accounts", "aria-label": `Accounts of ${u.email}` }) : null)));
  }

  more.addEventListener("click", async () => {
    more.disabled = true;
    try { await load(last, false); } catch (error) { fail(error); } finally { more.disabled = false; }
  });
  const find = el("form", { class: "row", id: "users-find", onsubmit: async (event) => {
    event.preventDefault();
    start = from.value.trim() || null;
    try { await load(start, true); } catch (error) { fail(error); }
  } }, field("Emails after", from), el("button", { type: "submit", class: "small", text: "Show users" }));
  body.append(
    el("section", { class: "card" }, find, field("Reason for locking or unlocking", reason), message),
    el("section", { class: "card" }, scrollable(el("table", { id: "users" },
      el("caption", { text: "Users by email" }),
      el("thead", {}, el("tr", {}, ["Email", "Name", "Role", "Tier", "Two-factor", "Status", "Actions"]
        .map((t) => el("th", { scope: "col", class: "l", text: t })))),
      tbody)), more));
  await load(null, true);
}

// Audit trail --------------------------------------------------------------------------------------

async function audit(body, { context }) {
  const action = el("input", { id: "audit-action", name: "action", autocomplete: "off", placeholder: "auth.login" });
  const tbody = el("tbody", {});
  const older = el("button", { type: "button", class: "small secondary", text: "Older entries", hidden: true });
  const PAGE = 50;
  let oldest = null;

  async function load(before, replace) {
    const query = new URLSearchParams({ limit: String(PAGE) });
    if (before) query.set("before", String(before));
    if (action.value.trim()) query.set("action", action.value.trim());
    const rows = await context.guard(api(`/api/v1/admin/audit?${query}`, { signal: context.signal }));
    if (replace) tbody.replaceChildren();
    tbody.append(...rows.map((r) => el("tr", { "data-sequence": r.sequence },
      el("td", { text: String(r.sequence) }),
      el("td", { class: "l", text: new Date(r.created_at).toLocaleString() }),
      el("td", { class: "l action", text: r.action }),
      el("td", { class: "l", text: r.actor_id ? String(r.actor_id).slice(0, 8) : "—", title: r.actor_id || "" }),
      el("td", { class: "l wrap", text: r.subject || "—" }),
      el("td", { class: "l", text: r.ip || "—" }),
      el("td", { class: "l wrap", text: r.details && Object.keys(r.details).length ? JSON.stringify(r.details) : "" }),
      el("td", { class: "l", text: r.hash ? String(r.hash).slice(0, 12) : "—", title: r.hash || "" }))));
    if (replace && !rows.length) tbody.append(el("tr", {}, el("td", { class: "l", colSpan: 8, text: "No entry." })));
    oldest = rows.length ? rows[rows.length - 1].sequence : oldest;
    older.hidden = rows.length < PAGE;
  }
  older.addEventListener("click", async () => {
    older.disabled = true;
    try { await load(oldest, false); } catch (error) { fail(error); } finally { older.disabled = false; }
  });
  body.append(
    verification(context),
    el("section", { class: "card" },
      el("form", { class: "row", id: "audit-filter", onsubmit: async (event) => {
        event.preventDefault();
        try { await load(null, true); } catch (error) { fail(error); }
      } }, field("Action", action), el("button", { type: "submit", class: "small", text: "Filter" })),
      scrollable(el("table", { id: "audit" },
        el("caption", { text: "Audit trail, newest first" }),
        el("thead", {}, el("tr", {}, ["#", "When", "Action", "Actor", "Subject", "IP", "Details", "Hash"]
          .map((t, i) => el("th", { scope: "col", class: i ? "l" : "", text: t })))),
        tbody)),
      older));
  await load(null, true);
}

// The chain's verification: the API walks every entry from the first, as `wealthalloc audit verify` does.
function verification(context) {
  const outcome = el("div", { id: "audit-verify-result", role: "status" });
  const button = el("button", { type: "button", class: "small", id: "audit-verify-run", text: "Verify the chain" });
  button.addEventListener("click", async () => {
    button.disabled = true;
    outcome.replaceChildren(el("p", { class: "muted", text: "Verifying…" }));
    try {
      const report = await context.guard(api("/api/v1/admin/audit/verify", { signal: context.signal }));
      outcome.replaceChildren(report.valid
        ? el("p", { class: "ok", text: `Intact: ${report.checked} entries checked, each linked to the one before it.` })
        : el("div", {},
          el("p", { class: "error", text: `Broken: ${report.checked} entries checked; the first bad entry is ${report.first_bad_id || "not one entry (the links do not reach every entry)"}.` }),
          el("ul", {}, (report.problems || []).map((problem) => el("li", { text: problem })))));
    } catch (error) {
      if (!ignorable(error)) outcome.replaceChildren(el("p", { class: "error", text: messageOf(error) }));
    } finally {
      button.disabled = false;
    }
  });
  return el("section", { class: "card", id: "audit-verify" },
    el("h3", { class: "title", text: "Chain verification" }),
    el("p", { class: "muted", text: "Each entry carries the hash of the one before it: a changed, removed or reordered entry breaks the chain from there on." }),
    button, outcome);
}

// System health ------------------------------------------------------------------------------------

async function health(body, { context }) {
  let report;
  try {
    report = await context.guard(api("/health", { signal: context.signal }));
  } catch (error) {
    // 503 carries the same report as its details, so an operator sees what fails.
    if (error.status !== 503 || !error.details || !error.details.checks) throw error;
    report = error.details;
  }
  const healthy = report.status === "healthy";
  body.append(
    el("section", { class: "card grid", id: "health-summary", "aria-label": "Health" },
      el("div", { class: "figure" }, el("div", { class: "label", text: "Status" }),
        el("div", { class: `value ${healthy ? "ok" : "down"}`, id: "health-status", text: healthy ? "Healthy" : "Unhealthy" })),
      el("div", { class: "figure" }, el("div", { class: "label", text: "Version" }), el("div", { class: "value", text: report.version })),
      el("div", { class: "figure" }, el("div", { class: "label", text: "Up for" }), el("div", { class: "value", text: duration(report.uptime_seconds) })),
      el("div", { class: "figure" }, el("div", { class: "label", text: "Memory" }), el("div", { class: "value", text: `${report.memory_mb} MB` }))),
    el("section", { class: "card" }, scrollable(el("table", { id: "health-checks" },
      el("caption", { text: "Dependency checks" }),
      el("thead", {}, el("tr", {}, ["Check", "Status", "Latency", "Detail"].map((t, i) => el("th", { scope: "col", class: i === 2 ? "" : "l", text: t })))),
      el("tbody", {}, Object.entries(report.checks || {}).map(([name, check]) => el("tr", { "data-check": name },
        el("td", { class: "l", text: label(name) }),
        el("td", { class: `l ${check.status === "healthy" ? "ok" : "down"}`, text: check.status }),
        el("td", { text: check.latency_ms === undefined ? "—" : `${check.latency_ms} ms` }),
        el("td", { class: "l wrap", text: Object.entries(check).filter(([k]) => !["status", "latency_ms"].includes(k))
          .map(([k, v]) => `${label(k)}: ${typeof v === "object" ? JSON.stringify(v) : v}`).join(" · ") }))))))));
}

function duration(seconds) {
  const s = Number(seconds) || 0;
  if (s < 120) return `${Math.round(s)} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}
