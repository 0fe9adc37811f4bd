// One sweep's page: polls the API every 2 s and updates counts, best config, plots and trials in place.
import { ApiError, duration, el, fmt, getJson, initToken, poll, progressBar, showContent, showNotice } from "./api.js";
import { arms, drawMessage, history, importances, lrWdMap, parallel } from "./plots.js";

initToken();
const sweepId = Number(window.location.pathname.split("/").filter(Boolean).pop());
const base = `/api/sweeps/${sweepId}`;
let lastSignature = null;
let lastFinished = null;
let rule = null;

/** GET that turns a 409 (not enough data yet) into {conflict: detail}. */
async function optional(path) {
  try {
    return await getJson(path);
  } catch (error) {
    if (error instanceof ApiError && (error.status === 409 || error.status === 404)) return { conflict: error.message };
    throw error;
  }
}

async function allTrials() {
  const items = [];
  for (let offset = 0; ; offset += 500) {
    const page = await getJson(`${base}/trials?limit=500&offset=${offset}`);
    items.push(...page.items);
    if (!page.items.length || items.length >= page.total) return items;
  }
}

function renderHeader(sweep) {
  document.title = `lionsweep · ${sweep.name}`;
  document.getElementById("sweep-name").textContent = sweep.name;
  const spec = sweep.spec || {};
  const bits = [`#${sweep.id}`, `task ${sweep.task?.name}`, sweep.status];
  if (spec.objective) bits.push(`${spec.objective.direction} ${spec.objective.metric}`);
  if (spec.sampler) bits.push(`sampler ${spec.sampler.name}`);
  if (spec.pruner) bits.push(`pruner ${spec.pruner.name}`);
  document.getElementById("sweep-meta").textContent = bits.join(" · ");
  document.getElementById("progress").replaceChildren(progressBar(sweep));
  const counts = sweep.counts || {};
  const dl = document.getElementById("counts");
  dl.replaceChildren();
  for (const key of ["complete", "pruned", "failed", "running", "waiting"]) {
    dl.append(el("div", { class: `count ${key}` }, el("dt", {}, key), el("dd", { "data-count": key }, counts[key] || 0)));
  }
  const eta = document.getElementById("eta");
  if (sweep.status !== "running") eta.textContent = `sweep ${sweep.status}`;
  else if (sweep.eta_seconds !== null && sweep.eta_seconds !== undefined) eta.textContent = `about ${duration(sweep.eta_seconds)} left`;
  else eta.textContent = "estimating time left…";
  const warnings = document.getElementById("warnings");
  warnings.replaceChildren(...(sweep.warnings || []).map((w) => el("li", {}, w)));
}

function renderBest(best) {
  const empty = document.getElementById("best-empty");
  const bodyEl = document.getElementById("best-body");
  if (!best || best.conflict || !best.best) {
    empty.hidden = false;
    bodyEl.hidden = true;
    return;
  }
  const b = best.best;
  empty.hidden = true;
  bodyEl.hidden = false;
  document.getElementById("best-value").textContent = fmt(b.value);
  document.getElementById("best-trial").textContent = `#${b.trial_number}`;
  const cls = b.optimizer === "adamw" ? "torch.optim.AdamW" : "optim.Lion";
  document.getElementById("best-optimizer").textContent = cls;
  document.getElementById("best-code").textContent = JSON.stringify(b.optimizer_kwargs);
  const extra = [];
  if (b.warmup_steps !== null && b.warmup_steps !== undefined) extra.push(`warmup_steps = ${b.warmup_steps}`);
  if (b.batch_size !== null && b.batch_size !== undefined) extra.push(`batch_size = ${b.batch_size}`);
  extra.push(`use as ${cls}(model.parameters(), **kwargs)`);
  document.getElementById("best-extra").textContent = extra.join(" · ");
}

async function copyBest() {
  const text = document.getElementById("best-code").textContent;
  try {
    await navigator.clipboard.writeText(text);
  } catch (_) {
    // Plain http on another host has no clipboard API: fall back to a selected textarea.
    const area = el("textarea", {}, text);
    document.body.append(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
  const done = document.getElementById("copy-done");
  done.hidden = false;
  window.setTimeout(() => {
    done.hidden = true;
  }, 1500);
}

function renderTrials(trials) {
  const shown = [...trials].sort((a, b) => b.number - a.number).slice(0, 500);
  const rows = shown.map((t) => {
    const p = t.params || {};
    const other = Object.entries(p)
      .filter(([k]) => !["optimizer", "lr", "weight_decay", "beta1", "beta2"].includes(k))
      .map(([k, v]) => `${k}=${v}`)
      .join(" ");
    return el(
      "tr",
      { "data-trial": t.number, "data-state": t.state },
      el("td", {}, t.number),
      el("td", {}, el("span", { class: `state ${t.state}` }, t.state)),
      el("td", { class: "num" }, fmt(t.value)),
      el("td", {}, p.optimizer || "lion"),
      el("td", { class: "num" }, fmt(p.lr)),
      el("td", { class: "num" }, fmt(p.weight_decay)),
      el("td", { class: "num" }, fmt(p.beta1)),
      el("td", { class: "num" }, fmt(p.beta2)),
      el("td", {}, other),
      el("td", {}, t.reason || ""),
      el("td", {}, t.worker_id || ""),
      el("td", { class: "num" }, t.duration_seconds === null || t.duration_seconds === undefined ? "–" : duration(t.duration_seconds)),
    );
  });
  document.querySelector("#trials tbody").replaceChildren(...rows);
  const more = trials.length > shown.length ? `, newest ${shown.length} shown` : "";
  document.getElementById("trials-total").textContent = `(${trials.length}${more})`;
}

function renderArms(trials, sweep) {
  const card = document.getElementById("arms-card");
  const hasBaseline = Boolean(sweep.spec?.baseline) || trials.some((t) => t.params?.optimizer === "adamw");
  card.hidden = !hasBaseline;
  if (!hasBaseline) return;
  arms("plot-arms-history", "plot-arms-box", trials, sweep);
  const minimize = (sweep.spec?.objective?.direction || "minimize") === "minimize";
  const rows = ["lion", "adamw"].map((arm) => {
    const mine = trials.filter((t) => (t.params?.optimizer || "lion") === arm);
    const done = mine.filter((t) => t.state === "complete" && typeof t.value === "number");
    const best = done.reduce((a, t) => (a === null || (minimize ? t.value < a.value : t.value > a.value) ? t : a), null);
    const count = (s) => mine.filter((t) => t.state === s).length;
    return el(
      "tr",
      { "data-arm": arm },
      el("td", {}, arm),
      el("td", {}, count("complete")),
      el("td", {}, count("pruned")),
      el("td", {}, count("failed")),
      el("td", { class: "num" }, best ? fmt(best.value) : "–"),
      el("td", { class: "num" }, best ? fmt(best.params.lr) : "–"),
      el("td", { class: "num" }, best ? fmt(best.params.weight_decay) : "–"),
    );
  });
  document.querySelector("#arms-table tbody").replaceChildren(...rows);
}

async function refresh() {
  let sweep;
  try {
    sweep = await getJson(base);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      showNotice(`Sweep ${sweepId} does not exist (or was deleted).`);
      return;
    }
    throw error;
  }
  showContent();
  renderHeader(sweep);
  document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  const signature = `${sweep.updated_at}|${JSON.stringify(sweep.counts)}|${sweep.status}`;
  if (signature === lastSignature) return;
  lastSignature = signature;

  // Ask only for what the API can answer yet (it says 409 otherwise, which browsers log).
  const complete = (sweep.counts && sweep.counts.complete) || 0;
  const [trials, best] = await Promise.all([
    allTrials(),
    complete >= 1 ? optional(`${base}/best?k=5`) : { conflict: "no complete trial yet" },
  ]);
  renderBest(best);
  renderTrials(trials);
  if (sweep.finished !== lastFinished) {
    lastFinished = sweep.finished;
    const lionDone = trials.filter((t) => t.state === "complete" && (t.params?.optimizer || "lion") === "lion").length;
    const [fit, imp] = await Promise.all([
      lionDone >= 3 ? optional(`${base}/scaling-rule`) : { conflict: "needs at least 3 complete Lion trials" },
      complete >= 2 ? optional(`${base}/importances`) : { conflict: "needs at least 2 complete trials" },
    ]);
    rule = fit.conflict ? null : fit;
    document.getElementById("rule-note").textContent = fit.conflict
      ? `Fitted rule: ${fit.conflict}`
      : `Fitted rule λ = ${fmt(Math.exp(fit.intercept))}·η^${fmt(fit.slope)} (r² ${fmt(fit.r2)}, n ${fit.n}); ` +
        `η·λ ≈ ${fmt(fit.product)}, α0 ≈ ${fmt(fit.alpha0)}`;
    if (imp.conflict || !imp.importances || !Object.keys(imp.importances).length) {
      document.getElementById("importances-note").textContent = imp.conflict || "";
      drawMessage("plot-importances", "not enough finished trials yet");
    } else {
      document.getElementById("importances-note").textContent = "";
      importances("plot-importances", imp.importances);
    }
  }
  lrWdMap("plot-map", trials, sweep, rule);
  history("plot-history", trials, sweep);
  parallel("plot-parallel", trials, sweep);
  renderArms(trials, sweep);
}

document.getElementById("copy-best").addEventListener("click", copyBest);
if (!Number.isFinite(sweepId)) showNotice("No sweep id in the address.");
else poll(refresh, 2000);
