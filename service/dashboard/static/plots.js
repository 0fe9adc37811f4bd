// Plotly figures of the sweep page, built from the API's trials (plotly.js is loaded globally).
import { interval, sig } from "./api.js";

const CONFIG = { displaylogo: false, responsive: true };
const BASE_LAYOUT = {
  margin: { l: 64, r: 24, t: 12, b: 48 },
  height: 360,
  paper_bgcolor: "rgba(0,0,0,0)",
  plot_bgcolor: "#fbfbfb",
  font: { size: 12 },
  legend: { orientation: "h", y: -0.22 },
};

/*
 * plotly.js (4.8 MB) loads asynchronously (the page's <script id="plotly-js" async>): until it
 * has, every chart's box says "loading charts…", and the figures asked for meanwhile wait
 * here, the newest per chart, to be drawn the moment it arrives.
 */
const LOADING = "loading charts…";
const UNAVAILABLE = "charts unavailable: plotly.js did not load";
const pending = new Map();

/** Put a placeholder line into every chart box not drawn yet. */
function placeholders(text) {
  for (const node of document.querySelectorAll(".plot:not([data-rendered])")) {
    let line = node.querySelector(":scope > .placeholder");
    if (!line) {
      line = document.createElement("p");
      line.className = "placeholder";
      node.append(line);
    }
    line.textContent = text;
  }
}

function drawPending() {
  for (const [id, [data, layout]] of pending) draw(id, data, layout);
  pending.clear();
}

if (!window.Plotly) {
  const script = document.getElementById("plotly-js");
  // The script's inline onerror marks a failure that came before this module ran.
  placeholders(script && script.dataset.failed ? UNAVAILABLE : LOADING);
  if (script) {
    script.addEventListener("load", drawPending);
    script.addEventListener("error", () => placeholders(UNAVAILABLE));
  }
}

/** Draw (or update in place) one plot and mark its container as rendered. */
export function draw(id, data, layout) {
  const node = document.getElementById(id);
  if (!window.Plotly) {
    pending.set(id, [data, layout]);
    placeholders(document.getElementById("plotly-js")?.dataset.failed ? UNAVAILABLE : LOADING);
    return;
  }
  node.querySelector(":scope > .placeholder")?.remove();
  window.Plotly.react(node, data, { ...BASE_LAYOUT, ...layout }, CONFIG);
  node.dataset.rendered = "1";
}

/** An empty plot with a centred message (keeps every plot present before data arrives). */
export function drawMessage(id, text) {
  draw(id, [], {
    xaxis: { visible: false },
    yaxis: { visible: false },
    annotations: [{ text, showarrow: false, xref: "paper", yref: "paper", x: 0.5, y: 0.5 }],
  });
}

/**
 * A string made safe for plotly text (hover, titles, names, ticks), which plotly reads as
 * limited HTML: worker-supplied reasons and spec names must show literally, never as markup.
 */
export function esc(value) {
  return String(value).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

/** The objective metric's name, escaped for plotly. */
const metricName = (sweep) => esc(sweep.spec?.objective?.metric || "objective");

const finite = (v) => typeof v === "number" && Number.isFinite(v);
const log10 = Math.log10;

/** Whether objective values are positive and span more than two decades (then shown in log). */
export function wideRange(values) {
  const v = values.filter(finite);
  if (v.length < 2 || v.some((x) => x <= 0)) return false;
  return Math.max(...v) / Math.min(...v) > 100;
}

/** Whether a parameter is searched on a log scale (spec space, else the contract's defaults). */
export function isLogParam(spec, name) {
  const entry = spec && spec.space ? spec.space[name] : undefined;
  if (entry && typeof entry === "object" && "log" in entry) return Boolean(entry.log);
  return name === "lr" || name === "weight_decay";
}

/** Whether a trial diverged: its worker or an import marked it so (reason "diverged"). */
export function isDiverged(t) {
  return Boolean(t.diverged) || t.reason === "diverged";
}

/**
 * The range the colour scale spans, robust to a few far-off values: from the lowest to the
 * highest value within the 10th to 90th percentile widened by that spread on each side (or,
 * when that spread is nil, by the distance to the nearest other value). Values outside take
 * the colour of the end they pass. Null without values.
 */
export function colourRange(values) {
  const v = values.filter(finite).sort((a, b) => a - b);
  if (!v.length) return null;
  const [min, max] = [v[0], v[v.length - 1]];
  if (v.length < 3) return [min, max];
  const lo = v[Math.ceil(0.1 * (v.length - 1))];
  const hi = v[Math.floor(0.9 * (v.length - 1))];
  const spread = hi - lo || Math.min(lo - min || Infinity, max - hi || Infinity);
  if (!Number.isFinite(spread)) return [min, max];
  const inside = v.filter((x) => x >= lo - spread && x <= hi + spread);
  return [inside[0], inside[inside.length - 1]];
}

/**
 * Colours for objective values: each value clamped into the robust range (see colourRange),
 * in log10 units when the values inside it are positive and span more than two decades;
 * `lo`/`hi` are the scale's ends in those units, `clipped` how many values lie outside.
 */
export function objectiveColours(values) {
  const range = colourRange(values);
  if (!range) return { colours: [], lo: 0, hi: 1, log: false, clipped: 0 };
  const inside = values.filter((v) => v >= range[0] && v <= range[1]);
  const log = wideRange(inside);
  const unit = (v) => (log ? log10(v) : v);
  const clamp = (v) => Math.min(Math.max(v, range[0]), range[1]);
  return {
    colours: values.map((v) => unit(clamp(v))),
    lo: unit(range[0]),
    hi: unit(range[1]),
    log,
    clipped: values.length - inside.length,
  };
}

/**
 * A trial's state as the dashboard shows it: a failed trial its worker handed back on
 * shutdown (or a cancel stopped) is "handed back": re-queued with the same params, not a failure.
 */
export function shownState(t) {
  return t.state === "failed" && t.handed_back ? "handed back" : t.state;
}

function hover(t, metric) {
  const p = t.params || {};
  const lines = [`trial ${t.number} (${shownState(t)}${t.reason ? `: ${esc(t.reason)}` : ""})`];
  if (finite(t.value)) lines.push(`${metric} = ${t.value.toPrecision(4)}`);
  lines.push(`lr = ${sig(p.lr, 4)}`, `weight decay = ${sig(p.weight_decay, 4)}`);
  return lines.join("<br>");
}

const sig3 = (v) => sig(v, 3);
const DIVERGED_COLOUR = "#d62728";

/** A colour bar's title: the metric (log10 when so), and how many values lie off its scale. */
function colourTitle(metric, shade) {
  const off = shade.clipped ? `<br>${shade.clipped} off scale` : "";
  return `${shade.log ? `log10 ${metric}` : metric}${off}`;
}
const ci3 = (ci) => (interval(ci) ? ` (90% CI ${interval(ci)})` : "");

/**
 * The lr × weight-decay map: log-log scatter coloured by objective, iso-lines of η·λ; the
 * rule's valley as a shaded 90% band with a dashed centre (only when its verdict is "valley"),
 * its fitted optimum (a cross) and the best config (a star).
 */
export function lrWdMap(id, trials, sweep, rule, best) {
  const metric = metricName(sweep);
  const minimize = (sweep.spec?.objective?.direction || "minimize") === "minimize";
  const lion = trials.filter((t) => (t.params?.optimizer || "lion") !== "adamw");
  const placed = lion.filter((t) => finite(t.params?.lr) && finite(t.params?.weight_decay));
  const diverged = placed.filter(isDiverged);
  if (!placed.length) {
    drawMessage(id, "no data yet: no Lion trial has started");
    return;
  }
  const groups = {
    complete: placed.filter((t) => t.state === "complete" && !isDiverged(t) && finite(t.value)),
    pruned: placed.filter((t) => t.state === "pruned" && !isDiverged(t)),
    failed: placed.filter((t) => shownState(t) === "failed" && !isDiverged(t)),
    handedBack: placed.filter((t) => shownState(t) === "handed back"),
    running: placed.filter((t) => t.state === "running"),
  };
  const xy = (list) => ({
    x: list.map((t) => t.params.lr),
    y: list.map((t) => t.params.weight_decay),
    text: list.map((t) => hover(t, metric)),
    customdata: list.map((t) => t.number),
    hovertemplate: "%{text}<extra></extra>",
    type: "scatter",
    mode: "markers",
  });
  // Diverged trials are drawn apart; a far-off value left takes the colour of the scale's end.
  const shade = objectiveColours(groups.complete.map((t) => t.value));
  const data = [
    {
      ...xy(groups.complete),
      name: "complete",
      marker: {
        size: 10,
        color: shade.colours,
        cmin: shade.lo,
        cmax: shade.hi,
        colorscale: "Viridis",
        reversescale: minimize,
        showscale: groups.complete.length > 0,
        colorbar: { title: { text: colourTitle(metric, shade) }, thickness: 12 },
        line: { width: 0.5, color: "#333" },
      },
    },
    { ...xy(groups.pruned), name: "pruned", marker: { symbol: "x", size: 8, color: "#8a8a8a" } },
    { ...xy(diverged), name: "diverged", marker: { symbol: "triangle-up-open", size: 10, color: DIVERGED_COLOUR, line: { width: 2 } } },
    { ...xy(groups.failed), name: "failed", marker: { symbol: "square-open", size: 8, color: "#8c2d04" } },
    { ...xy(groups.handedBack), name: "handed back", marker: { symbol: "diamond-open", size: 9, color: "#7a7a80" } },
    { ...xy(groups.running), name: "running", marker: { symbol: "circle-open", size: 9, color: "#1f77b4" } },
  ];

  // Axis ranges from the search space and the points (log10 units), padded.
  const space = sweep.spec?.space || {};
  const xs = placed.map((t) => t.params.lr);
  const ys = placed.map((t) => t.params.weight_decay);
  if (space.lr?.low > 0) xs.push(space.lr.low, space.lr.high);
  if (space.weight_decay?.low > 0) ys.push(space.weight_decay.low, space.weight_decay.high);
  // The rule's box covers a sweep that searches lr·weight decay rather than weight decay.
  if (rule?.box?.lr?.every((v) => finite(v) && v > 0)) xs.push(...rule.box.lr);
  if (rule?.box?.weight_decay?.every((v) => finite(v) && v > 0)) ys.push(...rule.box.weight_decay);
  if (!xs.length) xs.push(1e-5, 1e-3);
  if (!ys.length) ys.push(1e-3, 1);
  const pad = 0.15;
  const xr = [log10(Math.min(...xs)) - pad, log10(Math.max(...xs)) + pad];
  const yr = [log10(Math.min(...ys)) - pad, log10(Math.max(...ys)) + pad];

  // Iso-lines η·λ = 10^k for the decades crossing the visible window, each labelled near
  // its lower-right end but far enough inside the window for the whole label (drawn up and
  // to the left of that point) to show; a line with no such room goes unlabelled.
  const iso = { x: [], y: [], text: [] };
  const labels = { x: [], y: [], text: [] };
  const [xSpan, ySpan] = [xr[1] - xr[0], yr[1] - yr[0]];
  for (let k = Math.floor(xr[0] + yr[0]); k <= Math.ceil(xr[1] + yr[1]); k += 1) {
    const x0 = Math.max(xr[0], k - yr[1]);
    const x1 = Math.min(xr[1], k - yr[0]);
    if (x1 <= x0) continue;
    iso.x.push(10 ** x0, 10 ** x1, null);
    iso.y.push(10 ** (k - x0), 10 ** (k - x1), null);
    // Room: 2% of the width to the right, 3% of the height below, 14% of the width (the
    // label's length) to the left and 9% of the height (its line) above.
    const hi = Math.min(xr[1] - 0.02 * xSpan, k - yr[0] - 0.03 * ySpan);
    const lo = Math.max(xr[0] + 0.14 * xSpan, k - yr[1] + 0.09 * ySpan);
    if (hi < lo) continue;
    labels.x.push(10 ** hi);
    labels.y.push(10 ** (k - hi));
    labels.text.push(`ηλ=1e${k}`);
  }
  data.unshift({
    x: iso.x, y: iso.y, type: "scatter", mode: "lines", name: "η·λ = const",
    line: { color: "#bbb", width: 1, dash: "dot" }, hoverinfo: "skip",
  });
  data.push({
    x: labels.x, y: labels.y, text: labels.text, type: "scatter", mode: "text", showlegend: false,
    textposition: "top left", textfont: { size: 10, color: "#888" }, hoverinfo: "skip", cliponaxis: false,
  });
  const valley = rule && rule.verdict === "valley" && Array.isArray(rule.valley)
    ? rule.valley.filter((v) => [v.lr, v.weight_decay, v.weight_decay_lo, v.weight_decay_hi].every((x) => finite(x) && x > 0))
      .sort((a, b) => a.lr - b.lr)
    : [];
  if (valley.length >= 2) {
    // One closed polygon: the upper edge left to right, then the lower edge back.
    const rev = [...valley].reverse();
    data.unshift(
      {
        x: [...valley.map((v) => v.lr), ...rev.map((v) => v.lr)],
        y: [...valley.map((v) => v.weight_decay_hi), ...rev.map((v) => v.weight_decay_lo)],
        type: "scatter", mode: "lines", fill: "toself", name: "valley (90% band)",
        fillcolor: "rgba(227, 119, 194, 0.22)", line: { color: "rgba(227, 119, 194, 0.5)", width: 1 },
        hoverinfo: "skip",
      },
      {
        x: valley.map((v) => v.lr), y: valley.map((v) => v.weight_decay),
        text: valley.map((v) => `best λ for η = ${sig3(v.lr)}: ${sig3(v.weight_decay)}<br>90% band ${sig3(v.weight_decay_lo)} to ${sig3(v.weight_decay_hi)}`),
        hovertemplate: "%{text}<extra></extra>",
        type: "scatter", mode: "lines", name: `valley λ* ∝ η^${sig3(rule.slope)}`,
        line: { color: "#c2459b", width: 1.5, dash: "dash" },
      },
    );
  }
  if (best && finite(best.lr) && finite(best.weight_decay) && best.lr > 0 && best.weight_decay > 0) {
    data.push({
      x: [best.lr], y: [best.weight_decay], type: "scatter", mode: "markers", name: "best config",
      text: [`best config (trial ${best.trial_number})<br>lr = ${sig3(best.lr)}<br>weight decay = ${sig3(best.weight_decay)}` +
        `${finite(best.value) ? `<br>${metric} = ${sig3(best.value)}` : ""}`],
      customdata: [best.trial_number],
      hovertemplate: "%{text}<extra></extra>",
      marker: { symbol: "star", size: 18, color: "#ffd400", line: { width: 1.5, color: "#333" } },
    });
  }
  const opt = rule && rule.optimum;
  if (opt && finite(opt.lr) && finite(opt.weight_decay) && opt.lr > 0 && opt.weight_decay > 0) {
    data.push({
      x: [opt.lr], y: [opt.weight_decay], type: "scatter", mode: "markers", name: "fitted optimum",
      text: [`fitted optimum<br>lr = ${sig3(opt.lr)}${ci3(opt.lr_ci)}<br>weight decay = ${sig3(opt.weight_decay)}${ci3(opt.weight_decay_ci)}` +
        `${finite(opt.value) ? `<br>predicted ${metric} = ${sig3(opt.value)}${ci3(opt.value_ci)}` : ""}`],
      hovertemplate: "%{text}<extra></extra>",
      marker: { symbol: "x-thin", size: 16, color: "#111", line: { width: 3, color: "#111" } },
    });
  }
  // Without a valley verdict no band is drawn; the note under the map says so, once.
  const [xaxis, yaxis] = logTicks(xr, yr);
  draw(id, data, {
    xaxis: { ...xaxis, title: { text: "learning rate η" } },
    yaxis: { ...yaxis, title: { text: "weight decay λ" } },
    height: 420,
  });
}

function bestSoFar(values, minimize) {
  let best = null;
  return values.map((v) => {
    if (best === null || (minimize ? v < best : v > best)) best = v;
    return best;
  });
}

/** Objective of each complete trial by trial number; the lowest (highest when maximizing) single
 * value so far, labelled as single runs; and the config /best ranks first (`best`, a ConfigOut)
 * as its seed mean with its 90% interval, drawn at the last trial its mean is over. */
export function history(id, trials, sweep, best = null) {
  const metric = metricName(sweep);
  const minimize = (sweep.spec?.objective?.direction || "minimize") === "minimize";
  const done = trials.filter((t) => t.state === "complete" && finite(t.value)).sort((a, b) => a.number - b.number);
  if (!done.length) {
    drawMessage(id, "no data yet: no complete trial");
    return;
  }
  const values = done.map((t) => t.value);
  const data = [
    {
      x: done.map((t) => t.number), y: done.map((t) => t.value), type: "scatter", mode: "markers",
      name: metric, marker: { color: "#1f77b4", size: 7 },
    },
    {
      x: done.map((t) => t.number), y: bestSoFar(done.map((t) => t.value), minimize), type: "scatter",
      mode: "lines", name: `${minimize ? "lowest" : "highest"} single value so far`,
      line: { color: "#d62728", shape: "hv", dash: "dot", width: 1.5 },
    },
  ];
  if (best && finite(best.mean)) {
    const n = best.n_seeds ?? 1;
    const at = Math.max(...(best.trial_numbers?.length ? best.trial_numbers : [best.trial_number]));
    const ci = Array.isArray(best.ci) && best.ci.every(finite) ? best.ci : null;
    const label = `best config (trial ${best.trial_number}): mean of ${n} seed${n === 1 ? "" : "s"}`;
    data.push({
      x: [at], y: [best.mean], type: "scatter", mode: "markers", name: label,
      marker: { color: "#2ca02c", size: 12, symbol: "star" },
      error_y: ci ? { type: "data", symmetric: false, array: [ci[1] - best.mean], arrayminus: [best.mean - ci[0]], color: "#2ca02c", thickness: 2 } : undefined,
      text: [`${label}<br>${metric} = ${sig3(best.mean)}${ci ? `<br>90% CI ${sig3(ci[0])} to ${sig3(ci[1])}` : "<br>noise not measured"}`],
      hoverinfo: "text",
    });
    if (ci) values.push(...ci.filter((v) => v > 0));
  }
  draw(id, data, {
    xaxis: { title: { text: "trial" } },
    yaxis: wideRange(values) ? logAxis(values, { title: metric }) : { title: { text: metric } },
  });
}

/** Horizontal bars of Optuna's parameter importances. */
export function importances(id, values) {
  const entries = Object.entries(values).sort((a, b) => a[1] - b[1]);
  draw(
    id,
    [{ type: "bar", orientation: "h", x: entries.map((e) => e[1]), y: entries.map((e) => esc(e[0])), marker: { color: "#2ca02c" } }],
    { xaxis: { title: { text: "importance" } }, margin: { l: 110, r: 24, t: 12, b: 48 } },
  );
}

/** The parameters that vary among the given trials (numeric or categorical). */
export function sweptParams(trials) {
  const values = {};
  for (const t of trials) {
    for (const [k, v] of Object.entries(t.params || {})) {
      if (k === "optimizer" || v === null || typeof v === "object") continue;
      (values[k] ||= new Set()).add(v);
    }
  }
  return Object.keys(values).filter((k) => values[k].size > 1).sort();
}

/** Viridis, plotly's default sequential scale, from low to high. */
const VIRIDIS = [
  "#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89", "#35b779", "#6ece58", "#b5de2b", "#fde725",
];

/**
 * A colour scale for `parcoords`: Viridis (best values yellow) with a band in the diverged
 * colour at the bad end, `band` of the scale wide, when `withDiverged`.
 */
function divergedScale(minimize, withDiverged, band) {
  const colours = minimize ? [...VIRIDIS].reverse() : VIRIDIS;
  if (!withDiverged) return colours.map((c, i) => [i / (colours.length - 1), c]);
  // Minimizing, the bad end is the top of the scale; maximizing, its bottom.
  const [from, to] = minimize ? [0, 1 - band] : [band, 1];
  const stops = colours.map((c, i) => [from + ((to - from) * i) / (colours.length - 1), c]);
  return minimize
    ? [...stops, [1 - band + 1e-6, DIVERGED_COLOUR], [1, DIVERGED_COLOUR]]
    : [[0, DIVERGED_COLOUR], [band - 1e-6, DIVERGED_COLOUR], ...stops];
}

/**
 * Round ticks that enclose [lo, hi] (log10 units): the first at or below lo, the last at or
 * above hi, 3 to about 9 of them (whole decades, every few, over a wide span).
 */
function enclosingLogTicks(lo, hi) {
  if (hi - lo < 1e-9) [lo, hi] = [lo - 0.05, hi + 0.05];
  if (hi - lo > 8) {
    const step = Math.ceil((Math.ceil(hi) - Math.floor(lo)) / 8);
    const ticks = [];
    for (let k = Math.floor(lo); ticks.length === 0 || log10(ticks.at(-1)) < hi - 1e-9; k += step) ticks.push(10 ** k);
    return ticks;
  }
  let ticks = [];
  for (const mantissas of MANTISSAS) {
    const all = [];
    for (let k = Math.floor(lo) - 1; k <= Math.ceil(hi) + 1; k += 1) {
      for (const m of mantissas) all.push(Number((m * 10 ** k).toPrecision(3)));
    }
    const first = all.findLastIndex((v) => log10(v) <= lo + 1e-9);
    const last = all.findIndex((v) => log10(v) >= hi - 1e-9);
    ticks = all.slice(first, last + 1);
    if (ticks.length >= 3) break;
  }
  return ticks;
}

/** Round ticks with a step of 1, 2, 2.5 or 5 × 10^k that enclose [lo, hi], about 5 of them. */
function enclosingTicks(lo, hi) {
  if (!(hi > lo)) {
    const d = Math.abs(lo) * 0.1 || 1;
    [lo, hi] = [lo - d, hi + d];
  }
  const raw = (hi - lo) / 5;
  const p = 10 ** Math.floor(log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * p).find((x) => x >= raw - 1e-12 * p);
  const ticks = [];
  const first = Math.floor(lo / step + 1e-9);
  for (let i = first; ticks.length === 0 || ticks.at(-1) < hi - 1e-9 * step; i += 1) {
    ticks.push(Number((i * step).toPrecision(12)));
  }
  return ticks;
}

/**
 * Parallel coordinates over every swept parameter, coloured by the objective. Every axis
 * runs from a round tick at or below its lowest value to one at or above its highest, so it
 * holds all its lines. The colour scale spans the robust range of the values (see
 * colourRange) of the trials that did not diverge; diverged trials are drawn apart, in their
 * own colour, at a "diverged" place beyond the bad end of the objective's axis.
 */
export function parallel(id, trials, sweep) {
  const metric = metricName(sweep);
  const minimize = (sweep.spec?.objective?.direction || "minimize") === "minimize";
  const complete = trials.filter((t) => t.state === "complete" && finite(t.value));
  const names = sweptParams(complete);
  if (complete.length < 2 || !names.length) {
    drawMessage(id, complete.length < 2 ? "no data yet: needs two complete trials" : "no parameter varies yet");
    return;
  }
  // The trials that trained first, then the diverged ones (all of them when none trained).
  let ok = complete.filter((t) => !isDiverged(t));
  if (!ok.length) ok = complete;
  const bad = complete.filter((t) => !ok.includes(t));
  const done = [...ok, ...bad];
  // A log dimension: values in log10 units, with the round ticks of a log axis (labelled
  // below in one format for the whole chart).
  const logDims = [];
  const logDim = (label, values) => {
    const ticks = enclosingLogTicks(Math.min(...values), Math.max(...values));
    const dim = { label: `${label} (log scale)`, values, range: [log10(ticks[0]), log10(ticks.at(-1))], tickvals: ticks };
    logDims.push(dim);
    return dim;
  };
  const linearDim = (label, values) => {
    const ticks = enclosingTicks(Math.min(...values), Math.max(...values));
    return { label, values, range: [ticks[0], ticks.at(-1)], tickvals: ticks };
  };
  const dims = names.map((name) => {
    const raw = done.map((t) => t.params[name]);
    // A parameter searched over choices gets one tick per choice (a categorical axis), the
    // choices that no complete trial took included; a numeric range gets a continuous one.
    const choices = sweep.spec?.space?.[name]?.choices;
    if (raw.every((v) => typeof v === "number") && !Array.isArray(choices)) {
      const log = isLogParam(sweep.spec, name) && raw.every((v) => v > 0);
      return log ? logDim(esc(name), raw.map(log10)) : linearDim(esc(name), raw);
    }
    const taken = [...new Set(raw)];
    const cats = Array.isArray(choices)
      ? [...choices, ...taken.filter((v) => !choices.includes(v))].map(String)
      : [...new Set(raw.map(String))].sort();
    return {
      label: esc(name),
      values: raw.map((v) => cats.indexOf(String(v))),
      range: [0, Math.max(cats.length - 1, 1)],
      tickvals: cats.map((_, i) => i),
      ticktext: cats.map(esc),
    };
  });
  // The objective: trained trials' values clamped into the colour range; diverged ones at a
  // place of their own a tenth of the axis beyond its bad end.
  const shade = objectiveColours(ok.map((t) => t.value));
  const label = shade.clipped ? `${metric}, ${shade.clipped} off scale at its end` : metric;
  const objective = shade.log ? logDim(label, shade.colours) : linearDim(label, shade.colours);
  dims.push(objective);
  const plain = logDims.every((d) => plainTicks(d.tickvals));
  for (const d of logDims) {
    d.ticktext = tickLabels(d.tickvals, plain);
    d.tickvals = d.tickvals.map(log10);
  }
  const band = 0.1;
  const [lo, hi] = objective.range;
  const slot = minimize ? hi + ((hi - lo) * band) / (1 - band) : lo - ((hi - lo) * band) / (1 - band);
  const colour = { cmin: lo, cmax: hi, tickvals: [...objective.tickvals], ticktext: objective.ticktext ? [...objective.ticktext] : null };
  if (bad.length) {
    objective.values = [...objective.values, ...bad.map(() => slot)];
    objective.range = minimize ? [lo, slot] : [slot, hi];
    objective.ticktext = objective.ticktext || objective.tickvals.map((v) => String(v));
    objective.tickvals = minimize ? [...objective.tickvals, slot] : [slot, ...objective.tickvals];
    objective.ticktext = minimize ? [...objective.ticktext, "diverged"] : ["diverged", ...objective.ticktext];
    [colour.cmin, colour.cmax] = objective.range;
    // On the colour bar, "diverged" labels the middle of its band (clear of the bar's title).
    const middle = minimize ? (hi + slot) / 2 : (lo + slot) / 2;
    colour.tickvals = objective.tickvals.map((v) => (v === slot ? middle : v));
    colour.ticktext = objective.ticktext;
  }
  const lineColours = [...shade.colours, ...bad.map(() => slot)];
  draw(
    id,
    [{
      type: "parcoords",
      dimensions: dims,
      line: {
        color: lineColours,
        cmin: colour.cmin,
        cmax: colour.cmax,
        colorscale: divergedScale(minimize, bad.length > 0, band),
        showscale: true,
        colorbar: {
          thickness: 12,
          title: { text: colourTitle(metric, { ...shade, clipped: 0 }), side: "top" },
          tickmode: "array",
          tickvals: colour.tickvals,
          ...(colour.ticktext ? { ticktext: colour.ticktext } : {}),
        },
      },
    }],
    { margin: { l: 60, r: 60, t: 36, b: 24 }, plot_bgcolor: "rgba(0,0,0,0)" },
  );
}

/** Lion versus AdamW: best-so-far per arm and the spread of objective values. */
export function arms(historyId, boxId, trials, sweep) {
  const metric = metricName(sweep);
  const minimize = (sweep.spec?.objective?.direction || "minimize") === "minimize";
  const colors = { lion: "#c9851a", adamw: "#1f77b4" };
  const lines = [];
  const boxes = [];
  for (const arm of ["lion", "adamw"]) {
    const done = trials
      .filter((t) => (t.params?.optimizer || "lion") === arm && t.state === "complete" && finite(t.value))
      .sort((a, b) => a.number - b.number);
    lines.push({
      x: done.map((t) => t.number), y: bestSoFar(done.map((t) => t.value), minimize), type: "scatter",
      mode: "lines+markers", name: arm, line: { color: colors[arm], shape: "hv" },
    });
    boxes.push({ y: done.map((t) => t.value), type: "box", name: arm, boxpoints: "all", jitter: 0.4, marker: { color: colors[arm] } });
  }
  const all = boxes.flatMap((b) => b.y);
  if (!all.length) {
    drawMessage(historyId, "no data yet: no complete trial");
    drawMessage(boxId, "no data yet: no complete trial");
    return;
  }
  const bestLines = lines.flatMap((l) => l.y);
  draw(historyId, lines, {
    xaxis: { title: { text: "trial" } },
    yaxis: wideRange(bestLines) ? logAxis(bestLines, { title: `best ${metric}` }) : { title: { text: `best ${metric}` } },
  });
  draw(boxId, boxes, {
    yaxis: wideRange(all) ? logAxis(all, { title: metric }) : { title: { text: metric } },
    showlegend: false,
  });
}

/** Candidate tick mantissas per decade, coarsest first. */
const MANTISSAS = [
  [1], [1, 3], [1, 2, 5], [1, 2, 3, 5], [1, 1.5, 2, 3, 5, 7], [1, 2, 3, 4, 5, 6, 7, 8, 9],
  [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8, 9],
];

/** At least 3 round ticks m·10^k inside [lo, hi] (log10 units), at most about 9. */
function logTickValues(lo, hi) {
  let ticks = [];
  for (const mantissas of MANTISSAS) {
    ticks = [];
    for (let k = Math.floor(lo) - 1; k <= Math.ceil(hi); k += 1) {
      for (const m of mantissas) {
        const v = Number((m * 10 ** k).toPrecision(3));
        if (log10(v) >= lo - 1e-9 && log10(v) <= hi + 1e-9) ticks.push(v);
      }
    }
    if (ticks.length >= 3) break;
  }
  const step = Math.ceil(ticks.length / 9);
  return step > 1 ? ticks.filter((_, i) => i % step === 0) : ticks;
}

/** Whether ticks at `values` read well as plain decimals: all lie in [0.001, 1e5). */
const plainTicks = (values) => values.every((v) => v >= 1e-3 && v < 1e5);

/**
 * Tick labels in one format for the whole axis: plain decimals ("0.002", "0.05", "20") when
 * every tick lies in [0.001, 1e5), else mantissa and exponent for all ("3e-4", "1e-3"); or
 * the format `plain` says (a chart with two log axes writes both alike).
 */
export function tickLabels(values, plain = plainTicks(values)) {
  return values.map((v) => {
    if (plain) return Number(v.toPrecision(3)).toString();
    const k = Math.floor(log10(v) + 1e-9);
    return `${Number((v / 10 ** k).toPrecision(3))}e${k}`;
  });
}

/**
 * Log axes over `ranges` (log10 units) with round ticks m·10^k, all labelled in one format
 * (see tickLabels): plain decimals only when every axis's ticks read well so, else exponents.
 * The sweep and ladder pages label every log axis this way, never plotly's SI prefixes ("100μ").
 */
export function logTicks(...ranges) {
  const ticks = ranges.map((range) => logTickValues(...range));
  const plain = ticks.every(plainTicks);
  return ranges.map((range, i) => ({
    type: "log", range, tickmode: "array", tickvals: ticks[i], ticktext: tickLabels(ticks[i], plain),
  }));
}

/**
 * A log axis over the positive values given, padded, with round ticks in one label format;
 * or ticks at `ticks` (labelled by `label`, e.g. the rungs' widths).
 */
export function logAxis(values, { ticks = null, label = null, pad = 0.1, title = "" } = {}) {
  const v = values.filter((x) => finite(x) && x > 0);
  if (!v.length) v.push(1);
  const lo = log10(Math.min(...v));
  const hi = log10(Math.max(...v));
  const margin = Math.max(pad * (hi - lo), 0.04);
  const range = [lo - margin, hi + margin];
  const tickvals = ticks
    ? [...new Set(ticks.filter((x) => finite(x) && x > 0))].sort((a, b) => a - b)
    : logTickValues(...range);
  return {
    type: "log",
    range,
    tickmode: "array",
    tickvals,
    ticktext: label ? tickvals.map(label) : tickLabels(tickvals),
    title: { text: title },
  };
}
