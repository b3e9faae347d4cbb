// Learn: short articles on the ideas the platform acts on, with what this person has read. An
// article arrives as headings, paragraphs and lists, each put in its own element as plain text.
import { api } from "../api.js";
import { busy, done, el, fail, label } from "../ui.js";

export async function render({ view, context, params }) {
  if (params.slug) await reading(view, context, params.slug);
  else await catalogue(view, context);
}

const minutes = (a) => `${a.reading_minutes} min read`;

async function catalogue(view, context) {
  const articles = await context.guard(api("/api/v1/learn/articles", { signal: context.signal }));
  const read = articles.filter((a) => a.completed_at).length;
  view.replaceChildren(
    el("h2", { text: "Learn" }),
    el("section", { class: "card", id: "learn-progress", "aria-label": "Progress" },
      el("p", { id: "learn-progress-text", text: `${read} of ${articles.length} articles read` }),
      el("progress", { max: String(articles.length), value: String(read), "aria-labelledby": "learn-progress-text" })),
    el("ul", { class: "plain", id: "articles" }, articles.map((a) => el("li", { class: "card article", "data-slug": a.slug,
      "data-read": String(Boolean(a.completed_at)) },
      el("div", { class: "row spread" },
        el("h3", { class: "title" }, el("a", { href: `#/learn/${a.slug}`, text: a.title })),
        a.completed_at ? el("span", { class: "ok", text: "✓ Read" }) : null),
      el("p", { class: "muted", text: `${label(a.level)} · ${minutes(a)}` }),
      el("p", { text: a.summary })))));
}

async function reading(view, context, slug) {
  const [a, all] = await context.guard(Promise.all([
    api(`/api/v1/learn/articles/${encodeURIComponent(slug)}`, { signal: context.signal }),
    api("/api/v1/learn/articles", { signal: context.signal }),
  ]));
  const at = all.findIndex((x) => x.slug === a.slug);
  const next = at >= 0 ? all[at + 1] : null;
  const state = el("p", { id: "article-state" });
  const finish = el("button", { type: "button", class: "small", id: "article-complete", text: "Mark as read" });
  const show = (completedAt) => {
    finish.hidden = Boolean(completedAt);
    state.replaceChildren(completedAt
      ? el("span", { class: "ok", text: `✓ Read on ${new Date(completedAt).toLocaleDateString()}` })
      : el("span", { class: "muted", text: "Not read yet." }));
  };
  finish.addEventListener("click", async () => {
    finish.disabled = true;
    busy("Saving…");
    try {
      const marked = await context.guard(api(`/api/v1/learn/articles/${encodeURIComponent(a.slug)}/complete`, { method: "POST" }));
      show(marked.completed_at);
      done("Marked as read.");
    } catch (error) {
      if (error.name !== "Stale") fail(error);
    } finally {
      finish.disabled = false;
    }
  });
  show(a.completed_at);
  view.replaceChildren(
    el("p", {}, el("a", { href: "#/learn", text: "← All articles" })),
    el("article", { class: "card reading", id: "article", "data-slug": a.slug },
      el("h2", { text: a.title }),
      el("p", { class: "muted", text: `${label(a.level)} · ${minutes(a)}` }),
      el("p", { class: "lede", text: a.summary }),
      a.blocks.map(block)),
    el("section", { class: "card row spread" },
      el("div", { class: "row" }, state, finish),
      next ? el("a", { href: `#/learn/${next.slug}`, text: `Next: ${next.title} →` }) : null));
}

function block(b) {
  if (b.type === "heading") return el("h3", { text: b.text });
  if (b.type === "list") return el("ul", {}, (b.items || []).map((item) => el("li", { text: item })));
  return el("p", { text: b.text });
}
