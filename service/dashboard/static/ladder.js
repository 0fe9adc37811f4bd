// One ladder's page. A width ladder: its rungs, how the optimum lr and weight decay move with
// width (two log-log charts, the candidate rules, the free fit), the prediction and the
// confirmations. A ladder over several axes (or one that is not the width): its design, one
// panel per axis (the rungs on that axis's line, the joint fit's line and band, the named
// rules), a prediction at any point and the confirmations.
// Polls the API every 2 s; the rule is fetched again only when a rung or confirmation moved.
import { ApiError, age, el, fractionBar, getJson, initToken, interval, poll, progressBar, showContent, showNotice, sig } from "./api.js";
import { draw, drawMessage, esc, logAxis } from "./plots.js";

initToken();
const ladderId = Number(window.location.pathname.split("/").filter(Boolean).pop());
const base = `/api/ladders/${ladderId}`;
const askedWidth = (() => {
  const raw = new URLSearchParams(window.location.search).get("width");
  const w = raw === null ? NaN : Number(raw);
  return Number.isFinite(w) && w > 0 ? w : null;
})();
let lastSignature = null;
let rule = null;

const f3 = (v) => sig(v, 3);
const pos = (v) => typeof v === "number" && Number.isFinite(v) && v > 0;
const plural = (n, one, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;
/** A width as given ("64", "1024"; 4 significant digits when it is not a whole number). */
const fmtWidth = (w) => (Number.isInteger(w) ? String(w) : sig(w, 4));
/** A fixed exponent without trailing zeros ("−0.5", "1"). */
const fmtExp = (v) => (typeof v === "number" ? Number(v.toPrecision(3)).toString().replace(/^-/, "−") : "–");
/** "−0.491 (90% CI −0.525 to −0.457)", or the value alone without an interval. */
const withCi = (value, ci) => (interval(ci) ? `${f3(value)} (90% CI ${interval(ci)})` : f3(value));
/** A probability-like number: 3 significant digits, "≈ 0" when it underflowed. */
const prob = (p) => (p === 0 ? "≈ 0" : f3(p));

const VERDICTS = {
  rule_identified: "One width rule fits and the others do not",
  indistinguishable: "The rungs cannot tell the rules apart",
  no_rule_fits: "No candidate rule fits the rungs",
  insufficient: "Not enough rungs pin the optimum down yet",
};
const RULE_LAWS = {
  sqrt: "η ∝ w^−½, λ ∝ w^½ (η·λ constant)",
  mup: "η ∝ 1/w, λ ∝ w (µP, constant 1/(ηλ))",
  mup_sqrt: "η ∝ 1/w, λ ∝ √w",
};
const RULE_COLORS = { sqrt: "#2ca02c", mup: "#d62728", mup_sqrt: "#9467bd" };
const CONFIRM_VERDICTS = {
  pending: "pending",
  transfer_better: "transfer better",
  no_difference: "no difference",
  untransferred_better: "untransferred better",
  unmeasured: "noise unmeasured",
};

/** The two charts' coordinates: which fields of the rule answer each one reads. */
const COORDS = {
  lr: {
    sym: "η*", name: "learning rate", key: "lr", ci: "lr_ci", used: "lr", exp: "lr_exponent",
    expCi: "lr_exponent_ci", atRef: "lr_at_reference", ruleAtRef: "lr_at_reference", who: "valley or lr_only",
  },
  wd: {
    sym: "λ*", name: "weight decay", key: "weight_decay", ci: "weight_decay_ci", used: "weight_decay",
    exp: "wd_exponent", expCi: "wd_exponent_ci", atRef: "wd_at_reference", ruleAtRef: "weight_decay_at_reference",
    who: "valley",
  },
};

/** GET that turns a 404 or 409 into {conflict: detail}. */
async function optional(path) {
  try {
    return await getJson(path);
  } catch (error) {
    if (error instanceof ApiError && (error.status === 409 || error.status === 404)) return { conflict: error.message };
    throw error;
  }
}

/** Break a long plain sentence into lines of about `n` characters for a plotly hover. */
function wrap(text, n = 72) {
  const lines = [];
  let line = "";
  for (const word of String(text).split(" ")) {
    if (line && line.length + word.length + 1 > n) {
      lines.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) lines.push(line);
  return lines.map(esc).join("<br>");
}

/** Where to predict: the page's ?width=, else the widest confirmation's width, else none. */
function targetWidth(ladder) {
  if (askedWidth !== null) return askedWidth;
  const widths = ladder.confirmations.map((c) => c.width).filter(pos);
  return widths.length ? Math.max(...widths) : null;
}

/** The objective's name and direction, from the ladder's spec. */
function objective(ladder) {
  const o = ladder.spec?.objective || {};
  return { metric: o.metric || "objective", direction: o.direction || "minimize" };
}

// ---- header and rungs ------------------------------------------------------------------------

function renderHeader(ladder, sweeps) {
  document.title = `lionsweep · ${ladder.name}`;
  document.getElementById("ladder-name").textContent = ladder.name;
  const o = objective(ladder);
  const meta = document.getElementById("ladder-meta");
  const design = isJoint(ladder)
    ? `${plural(ladder.rungs.length, "rung")} over ${ladder.axes.map((a) => `${a.param} (${a.role})`).join(" × ")}`
    : `${ladder.param} ${ladder.widths.map(fmtWidth).join(", ")}`;
  meta.replaceChildren(
    `#${ladder.id} · task ${ladder.task?.name} · ${design}`
      + ` · box ${ladder.scale_box} · ${o.direction} ${o.metric} · created ${age(ladder.created_at)} `,
    el("span", { class: `status ${ladder.status}`, id: "ladder-status", "data-status": ladder.status }, ladder.status),
  );
  const head = document.getElementById("width-head");
  if (head) head.textContent = ladder.param;
  // One bar over every rung: their trial states added up.
  const rungSweeps = ladder.rungs.map((r) => sweeps[r.sweep_id]).filter(Boolean);
  const progress = document.getElementById("ladder-progress");
  if (rungSweeps.length === ladder.rungs.length && rungSweeps.length) {
    const counts = {};
    for (const s of rungSweeps) for (const [k, n] of Object.entries(s.counts || {})) counts[k] = (counts[k] || 0) + n;
    const sum = (f) => rungSweeps.reduce((a, s) => a + (f(s) || 0), 0);
    progress.replaceChildren(progressBar({ counts, n_trials: sum((s) => s.n_trials), finished: sum((s) => s.finished) }));
  } else {
    const sum = (f) => ladder.rungs.reduce((a, r) => a + f(r), 0);
    progress.replaceChildren(fractionBar(sum((r) => r.finished), sum((r) => r.n_trials)));
  }
  const own = ladder.confirmations.filter((c) => c.role === "target").length;
  const arms = ladder.confirmations.length - own;
  const confirms = (arms ? ` + ${plural(arms, "confirmation")}` : "") + (own ? ` + ${plural(own, "sweep")} at a confirmation's point` : "");
  document.getElementById("rungs-total").textContent = `(${ladder.rungs.length}${confirms})`;
}

/** Why a rung's estimate did not enter a coordinate's line (its verdict and the surface's reason). */
function whyUnused(fit, coord) {
  if (!fit.verdict) return fit.reason;
  return `surface verdict ${fit.verdict}: only ${COORDS[coord].who} rungs enter the ${COORDS[coord].sym} line (${fit.reason})`;
}

function renderRungs(ladder, sweeps) {
  const fits = Object.fromEntries((rule?.rungs || []).map((r) => [r.sweep_id, r]));
  const rows = ladder.rungs.map((r) => {
    const fit = fits[r.sweep_id];
    const sweep = sweeps[r.sweep_id];
    const used = fit ? fit.used : [];
    let inFit = "–";
    let why = null;
    if (fit && pos(fit.lr)) {
      const parts = [used.includes("lr") ? "η*" : null, used.includes("weight_decay") ? "λ*" : null].filter(Boolean);
      inFit = parts.length ? parts.join(", ") : "not used";
      if (!used.includes("weight_decay")) why = whyUnused(fit, used.includes("lr") ? "wd" : "lr");
    } else if (fit) {
      inFit = "no estimate";
      why = fit.reason;
    }
    return el(
      "tr",
      { "data-sweep-id": r.sweep_id, "data-width": r.width, "data-used": used.join(",") },
      el("td", { class: "num nw" }, fmtWidth(r.width)),
      el("td", { class: "nw" }, el("a", { href: `/sweeps/${r.sweep_id}`, title: sweep ? sweep.name : null }, `sweep #${r.sweep_id}`)),
      el("td", { class: "nw" }, el("span", { class: `status ${r.status}` }, r.status)),
      el("td", { class: "wide" }, sweep ? progressBar(sweep) : fractionBar(r.finished, r.n_trials)),
      el("td", { title: fit ? fit.reason : null }, fit && fit.verdict ? el("span", { class: `badge small ${fit.verdict}` }, fit.verdict) : "–"),
      el("td", { class: "num" }, fit && pos(fit.lr) ? withCi(fit.lr, fit.lr_ci) : "–"),
      el("td", { class: "num" }, fit && pos(fit.weight_decay) ? withCi(fit.weight_decay, fit.weight_decay_ci) : "–"),
      el("td", { title: why }, inFit),
    );
  });
  document.querySelector("#rungs tbody").replaceChildren(...rows);
  document.getElementById("rungs-note").textContent = rule
    ? "η*, λ*: each rung's optimum from its response surface with its 90% interval; hover a row's verdict or "
      + "fit column for the reason."
    : "";
}

// ---- the rule ----------------------------------------------------------------------------------

/** The verdict badge (with `descriptions[verdict]`), the reason and the incompleteness notice;
 * false when the ladder's rule could not be read (then all of them say so). */
function showVerdict(ladder, descriptions, reason) {
  const verdict = document.getElementById("verdict");
  const incomplete = document.getElementById("incomplete");
  if (!rule) {
    verdict.replaceChildren(el("span", { class: "badge none" }, "no answer"));
    verdict.dataset.verdict = "";
    document.getElementById("reason").textContent = "The ladder's rule could not be read.";
    document.getElementById("exponents").replaceChildren();
    incomplete.hidden = true;
    return false;
  }
  verdict.dataset.verdict = rule.verdict;
  verdict.replaceChildren(el("span", { class: `badge ${rule.verdict}` }, rule.verdict), " ", descriptions[rule.verdict] || "");
  document.getElementById("reason").textContent = reason;
  incomplete.hidden = rule.complete;
  incomplete.textContent = ladder.status === "running"
    ? "Some rungs are still running: this answer may change as they finish."
    : "Not every rung is complete: this answer rests on the trials that finished.";
  return true;
}

function renderVerdict(ladder) {
  if (!showVerdict(ladder, VERDICTS, rule?.reason)) return;
  const stats = document.getElementById("exponents");
  const rows = [];
  const add = (term, value, title = null) => rows.push(el("div", { title }, el("dt", {}, term), el("dd", {}, value)));
  const wref = fmtWidth(Number(rule.reference_width.toPrecision(4)));
  const nLr = rule.rungs.filter((r) => r.used.includes("lr")).length;
  const nWd = rule.rungs.filter((r) => r.used.includes("weight_decay")).length;
  if (rule.best_rule) add("best rule", `${rule.best_rule}: ${RULE_LAWS[rule.best_rule] || ""}`);
  add("η* exponent a", rule.lr_exponent === null ? "not fitted" : withCi(rule.lr_exponent, rule.lr_exponent_ci), "η* ∝ width^a");
  add("λ* exponent b", rule.wd_exponent === null ? "not fitted" : withCi(rule.wd_exponent, rule.wd_exponent_ci), "λ* ∝ width^b");
  if (rule.product_exponent !== null) add("η*·λ* exponent a+b", withCi(rule.product_exponent, rule.product_exponent_ci));
  if (rule.lr_at_reference !== null) add(`η* at w = ${wref}`, f3(rule.lr_at_reference), "the free fit's line at the reference width");
  if (rule.wd_at_reference !== null) add(`λ* at w = ${wref}`, f3(rule.wd_at_reference));
  if (rule.value_slope !== null) add("objective per ln width", f3(rule.value_slope), "d objective / d ln width of the rungs' optimum values");
  add("rungs in the fit", `${nLr} of ${rule.rungs.length} for η*, ${nWd} for λ*`);
  stats.replaceChildren(...rows);
  document.getElementById("method").textContent = rule.method;
}

/** Geometrically spaced widths across [lo, hi]. */
function span(lo, hi, n = 24) {
  return Array.from({ length: n }, (_, i) => lo * (hi / lo) ** (i / (n - 1)));
}

/** Every width the charts show: the rungs, the prediction's and the confirmations'. */
function chartWidths(ladder) {
  const ws = [...ladder.rungs.map((r) => r.width), ...ladder.confirmations.map((c) => c.width)];
  if (rule?.prediction) ws.push(rule.prediction.width);
  return [...new Set(ws.filter(pos))].sort((a, b) => a - b);
}

/** The predictions to mark: the target width's and each confirmation's (one per width). */
function predictions() {
  const out = new Map();
  for (const c of rule.confirmations) if (c.predicted) out.set(c.width, c.predicted);
  if (rule.prediction) out.set(rule.prediction.width, rule.prediction);
  return [...out.values()];
}

/**
 * η* or λ* against width, log-log: each rung's optimum with its 90% interval (open grey where
 * the fit did not use it), each candidate rule's line (the best thick), the free fit, the
 * predictions with their intervals and the confirmations' untransferred configs.
 */
function widthChart(id, coord, ladder) {
  const c = COORDS[coord];
  const noteEl = document.getElementById(`${coord}-note`);
  const withEstimate = (rule?.rungs || []).filter((r) => pos(r[c.key]));
  if (!withEstimate.length) {
    drawMessage(id, ladder.status === "running" ? "no data yet: rungs still running" : "no data: no rung has a fitted optimum");
    noteEl.textContent = rule ? missingNote(ladder) : "";
    return;
  }
  const param = esc(ladder.param);
  const widths = chartWidths(ladder);
  const xs = span(widths[0] / 1.12, widths[widths.length - 1] * 1.12);
  const ys = [];
  const data = [];
  const ref = rule.reference_width;
  const wref = fmtWidth(Number(ref.toPrecision(4)));
  const line = (atRef, exponent) => xs.map((w) => atRef * (w / ref) ** exponent);

  // The candidate rules, the best last and thickest; then the free fit on top.
  const rules = rule.rules.filter((r) => pos(r[c.ruleAtRef])).sort((a, b) => (a.name === rule.best_rule) - (b.name === rule.best_rule));
  for (const r of rules) {
    const exponent = coord === "lr" ? r.lr_exponent : r.wd_exponent;
    const y = line(r[c.ruleAtRef], exponent);
    const best = r.name === rule.best_rule;
    ys.push(...y);
    const hover = `rule '${esc(r.name)}': ${c.sym} ∝ w^${fmtExp(exponent)}${best ? " (best)" : ""}<br>`
      + `χ² = ${f3(r.chi2)} (${r.dof} dof), p = ${prob(r.p_value)}, relative likelihood ${prob(r.relative_likelihood)}<br>`
      + `${r.consistent ? "fits the rungs" : "does not fit the rungs (p < 0.05)"}`;
    data.push({
      x: xs, y, type: "scatter", mode: "lines", name: `${esc(r.name)} w^${fmtExp(exponent)}${best ? " · best" : ""}`,
      line: { color: RULE_COLORS[r.name] || "#888", width: best ? 4 : 1.5, dash: best ? "solid" : "dash" },
      opacity: best ? 0.85 : 0.7, text: xs.map(() => hover), hovertemplate: "%{text}<extra></extra>",
      meta: { kind: "rule", rule: r.name, best },
    });
  }
  if (rule[c.exp] !== null && pos(rule[c.atRef])) {
    const y = line(rule[c.atRef], rule[c.exp]);
    ys.push(...y);
    const hover = `free fit: ${c.sym} ∝ w^${f3(rule[c.exp])}${interval(rule[c.expCi]) ? ` (90% CI ${interval(rule[c.expCi])})` : ""}`
      + `<br>${c.sym} = ${f3(rule[c.atRef])} at w = ${wref}`;
    data.push({
      x: xs, y, type: "scatter", mode: "lines", name: `free fit w^${f3(rule[c.exp])}`,
      line: { color: "#111", width: 1.5, dash: "dot" }, text: xs.map(() => hover), hovertemplate: "%{text}<extra></extra>",
      meta: { kind: "fit" },
    });
  }

  // The rungs' optima with their intervals: used ones filled, the others open and grey.
  const rungTrace = (list, used) => {
    const y = list.map((r) => r[c.key]);
    const lo = list.map((r) => (r[c.ci] ? r[c.ci][0] : r[c.key]));
    const hi = list.map((r) => (r[c.ci] ? r[c.ci][1] : r[c.key]));
    ys.push(...y, ...lo, ...hi);
    return {
      x: list.map((r) => r.width), y, type: "scatter", mode: "markers",
      name: used ? "rung optimum (90% CI)" : "rung not used in the fit",
      error_y: {
        type: "data", symmetric: false, array: hi.map((h, i) => h - y[i]), arrayminus: lo.map((l, i) => y[i] - l),
        color: used ? "#1d1d1f" : "#9a9a9f", thickness: 1.5, width: 5,
      },
      marker: used
        ? { symbol: "circle", size: 10, color: "#1f77b4", line: { width: 1, color: "#1d1d1f" } }
        : { symbol: "circle-open", size: 11, color: "#8a8a8f", line: { width: 2 } },
      text: list.map((r) => [
        `${param} = ${fmtWidth(r.width)} · sweep #${r.sweep_id} (${esc(r.status)}, ${plural(r.n, "trial")} fitted)`,
        `${c.sym} = ${f3(r[c.key])}${interval(r[c.ci]) ? ` (90% CI ${interval(r[c.ci])})` : ""}`,
        used ? `surface verdict ${esc(r.verdict)}: used in the fit` : `<b>not used in the fit</b>: ${wrap(whyUnused(r, coord))}`,
      ].join("<br>")),
      customdata: list.map((r) => r.sweep_id),
      hovertemplate: "%{text}<extra></extra>",
      meta: { kind: used ? "rung" : "unused" },
    };
  };
  const used = withEstimate.filter((r) => r.used.includes(c.used));
  const unused = withEstimate.filter((r) => !r.used.includes(c.used));
  if (unused.length) data.push(rungTrace(unused, false));
  if (used.length) data.push(rungTrace(used, true));

  // The confirmations' untransferred configs (the widest rung's best, unmoved).
  const arms = rule.confirmations.filter((k) => pos(k.untransferred?.[c.key]));
  if (arms.length) {
    const y = arms.map((k) => k.untransferred[c.key]);
    ys.push(...y);
    data.push({
      x: arms.map((k) => k.width), y, type: "scatter", mode: "markers", name: "untransferred (widest rung's optimum)",
      marker: { symbol: "x-thin", size: 12, color: "#6b6b70", line: { width: 2, color: "#6b6b70" } },
      text: arms.map((k) => `confirmation at ${param} = ${fmtWidth(k.width)}: the untransferred arm<br>`
        + `${c.sym.replace("*", "")} = ${f3(k.untransferred[c.key])}: ${wrap(k.untransferred.source || "the widest rung's optimum")}, unmoved`),
      hovertemplate: "%{text}<extra></extra>",
      meta: { kind: "untransferred" },
    });
  }

  // The predictions with their 90% intervals; an unmoved weight decay as an open diamond.
  const preds = predictions().filter((p) => pos(p[c.key]));
  if (preds.length) {
    const y = preds.map((p) => p[c.key]);
    const lo = preds.map((p) => (p[c.ci] ? p[c.ci][0] : p[c.key]));
    const hi = preds.map((p) => (p[c.ci] ? p[c.ci][1] : p[c.key]));
    ys.push(...y, ...lo, ...hi);
    const moved = (p) => coord === "lr" || p.weight_decay_moved;
    data.push({
      x: preds.map((p) => p.width), y, type: "scatter", mode: "markers", name: "prediction (90% CI)",
      error_y: {
        type: "data", symmetric: false, array: hi.map((h, i) => h - y[i]), arrayminus: lo.map((l, i) => y[i] - l),
        color: "#c9851a", thickness: 2, width: 7,
      },
      marker: {
        symbol: preds.map((p) => (moved(p) ? "diamond" : "diamond-open")), size: 14, color: "#c9851a",
        line: { width: 1.5, color: "#6b4e00" },
      },
      text: preds.map((p) => [
        `prediction at ${param} = ${fmtWidth(p.width)}`,
        `${c.sym} = ${f3(p[c.key])}${interval(p[c.ci]) ? ` (90% CI ${interval(p[c.ci])})` : ""}`,
        moved(p) ? null : "unmoved: the widest rung's own weight decay",
        wrap(p.note),
      ].filter(Boolean).join("<br>")),
      hovertemplate: "%{text}<extra></extra>",
      meta: { kind: "prediction" },
    });
  }

  const annotations = [];
  if (rule[c.exp] === null) {
    annotations.push({
      text: `no line fitted: fewer than 3 rungs pin ${c.sym} down (${c.who} verdicts)`, showarrow: false,
      xref: "paper", yref: "paper", x: 0.01, y: 0.99, xanchor: "left", yanchor: "top",
      font: { size: 11, color: "#555" }, bgcolor: "rgba(255,255,255,0.85)",
    });
  }
  draw(id, data, {
    xaxis: logAxis(widths, { ticks: widths, label: fmtWidth, pad: 0.08, title: `${param} (log scale)` }),
    yaxis: logAxis(ys, { pad: 0.1, title: `best ${c.name} ${c.sym} (log scale)` }),
    height: 420,
    margin: { l: 72, r: 16, t: 12, b: 56 },
    legend: { orientation: "h", y: -0.2, font: { size: 11 } },
    annotations,
  });
  const bits = [];
  if (unused.length) bits.push(`Open grey circles: rungs whose ${c.sym} the fit did not use (hover for why).`);
  noteEl.textContent = [...bits, missingNote(ladder)].filter(Boolean).join(" ");
}

/** Which rungs have no optimum to draw yet, and why. */
function missingNote(ladder) {
  const missing = (rule?.rungs || []).filter((r) => !pos(r.lr));
  if (!missing.length) return "";
  const where = missing.map((r) => `${ladder.param} = ${fmtWidth(r.width)} (${r.reason})`).join(", ");
  return `No optimum yet at ${where}.`;
}

function renderRules() {
  const table = document.getElementById("rules");
  const empty = document.getElementById("rules-empty");
  const note = document.getElementById("rules-note");
  if (!rule || !rule.rules.length) {
    table.hidden = true;
    empty.hidden = false;
    empty.textContent = rule ? `No rule scored yet: ${rule.reason}` : "The ladder's rule could not be read.";
    note.textContent = "";
    return;
  }
  table.hidden = false;
  empty.hidden = true;
  const rows = [...rule.rules].sort((a, b) => a.chi2 - b.chi2).map((r) => {
    const best = r.name === rule.best_rule;
    return el(
      "tr",
      { "data-rule": r.name, class: best ? "best" : "", "data-consistent": r.consistent ? "1" : "0" },
      el("td", { title: RULE_LAWS[r.name] || null }, el("b", {}, r.name), " ", el("span", { class: "muted" }, RULE_LAWS[r.name] || ""),
        best ? el("span", { class: "tag best" }, "best") : ""),
      el("td", { class: "num" }, fmtExp(r.lr_exponent)),
      el("td", { class: "num" }, fmtExp(r.wd_exponent)),
      el("td", { class: "num" }, f3(r.lr_at_reference)),
      el("td", { class: "num" }, f3(r.weight_decay_at_reference)),
      el("td", { class: "num" }, `${f3(r.chi2)} (${r.dof})`),
      el("td", { class: "num" }, prob(r.p_value)),
      el("td", { class: "num" }, prob(r.relative_likelihood)),
      el("td", {}, r.consistent ? "yes" : "no"),
    );
  });
  rows.push(el(
    "tr",
    { "data-rule": "free", class: "free-fit" },
    el("td", {}, el("b", {}, "free fit"), " ", el("span", { class: "muted" }, "both exponents fitted")),
    el("td", { class: "num" }, rule.lr_exponent === null ? "not fitted" : withCi(rule.lr_exponent, rule.lr_exponent_ci)),
    el("td", { class: "num" }, rule.wd_exponent === null ? "not fitted" : withCi(rule.wd_exponent, rule.wd_exponent_ci)),
    el("td", { class: "num" }, f3(rule.lr_at_reference)),
    el("td", { class: "num" }, f3(rule.wd_at_reference)),
    el("td", {}, "–"), el("td", {}, "–"), el("td", {}, "–"), el("td", {}, "–"),
  ));
  table.querySelector("tbody").replaceChildren(...rows);
  const wref = fmtWidth(Number(rule.reference_width.toPrecision(4)));
  note.textContent = `w_ref = ${wref}, the geometric mean of the ladder's widths. Each rule fixes the exponents `
    + "and fits only the intercepts; χ² of the rungs' optima against it; a rule fits when p ≥ 0.05; relative "
    + "likelihood exp(−Δχ²/2), 1 for the best.";
}

function renderPrediction(ladder) {
  const target = targetWidth(ladder);
  const dl = document.getElementById("prediction");
  const empty = document.getElementById("prediction-empty");
  const note = document.getElementById("prediction-note");
  const where = document.getElementById("prediction-width");
  where.textContent = target === null ? ""
    : `at ${ladder.param} = ${fmtWidth(target)} (${askedWidth !== null ? "from the address" : "the widest confirmation's width"})`;
  const p = rule?.prediction;
  if (!p) {
    dl.hidden = true;
    note.hidden = true;
    empty.hidden = false;
    empty.textContent = target === null
      ? `Add ?width=W to this page's address to predict η* and λ* at ${ladder.param} W; a confirmation's width is used once there is one.`
      : `No prediction: ${rule ? rule.reason : "the ladder's rule could not be read"}`;
    return;
  }
  empty.hidden = true;
  dl.hidden = false;
  const o = objective(ladder);
  const rows = [];
  const add = (term, value) => rows.push(el("div", {}, el("dt", {}, term), el("dd", {}, value)));
  add("η* (lr)", withCi(p.lr, p.lr_ci));
  add("λ* (weight decay)", p.weight_decay_moved ? withCi(p.weight_decay, p.weight_decay_ci) : `${f3(p.weight_decay)} (unmoved)`);
  add(`predicted ${o.metric}`, p.value === null ? "–" : withCi(p.value, p.value_ci));
  for (const r of [...rule.rules].sort((a, b) => a.chi2 - b.chi2)) {
    if (!pos(r.lr)) continue;
    add(`under '${r.name}'`, `η ${f3(r.lr)}${pos(r.weight_decay) ? `, λ ${f3(r.weight_decay)}` : ""}`);
  }
  dl.replaceChildren(...rows);
  note.hidden = !p.note;
  note.textContent = p.note;
}

// ---- confirmations -----------------------------------------------------------------------------

/** "0.134 (90% CI 0.0979–0.170), 3 seeds", or the values' count alone before any finished. */
function armText(arm) {
  if (!arm || arm.n === 0) return "no seed finished";
  return `${withCi(arm.mean, arm.ci)}, ${plural(arm.n, "seed")}`;
}

function armCell(arm, showSource, tag = "td") {
  const from = showSource && arm.source ? `: ${arm.source}` : "";
  return el(tag, { class: "num", title: arm.source || null }, armText(arm), el("br"),
    el("span", { class: "muted small" }, `lr ${f3(arm.lr)} · wd ${f3(arm.weight_decay)}${from}`));
}

/** The confirmations' objective: predicted interval, then each arm's seeds, mean and interval. */
function confirmChart(ladder) {
  const o = objective(ladder);
  const list = sortedConfirmations();
  const rows = [];
  const traces = { predicted: [], transferred: [], untransferred: [], "other arms": [], "own sweep's best": [] };
  const seeds = { x: [], y: [] };
  for (const c of list) {
    const w = isJoint(ladder) ? `sweep #${c.sweep_id}` : `${esc(ladder.param)}=${fmtWidth(c.width)}`;
    const p = c.predicted;
    const cat = (what) => `${w} · ${what}`;
    if (p && typeof p.value === "number") {
      rows.push(cat("predicted"));
      traces.predicted.push({ y: cat("predicted"), x: p.value, ci: p.value_ci, text: `predicted ${esc(o.metric)} at ${w}` });
    }
    for (const [name, a, trace] of armsOf(c)) {
      rows.push(cat(name));
      if (a && typeof a.mean === "number") {
        const from = a.source ? `<br>${wrap(a.source)}` : "";
        traces[trace].push({ y: cat(name), x: a.mean, ci: a.ci, text: `${name} arm at ${w}: mean of ${plural(a.n, "seed")}${from}` });
      }
      for (const v of a?.values || []) {
        seeds.x.push(v);
        seeds.y.push(cat(name));
      }
    }
  }
  const styles = {
    predicted: { symbol: "diamond", size: 13, color: "#c9851a" },
    transferred: { symbol: "circle", size: 11, color: "#2ca02c" },
    untransferred: { symbol: "square", size: 10, color: "#6b6b70" },
    "other arms": { symbol: "triangle-up", size: 11, color: "#9467bd" },
    "own sweep's best": { symbol: "star", size: 13, color: "#1f77b4" },
  };
  const data = Object.entries(traces).filter(([, pts]) => pts.length).map(([name, pts]) => ({
    x: pts.map((q) => q.x), y: pts.map((q) => q.y), type: "scatter", mode: "markers", name,
    marker: { ...styles[name], line: { width: 1, color: "#333" } },
    error_x: {
      type: "data", symmetric: false, color: styles[name].color, thickness: 2, width: 6,
      array: pts.map((q) => (q.ci ? q.ci[1] - q.x : 0)), arrayminus: pts.map((q) => (q.ci ? q.x - q.ci[0] : 0)),
    },
    text: pts.map((q) => `${q.text}<br>${f3(q.x)}${interval(q.ci) ? ` (90% CI ${interval(q.ci)})` : ""}`),
    hovertemplate: "%{text}<extra></extra>",
  }));
  data.unshift({
    x: seeds.x, y: seeds.y, type: "scatter", mode: "markers", name: "seeds",
    marker: { size: 6, color: "rgba(60,60,60,0.35)" }, hovertemplate: "seed: %{x:.4g}<extra></extra>",
  });
  draw("plot-confirm", data, {
    height: 90 + 34 * rows.length,
    margin: { l: 190, r: 16, t: 8, b: 44 },
    showlegend: false,
    xaxis: { title: { text: `${esc(o.metric)} (${o.direction})` }, zeroline: false },
    yaxis: { type: "category", categoryorder: "array", categoryarray: rows, autorange: "reversed" },
  });
}

function renderConfirmations(ladder) {
  const empty = document.getElementById("confirm-empty");
  const body = document.getElementById("confirm-body");
  const list = rule ? sortedConfirmations() : [];
  const joint = isJoint(ladder);
  document.getElementById("confirm-total").textContent = list.length ? `(${list.length})` : "";
  if (!list.length) {
    body.hidden = true;
    empty.hidden = false;
    const flags = joint ? ladder.axes.map((a) => `--${ROLE_QUERY[a.role].replace("_", "-")} ${a.role[0].toUpperCase()}`).join(" ") : "--width W";
    empty.textContent = !rule
      ? "The ladder's rule could not be read."
      : joint
        ? "None yet. Once every rung is complete, run the prediction at a new point beside the nearest rung's "
          + `own optimum, unmoved: lionsweep ladder confirm ${ladder.id} ${flags}.`
        : "None yet. Once every rung is complete, run the prediction at a new width W beside the widest rung's "
          + `own optimum, unmoved: lionsweep ladder confirm ${ladder.id} ${flags}.`;
    return;
  }
  empty.hidden = true;
  body.hidden = false;
  confirmChart(ladder);
  // A joint prediction has no objective to predict: its column is left out.
  const predictedColumn = list.some((c) => typeof c.predicted?.value === "number");
  const extra = list.some((c) => (c.arms || []).length);
  const heads = [joint ? "Point" : "Width", "Sweep", "Status", predictedColumn ? "Predicted (90% CI)" : null,
    "Transferred arm", "Untransferred arm", extra ? "Other arms" : null, "Difference (90% CI)", "Verdict"].filter(Boolean);
  document.getElementById("confirm-head").replaceChildren(el("tr", {}, ...heads.map((h) => el("th", {}, h))));
  const rows = [];
  for (const c of list) {
    const p = c.predicted;
    rows.push(el(
      "tr",
      { "data-sweep-id": c.sweep_id, "data-width": c.width, "data-verdict": c.verdict },
      joint ? el("td", { class: "num" }, pointText(c.point)) : el("td", { class: "num nw" }, fmtWidth(c.width)),
      el("td", { class: "nw" }, el("a", { href: `/sweeps/${c.sweep_id}` }, joint ? `#${c.sweep_id}` : `sweep #${c.sweep_id}`)),
      el("td", { class: "nw" }, el("span", { class: `status ${c.status}` }, c.status)),
      predictedColumn
        ? el("td", { class: "num" }, p && typeof p.value === "number" ? withCi(p.value, p.value_ci) : "–",
          c.within_prediction === null ? "" : el("br"),
          c.within_prediction === null ? "" : el("span", { class: "muted small" }, c.within_prediction ? "achieved inside" : "achieved outside"))
        : null,
      armCell(c.transferred, false),
      armCell(c.untransferred, true),
      extra ? el("td", { class: "num" }, ...(c.arms || []).flatMap((a, i) => [i ? el("br") : null, `arm ${i + 1}: `, armCell(a, true, "span")])) : null,
      el("td", { class: "num" }, typeof c.difference === "number" ? withCi(c.difference, c.difference_ci) : "–"),
      el("td", { class: "nw" }, el("span", { class: `badge ${c.verdict}` }, CONFIRM_VERDICTS[c.verdict] || c.verdict)),
    ));
    rows.push(el("tr", { class: "note-row", "data-note-for": c.sweep_id },
      el("td", { colspan: heads.length }, c.note, ...(c.target ? [el("br"), targetNote(c.target)] : []))));
  }
  document.querySelector("#confirmations tbody").replaceChildren(...rows);
}

/** The confirmations, by width (a width ladder) or by sweep (a ladder over several axes). */
function sortedConfirmations() {
  return [...rule.confirmations].sort((a, b) => (a.width ?? 0) - (b.width ?? 0) || a.sweep_id - b.sweep_id);
}

/** A confirmation's arms as [name, arm, trace]: the transferred, the untransferred, any further
 * ones, and the best config of the point's own sweep when it has one. */
function armsOf(c) {
  return [
    ["transferred", c.transferred, "transferred"],
    ["untransferred", c.untransferred, "untransferred"],
    ...(c.arms || []).map((a, i) => [`arm ${i + 1}`, a, "other arms"]),
    ...(c.target?.best ? [["own sweep's best", c.target.best, "own sweep's best"]] : []),
  ];
}

/** The line under a confirmation about the point's own sweep: its link, progress, verdict and note. */
function targetNote(t) {
  return el("span", { class: "target-note", "data-target-verdict": t.verdict },
    "The point's own sweep ", el("a", { href: `/sweeps/${t.sweep_id}` }, `#${t.sweep_id}`),
    ` (${plural(t.finished, "run")} finished, ${t.status}): `,
    el("span", { class: `badge ${t.verdict}` }, t.verdict),
    t.verdict === "pending" ? "" : ` — ${t.note}`);
}

// ---- ladders over several axes ----------------------------------------------------------------

/** The query (and confirmation body) field of each axis role. */
const ROLE_QUERY = { width: "width", steps: "steps", batch: "batch_size" };
/** What each named rule of an axis says, in words. */
const AXIS_RULE_LAWS = {
  sqrt: "η ∝ w^−½, λ ∝ w^½",
  mup: "η ∝ 1/w, λ ∝ w",
  mup_sqrt: "η ∝ 1/w, λ ∝ √w",
  tau_tokens: "η·λ ∝ 1/steps: the decay timescale 1/(ηλ) grows with the run",
  tau_steps: "η·λ unmoved: the decay timescale fixed in steps",
  wd_linear: "η unmoved, λ ∝ batch size",
  fixed: "η and λ unmoved",
};
const PALETTE = ["#2ca02c", "#d62728", "#9467bd", "#8c564b"];
const JOINT_VERDICTS = {
  rule_identified: "Every axis has one named rule that fits and the others do not",
  indistinguishable: "Some axis cannot tell its named rules apart",
  no_rule_fits: "On some axis no named rule fits",
  insufficient: "No joint fit yet",
};
/** The three rows of an axis's panel: which fields of a rung, an axis and a rule each reads. */
const ROWS = [
  { sym: "η*", name: "lr", key: "lr", ci: "lr_ci", exp: "lr_exponent", ruleExp: (r) => r.lr_exponent },
  { sym: "λ*", name: "weight decay", key: "weight_decay", ci: "weight_decay_ci", exp: "wd_exponent", ruleExp: (r) => r.wd_exponent },
  {
    sym: "η*·λ*", name: "lr × weight decay", key: "product", ci: "product_ci", exp: "product_exponent",
    ruleExp: (r) => r.product_exponent ?? (r.lr_exponent !== null && r.wd_exponent !== null ? r.lr_exponent + r.wd_exponent : null),
  },
];

let anchors = {};
let axisLines = [];

/** Whether the ladder is over several axes, or one that is not the width (then the joint fit's page). */
function isJoint(ladder) {
  const axes = ladder.axes || [];
  if (axes.length) return axes.length > 1 || axes[0].role !== "width";
  return ladder.rungs.length > 0 && ladder.rungs[0].width === null;
}

/** "width = 512, train_steps = 800" */
const pointText = (point) => Object.entries(point || {}).map(([k, v]) => `${k} = ${fmtWidth(v)}`).join(", ");

/** The query string of a point (a value per axis, by its role's field). */
function pointQuery(ladder, point) {
  return ladder.axes.map((a) => `${ROLE_QUERY[a.role]}=${encodeURIComponent(point[a.param])}`).join("&");
}

/** Where to predict: the address's values (every axis), else the latest confirmation's point, else none. */
function targetPoint(ladder) {
  const q = new URLSearchParams(window.location.search);
  const asked = {};
  for (const a of ladder.axes) {
    const raw = q.get(ROLE_QUERY[a.role]);
    const v = raw === null ? NaN : Number(raw);
    if (Number.isFinite(v) && v > 0) asked[a.param] = v;
  }
  if (Object.keys(asked).length === ladder.axes.length) return { point: asked, from: "from the address" };
  const last = [...ladder.confirmations].sort((a, b) => b.sweep_id - a.sweep_id)[0];
  return last ? { point: last.point, from: "the latest confirmation's point" } : null;
}

/**
 * The rungs on one axis's line: those whose other axes share one value each, the group with the
 * most distinct values on this axis (a design of lines through a corner has one per axis). With
 * no two rungs on a line, every rung, and the other axes at their median rung values.
 */
function axisLine(ladder, param) {
  const others = ladder.axes.map((a) => a.param).filter((p) => p !== param);
  const groups = new Map();
  for (const r of ladder.rungs) {
    const key = JSON.stringify(others.map((o) => r.point[o]));
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(r);
  }
  let best = null;
  for (const rungs of groups.values()) {
    const distinct = new Set(rungs.map((r) => r.point[param])).size;
    if (!best || distinct > best.distinct || (distinct === best.distinct && rungs.length > best.rungs.length)) best = { rungs, distinct };
  }
  const onLine = best.distinct >= 2;
  const median = (xs) => {
    const v = [...xs].sort((a, b) => a - b);
    return v[Math.floor((v.length - 1) / 2)];
  };
  const fixed = Object.fromEntries(others.map((o) => [o, onLine ? best.rungs[0].point[o] : median(ladder.rungs.map((r) => r.point[o]))]));
  const rungs = onLine ? best.rungs : ladder.rungs;
  const values = [...new Set(rungs.map((r) => r.point[param]))].sort((a, b) => a - b);
  const centre = Math.exp(values.reduce((t, v) => t + Math.log(v), 0) / values.length);
  return { param, others, fixed, onLine, sweeps: new Set(rungs.map((r) => r.sweep_id)), values, centre };
}

/** Whether a point lies on a line (its other axes at the line's values). */
const onLineOf = (line, point) => Boolean(point) && line.others.every((o) => point[o] === line.fixed[o]);

async function refreshJoint(ladder) {
  const target = targetPoint(ladder);
  const answer = await optional(`${base}/rule${target ? `?${pointQuery(ladder, target.point)}` : ""}`);
  rule = answer.conflict ? null : answer;
  // Each axis's line goes through the joint fit's own prediction at its centre.
  const lines = ladder.axes.map((a) => axisLine(ladder, a.param));
  axisLines = lines;
  anchors = {};
  if (rule && rule.axes.length) {
    const got = await Promise.all(lines.map((line) => optional(`${base}/rule?${pointQuery(ladder, { ...line.fixed, [line.param]: line.centre })}`)));
    lines.forEach((line, i) => {
      anchors[line.param] = got[i].conflict ? { error: got[i].conflict } : got[i].prediction;
    });
  }
  // Shown before drawing: plotly sizes a chart by its box.
  document.getElementById("axis-panels").hidden = false;
  document.getElementById("width-plots").hidden = true;
  document.getElementById("rules-card").hidden = true;
  renderJointVerdict(ladder);
  renderAxisPanels(ladder, lines);
  renderJointPrediction(ladder, target);
  renderConfirmations(ladder);
}

function renderJointVerdict(ladder) {
  document.getElementById("rule-title").textContent = "Scaling rule";
  // The axes' own notes are in their panels; here only what is not there.
  if (!showVerdict(ladder, JOINT_VERDICTS, rule?.axes.length ? "" : rule?.reason)) return;
  const stats = document.getElementById("exponents");
  stats.replaceChildren(...rule.axes.map((a) => el("div", { "data-axis": a.param },
    el("dt", {}, `${a.param} (${a.role})`),
    el("dd", {}, a.best_rule ? el("b", {}, a.best_rule) : "no rule identified", a.best_rule ? ` ${AXIS_RULE_LAWS[a.best_rule] || ""}` : ""))));
  const note = rule.axes_note || "";
  // axes_note starts with the method when there is a joint fit, and is the reason when there is none.
  document.getElementById("method").textContent = !rule.axes.length ? rule.method : note.startsWith(rule.method) ? note : `${rule.method}. ${note}`;
}

function renderAxisPanels(ladder, lines) {
  const box = document.getElementById("axis-panels");
  const fits = Object.fromEntries((rule?.rungs || []).map((r) => [r.sweep_id, r]));
  const panels = ladder.axes.map((a, i) => {
    const fit = rule?.axes.find((x) => x.param === a.param) || null;
    const line = lines[i];
    const id = `plot-axis-${i}`;
    const card = el("div", { class: "card axis-panel", "data-axis": a.param, "data-role": a.role },
      el("h2", {}, `Along ${a.param}`, el("small", {}, `${a.role} axis`)),
      axisStats(fit),
      el("div", { class: "plot", id }),
      el("p", { class: "muted small caption" }, axisCaption(ladder, line, fit)),
      axisRules(fit),
    );
    return { card, id, fit, line };
  });
  box.replaceChildren(...panels.map((p) => p.card));
  for (const p of panels) axisChart(p.id, ladder, p.line, p.fit, fits);
}

function axisStats(fit) {
  if (!fit) return el("p", { class: "muted" }, rule ? "No exponents yet: there is no joint fit (the scaling rule says why)." : "The ladder's rule could not be read.");
  const row = (term, value, ci, title) => el("div", { title }, el("dt", {}, term), el("dd", {}, value === null ? "not pinned by the data" : withCi(value, ci)));
  return el("dl", { class: "stats" },
    row("η* exponent", fit.lr_exponent, fit.lr_exponent_ci, "η* ∝ axis^exponent"),
    row("λ* exponent", fit.wd_exponent, fit.wd_exponent_ci, "λ* ∝ axis^exponent"),
    row("η*·λ* exponent", fit.product_exponent, fit.product_exponent_ci),
    row("timescale 1/(η*λ*) exponent", fit.timescale_exponent, fit.timescale_exponent_ci, "the decay timescale, in steps"),
  );
}

function axisRules(fit) {
  if (!fit) return el("div", {});
  const wrapTable = el("div", { class: "table-scroll" });
  if (!fit.rules.length) {
    wrapTable.append(el("p", { class: "muted small" }, fit.rule_note || "No named rule for this axis's role."));
    return wrapTable;
  }
  const fixes = (r) => [["η", r.lr_exponent], ["λ", r.wd_exponent], ["η·λ", r.product_exponent]]
    .filter(([, v]) => v !== null).map(([n, v]) => `${n} ${fmtExp(v)}`).join(", ");
  const rows = [...fit.rules].sort((a, b) => a.chi2 - b.chi2).map((r) => {
    const best = r.name === fit.best_rule;
    return el("tr", { "data-rule": r.name, class: best ? "best" : "", "data-consistent": r.consistent ? "1" : "0" },
      el("td", { title: AXIS_RULE_LAWS[r.name] || null }, el("b", {}, r.name), best ? el("span", { class: "tag best" }, "best") : ""),
      el("td", { class: "num" }, fixes(r)),
      el("td", { class: "num" }, `${f3(r.chi2)} (${r.dof})`),
      el("td", { class: "num" }, prob(r.p_value)),
      el("td", { class: "num" }, prob(r.relative_likelihood)),
      el("td", {}, r.consistent ? "yes" : "no"));
  });
  wrapTable.append(
    el("table", { class: "grid compact wrap axis-rules" },
      el("thead", {}, el("tr", {}, ...["Rule", "Fixes", "χ² (dof)", "p", "Rel. lik.", "Fits"].map((h) => el("th", {}, h)))),
      el("tbody", {}, ...rows)),
    el("p", { class: "small rule-note" }, fit.rule_note),
  );
  return wrapTable;
}

function axisCaption(ladder, line, fit) {
  const held = line.others.map((o) => `${o} = ${fmtWidth(line.fixed[o])}`).join(", ");
  const rungs = line.onLine
    ? `Rungs on this axis's line (${held}): ${line.sweeps.size} of ${ladder.rungs.length}; the others are on other panels' lines (the design table says which).`
    : `No two rungs share the other axes' values, so every rung is drawn (open markers: off any one line); the line holds ${held}, their median rung values.`;
  if (!fit) return rungs;
  const at = pointText({ ...line.fixed, [line.param]: Number(line.centre.toPrecision(3)) });
  return `${rungs} Points: each rung's own optimum (90% interval). Solid: the joint fit along ${line.param}, its slope the `
    + `fitted exponent, its level the joint fit's prediction at ${at}; band: the slopes in the exponent's 90% interval `
    + "through that point (the level's own uncertainty is left out). Dashed: each named rule's exponent through the same point.";
}

/** One log-log panel: η*, λ* and η*·λ* rows against one axis's value. */
function axisChart(id, ladder, line, fit, fits) {
  const param = esc(line.param);
  const anchor = anchors[line.param];
  const pred = rule?.prediction && onLineOf(line, rule.prediction.point) ? rule.prediction : null;
  const xsShown = [...line.values, ...(pred ? [pred.point[line.param]] : [])];
  const lo = Math.min(...xsShown) / 1.15;
  const hi = Math.max(...xsShown) * 1.15;
  const xs = span(lo, hi, 24);
  const rungs = ladder.rungs.filter((r) => line.sweeps.has(r.sweep_id)).map((r) => fits[r.sweep_id]).filter(Boolean);
  const ok = anchor && !anchor.error && pos(anchor.lr);
  const level = ok ? { lr: anchor.lr, weight_decay: anchor.weight_decay_moved ? anchor.weight_decay : null } : {};
  level.product = pos(level.lr) && pos(level.weight_decay) ? level.lr * level.weight_decay : null;
  const data = [];
  const shown = new Set();
  const legend = (name) => {
    const first = !shown.has(name);
    shown.add(name);
    return { legendgroup: name, showlegend: first };
  };
  const layout = {
    height: 600, margin: { l: 72, r: 12, t: 8, b: 56 }, legend: { orientation: "h", y: -0.1, font: { size: 11 } },
    annotations: [],
  };
  const domains = [[0.7, 1], [0.36, 0.64], [0.02, 0.3]];
  const rules = fit ? [...fit.rules].sort((a, b) => (a.name === fit.best_rule) - (b.name === fit.best_rule)) : [];
  const colour = Object.fromEntries((fit?.rules || []).map((r, i) => [r.name, PALETTE[i % PALETTE.length]]));
  ROWS.forEach((row, j) => {
    const yref = j === 0 ? "y" : `y${j + 1}`;
    const ys = [];
    const at = level[row.key];
    const e = fit ? fit[row.exp] : null;
    const through = (slope) => xs.map((x) => at * (x / line.centre) ** slope);
    if (pos(at) && e !== null) {
      const ci = fit[`${row.exp}_ci`];
      if (interval(ci)) {
        const a = through(ci[0]);
        const b = through(ci[1]);
        const up = a.map((v, k) => Math.max(v, b[k]));
        const down = a.map((v, k) => Math.min(v, b[k]));
        ys.push(...up, ...down);
        data.push({
          x: [...xs, ...[...xs].reverse()], y: [...up, ...down.reverse()], xaxis: "x", yaxis: yref, type: "scatter", mode: "lines",
          fill: "toself", fillcolor: "rgba(31,119,180,0.15)", line: { width: 0 }, hoverinfo: "skip",
          name: "joint fit's 90% band", ...legend("band"), meta: { kind: "band", row: row.key },
        });
      }
      const y = through(e);
      ys.push(...y);
      data.push({
        x: xs, y, xaxis: "x", yaxis: yref, type: "scatter", mode: "lines", name: "joint fit", ...legend("fit"),
        line: { color: "#1f77b4", width: 2.5 },
        text: xs.map(() => `joint fit: ${row.sym} ∝ ${param}^${f3(e)}${interval(fit[`${row.exp}_ci`]) ? ` (90% CI ${interval(fit[`${row.exp}_ci`])})` : ""}`),
        hovertemplate: "%{text}<extra></extra>", meta: { kind: "fit", row: row.key },
      });
      for (const r of rules) {
        const slope = row.ruleExp(r);
        if (slope === null || slope === undefined) continue;
        const best = r.name === fit.best_rule;
        const yr = through(slope);
        ys.push(...yr);
        data.push({
          x: xs, y: yr, xaxis: "x", yaxis: yref, type: "scatter", mode: "lines", name: `${esc(r.name)}${best ? " · best" : ""}`,
          ...legend(`rule ${r.name}`), line: { color: colour[r.name], width: best ? 2.5 : 1.5, dash: "dash" }, opacity: 0.85,
          text: xs.map(() => `rule '${esc(r.name)}': ${row.sym} ∝ ${param}^${fmtExp(slope)}${best ? " (best)" : ""}<br>p = ${prob(r.p_value)}`),
          hovertemplate: "%{text}<extra></extra>", meta: { kind: "rule", rule: r.name, best, row: row.key },
        });
      }
    }
    const withEstimate = rungs.filter((r) => pos(r[row.key]));
    if (withEstimate.length) {
      const y = withEstimate.map((r) => r[row.key]);
      const l = withEstimate.map((r) => (r[row.ci] ? r[row.ci][0] : r[row.key]));
      const h = withEstimate.map((r) => (r[row.ci] ? r[row.ci][1] : r[row.key]));
      ys.push(...y, ...l, ...h);
      data.push({
        x: withEstimate.map((r) => r.point[line.param]), y, xaxis: "x", yaxis: yref, type: "scatter", mode: "markers",
        name: line.onLine ? "rung's own optimum (90% CI)" : "rung off this line", ...legend("rung"),
        error_y: { type: "data", symmetric: false, array: h.map((v, k) => v - y[k]), arrayminus: l.map((v, k) => y[k] - v), color: "#1d1d1f", thickness: 1.5, width: 4 },
        marker: line.onLine ? { symbol: "circle", size: 9, color: "#1f77b4", line: { width: 1, color: "#1d1d1f" } } : { symbol: "circle-open", size: 10, color: "#6b6b70", line: { width: 2 } },
        text: withEstimate.map((r) => `${esc(pointText(r.point))} · sweep #${r.sweep_id}<br>${row.sym} = ${f3(r[row.key])}${interval(r[row.ci]) ? ` (90% CI ${interval(r[row.ci])})` : ""}`),
        hovertemplate: "%{text}<extra></extra>", meta: { kind: "rung", row: row.key },
      });
    }
    const pv = pred ? (row.key === "product" ? (pred.weight_decay_moved ? pred.lr * pred.weight_decay : null) : pred[row.key]) : null;
    if (pos(pv) && (row.key !== "weight_decay" || pred.weight_decay_moved)) {
      const ci = row.key === "product" ? null : pred[row.ci];
      ys.push(pv, ...(ci || []));
      data.push({
        x: [pred.point[line.param]], y: [pv], xaxis: "x", yaxis: yref, type: "scatter", mode: "markers", name: "prediction (90% CI)", ...legend("prediction"),
        error_y: ci ? { type: "data", symmetric: false, array: [ci[1] - pv], arrayminus: [pv - ci[0]], color: "#c9851a", thickness: 2, width: 6 } : undefined,
        marker: { symbol: "diamond", size: 12, color: "#c9851a", line: { width: 1.5, color: "#6b4e00" } },
        text: [`prediction at ${esc(pointText(pred.point))}<br>${row.sym} = ${f3(pv)}${interval(ci) ? ` (90% CI ${interval(ci)})` : ""}`],
        hovertemplate: "%{text}<extra></extra>", meta: { kind: "prediction", row: row.key },
      });
    }
    const axis = logAxis(ys, { pad: 0.1, title: `${row.sym}` });
    layout[j === 0 ? "yaxis" : `yaxis${j + 1}`] = { ...axis, domain: domains[j], anchor: "x" };
    if (!ys.length) {
      layout.annotations.push({
        text: `no ${row.name} estimate${e === null && fit ? ": the data do not pin it" : ""}`, showarrow: false,
        xref: "paper", yref: "paper", x: 0.5, y: (domains[j][0] + domains[j][1]) / 2, font: { size: 11, color: "#555" },
      });
    }
  });
  if (anchor?.error) {
    layout.annotations.push({
      text: wrap(`no line: ${anchor.error}`, 60), showarrow: false, xref: "paper", yref: "paper", x: 0.01, y: 1, xanchor: "left", yanchor: "top",
      font: { size: 11, color: "#555" }, bgcolor: "rgba(255,255,255,0.85)",
    });
  }
  const ticks = [...new Set(xsShown)];
  layout.xaxis = { ...logAxis([lo, hi], { ticks, label: fmtWidth, pad: 0.02, title: `${param} (log scale)` }), anchor: "y3" };
  if (!data.length) {
    drawMessage(id, ladder.status === "running" ? "no data yet: rungs still running" : "no data: no rung has a fitted optimum");
    return;
  }
  draw(id, data, layout);
}

function renderJointPrediction(ladder, target) {
  const form = document.getElementById("predict-form");
  const where = document.getElementById("prediction-width");
  if (!form.dataset.built) {
    form.dataset.built = "1";
    form.append(...ladder.axes.map((a) => el("label", {}, `${a.param} (${a.role})`,
      el("input", { type: "number", name: ROLE_QUERY[a.role], min: "0", step: "any", required: "required", "data-axis": a.param }))),
    el("button", { type: "submit" }, "Predict"), el("p", { class: "error", id: "predict-error", hidden: "hidden" }));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      predictAt(ladder, Object.fromEntries(ladder.axes.map((a) => [a.param, Number(form.elements[ROLE_QUERY[a.role]].value)])));
    });
    if (target) for (const a of ladder.axes) form.elements[ROLE_QUERY[a.role]].value = target.point[a.param];
  }
  form.hidden = false;
  where.textContent = target ? `at ${pointText(target.point)} (${target.from})` : "";
  showJointPrediction(ladder, rule?.prediction || null, target === null);
}

/** Ask the joint fit for its prediction at `point`, show it, and keep the point in the address. */
async function predictAt(ladder, point) {
  const error = document.getElementById("predict-error");
  const query = pointQuery(ladder, point);
  try {
    const answer = await getJson(`${base}/rule?${query}`);
    error.hidden = true;
    window.history.replaceState(null, "", `${window.location.pathname}?${query}${window.location.hash}`);
    document.getElementById("prediction-width").textContent = `at ${pointText(point)} (from the form)`;
    rule = answer;  // the same answer, with the prediction there: the panels mark it when it is on their line
    showJointPrediction(ladder, answer.prediction, false);
    renderAxisPanels(ladder, axisLines);
  } catch (e) {
    if (!(e instanceof ApiError)) throw e;
    const detail = Array.isArray(e.detail) ? e.detail.map((d) => d.msg).join("; ") : e.message;
    error.textContent = detail;
    error.hidden = false;
  }
}

function showJointPrediction(ladder, p, unasked) {
  const dl = document.getElementById("prediction");
  const empty = document.getElementById("prediction-empty");
  const note = document.getElementById("prediction-note");
  const reachTable = document.getElementById("reach");
  if (!p) {
    dl.hidden = true;
    note.hidden = true;
    reachTable.hidden = true;
    empty.hidden = false;
    empty.textContent = unasked
      ? "Give a value for every axis to predict η* and λ* there."
      : `No prediction: ${rule ? rule.axes_note || rule.reason : "the ladder's rule could not be read"}`;
    return;
  }
  empty.hidden = true;
  dl.hidden = false;
  const add = (term, value) => el("div", {}, el("dt", {}, term), el("dd", {}, value));
  dl.replaceChildren(
    add("η* (lr)", withCi(p.lr, p.lr_ci)),
    add("λ* (weight decay)", p.weight_decay_moved ? withCi(p.weight_decay, p.weight_decay_ci) : `${f3(p.weight_decay)} (unmoved)`),
  );
  reachTable.hidden = !(p.reach || []).length;
  reachTable.querySelector("tbody").replaceChildren(...(p.reach || []).map((r) => el("tr", { "data-axis": r.param, "data-extrapolated": r.extrapolated ? "1" : "0" },
    el("td", {}, `${r.param} (${r.role})`),
    el("td", { class: "num" }, fmtWidth(r.value)),
    el("td", {}, r.extrapolated ? el("b", {}, `extrapolated ×${f3(r.factor)}`) : "inside", ` the rungs' ${fmtWidth(r.low)}–${fmtWidth(r.high)}`))));
  // The reach table says what the note's extrapolation part says: the rest only.
  const rest = (p.note || "").split("; ").filter((part) => !part.startsWith("extrapolated along") && part !== "interpolated between the rungs");
  note.hidden = !rest.length;
  note.textContent = rest.join("; ");
}

/** A table cell of an estimate over its 90% interval (the column's head says "90% CI"). */
function stackedCi(fit, key, ci) {
  if (!fit || !pos(fit[key])) return el("td", { class: "num" }, "–");
  return el("td", { class: "num" }, f3(fit[key]), interval(fit[ci]) ? el("br") : null,
    interval(fit[ci]) ? el("span", { class: "muted small" }, interval(fit[ci])) : null);
}

/** The design table: every rung's point, sweep, status, trials, surface verdict, own optimum, and its panels. */
function renderDesign(ladder, sweeps) {
  const head = document.getElementById("rungs-head");
  if (!head.dataset.joint) {
    head.dataset.joint = "1";
    head.replaceChildren(el("tr", {}, ...ladder.axes.map((a) => el("th", { class: "keep-case" }, a.param)),
      el("th", {}, "Sweep"), el("th", {}, "Status, trials"), el("th", {}, "Surface"),
      el("th", { class: "keep-case" }, "η* (90% CI)"), el("th", { class: "keep-case" }, "λ* (90% CI)"), el("th", {}, "On the line of")));
  }
  const fits = Object.fromEntries((rule?.rungs || []).map((r) => [r.sweep_id, r]));
  const lines = ladder.axes.map((a) => axisLine(ladder, a.param));
  const rows = ladder.rungs.map((r) => {
    const fit = fits[r.sweep_id];
    const sweep = sweeps[r.sweep_id];
    const on = lines.filter((l) => l.onLine && l.sweeps.has(r.sweep_id)).map((l) => l.param);
    return el("tr", { "data-sweep-id": r.sweep_id, "data-point": JSON.stringify(r.point) },
      ...ladder.axes.map((a) => el("td", { class: "num nw" }, fmtWidth(r.point[a.param]))),
      el("td", { class: "nw" }, el("a", { href: `/sweeps/${r.sweep_id}`, title: sweep ? sweep.name : null }, `#${r.sweep_id}`)),
      el("td", { class: "nw" }, el("span", { class: `status ${r.status}` }, r.status), el("br"),
        el("span", { class: "small", "data-trials": "" }, `${r.finished} / ${r.n_trials} trials`)),
      el("td", { title: fit ? fit.reason : null }, fit && fit.verdict ? el("span", { class: `badge small ${fit.verdict}` }, fit.verdict) : "–"),
      stackedCi(fit, "lr", "lr_ci"),
      stackedCi(fit, "weight_decay", "weight_decay_ci"),
      el("td", {}, on.length ? on.join(", ") : "–"));
  });
  document.querySelector("#rungs tbody").replaceChildren(...rows);
  document.getElementById("rungs-note").textContent = rule
    ? "η*, λ*: each rung's own optimum from its response surface (90% interval), a check on the joint fit; "
      + "hover a verdict for the reason. \"On the line of\": the panels that draw the rung."
    : "";
}

// ---- polling -----------------------------------------------------------------------------------

async function refresh() {
  let ladder;
  try {
    ladder = await getJson(base);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      showNotice(`Ladder ${ladderId} does not exist (or was deleted).`);
      return;
    }
    throw error;
  }
  const members = [...ladder.rungs, ...ladder.confirmations];
  const answers = await Promise.all(members.map((m) => optional(`/api/sweeps/${m.sweep_id}`)));
  const sweeps = {};
  members.forEach((m, i) => {
    if (!answers[i].conflict) sweeps[m.sweep_id] = answers[i];
  });
  showContent();
  renderHeader(ladder, sweeps);
  document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  // The rule moves only when a rung or confirmation finishes a trial or changes status.
  const signature = JSON.stringify(members.map((m) => [m.sweep_id, m.status, m.finished]));
  if (isJoint(ladder)) {
    if (signature !== lastSignature) {
      await refreshJoint(ladder);
      lastSignature = signature;
    }
    renderDesign(ladder, sweeps);
    return;
  }
  if (signature !== lastSignature) {
    const target = targetWidth(ladder);
    const answer = await optional(`${base}/rule${target === null ? "" : `?width=${encodeURIComponent(target)}`}`);
    rule = answer.conflict ? null : answer;
    lastSignature = signature;
    renderVerdict(ladder);
    widthChart("plot-lr", "lr", ladder);
    widthChart("plot-wd", "wd", ladder);
    renderRules();
    renderPrediction(ladder);
    renderConfirmations(ladder);
  }
  renderRungs(ladder, sweeps);
}

if (!Number.isFinite(ladderId)) showNotice("No ladder id in the address.");
else {
  drawMessage("plot-lr", "loading…");
  drawMessage("plot-wd", "loading…");
  poll(refresh, 2000);
}
