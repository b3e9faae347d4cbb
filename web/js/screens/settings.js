// Settings: profile (name, risk and tax profile), two-factor sign-in, API keys and webhooks (their
// secrets shown once, when made), advisor links, and where each kind of notification goes. Each section loads and fails on its own, and
// a section that changes reloads itself only, so a secret just shown stays on screen.
import { api } from "../api.js";
import { busy, done, el, field, fill, label, messageOf, scrollable } from "../ui.js";
import { qrCode } from "../qr.js";

const RISK = ["conservative", "moderate", "aggressive"];
const EXPERIENCE = ["beginner", "intermediate", "advanced"];
const FILING = [["single", "Single"], ["married_joint", "Married filing jointly"], ["married_separate", "Married filing separately"],
  ["head_of_household", "Head of household"]];
const RATES = [["federal_rate", "Federal rate (%)"], ["state_rate", "State rate (%)"],
  ["short_term_rate", "Short-term gains rate (%)"], ["long_term_rate", "Long-term gains rate (%)"]];

function options(values, chosen, blank) {
  const list = values.map((v) => (Array.isArray(v) ? v : [v, label(v)]));
  return [blank ? el("option", { value: "", text: blank, selected: !chosen }) : null,
    ...list.map(([value, text]) => el("option", { value, text, selected: value === chosen }))];
}

// Rates travel as fractions ("0.24"); people read and type percentages ("24").
const asPercent = (s) => (s === null || s === undefined ? "" : String(Number((Number(s) * 100).toFixed(3))));
const asFraction = (s) => (Number(s) / 100).toFixed(5);

export async function render({ view, context }) {
  const me = await context.guard(api("/api/v1/me", { signal: context.signal }));
  const sections = {
    profile: el("section", { class: "card", id: "profile", "aria-labelledby": "profile-title" }),
    mfa: el("section", { class: "card", id: "mfa", "aria-labelledby": "mfa-title" }),
    keys: el("section", { class: "card", id: "api-keys", "aria-labelledby": "api-keys-title" }),
    hooks: el("section", { class: "card", id: "webhooks", "aria-labelledby": "webhooks-title" }),
    links: el("section", { class: "card", id: "advisor-links", "aria-labelledby": "advisor-links-title" }),
    notices: el("section", { class: "card", id: "notification-preferences", "aria-labelledby": "notification-preferences-title" }),
  };
  const state = { me, context };
  view.replaceChildren(el("h2", { text: "Settings" }), ...Object.values(sections));
  profile(sections.profile, state);
  mfa(sections.mfa, state);
  await context.guard(Promise.all([keys(sections.keys, state), hooks(sections.hooks, state), links(sections.links, state),
    notices(sections.notices, state)]));
}

function title(id, text) {
  return el("h3", { class: "title", id: `${id}-title`, text });
}

function note() {
  return el("div", { class: "form-message error", role: "alert" });
}

/** Runs `work` for a form: busy state, the button disabled, the error shown in `message`. */
async function attempt(button, message, context, text, work) {
  message.textContent = "";
  button.disabled = true;
  busy(text);
  try {
    await work();
  } catch (error) {
    done();
    if (context.live()) message.textContent = messageOf(error);
  } finally {
    button.disabled = false;
  }
}

async function reloadMe(state) {
  state.me = await state.context.guard(api("/api/v1/me", { signal: state.context.signal }));
}

// Profile -------------------------------------------------------------------------------------------

function profile(section, state) {
  const { me, context } = state;
  const tax = me.tax_profile || {};
  const name = el("input", { id: "profile-name", name: "full_name", autocomplete: "name", maxLength: 200, value: me.full_name || "" });
  const risk = el("select", { id: "profile-risk", name: "risk_tolerance" }, options(RISK, me.risk_profile.risk_tolerance, "Not set"));
  const experience = el("select", { id: "profile-experience", name: "investment_experience" },
    options(EXPERIENCE, me.risk_profile.investment_experience, "Not set"));
  const filing = el("select", { id: "profile-filing", name: "filing_status" }, options(FILING, tax.filing_status, "Not set"));
  const rates = RATES.map(([key, text]) => [key, el("input", { id: `profile-${key.replace(/_/g, "-")}`, name: key, inputmode: "decimal",
    autocomplete: "off", value: asPercent(tax[key]) }), text]);
  const message = note();
  const save = el("button", { type: "submit", class: "small", text: "Save profile" });
  const form = el("form", { id: "profile-form", novalidate: true, onsubmit: async (event) => {
    event.preventDefault();
    const changes = {};
    if (name.value.trim() && name.value.trim() !== (me.full_name || "")) changes.full_name = name.value.trim();
    if (risk.value && risk.value !== me.risk_profile.risk_tolerance) changes.risk_tolerance = risk.value;
    if (experience.value && experience.value !== me.risk_profile.investment_experience) changes.investment_experience = experience.value;
    if (filing.value && filing.value !== tax.filing_status) changes.filing_status = filing.value;
    for (const [key, input, text] of rates) {
      const typed = input.value.trim();
      if (typed === "" || typed === asPercent(tax[key])) continue;
      if (!/^\d+(\.\d+)?$/.test(typed) || Number(typed) > 100) { message.textContent = `${text}: enter a percentage from 0 to 100.`; input.focus(); return; }
      changes[key] = asFraction(typed);
    }
    if (!Object.keys(changes).length) { message.textContent = "Nothing changed."; return; }
    await attempt(save, message, context, "Saving…", async () => {
      await api("/api/v1/me", { method: "PATCH", body: changes });
      await reloadMe(state);
      profile(section, state);
      done("Profile saved.");
    });
  } },
  el("div", { class: "grid tight" },
    field("Full name", name), field("Risk tolerance", risk), field("Investment experience", experience),
    field("Filing status", filing), ...rates.map(([, input, text]) => field(text, input))),
  el("div", { class: "row" }, save), message);
  section.replaceChildren(title("profile", "Profile"),
    el("dl", { class: "facts" },
      el("dt", { text: "Email" }), el("dd", { id: "profile-email", text: me.email }),
      el("dt", { text: "Role" }), el("dd", { text: me.role }),
      el("dt", { text: "Tier" }), el("dd", { text: me.tier })),
    form);
}

// Two-factor sign-in --------------------------------------------------------------------------------

function mfa(section, state) {
  const { me, context } = state;
  const message = note();
  if (me.mfa_enabled) {
    const password = el("input", { id: "mfa-password", name: "password", type: "password", autocomplete: "current-password", required: true });
    const code = el("input", { id: "mfa-disable-code", name: "code", inputmode: "numeric", autocomplete: "one-time-code", pattern: "\\d{6}", required: true });
    const off = el("button", { type: "submit", class: "small secondary", text: "Turn off two-factor" });
    section.replaceChildren(title("mfa", "Two-factor sign-in"),
      el("p", { id: "mfa-state", text: "Two-factor sign-in is on: signing in asks for a code from your authenticator app." }),
      el("form", { id: "mfa-disable-form", novalidate: true, onsubmit: async (event) => {
        event.preventDefault();
        if (!/^\d{6}$/.test(code.value.trim())) { message.textContent = "Enter the six-digit code from the app."; return; }
        await attempt(off, message, context, "Turning two-factor off…", async () => {
          await api("/api/v1/auth/mfa/disable", { method: "POST", body: { password: password.value, code: code.value.trim() } });
          password.value = code.value = "";
          await reloadMe(state);
          mfa(section, state);
          await keys(document.getElementById("api-keys"), state);
          done("Two-factor sign-in is off.");
        });
      } }, el("div", { class: "grid tight" }, field("Password", password), field("Code from the app", code)),
      el("div", { class: "row" }, off), message));
    return;
  }
  const start = el("button", { type: "button", class: "small", text: "Set up two-factor" });
  const enrol = el("div", { id: "mfa-enrol" });
  start.addEventListener("click", () => attempt(start, message, context, "Preparing…", async () => {
    const setup = await api("/api/v1/auth/mfa/setup", { method: "POST" });
    done();
    const code = el("input", { id: "mfa-code", name: "code", inputmode: "numeric", autocomplete: "one-time-code", pattern: "\\d{6}", required: true });
    const on = el("button", { type: "submit", class: "small", text: "Turn on two-factor" });
    enrol.replaceChildren(
      el("p", { text: "Scan the code with an authenticator app, or type the secret into it, then enter the six-digit code it shows." }),
      qrCode(setup.otpauth_uri, "QR code of the authenticator secret"),
      el("p", { class: "muted", text: "Secret" }), el("div", { class: "secret", id: "mfa-secret", text: setup.secret }),
      el("p", { class: "muted", text: "Setup link" }), el("div", { class: "secret", id: "mfa-uri", text: setup.otpauth_uri }),
      el("form", { id: "mfa-enable-form", novalidate: true, onsubmit: async (event) => {
        event.preventDefault();
        if (!/^\d{6}$/.test(code.value.trim())) { message.textContent = "Enter the six-digit code from the app."; return; }
        await attempt(on, message, context, "Turning two-factor on…", async () => {
          await api("/api/v1/auth/mfa/enable", { method: "POST", body: { code: code.value.trim() } });
          await reloadMe(state);
          mfa(section, state);
          await keys(document.getElementById("api-keys"), state);
          done("Two-factor sign-in is on.");
        });
      } }, field("Code from the app", code), el("div", { class: "row" }, on)));
    start.hidden = true;
  }));
  section.replaceChildren(title("mfa", "Two-factor sign-in"),
    el("p", { id: "mfa-state", text: "Two-factor sign-in is off." }), el("div", { class: "row" }, start), enrol, message);
}

// API keys ------------------------------------------------------------------------------------------

function totpField(state, id) {
  if (!state.me.mfa_enabled) return [null, null];
  const input = el("input", { id, name: "totp_code", inputmode: "numeric", autocomplete: "one-time-code", pattern: "\\d{6}" });
  return [input, field("Two-factor code", input)];
}

async function keys(section, state, shown = null) {
  const { context } = state;
  let list;
  try {
    list = await context.guard(api("/api/v1/api-keys", { signal: context.signal }));
  } catch (error) {
    if (error.name === "Stale" || error.name === "AbortError") throw error;
    section.replaceChildren(title("api-keys", "API keys"), el("p", { class: "error", role: "alert", text: messageOf(error) }));
    return;
  }
  const message = note();
  const name = el("input", { id: "api-key-name", name: "name", maxLength: 200, autocomplete: "off", required: true });
  const scopes = ["read", "trade", ...(state.me.role === "admin" ? ["admin"] : [])].map((scope) =>
    el("input", { type: "checkbox", id: `api-key-scope-${scope}`, name: "scopes", value: scope, checked: scope === "read" }));
  const [code, codeField] = totpField(state, "api-key-totp");
  const create = el("button", { type: "submit", class: "small", text: "Create key" });
  const form = el("form", { id: "api-key-form", novalidate: true, onsubmit: async (event) => {
    event.preventDefault();
    const body = { name: name.value.trim(), scopes: scopes.filter((s) => s.checked).map((s) => s.value) };
    if (!body.name) { message.textContent = "Name the key (what will use it)."; name.focus(); return; }
    if (!body.scopes.length) { message.textContent = "Choose at least one scope."; return; }
    if (code && code.value.trim()) body.totp_code = code.value.trim();
    await attempt(create, message, context, "Creating the key…", async () => {
      const made = await api("/api/v1/api-keys", { method: "POST", body });
      await keys(section, state, made);
      done("API key created: copy it now.");
    });
  } },
  el("div", { class: "grid tight" }, field("Key name", name),
    el("fieldset", { class: "checks" }, el("legend", { class: "muted", text: "Scopes" }),
      scopes.map((box) => el("label", { for: box.id }, box, box.value))), codeField),
  el("div", { class: "row" }, create), message);

  const rows = list.map((k) => el("tr", { "data-key": k.id },
    el("td", { class: "l", text: k.name }),
    el("td", { class: "l", text: `${k.prefix}…` }),
    el("td", { class: "l", text: (k.scopes || []).join(", ") }),
    el("td", { class: "l", text: k.last_used_at ? new Date(k.last_used_at).toLocaleString() : "Never" }),
    el("td", { class: "l", text: k.expires_at ? new Date(k.expires_at).toLocaleDateString() : "—" }),
    el("td", { class: "l status", text: k.revoked_at ? "Revoked" : "Active" }),
    el("td", {}, k.revoked_at ? null : el("button", { type: "button", class: "small secondary", text: "Revoke", "aria-label": `Revoke ${k.name}`,
      onclick: async (event) => {
        const body = code && code.value.trim() ? { totp_code: code.value.trim() } : undefined;
        await attempt(event.currentTarget, message, context, "Revoking…", async () => {
          await api(`/api/v1/api-keys/${k.id}`, { method: "DELETE", body });
          await keys(section, state);
          done("API key revoked.");
        });
      } }))));
  fill(section, title("api-keys", "API keys"),
    el("p", { class: "muted", text: "A key lets a program act for you with the scopes you give it; it never signs in, manages keys or withdraws." }),
    shown ? el("div", { class: "review", id: "new-api-key", role: "status" },
      el("p", { text: `Your new key “${shown.name}” (${(shown.scopes || []).join(", ")}). Copy it now: it is not shown again.` }),
      el("div", { class: "secret", text: shown.key })) : null,
    list.length
      ? scrollable(el("table", { id: "api-key-list" }, el("caption", { text: "Your API keys" }),
        el("thead", {}, el("tr", {}, ["Name", "Starts with", "Scopes", "Last used", "Expires", "Status", "Action"]
          .map((t, i) => el("th", { scope: "col", class: i < 6 ? "l" : "", text: t })))),
        el("tbody", {}, rows)))
      : el("p", { class: "muted", id: "no-api-keys", text: "No API key yet." }),
    form);
}

// Webhooks ------------------------------------------------------------------------------------------

async function hooks(section, state, shown = null) {
  const { context } = state;
  let list;
  try {
    list = await context.guard(api("/api/v1/webhooks", { signal: context.signal }));
  } catch (error) {
    if (error.name === "Stale" || error.name === "AbortError") throw error;
    section.replaceChildren(title("webhooks", "Webhooks"), el("p", { class: "error", role: "alert", text: messageOf(error) }));
    return;
  }
  const message = note();
  const url = el("input", { id: "webhook-url", name: "url", type: "url", autocomplete: "off", required: true, placeholder: "https://example.com/hooks" });
  const events = el("input", { id: "webhook-events", name: "events", autocomplete: "off", required: true, value: "trades.executed" });
  const create = el("button", { type: "submit", class: "small", text: "Add webhook" });
  const form = el("form", { id: "webhook-form", novalidate: true, onsubmit: async (event) => {
    event.preventDefault();
    const body = { url: url.value.trim(), events: events.value.split(/[\s,]+/).filter(Boolean) };
    if (!body.url) { message.textContent = "Enter the URL that receives the events."; url.focus(); return; }
    if (!body.events.length) { message.textContent = "Name at least one event, such as trades.executed."; events.focus(); return; }
    await attempt(create, message, context, "Adding the webhook…", async () => {
      const made = await api("/api/v1/webhooks", { method: "POST", body });
      await hooks(section, state, made);
      done("Webhook added: copy its signing secret now.");
    });
  } },
  el("div", { class: "grid two" }, field("URL", url), field("Events (comma-separated)", events)),
  el("div", { class: "row" }, create), message);
  const rows = list.map((h) => el("tr", { "data-webhook": h.id },
    el("td", { class: "l wrap", text: h.url }),
    el("td", { class: "l wrap", text: (h.events || []).join(", ") }),
    el("td", { class: "l", text: h.active === false ? "Paused" : "Active" }),
    el("td", {}, el("button", { type: "button", class: "small secondary", text: "Delete", "aria-label": `Delete webhook ${h.url}`,
      onclick: async (event) => {
        await attempt(event.currentTarget, message, context, "Deleting…", async () => {
          await api(`/api/v1/webhooks/${h.id}`, { method: "DELETE" });
          await hooks(section, state);
          done("Webhook deleted.");
        });
      } }))));
  fill(section, title("webhooks", "Webhooks"),
    el("p", { class: "muted", text: "Each event is POSTed to the URL, signed with the webhook's secret." }),
    shown ? el("div", { class: "review", id: "new-webhook", role: "status" },
      el("p", { text: `Signing secret of ${shown.url}. Copy it now: it is not shown again.` }),
      el("div", { class: "secret", text: shown.secret })) : null,
    list.length
      ? scrollable(el("table", { id: "webhook-list" }, el("caption", { text: "Your webhooks" }),
        el("thead", {}, el("tr", {}, ["URL", "Events", "Status", "Action"].map((t, i) => el("th", { scope: "col", class: i < 3 ? "l" : "", text: t })))),
        el("tbody", {}, rows)))
      : el("p", { class: "muted", id: "no-webhooks", text: "No webhook yet." }),
    form);
}

// Advisor links -------------------------------------------------------------------------------------

async function links(section, state) {
  const { me, context } = state;
  let list;
  try {
    list = await context.guard(api("/api/v1/advisor/clients", { signal: context.signal }));
  } catch (error) {
    if (error.name === "Stale" || error.name === "AbortError") throw error;
    section.replaceChildren(title("advisor-links", "Advisors"), el("p", { class: "error", role: "alert", text: messageOf(error) }));
    return;
  }
  const message = note();
  if (me.role === "advisor") {
    const clients = list.filter((l) => l.advisor_id === me.id);
    section.replaceChildren(title("advisor-links", "Your clients"),
      clients.length
        ? el("ul", { class: "plain" }, clients.map((l) => el("li", {},
          el("a", { href: `#/advisor/${l.client_id}`, text: l.client_name || l.client_email }), " ",
          el("span", { class: "muted", text: `${l.client_email} · linked ${String(l.created_date).slice(0, 10)}` }))))
        : el("p", { class: "muted", text: "No client is linked to you yet." }));
    return;
  }
  const mine = list.filter((l) => l.client_id === me.id);
  const email = el("input", { id: "advisor-email", name: "advisor_email", type: "email", autocomplete: "off", required: true });
  const add = el("button", { type: "submit", class: "small", text: "Let this advisor read my accounts" });
  fill(section, title("advisor-links", "Advisors"),
    el("p", { class: "muted", text: "An advisor you link reads your portfolios and changes nothing." }),
    mine.length
      ? el("ul", { class: "plain", id: "advisor-list" }, mine.map((l) => el("li", { class: "row spread", "data-advisor": l.advisor_id },
        el("span", { text: `${l.advisor_name || l.advisor_email} (${l.advisor_email})` }),
        el("button", { type: "button", class: "small secondary", text: "End link", "aria-label": `End link with ${l.advisor_email}`,
          onclick: async (event) => {
            await attempt(event.currentTarget, message, context, "Ending the link…", async () => {
              await api(`/api/v1/advisor/clients/${l.advisor_id}/${l.client_id}`, { method: "DELETE" });
              await links(section, state);
              done("Advisor link ended.");
            });
          } }))))
      : el("p", { class: "muted", id: "no-advisors", text: "No advisor can read your accounts." }),
    el("form", { id: "advisor-form", novalidate: true, onsubmit: async (event) => {
      event.preventDefault();
      if (!email.value.trim()) { message.textContent = "Enter your advisor's email."; email.focus(); return; }
      await attempt(add, message, context, "Linking…", async () => {
        await api("/api/v1/advisor/clients", { method: "POST", body: { advisor_email: email.value.trim() } });
        await links(section, state);
        done("Advisor linked.");
      });
    } }, field("Advisor's email", email), el("div", { class: "row" }, add)),
    message);
}

// Notification preferences ------------------------------------------------------------------------

const KINDS = [
  ["trade_fill", "Order fills"], ["order_rejected", "Rejected orders"], ["price_alert", "Price alerts"],
  ["harvest_opportunity", "Tax-loss harvesting opportunities"], ["recommendation", "Recommendations"],
  ["cash_movement", "Deposits and withdrawals"], ["security", "Security (new sign-ins, two-factor and password changes)"],
];

async function notices(section, state) {
  const { context } = state;
  let prefs;
  try {
    prefs = await context.guard(api("/api/v1/me/notification-preferences", { signal: context.signal }));
  } catch (error) {
    if (error.name === "Stale" || error.name === "AbortError") throw error;
    section.replaceChildren(title("notification-preferences", "Notifications"), el("p", { class: "error", role: "alert", text: messageOf(error) }));
    return;
  }
  const message = note();
  const save = el("button", { type: "submit", class: "small", text: "Save notification choices" });
  const boxes = [];
  const known = KINDS.filter(([kind]) => prefs.kinds[kind]);
  const unnamed = Object.keys(prefs.kinds).filter((kind) => !KINDS.some(([k]) => k === kind)).map((kind) => [kind, label(kind)]);
  const rows = [...known, ...unnamed].map(([kind, text]) => {
    const locked = kind === "security";
    const cell = (channel) => {
      const box = el("input", { type: "checkbox", id: `pref-${kind}-${channel}`, checked: Boolean(prefs.kinds[kind][channel]),
        disabled: locked && channel === "email", "aria-label": `${text}: ${channel === "email" ? "e-mail" : "in the app"}` });
      boxes.push({ kind, channel, box });
      return el("td", {}, box);
    };
    return el("tr", { "data-kind": kind }, el("th", { scope: "row", class: "l", text }), cell("in_app"), cell("email"));
  });
  fill(section, title("notification-preferences", "Notifications"),
    el("p", { class: "muted", text: `E-mail goes to ${prefs.email}. Security e-mail cannot be turned off: it is how you hear that someone else signed in.` }),
    el("form", { id: "notification-form", novalidate: true, onsubmit: async (event) => {
      event.preventDefault();
      const kinds = {};
      for (const { kind, channel, box } of boxes) {
        if (box.disabled || box.checked === Boolean(prefs.kinds[kind][channel])) continue;
        (kinds[kind] = kinds[kind] || {})[channel] = box.checked;
      }
      if (!Object.keys(kinds).length) { message.textContent = "Nothing changed."; return; }
      await attempt(save, message, context, "Saving…", async () => {
        await api("/api/v1/me/notification-preferences", { method: "PUT", body: { kinds } });
        await notices(section, state);
        done("Notification choices saved.");
      });
    } },
    scrollable(el("table", { class: "prefs", id: "notification-kinds" },
      el("caption", { text: "Where each kind of notification reaches you" }),
      el("thead", {}, el("tr", {}, el("th", { scope: "col", class: "l", text: "Kind" }),
        el("th", { scope: "col", text: "In the app" }), el("th", { scope: "col", text: "E-mail" }))),
      el("tbody", {}, rows))),
    el("div", { class: "row" }, save)),
    message);
}
