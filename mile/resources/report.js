// mile report --html: the sortable table, the question browser and the two-run comparison. All state is in the
// URL hash (#run=..&filter=..&type=..&qtype=..&q=..&sort=..&compare=A,B&show=<section>), so every view is a
// link; show= shows that section alone.
// Data (untrusted question text among it) is only ever written with textContent.
"use strict";
(function () {
  const D = JSON.parse(document.getElementById("mile-data").textContent);
  const byKey = new Map(D.sets.map((s) => [s.key, s]));
  const $ = (id) => document.getElementById(id);
  const KEYS = ["run", "filter", "type", "qtype", "q", "sort", "compare", "show"];
  const pictures = D.images.length > 0;  // none at all (--images none): no image column
  let state = {};

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }

  function readHash() {
    const raw = {};
    for (const part of location.hash.replace(/^#/, "").split("&")) {
      const i = part.indexOf("=");
      if (i > 0) raw[part.slice(0, i)] = part.slice(i + 1);
    }
    const dec = (v) => { try { return decodeURIComponent(v.replace(/\+/g, " ")); } catch (e) { return v; } };
    const s = {};
    for (const k of KEYS) if (raw[k] !== undefined) s[k] = k === "compare" ? raw[k].split(",").map(dec) : dec(raw[k]);
    return s;
  }

  function writeHash(changes) {
    const s = Object.assign({}, state, changes);
    const parts = [];
    for (const k of KEYS) {
      const v = s[k];
      if (v === undefined || v === "" || v === "all") continue;
      const text = k === "compare" ? v.map(encodeURIComponent).join(",") : encodeURIComponent(v);
      parts.push(k + "=" + text);
    }
    location.hash = parts.join("&");  // -> hashchange -> render
  }

  // --- the table -------------------------------------------------------------------------------------------
  function number(text) {
    const m = text.replace(/,/g, "").match(/^[+-]?\d+(\.\d+)?(e[+-]?\d+)?/i);
    return m ? parseFloat(m[0]) : null;
  }

  function sortTable(spec) {
    const table = $("results");
    if (!table) return;
    const heads = Array.from(table.tHead.rows[0].cells);
    const key = (spec || "").replace(/^-/, ""), desc = (spec || "").startsWith("-");
    const col = heads.findIndex((th) => th.dataset.key === key);
    heads.forEach((th, i) => (i === col ? th.setAttribute("aria-sort", desc ? "descending" : "ascending") : th.removeAttribute("aria-sort")));
    const body = table.tBodies[0];
    const rows = Array.from(body.rows);
    const text = (r) => r.cells[col].textContent.trim();
    const missing = (t) => t === "n/a" || t === "-" || t === "";
    const numeric = col >= 0 && rows.every((r) => number(text(r)) !== null || missing(text(r)));
    rows.sort((a, b) => {
      if (col < 0) return a.dataset.order - b.dataset.order;
      const x = text(a), y = text(b);
      if (missing(x) || missing(y)) return missing(x) - missing(y);  // missing values last either way
      const order = numeric ? number(x) - number(y) : x.localeCompare(y);
      return desc ? -order : order;
    });
    rows.forEach((r) => body.appendChild(r));
  }

  // --- one run's questions ---------------------------------------------------------------------------------
  function thumb(qs, i) {
    const n = qs.img[i];
    if (n < 0) return el("div", "no image", "noimg");
    const img = el("img", null, "thumb");
    img.src = D.images[n];
    img.alt = "image of question " + qs.ids[i];
    return img;
  }

  function fillSelect(select, items, value) {
    select.replaceChildren(...items.map(([v, label]) => { const o = el("option", label); o.value = v; return o; }));
    select.value = value;
  }

  function renderQuestions() {
    const set = byKey.get(state.run) || D.sets[0];
    const body = $("question-table").tBodies[0];
    fillSelect($("run"), D.sets.map((s) => [s.key, s.label]), set ? set.key : "");
    if (!set) { body.replaceChildren(); $("shown").textContent = $("total").textContent = "0"; return; }
    const qs = D.qsets[set.qset];
    const types = Array.from(new Set(qs.qtype.filter((t) => t))).sort();
    fillSelect($("qtype"), [["", "all"], ...types.map((t) => [t, t])], state.qtype || "");
    $("filter").value = state.filter || "all";
    $("type").value = state.type || "all";
    if ($("search").value !== (state.q || "")) $("search").value = state.q || "";
    const needle = (state.q || "").toLowerCase();
    const rows = document.createDocumentFragment();
    let shown = 0;
    for (let i = 0; i < qs.ids.length; i++) {
      const right = set.right[i] === "1", closed = qs.closed[i] === "1", pred = D.strings[set.pred[i]];
      if ((state.filter === "right" && !right) || (state.filter === "wrong" && right)) continue;
      if ((state.type === "closed" && !closed) || (state.type === "open" && closed)) continue;
      if (state.qtype && qs.qtype[i] !== state.qtype) continue;
      if (needle && !(qs.q[i] + "\n" + qs.a[i] + "\n" + pred).toLowerCase().includes(needle)) continue;
      const tr = el("tr", null, right ? "right" : "wrong");
      tr.dataset.id = qs.ids[i];
      if (pictures) tr.appendChild(el("td")).appendChild(thumb(qs, i));
      tr.append(el("td", qs.ids[i]), el("td", qs.q[i], "question"), el("td", qs.a[i]), el("td", pred),
        el("td", closed ? "closed" : "open"), el("td", qs.qtype[i]), el("td", right ? "\u2713" : "\u2717", "mark"));
      rows.appendChild(tr);
      shown++;
    }
    body.replaceChildren(rows);
    $("shown").textContent = shown;
    $("total").textContent = qs.ids.length;
  }

  // --- two runs, paired ------------------------------------------------------------------------------------
  function mcnemar(onlyA, onlyB) {  // two-sided exact binomial test, p = 1/2, summed in log space
    const n = onlyA + onlyB, k = Math.min(onlyA, onlyB);
    if (n === 0) return 1;
    const logs = [];
    let logChoose = 0;
    for (let i = 0; i <= k; i++) { logs.push(logChoose - n * Math.LN2); logChoose += Math.log((n - i) / (i + 1)); }
    const top = Math.max(...logs);
    return Math.min(1, 2 * Math.exp(top) * logs.reduce((sum, v) => sum + Math.exp(v - top), 0));
  }

  function pairs() {
    const [ka, kb] = state.compare || [];
    let a = byKey.get(ka) || D.sets[0];
    let b = byKey.get(kb) || D.sets.find((s) => s !== a && s.qset === (a && a.qset)) || D.sets.find((s) => s !== a);
    return [a, b];
  }

  function renderCompare() {
    const [a, b] = pairs();
    const labels = D.sets.map((s) => [s.key, s.label]);
    fillSelect($("run-a"), labels, a ? a.key : "");
    fillSelect($("run-b"), labels, b ? b.key : "");
    const counts = $("compare-counts").tBodies[0], lists = [$("only-a").tBodies[0], $("only-b").tBodies[0]];
    counts.replaceChildren(); lists.forEach((l) => l.replaceChildren());
    $("only-a-count").textContent = $("only-b-count").textContent = "0";
    const message = $("compare-message");
    if (!a || !b) { message.textContent = "Two runs with predictions are needed."; return; }
    if (a.qset !== b.qset) {
      message.textContent = "A and B did not answer the same questions (another split, or different question " +
        "records): mile compare refuses such a pair.";
      return;
    }
    message.textContent = "";
    const qs = D.qsets[a.qset];
    const groups = { global: [], closed: [], open: [] };
    qs.ids.forEach((_, i) => { groups.global.push(i); groups[qs.closed[i] === "1" ? "closed" : "open"].push(i); });
    for (const [group, members] of Object.entries(groups)) {
      const c = { n: members.length, right_a: 0, right_b: 0, only_a: 0, only_b: 0, answers_differ: 0 };
      for (const i of members) {
        const ra = a.right[i] === "1", rb = b.right[i] === "1";
        c.right_a += ra; c.right_b += rb; c.only_a += ra && !rb; c.only_b += rb && !ra;
        c.answers_differ += D.norm[a.pred[i]] !== D.norm[b.pred[i]];
      }
      const pct = (r) => (c.n ? (100 * r / c.n).toFixed(2) : "n/a");
      const diff = c.n ? 100 * (c.right_b - c.right_a) / c.n : null;
      const p = mcnemar(c.only_a, c.only_b);
      const tr = el("tr");
      tr.dataset.group = group;
      const cells = [["group", group, group], ["n", c.n, c.n], ["acc_a", pct(c.right_a), c.n ? c.right_a / c.n : ""],
        ["acc_b", pct(c.right_b), c.n ? c.right_b / c.n : ""],
        ["diff", diff === null ? "n/a" : (diff >= 0 ? "+" : "") + diff.toFixed(2), diff === null ? "" : diff],
        ["only_a", c.only_a, c.only_a], ["only_b", c.only_b, c.only_b], ["p_mcnemar", p.toFixed(4), p],
        ["answers_differ", c.answers_differ, c.answers_differ]];
      for (const [k, text, value] of cells) { const td = el("td", text); td.dataset.k = k; td.dataset.v = value; tr.appendChild(td); }
      counts.appendChild(tr);
    }
    const only = [[], []];
    qs.ids.forEach((_, i) => {
      const ra = a.right[i] === "1", rb = b.right[i] === "1";
      if (ra !== rb) only[ra ? 0 : 1].push(i);
    });
    only.forEach((members, side) => {
      const frag = document.createDocumentFragment();
      for (const i of members) {
        const tr = el("tr");
        tr.dataset.id = qs.ids[i];
        if (pictures) tr.appendChild(el("td")).appendChild(thumb(qs, i));
        const text = el("td");
        text.append(el("div", qs.q[i], "question"), el("div", "truth: " + qs.a[i]),
          el("div", "A: " + D.strings[a.pred[i]]), el("div", "B: " + D.strings[b.pred[i]]));
        tr.appendChild(text);
        frag.appendChild(tr);
      }
      lists[side].appendChild(frag);
    });
    $("only-a-count").textContent = only[0].length;
    $("only-b-count").textContent = only[1].length;
  }

  function render() {
    state = readHash();
    sortTable(state.sort);
    renderQuestions();
    renderCompare();
    const show = state.show && $(state.show) ? state.show : "";  // one section, or all of them
    document.querySelectorAll("section").forEach((section) => { section.hidden = show !== "" && section.id !== show; });
  }

  // --- controls write the hash; the hash drives the page ---------------------------------------------------
  const table = $("results");
  if (table) {
    for (const th of table.tHead.rows[0].cells) {
      th.addEventListener("click", () => writeHash({ sort: state.sort === th.dataset.key ? "-" + th.dataset.key : th.dataset.key }));
    }
  }
  $("run").addEventListener("change", (e) => writeHash({ run: e.target.value, qtype: "" }));
  $("filter").addEventListener("change", (e) => writeHash({ filter: e.target.value }));
  $("type").addEventListener("change", (e) => writeHash({ type: e.target.value }));
  $("qtype").addEventListener("change", (e) => writeHash({ qtype: e.target.value }));
  $("search").addEventListener("input", (e) => writeHash({ q: e.target.value }));
  $("run-a").addEventListener("change", (e) => writeHash({ compare: [e.target.value, $("run-b").value], show: "compare" }));
  $("run-b").addEventListener("change", (e) => writeHash({ compare: [$("run-a").value, e.target.value], show: "compare" }));
  document.querySelectorAll("nav a").forEach((a) => a.addEventListener("click", (e) => {
    e.preventDefault();
    writeHash({ show: a.dataset.show });
  }));
  $("image-head").hidden = !pictures;
  window.addEventListener("hashchange", render);
  render();
})();
