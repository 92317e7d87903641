// The shop page: talks to the moonsearch API (/search, /facets, /products, /explain) and draws
// the grid, facets, pages and the product view. Plain JS, no build step, nothing from a CDN.
"use strict";

const PAGE = 24;
const state = { q: "", photo: null, chosen: {}, priceMin: "", priceMax: "", sort: "relevance", offset: 0, total: null };
const $ = (id) => document.getElementById(id);
const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child != null) node.append(child);
  return node;
};

function filters() {
  const out = Object.entries(state.chosen).filter(([, values]) => values.length)
    .map(([field, values]) => `${field}=${values.join(",")}`);
  if (state.priceMin !== "") out.push(`price>=${state.priceMin}`);
  if (state.priceMax !== "") out.push(`price<=${state.priceMax}`);
  return out;
}

// GET with the query in the URL, or POST a form when a photo is part of the query.
async function call(path, params) {
  let response;
  if (state.photo) {
    const form = new FormData();
    form.append("image", state.photo, state.photo.name || "photo");
    for (const [key, value] of Object.entries(params)) {
      for (const v of [].concat(value)) if (v !== "" && v != null) form.append(key, v);
    }
    response = await fetch(path, { method: "POST", body: form });
  } else {
    const url = new URLSearchParams();
    for (const [key, value] of Object.entries(params)) {
      for (const v of [].concat(value)) if (v !== "" && v != null) url.append(key, v);
    }
    response = await fetch(`${path}?${url}`);
  }
  const body = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

const money = (value) => value == null || value === "" ? "" : `\u20b9${Number(value).toLocaleString("en-IN")}`;

function card(hit, onOpen) {
  const a = hit.attributes || {};
  const thumb = hit.image_url
    ? el("img", { src: hit.image_url, alt: hit.title, loading: "lazy" })
    : el("span", { class: "noimg" }, "no photo");
  const tags = [a.articleType, a.baseColour, a.gender].filter(Boolean).map((t) => el("span", { class: "tag" }, String(t)));
  return el("article", { class: "card", tabindex: "0", dataset: { id: hit.id }, onclick: () => onOpen(hit.id),
                         onkeydown: (e) => { if (e.key === "Enter") onOpen(hit.id); } },
    el("div", { class: "thumb" }, thumb),
    el("div", { class: "body" },
      el("div", { class: "brandline" }, a.brand ? String(a.brand) : ""),
      el("div", { class: "title" }, hit.title),
      el("div", { class: "price" }, money(a.price)),
      el("div", { class: "tags" }, ...tags)));
}

function notice(message, isError = false) {
  const box = $("notice");
  box.hidden = !message;
  box.textContent = message || "";
  box.classList.toggle("error", isError);
}

let latestRun = 0;   // a slower, older search must not overwrite a newer one's results

async function run(resetPage = true) {
  if (resetPage) state.offset = 0;
  const ticket = ++latestRun;
  const params = { q: state.q, filter: filters(), sort: state.sort, limit: PAGE, offset: state.offset };
  $("summary").textContent = "Searching\u2026";
  try {
    const [page, facets] = await Promise.all([
      call("/search", params),
      call("/facets", { q: state.q, filter: filters() }),
    ]);
    if (ticket !== latestRun) return;
    drawResults(page, facets.candidates);
    drawFacets(facets);
    notice(page.ranking && page.ranking.note ? page.ranking.note : "");
  } catch (error) {
    if (ticket !== latestRun) return;
    notice(error.message, true);
    $("summary").textContent = "";
    $("grid").replaceChildren();
    $("pager").replaceChildren();
  }
}

function drawResults(page, candidates) {
  const grid = $("grid");
  grid.replaceChildren(...page.results.map((hit) => card(hit, openProduct)));
  const what = state.photo ? (state.q ? `your photo + \u201c${state.q}\u201d` : "your photo") : (state.q ? `\u201c${state.q}\u201d` : "all products");
  // a relevance page has no total; the candidate set the facets counted is the result set
  const total = page.total != null ? page.total : candidates;
  const count = `${total} product${total === 1 ? "" : "s"}`;
  const summary = $("summary");
  summary.replaceChildren(el("b", {}, count), ` for ${what}`);
  if (!page.results.length) grid.replaceChildren(el("p", { class: "muted" }, "No products match. Try fewer filters or other words."));
  drawPager(page, total);
}

function drawPager(page, total) {
  const pager = $("pager");
  const current = Math.floor(page.offset / PAGE);
  const last = Math.max(current, Math.ceil(total / PAGE) - 1);
  const go = (n) => { state.offset = n * PAGE; run(false); window.scrollTo({ top: 0 }); };
  const buttons = [el("button", { class: "prev", onclick: () => go(current - 1) }, "\u2039 Prev")];
  if (current === 0) buttons[0].disabled = true;
  const first = Math.max(0, Math.min(current - 2, last - 4));
  for (let n = first; n <= Math.min(last, first + 4); n++) {
    const b = el("button", { class: n === current ? "current" : "", onclick: () => go(n) }, String(n + 1));
    buttons.push(b);
  }
  const next = el("button", { class: "next", onclick: () => go(current + 1) }, "Next \u203a");
  if (page.next_offset == null) next.disabled = true;
  buttons.push(next);
  pager.replaceChildren(...(last > 0 || current > 0 ? buttons : []));
}

function drawFacets(data) {
  const list = $("facet-list");
  list.replaceChildren(...data.facets.map((facet) => {
    const chosen = state.chosen[facet.field] || [];
    const label = facet.field.replace(/^attributes\./, "").replace(/([a-z])([A-Z])/g, "$1 $2");
    return el("section", { class: "facet", dataset: { field: facet.field } },
      el("h3", {}, label),
      ...facet.values.map((v) => el("button", {
        class: "facet-value" + (chosen.includes(v.value) ? " active" : ""),
        dataset: { field: facet.field, value: v.value }, onclick: () => toggle(facet.field, v.value) },
        el("span", {}, v.value), el("span", { class: "count" }, String(v.count)))));
  }));
  const chips = [];
  for (const [field, values] of Object.entries(state.chosen)) {
    for (const value of values) chips.push(el("button", { class: "chip", onclick: () => toggle(field, value) }, `${value} \u00d7`));
  }
  if (state.priceMin !== "" || state.priceMax !== "") {
    chips.push(el("button", { class: "chip", onclick: () => { state.priceMin = state.priceMax = ""; $("price-min").value = $("price-max").value = ""; run(); } },
      `${money(state.priceMin) || "any"} \u2013 ${money(state.priceMax) || "any"} \u00d7`));
  }
  $("active-filters").replaceChildren(...chips);
  $("clear-filters").hidden = !chips.length;
  if (data.price) {
    $("price-min").placeholder = Math.floor(data.price.min);
    $("price-max").placeholder = Math.ceil(data.price.max);
  }
}

function toggle(field, value) {
  const values = state.chosen[field] || [];
  state.chosen[field] = values.includes(value) ? values.filter((v) => v !== value) : [...values, value];
  run();
}

async function openProduct(id) {
  const view = $("product-view");
  try {
    const product = await fetch(`/products/${encodeURIComponent(id)}`).then((r) => r.json());
    const a = product.attributes || {};
    $("pv-image").src = product.images.length ? product.images[0] : "";
    $("pv-image").alt = product.title;
    $("pv-brand").textContent = a.brand || "";
    $("pv-title").textContent = product.title;
    $("pv-price").textContent = money(a.price);
    $("pv-desc").textContent = product.description || "";
    const rows = [];
    for (const [key, value] of Object.entries(a)) {
      if (["brand", "price", "descriptors"].includes(key) || value == null) continue;
      if (typeof value === "object") {
        for (const [k, v] of Object.entries(value)) if (typeof v !== "object") rows.push([k, v]);
      } else rows.push([key.replace(/([a-z])([A-Z])/g, "$1 $2"), value]);
    }
    $("pv-attrs").replaceChildren(...rows.slice(0, 12).map(([k, v]) => el("tr", {}, el("td", {}, k), el("td", {}, String(v)))));
    $("pv-explain").hidden = true;
    $("pv-why").hidden = !(state.q || state.photo);
    $("pv-why").onclick = () => explainMatch(id);
    view.hidden = false;
    view.dataset.id = id;
    const similar = await fetch(`/products/${encodeURIComponent(id)}/similar?k=8`).then((r) => r.json());
    $("pv-similar").replaceChildren(...similar.results.map((hit) => card(hit, openProduct)));
    view.scrollTo({ top: 0 });
  } catch (error) {
    notice(`cannot open product ${id}: ${error.message}`, true);
  }
}

async function explainMatch(id) {
  const box = $("pv-explain");
  box.hidden = false;
  $("pv-score").textContent = "Working out why\u2026";
  $("pv-words").replaceChildren();
  try {
    let data;
    if (state.photo) {
      const form = new FormData();
      form.append("id", id);
      form.append("image", state.photo, state.photo.name || "photo");
      if (state.q) form.append("q", state.q);
      data = await fetch("/explain", { method: "POST", body: form }).then((r) => r.json());
    } else {
      data = await fetch(`/explain?${new URLSearchParams({ id, q: state.q, top: 8 })}`).then((r) => r.json());
    }
    if (data.error) throw new Error(data.error);
    $("pv-heatmap").src = data.heatmap || "";
    $("pv-heatmap").hidden = !data.heatmap;
    const shares = Object.entries(data.shares || {}).map(([k, v]) => `${k} ${Math.round(v * 100)}%`).join(", ");
    $("pv-score").textContent = `match score ${data.score.toFixed(3)} \u00b7 ${shares}`;
    const top = Math.max(...data.words.map((w) => w.weight), 1e-9);
    $("pv-words").replaceChildren(...data.words.slice(0, 8).map((w) =>
      el("li", {}, w.word, el("span", { class: "bar", style: `width:${Math.round(80 * w.weight / top)}px` }))));
  } catch (error) {
    $("pv-score").textContent = `No explanation: ${error.message}`;
  }
}

function setPhoto(file) {
  if (!file) return;
  if (!file.type.startsWith("image/")) { notice(`${file.name} is not an image`, true); return; }
  state.photo = file;
  $("photo-thumb").src = URL.createObjectURL(file);
  $("photo-chip").hidden = false;
  run();
}

function init() {
  $("search-form").addEventListener("submit", (e) => { e.preventDefault(); state.q = $("q").value.trim(); run(); });
  $("photo").addEventListener("change", (e) => setPhoto(e.target.files[0]));
  $("photo-clear").addEventListener("click", () => { state.photo = null; $("photo").value = ""; $("photo-chip").hidden = true; run(); });
  $("sort").addEventListener("change", (e) => { state.sort = e.target.value; run(); });
  $("price-go").addEventListener("click", () => { state.priceMin = $("price-min").value; state.priceMax = $("price-max").value; run(); });
  $("clear-filters").addEventListener("click", () => { state.chosen = {}; state.priceMin = state.priceMax = ""; $("price-min").value = $("price-max").value = ""; run(); });
  $("pv-close").addEventListener("click", () => { $("product-view").hidden = true; });
  $("product-view").addEventListener("click", (e) => { if (e.target.id === "product-view") $("product-view").hidden = true; });
  document.addEventListener("keydown", (e) => { if (e.key === "Escape") $("product-view").hidden = true; });
  // drag and drop a photo anywhere on the page
  let depth = 0;
  window.addEventListener("dragenter", (e) => { e.preventDefault(); depth++; $("drop-overlay").hidden = false; });
  window.addEventListener("dragleave", () => { depth = Math.max(0, depth - 1); if (!depth) $("drop-overlay").hidden = true; });
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => {
    e.preventDefault(); depth = 0; $("drop-overlay").hidden = true;
    setPhoto(e.dataTransfer.files[0]);
  });
  const initial = new URLSearchParams(location.search).get("q");
  if (initial) { $("q").value = initial; state.q = initial; }
  run();
}

init();
