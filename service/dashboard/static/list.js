// The sweeps list, and the width ladders above it: polls the API and updates the tables in place.
import { age, el, fmt, fractionBar, getJson, initToken, interval, poll, progressBar, showContent } from "./api.js";

initToken();
const body = document.querySelector("#sweeps tbody");
const ladderBody = document.querySelector("#ladders tbody");

/** The config /best ranks first: its seed mean and seed count; the interval and the best
 * single run (labelled as one) in the title. */
function bestCell(best) {
  if (!best) return "–";
  const n = best.n_seeds ?? 1;
  const ci = interval(best.ci);
  const title = [
    `trial ${best.trial_number}: mean of ${n} seed${n === 1 ? "" : "s"}${ci ? `, 90% CI ${ci}` : ""}`,
    typeof best.best_single_value === "number"
      ? `best single run ${fmt(best.best_single_value)} (trial ${best.best_single_trial_number}; one seed, not a config's value)`
      : null,
  ].filter(Boolean).join("\n");
  return el("span", { class: "best-mean", title, "data-seeds": n },
    fmt(best.mean ?? best.value), el("span", { class: "muted small" }, ` · ${n} seed${n === 1 ? "" : "s"}`));
}

function row(sweep) {
  const link = el("a", { href: `/sweeps/${sweep.id}` }, sweep.name);
  const ladder = sweep.ladder_id
    ? el("a", { class: "tag ladder", href: `/ladders/${sweep.ladder_id}`, title: `${sweep.ladder_role} of width ladder #${sweep.ladder_id}` },
      `ladder #${sweep.ladder_id}`)
    : null;
  const best = bestCell(sweep.best);
  return el(
    "tr",
    { "data-sweep-id": sweep.id, "data-status": sweep.status },
    el("td", {}, sweep.id),
    el("td", {}, link, ladder),
    el("td", {}, sweep.task ? sweep.task.name : "–"),
    el("td", {}, el("span", { class: `status ${sweep.status}` }, sweep.activity || sweep.status)),
    el("td", { class: "wide" }, progressBar(sweep)),
    el("td", { class: "num" }, best),
    el("td", {}, age(sweep.created_at)),
  );
}

/** A width: whole numbers as they are, others with 4 significant digits. */
const width = (w) => (Number.isInteger(w) ? String(w) : fmt(w));

function ladderRow(ladder) {
  const rungs = ladder.rungs || [];
  const confirms = ladder.confirmations || [];
  const finished = rungs.reduce((a, r) => a + r.finished, 0);
  const planned = rungs.reduce((a, r) => a + r.n_trials, 0);
  const done = rungs.filter((r) => r.status === "complete").length;
  const perRung = rungs.map((r) => `${ladder.param} ${width(r.width)}: ${r.finished}/${r.n_trials} ${r.status}`).join("; ");
  return el(
    "tr",
    { "data-ladder-id": ladder.id, "data-status": ladder.status },
    el("td", {}, ladder.id),
    el("td", {}, el("a", { href: `/ladders/${ladder.id}` }, ladder.name)),
    el("td", {}, ladder.task ? ladder.task.name : "–"),
    el("td", {}, `${ladder.param} ${ladder.widths.map(width).join(", ")}`),
    el("td", {}, el("span", { class: `status ${ladder.status}` }, ladder.status)),
    el("td", { "data-rungs": rungs.length }, `${done}/${rungs.length} complete${confirms.length ? ` · ${confirms.length} confirmation${confirms.length === 1 ? "" : "s"}` : ""}`),
    el("td", { class: "wide" }, fractionBar(finished, planned, `${finished} / ${planned} trials`, perRung)),
    el("td", {}, age(ladder.created_at)),
  );
}

async function refresh() {
  const [page, ladders] = await Promise.all([getJson("/api/sweeps?limit=200"), getJson("/api/ladders?limit=200")]);
  showContent();
  body.replaceChildren(...page.items.map(row));
  document.getElementById("sweep-total").textContent = `(${page.total})`;
  document.getElementById("empty").hidden = page.items.length > 0;
  ladderBody.replaceChildren(...ladders.items.map(ladderRow));
  document.getElementById("ladder-total").textContent = `(${ladders.total})`;
  document.getElementById("ladders-section").hidden = ladders.total === 0;
  document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
}

poll(refresh, 2000);
