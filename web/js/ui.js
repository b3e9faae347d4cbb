// Small DOM helpers: elements built with properties, never markup strings, so nothing a server
// or a person typed can run, and no style attribute meets the page's Content-Security-Policy.

export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key.startsWith("aria-") || key.startsWith("data-") || key === "role" || key === "for") node.setAttribute(key, value === true ? "" : value);
    else if (key in node) node[key] = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  append(node, children);
  return node;
}

/** Replaces a node's children; like el(), it leaves out null, undefined and false. */
export function fill(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

const SVG = "http://www.w3.org/2000/svg";
export function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  append(node, children);
  return node;
}

const usd = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD" });
export const money = (s) => (s === null || s === undefined || s === "" ? "—" : usd.format(Number(s)));
export const pct = (s) => (s === null || s === undefined ? "—" : (Number(s) * 100).toFixed(2) + " %");
export const shares = (s) => (s === null || s === undefined ? "—" : String(Number(s)));
export const signed = (s) => el("span", { class: Number(s) < 0 ? "down" : "up", text: money(s) });
export const label = (word) => String(word || "").replace(/_/g, " ");

export function figure(name, value) {
  return el("div", { class: "figure" }, el("div", { class: "label", text: name }), el("div", { class: "value" }, value));
}

let idCount = 0;
/** A labelled field: the label's `for` names the control. */
export function field(text, control) {
  if (!control.id) { idCount += 1; control.id = "f" + idCount; }
  return el("div", { class: "field" }, el("label", { for: control.id, text }), control);
}

// The live regions: #status (polite) for loading and outcomes, #alert (assertive) for failures.
export function busy(text = "Loading…") {
  const status = document.getElementById("status");
  status.textContent = text;
  status.classList.add("loading");
}

export function done(text = "") {
  const status = document.getElementById("status");
  status.textContent = text;
  status.classList.remove("loading");
}

export function fail(error) {
  done();
  const alert = document.getElementById("alert");
  alert.textContent = messageOf(error);
  alert.hidden = false;
}

export function clearAlert() {
  const alert = document.getElementById("alert");
  alert.textContent = "";
  alert.hidden = true;
}

export function messageOf(error) {
  if (!error) return "Something went wrong.";
  if (error.code === "QUOTE_STALE" && error.details) return staleQuoteMessage(error.details);
  const code = error.code && !String(error.code).startsWith("HTTP_") ? ` (${error.code})` : "";
  return (error.message || "Something went wrong.") + code;
}

/** How long ago, in words: "45 s", "12 min", "3 h 5 min", "2 days". */
export function age(seconds) {
  const s = Math.max(0, Math.round(Number(seconds)));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.round(s / 60)} min`;
  if (s < 172800) return `${Math.floor(s / 3600)} h${s % 3600 >= 60 ? ` ${Math.floor((s % 3600) / 60)} min` : ""}`;
  return `${Math.floor(s / 86400)} days`;
}

const AS_OF = new Intl.DateTimeFormat("en-US", { dateStyle: "medium", timeStyle: "short" });

/**
 * A 409 QUOTE_STALE in words: which price is too old, from where, as of when, how old, and what the
 * limit is. One order's details name the symbol; a plan's (rebalance, harvest) list its quotes.
 */
export function staleQuoteMessage(details) {
  const quotes = details.quotes ?? [details];
  const limit = Number(details.max_age_seconds ?? quotes[0]?.max_age_seconds ?? 0);
  const each = quotes.map((q) => `${q.symbol} is from ${q.as_of ? AS_OF.format(new Date(q.as_of)) : "an unknown time"}`
    + ` (${q.source}, ${age(q.age_seconds)} old)`);
  const names = quotes.map((q) => q.symbol).join(", ");
  return `The latest price for ${names} is too old to trade at market: ${each.join("; ")}.`
    + (limit > 0 ? ` Market orders need a price at most ${age(limit)} old.` : "")
    + " Place a limit order instead, or try again when a fresh price arrives.";
}

/** A table whose columns sort when their header button is pressed (aria-sort says which way). */
export function sortableTable(columns, rows, { id, caption } = {}) {
  let key = null;
  let ascending = true;
  const body = el("tbody");
  const heads = columns.map((column) => {
    const button = el("button", { type: "button", class: "sort", text: column.title, onclick: () => sortBy(column) });
    return el("th", { scope: "col", class: column.numeric ? "" : "l", "aria-sort": "none" }, button);
  });
  function sortBy(column) {
    ascending = key === column.key ? !ascending : true;
    key = column.key;
    heads.forEach((th, i) => th.setAttribute("aria-sort", columns[i].key === key ? (ascending ? "ascending" : "descending") : "none"));
    fill();
  }
  function fill() {
    const sorted = [...rows];
    if (key) {
      const column = columns.find((c) => c.key === key);
      sorted.sort((a, b) => {
        const x = a[key];
        const y = b[key];
        const order = column.numeric ? Number(x) - Number(y) : String(x ?? "").localeCompare(String(y ?? ""));
        return ascending ? order : -order;
      });
    }
    body.replaceChildren(...sorted.map((row) => el("tr", {}, columns.map((c) =>
      el("td", { class: c.numeric ? "" : "l" }, c.render ? c.render(row) : String(row[c.key] ?? "—"))))));
  }
  fill();
  return scrollable(el("table", { id }, caption ? el("caption", { text: caption }) : null,
    el("thead", {}, el("tr", {}, heads)), body));
}

/**
 * A table in a box that scrolls sideways on a narrow screen. The box is a region named after the
 * table's caption (or its aria-label) and takes the keyboard's focus, so arrow keys scroll it.
 */
export function scrollable(table) {
  const name = table.querySelector("caption")?.textContent || table.getAttribute("aria-label");
  return el("div", { class: "scroll", role: "region", tabindex: "0", "aria-label": name }, table);
}

const TOAST_MS = 8000;
/** A short note in the #toasts live region (a fill, a cancel) that goes away by itself. */
export function toast(text, kind = "info") {
  const region = document.getElementById("toasts");
  if (!region) return;
  const note = el("div", { class: `toast ${kind}`, text });
  region.append(note);
  while (region.children.length > 4) region.firstElementChild.remove();
  setTimeout(() => note.remove(), TOAST_MS);
}
