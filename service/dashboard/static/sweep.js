// One sweep's page: polls the API every 2 s and updates counts, best config, plots and trials in place.
import { ApiError, age, duration, el, fmt, getJson, initToken, interval, poll, progressBar, rounded, showContent, showNotice, sig } from "./api.js";
import { arms, drawMessage, history, importances, isDiverged, lrWdMap, parallel, shownState } from "./plots.js";

initToken();
const sweepId = Number(window.location.pathname.split("/").filter(Boolean).pop());
const base = `/api/sweeps/${sweepId}`;
let lastSignature = null;
let lastFinished = null;
let rule = null;
let bestAnswer = null;

const f3 = (v) => sig(v, 3);
const plural = (n, one, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

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
  const bits = [`#${sweep.id}`, `task ${sweep.task?.name}`, sweep.activity || sweep.status];
  if (spec.objective) bits.push(`${spec.objective.direction} ${spec.objective.metric}`);
  if (spec.sampler) bits.push(`sampler ${spec.sampler.name}`);
  if (spec.pruner) bits.push(`pruner ${spec.pruner.name}`);
  document.getElementById("sweep-meta").textContent = bits.join(" · ");
  // A rung or confirmation of a width ladder links back to it.
  const crumb = document.getElementById("ladder-crumb");
  crumb.hidden = !sweep.ladder_id;
  if (sweep.ladder_id) {
    const link = document.getElementById("ladder-link");
    link.href = `/ladders/${sweep.ladder_id}`;
    const role = { confirm: "a confirmation", target: "a confirmation's own sweep at its point" }[sweep.ladder_role] || "a rung";
    link.textContent = `← width ladder #${sweep.ladder_id}: this sweep is ${role} of it`;
  }
  document.getElementById("progress").replaceChildren(progressBar(sweep));
  const counts = sweep.counts || {};
  const dl = document.getElementById("counts");
  dl.replaceChildren();
  for (const key of ["complete", "pruned", "failed", "running", "waiting", "handed_back"]) {
    const label = key.replace("_", " ");
    dl.append(el("div", { class: `count ${key}` }, el("dt", {}, label), el("dd", { "data-count": key }, counts[key] || 0)));
  }
  const eta = document.getElementById("eta");
  if (sweep.status !== "running") eta.textContent = `sweep ${sweep.status}`;
  else if (sweep.eta_seconds !== null && sweep.eta_seconds !== undefined) eta.textContent = `about ${duration(sweep.eta_seconds)} left`;
  else eta.textContent = "estimating time left…";
  const warnings = document.getElementById("warnings");
  warnings.replaceChildren(...(sweep.warnings || []).map((w) => el("li", {}, w)));
}

/** "2.88 ± 0.08 (90% CI 2.80–2.96, 4 seeds)", or "…, 1 seed, noise not measured". */
function meanText(c) {
  const seeds = plural(c.n_seeds, "seed") + (c.held_out ? " that took no part in ranking it" : "");
  const ci = interval(c.ci);
  if (!ci) return { mean: f3(c.mean), detail: `(${seeds}, noise not measured)` };
  return { mean: `${f3(c.mean)} ± ${f3((c.ci[1] - c.ci[0]) / 2)}`, detail: `(90% CI ${ci}, ${seeds})` };
}

/** One sentence on the re-evaluation of the top configs with fresh seeds. */
function reevaluationText(r) {
  if (!r) return "";
  const why = r.reason ? `: ${r.reason}` : "";
  const who = r.top_k ? `the top ${r.top_k}` : "the top configs";
  const seeds = r.seeds ? ` with ${plural(r.seeds, "fresh seed")}` : " with fresh seeds";
  switch (r.status) {
    case "queued":
      return `Re-evaluating ${who}${seeds}: ${r.finished}/${r.trials} done${r.reason ? ` (${r.reason})` : ""}`;
    case "done":
      return `Re-evaluated ${who}${seeds} (${plural(r.trials, "run")})${r.reason ? `: ${r.reason}` : ""}`;
    case "pending":
      return `Re-evaluation of ${who}${seeds} pending${why}`;
    case "skipped":
      return `Re-evaluation skipped${why}`;
    case "off":
      return `Re-evaluation off${why}`;
    default:
      return r.status ? `Re-evaluation ${r.status}${why}` : "";
  }
}

function renderBest(best) {
  const empty = document.getElementById("best-empty");
  const bodyEl = document.getElementById("best-body");
  if (!best || best.conflict || !best.best) {
    bestAnswer = null;
    empty.hidden = false;
    bodyEl.hidden = true;
    return;
  }
  bestAnswer = best;
  const b = best.best;
  empty.hidden = true;
  bodyEl.hidden = false;
  const shown = meanText(b);
  document.getElementById("best-value").textContent = shown.mean;
  document.getElementById("best-seeds").textContent = shown.detail;
  document.getElementById("best-trial").textContent = `#${b.trial_number}`;
  const cls = b.optimizer === "adamw" ? "torch.optim.AdamW" : "optim.Lion";
  document.getElementById("best-optimizer").textContent = cls;
  document.getElementById("best-noise").textContent =
    typeof best.noise_sd === "number"
      ? ` · seed noise sd ${f3(best.noise_sd)} (${plural(best.noise_df, "degree")} of freedom)`
      : "";
  const note = document.getElementById("best-note");
  note.textContent = best.note || "";
  note.hidden = !best.note;
  document.getElementById("best-reeval").textContent = reevaluationText(best.reevaluation);
  // Shown with 4 significant digits; the exact values are the code's title and what Copy copies.
  const code = document.getElementById("best-code");
  const exact = JSON.stringify(b.optimizer_kwargs);
  code.textContent = JSON.stringify(rounded(b.optimizer_kwargs));
  code.title = exact;
  code.dataset.exact = exact;
  const extra = [];
  if (b.warmup_steps !== null && b.warmup_steps !== undefined) extra.push(`warmup_steps = ${b.warmup_steps}`);
  if (b.batch_size !== null && b.batch_size !== undefined) extra.push(`batch_size = ${b.batch_size}`);
  extra.push(`use as ${cls}(model.parameters(), **kwargs)`);
  document.getElementById("best-extra").textContent = extra.join(" · ");
  renderTop(best);
}

/** The values a config's mean is over, and the runs that ranked it. */
function seedsTitle(c) {
  const over = c.values ? `mean over ${c.values.map((v) => f3(v)).join(", ")}` : "";
  const ranked = c.held_out && c.ranked_on?.length
    ? `; ranked on trial${c.ranked_on.length === 1 ? "" : "s"} ${c.ranked_on.join(", ")} (mean ${f3(c.rank_value)}), left out of the mean`
    : "";
  return over + ranked || null;
}

/** The top configs, ranked; those the data cannot tell apart from the best are marked. */
function renderTop(best) {
  const tied = new Set(best.tied || []);
  const rows = (best.top || []).map((c, i) => {
    const isBest = c.trial_number === best.best.trial_number;
    const isTied = tied.has(c.trial_number);
    const mark = isBest ? "best" : isTied ? "≈ best" : "";
    const kw = c.optimizer_kwargs || {};
    return el(
      "tr",
      {
        "data-trial": c.trial_number,
        "data-tied": isTied ? "1" : "0",
        class: isBest ? "best" : isTied ? "tied" : "",
        title: isTied && !isBest ? "within noise of the best: the 90% interval of the difference includes 0" : null,
      },
      el("td", {}, i + 1),
      el("td", {}, `#${c.trial_number}`),
      el("td", { class: "num" }, f3(c.mean)),
      el("td", { class: "num" }, interval(c.ci) || "–"),
      el("td", { class: "num", title: seedsTitle(c) }, c.held_out ? `${c.n_seeds} held out` : c.n_seeds),
      el("td", { class: "num" }, f3(kw.lr)),
      el("td", { class: "num" }, f3(kw.weight_decay)),
      el("td", {}, mark ? el("span", { class: `tag ${isBest ? "best" : "tied"}` }, mark) : ""),
    );
  });
  document.querySelector("#top-table tbody").replaceChildren(...rows);
  document.getElementById("top-table").hidden = rows.length < 2;
}

const VERDICTS = {
  valley: "Valley: lr and weight decay trade off",
  per_axis: "Both matter; their trade-off is not pinned down",
  lr_only: "Only the learning rate matters",
  wd_only: "Only the weight decay matters",
  boundary: "Optimum on the edge of the search box",
  insufficient: "Not enough evidence for a rule",
};

/** "−0.98 (90% CI −1.2 to −0.81)" or "−0.98" without an interval. */
function withCi(value, ci) {
  const i = interval(ci);
  return i ? `${f3(value)} (90% CI ${i})` : f3(value);
}

/** The scaling rule's verdict, its reason and numbers; or why there is none yet. */
function renderRule(fit) {
  const verdict = document.getElementById("rule-verdict");
  const reason = document.getElementById("rule-reason");
  const stats = document.getElementById("rule-stats");
  const method = document.getElementById("rule-method");
  const note = document.getElementById("rule-note");
  if (!fit || fit.conflict) {
    verdict.replaceChildren(el("span", { class: "badge none" }, "no rule yet"));
    verdict.dataset.verdict = "";
    reason.textContent = fit ? fit.conflict : "";
    stats.replaceChildren();
    method.textContent = "";
    note.textContent = "No valley drawn: the scaling rule needs complete Lion trials.";
    return;
  }
  verdict.dataset.verdict = fit.verdict;
  verdict.replaceChildren(
    el("span", { class: `badge ${fit.verdict}` }, fit.verdict),
    " ",
    VERDICTS[fit.verdict] || "",
  );
  reason.textContent = fit.reason || "";
  const rows = [];
  const add = (term, value, title) => {
    if (value === null || value === undefined || value === "") return;
    rows.push(el("div", { title: title || null }, el("dt", {}, term), el("dd", {}, value)));
  };
  if (typeof fit.slope === "number") add("slope d ln λ*/d ln η", withCi(fit.slope, fit.slope_ci), "the valley's slope");
  if (typeof fit.product === "number") add("product η·λ", withCi(fit.product, fit.product_ci));
  if (typeof fit.alpha0 === "number") add("α0 = √(2ηλ)", withCi(fit.alpha0, fit.alpha0_ci));
  const opt = fit.optimum;
  if (opt) {
    // Only what the verdict shows: an axis or a value it rules out is null.
    if (typeof opt.lr === "number") add("optimum lr", withCi(opt.lr, opt.lr_ci));
    if (typeof opt.weight_decay === "number") add("optimum weight decay", withCi(opt.weight_decay, opt.weight_decay_ci));
    if (typeof opt.value === "number") add("predicted value", withCi(opt.value, opt.value_ci));
  }
  const stab = fit.stability;
  if (stab && typeof stab.lr_diverged_min === "number") add("training diverges", `from lr ${f3(stab.lr_diverged_min)}`, stab.note);
  if (fit.no_decay) add("no decay − optimum", withCi(fit.no_decay.difference, fit.no_decay.difference_ci), fit.no_decay.note);
  if (fit.on_boundary && fit.boundary_edges?.length) add("at the trials' edge", fit.boundary_edges.join(", ").replace(/_/g, " "));
  if (typeof fit.noise_sd === "number") add("seed noise sd", f3(fit.noise_sd));
  if (typeof fit.residual_sd === "number") add(fit.value_scale === "log" ? "residual sd (ln scale)" : "residual sd", f3(fit.residual_sd));
  if (fit.design === "one_at_a_time") add("design", "one at a time: per-axis optimum, slope not identifiable", fit.design_note);
  const lo = fit.left_out || {};
  const order = ["pruned", "failed", "running", "diverged", "outlier", "other"];
  const keys = [...order, ...Object.keys(lo).filter((k) => !order.includes(k)).sort()];
  const leftOut = keys.filter((k) => lo[k]).map((k) => `${lo[k]} ${k.replace(/_/g, " ")}${k === "outlier" && lo[k] !== 1 ? "s" : ""}`);
  add("trials fitted", `${fit.n}${leftOut.length ? `; left out ${leftOut.join(", ")}` : "; none left out"}`, fit.left_out_reason);
  stats.replaceChildren(...rows);
  method.textContent = [fit.method, leftOut.length ? fit.left_out_reason : null].filter(Boolean).join(" · ");
  // The verdict itself is the badge beside the map; the note does not repeat it.
  note.textContent =
    fit.verdict === "valley"
      ? "Shaded: the best weight decay for each lr with its 90% band; dashed: its centre."
      : `No valley drawn.${(fit.notes || []).length ? " " + fit.notes.join("; ") + "." : ""}`;
}

/** Where the best config sits on the map: the rule's `best`, else /best's when it is a Lion config. */
function bestMark() {
  if (rule && rule.best) return rule.best;
  const b = bestAnswer && bestAnswer.best;
  if (!b || b.optimizer === "adamw" || !b.optimizer_kwargs) return null;
  return { trial_number: b.trial_number, lr: b.optimizer_kwargs.lr, weight_decay: b.optimizer_kwargs.weight_decay, value: b.mean };
}

const ARM_NAMES = { lion: "Lion", adamw: "AdamW" };

/** The Lion-versus-AdamW verdict of a sweep with a baseline arm, in the best card. */
function renderArmsVerdict(answer) {
  const box = document.getElementById("arms-verdict");
  box.hidden = !answer || Boolean(answer.conflict) || !answer.baseline;
  if (box.hidden) return;
  box.dataset.verdict = answer.verdict;
  const ci = interval(answer.difference_ci);
  let head;
  if (answer.verdict === "lion_better" || answer.verdict === "adamw_better") {
    const adv = answer.difference_ci.map(Math.abs).sort((a, b) => a - b);
    const who = answer.verdict === "lion_better" ? "Lion" : "AdamW";
    head = `${who} better by ${f3(Math.abs(answer.difference))} (90% CI ${interval(adv)})`;
  } else if (answer.verdict === "tied" && ci) {
    head = `tied: Lion − AdamW ${f3(answer.difference)} (90% CI ${ci})`;
  } else {
    head = `not measured: ${answer.reason}`;
  }
  document.getElementById("arms-verdict-text").textContent = head;
  const bits = [];
  for (const arm of [answer.lion, answer.adamw]) {
    if (arm?.best) bits.push(`${ARM_NAMES[arm.optimizer]} ${f3(arm.best.mean)}${arm.best.ci ? ` (${interval(arm.best.ci)})` : ""}`);
  }
  for (const [label, r] of [["lr", answer.lr_ratio], ["weight decay", answer.weight_decay_ratio]]) {
    if (r) bits.push(`${label} AdamW/Lion ${f3(r.value)}×${r.ci ? ` (${interval(r.ci)})` : ""}, paper ${fmt(Number(r.expected[0].toPrecision(2)))}–${fmt(Number(r.expected[1].toPrecision(2)))}×: ${r.agreement}`);
  }
  const detail = document.getElementById("arms-verdict-detail");
  detail.textContent = bits.join(" · ");
  detail.title = [answer.reason, answer.selection_note, answer.lr_ratio?.note, answer.weight_decay_ratio?.note].filter(Boolean).join("\n");
}

async function copyBest() {
  const text = document.getElementById("best-code").dataset.exact || "";
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

/** Tags naming the trial a re-run repeats: a retry of a failed one, a re-evaluation of a config. */
function rerunTags(t) {
  const tags = [];
  if (t.retry_of !== null && t.retry_of !== undefined) {
    const why = t.handed_back ? "" : `; trial #${t.retry_of} did not finish`;
    tags.push(el("span", { class: "tag rerun", title: `a retry: the same params as trial #${t.retry_of}${why}` }, `↻ retry of #${t.retry_of}`));
  }
  if (t.reevaluation_of !== null && t.reevaluation_of !== undefined) {
    tags.push(el("span", { class: "tag rerun", title: `a re-evaluation of trial #${t.reevaluation_of}'s config with a fresh seed` }, `↻ re-eval of #${t.reevaluation_of}`));
  }
  return tags;
}

const count = (list, test) => list.filter(test).length;

/** The progress card's facts: time, pace, workers, re-runs and where the trials came from. */
function renderFacts(trials, sweep) {
  const rows = [];
  const add = (term, value, key) => rows.push(el("div", { "data-fact": key }, el("dt", {}, term), el("dd", {}, value)));
  const ended = trials.map((t) => t.datetime_complete).filter(Boolean).sort();
  if (sweep.created_at) {
    const stamp = (iso) => Date.parse(/[zZ]|[+-]\d\d:?\d\d$/.test(iso) ? iso : `${iso}Z`);
    const until = sweep.status === "running" || !ended.length ? Date.now() : stamp(ended.at(-1));
    add("elapsed", duration(Math.max(0, (until - stamp(sweep.created_at)) / 1000)), "elapsed");
  }
  if (ended.length) add("last finished", age(ended.at(-1)), "last-finished");
  const times = trials.map((t) => t.duration_seconds).filter((d) => typeof d === "number").sort((a, b) => a - b);
  if (times.length) add("median trial", duration(times[Math.floor((times.length - 1) / 2)]), "median-trial");
  const workers = new Set(trials.map((t) => t.worker_id).filter(Boolean));
  const busy = new Set(trials.filter((t) => t.state === "running").map((t) => t.worker_id).filter(Boolean));
  if (workers.size) add("workers", `${workers.size}${busy.size ? `, ${busy.size} busy now` : ""}`, "workers");
  const retries = count(trials, (t) => t.retry_of !== null && t.retry_of !== undefined);
  const reevals = count(trials, (t) => t.reevaluation_of !== null && t.reevaluation_of !== undefined);
  if (retries || reevals) add("re-runs", `${plural(retries, "retry", "retries")}, ${plural(reevals, "re-evaluation")}`, "reruns");
  const imported = count(trials, (t) => t.imported);
  if (imported) add("imported", imported, "imported");
  const diverged = count(trials, isDiverged);
  if (diverged) add("diverged", diverged, "diverged");
  document.getElementById("facts").replaceChildren(...rows);
}

function renderTrials(trials) {
  const shown = [...trials].sort((a, b) => b.number - a.number).slice(0, 500);
  const bestNumber = bestAnswer?.best?.trial_number;
  const rows = shown.map((t) => {
    const state = shownState(t);
    const isBest = t.number === bestNumber;
    const p = t.params || {};
    const other = Object.entries(p)
      .filter(([k]) => !["optimizer", "lr", "weight_decay", "beta1", "beta2"].includes(k))
      .map(([k, v]) => `${k}=${v}`)
      .join(" ");
    return el(
      "tr",
      {
        "data-trial": t.number,
        "data-state": t.state,
        "data-handed-back": t.handed_back ? "1" : null,
        "data-imported": t.imported ? "1" : null,
        "data-retry-of": t.retry_of ?? null,
        "data-reevaluation-of": t.reevaluation_of ?? null,
        "data-best": isBest ? "1" : null,
        class: isBest ? "best" : null,
      },
      el("td", {}, t.number,
        isBest ? el("span", { class: "tag best", title: "the best config" }, "★ best") : null,
        t.imported ? el("span", { class: "tag imported", title: `imported: ${t.import_source || "run elsewhere"}` }, "imported") : null,
        isDiverged(t) ? el("span", { class: "tag diverged", title: "diverged: left out of the fit, used for the stability edge" }, "diverged") : null,
        ...rerunTags(t)),
      el("td", {}, el("span", {
        class: `state ${state.replace(" ", "-")}`,
        title: t.handed_back ? "handed back by its worker (shutdown) or stopped by a cancel: re-queued with the same params, not a failure" : null,
      }, state)),
      el("td", { class: "num" }, fmt(t.value)),
      el("td", {}, p.optimizer || "lion"),
      el("td", { class: "num" }, fmt(p.lr)),
      el("td", { class: "num" }, fmt(p.weight_decay)),
      el("td", { class: "num" }, fmt(p.beta1)),
      el("td", { class: "num" }, fmt(p.beta2)),
      el("td", {}, other),
      el("td", {}, t.reason || ""),
      el("td", {}, t.imported ? "(imported)" : t.worker_id || ""),
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
    const count = (s) => mine.filter((t) => shownState(t) === s).length;
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
  renderFacts(trials, sweep);
  // Every finished trial, the re-runs of the leading configs included, may move the rule.
  const counts = sweep.counts || {};
  const finished = (counts.complete || 0) + (counts.pruned || 0) + (counts.failed || 0);
  if (finished !== lastFinished) {
    lastFinished = finished;
    const lionDone = trials.filter((t) => t.state === "complete" && (t.params?.optimizer || "lion") === "lion").length;
    const [fit, imp, armsAnswer] = await Promise.all([
      lionDone >= 1 ? optional(`${base}/scaling-rule`) : { conflict: "no complete Lion trial yet" },
      complete >= 2 ? optional(`${base}/importances`) : { conflict: "needs at least 2 complete trials" },
      sweep.spec?.baseline && complete >= 1 ? optional(`${base}/arms`) : null,
    ]);
    rule = fit.conflict ? null : fit;
    renderRule(fit);
    renderArmsVerdict(armsAnswer);
    if (imp.conflict || !imp.importances || !Object.keys(imp.importances).length) {
      document.getElementById("importances-note").textContent = imp.conflict || "";
      drawMessage("plot-importances", "no data yet: needs two complete trials");
    } else {
      document.getElementById("importances-note").textContent = "";
      importances("plot-importances", imp.importances);
    }
  }
  lrWdMap("plot-map", trials, sweep, rule, bestMark());
  history("plot-history", trials, sweep, bestAnswer?.best);
  parallel("plot-parallel", trials, sweep);
  renderArms(trials, sweep);
}

document.getElementById("copy-best").addEventListener("click", copyBest);
if (!Number.isFinite(sweepId)) showNotice("No sweep id in the address.");
else poll(refresh, 2000);
