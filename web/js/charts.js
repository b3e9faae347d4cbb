// Charts drawn as SVG by the page itself: no library, nothing fetched from elsewhere.
import { el, money, pct, svg } from "./ui.js";

// Drawn at the width of their box (one SVG unit a CSS pixel), so text keeps its size on a phone.
const H = 220;
const PAD = { left: 64, right: 12, top: 12, bottom: 28 };

/** A line of values over dates: points [{date, value}] with value a number. */
export function lineChart(points, title, W = 640) {
  if (points.length < 2) return el("p", { class: "muted", text: "Not enough history to draw yet." });
  const values = points.map((p) => p.value);
  let low = Math.min(...values);
  let high = Math.max(...values);
  if (high === low) { high += 1; low -= 1; }
  const x = (i) => PAD.left + (i / (points.length - 1)) * (W - PAD.left - PAD.right);
  const y = (v) => PAD.top + (1 - (v - low) / (high - low)) * (H - PAD.top - PAD.bottom);
  const d = points.map((p, i) => `${i ? "L" : "M"}${x(i).toFixed(1)},${y(p.value).toFixed(1)}`).join(" ");
  const area = `${d} L${x(points.length - 1).toFixed(1)},${H - PAD.bottom} L${x(0).toFixed(1)},${H - PAD.bottom} Z`;
  const ticks = [low, (low + high) / 2, high];
  const last = points[points.length - 1];
  return svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img",
    "aria-label": `${title}: from ${money(points[0].value)} on ${points[0].date} to ${money(last.value)} on ${last.date}` },
  ...ticks.map((t) => svg("g", {},
    svg("line", { x1: PAD.left, x2: W - PAD.right, y1: y(t), y2: y(t), class: "grid-line" }),
    svg("text", { x: PAD.left - 6, y: y(t) + 4, "text-anchor": "end", class: "axis", text: compact(t) }))),
  svg("text", { x: PAD.left, y: H - 8, class: "axis", text: points[0].date }),
  svg("text", { x: W - PAD.right, y: H - 8, "text-anchor": "end", class: "axis", text: last.date }),
  svg("path", { d: area, class: "area" }),
  svg("path", { d, class: "line" }));
}

function compact(value) {
  return new Intl.NumberFormat("en-US", { style: "currency", currency: "USD", notation: "compact", maximumFractionDigits: 1 }).format(value);
}

/** Horizontal bars, each under its name and figure: rows [{key, value, weight}] with weight 0..1. */
export function barChart(rows, title, W = 640) {
  if (!rows.length) return el("p", { class: "muted", text: "Nothing held yet." });
  const rowH = 40;
  const height = rows.length * rowH;
  const most = Math.max(...rows.map((r) => r.weight), 0.0001);
  return svg("svg", { viewBox: `0 0 ${W} ${height}`, class: "chart bars", role: "img",
    "aria-label": `${title}: ` + rows.map((r) => `${r.key} ${pct(r.weight)}`).join(", ") },
  ...rows.map((r, i) => svg("g", {},
    svg("text", { x: 0, y: i * rowH + 15, class: "bar-label", text: r.key }),
    svg("text", { x: W, y: i * rowH + 15, "text-anchor": "end", class: "bar-value", text: `${pct(r.weight)} · ${money(r.value)}` }),
    svg("rect", { x: 0, y: i * rowH + 21, width: W, height: 10, rx: 3, class: "track" }),
    svg("rect", { x: 0, y: i * rowH + 21, height: 10, rx: 3,
      width: Math.max(1, (r.weight / most) * W).toFixed(1), class: r.key === "Cash" ? "bar cash" : "bar" }))));
}

/** The width a chart gets inside `box` (its content box), within sensible bounds. */
export function widthOf(box) {
  return Math.round(Math.max(280, Math.min(1080, box.clientWidth || 640)));
}
