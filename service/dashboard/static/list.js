// The sweeps list: polls /api/sweeps and updates the table in place.
import { age, el, fmt, getJson, initToken, poll, progressBar, showContent } from "./api.js";

initToken();
const body = document.querySelector("#sweeps tbody");

function row(sweep) {
  const link = el("a", { href: `/sweeps/${sweep.id}` }, sweep.name);
  const best = sweep.best ? fmt(sweep.best.value) : "–";
  return el(
    "tr",
    { "data-sweep-id": sweep.id, "data-status": sweep.status },
    el("td", {}, sweep.id),
    el("td", {}, link),
    el("td", {}, sweep.task ? sweep.task.name : "–"),
    el("td", {}, el("span", { class: `status ${sweep.status}` }, sweep.status)),
    el("td", { class: "wide" }, progressBar(sweep)),
    el("td", { class: "num" }, best),
    el("td", {}, age(sweep.created_at)),
  );
}

async function refresh() {
  const page = await getJson("/api/sweeps?limit=200");
  showContent();
  body.replaceChildren(...page.items.map(row));
  document.getElementById("sweep-total").textContent = `(${page.total})`;
  document.getElementById("empty").hidden = page.items.length > 0;
  document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
}

poll(refresh, 2000);
