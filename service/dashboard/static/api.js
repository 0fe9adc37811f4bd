// Fetching the lionsweep JSON API from the dashboard pages (read token, polling, formatting).

const TOKEN_KEY = "lionsweep-token";

/**
 * Take `#token=` from the address once, keep it for this tab, and drop it from the address.
 * A fragment is never sent to the server, so the token stays out of its access log.
 */
export function initToken() {
  const hash = new URLSearchParams(window.location.hash.slice(1));
  const fromUrl = hash.get("token");
  if (fromUrl) {
    sessionStorage.setItem(TOKEN_KEY, fromUrl);
    hash.delete("token");
    const rest = hash.toString();
    window.history.replaceState(null, "", window.location.pathname + window.location.search + (rest ? `#${rest}` : ""));
  }
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) {
    // optuna-dashboard under /optuna cannot send headers: it reads this cookie instead.
    document.cookie = `lionsweep_token=${encodeURIComponent(token)}; path=/optuna; SameSite=Strict`;
  }
  return token;
}

/** An error answer of the API (status and the server's detail). */
export class ApiError extends Error {
  constructor(status, detail) {
    super(typeof detail === "string" ? detail : JSON.stringify(detail));
    this.status = status;
    this.detail = detail;
  }
}

/** GET a JSON document from the API; throws ApiError on a non-2xx answer. */
export async function getJson(path) {
  const headers = { Accept: "application/json" };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  const answer = await fetch(path, { headers, cache: "no-store" });
  let body = null;
  try {
    body = await answer.json();
  } catch (_) {
    body = null;
  }
  if (!answer.ok) throw new ApiError(answer.status, body && body.detail !== undefined ? body.detail : answer.statusText);
  return body;
}

/** Show a message in place of the page content (e.g. a missing read token). */
export function showNotice(text) {
  const notice = document.getElementById("notice");
  notice.textContent = text;
  notice.hidden = false;
  document.getElementById("content").hidden = true;
}

/** Hide the notice and show the page content. */
export function showContent() {
  document.getElementById("notice").hidden = true;
  document.getElementById("content").hidden = false;
}

/** Explain an authorization failure; returns true when the error was one. */
export function handleAuthError(error) {
  if (!(error instanceof ApiError) || (error.status !== 401 && error.status !== 403)) return false;
  sessionStorage.removeItem(TOKEN_KEY);
  showNotice(
    "This dashboard needs a read token. Open it as " +
      `${window.location.origin}${window.location.pathname}#token=<your token> ` +
      "(create one with: lionsweep token create --scope read).",
  );
  return true;
}

/** Run `tick` now and then every `ms` milliseconds, never overlapping; stops on auth errors. */
export function poll(tick, ms = 2000) {
  let stopped = false;
  async function loop() {
    if (stopped) return;
    try {
      await tick();
    } catch (error) {
      if (handleAuthError(error)) {
        stopped = true;
        return;
      }
      console.warn("refresh failed:", error.message || error);
    }
    window.setTimeout(loop, ms);
  }
  loop();
  return () => {
    stopped = true;
  };
}

/** A number shown with 4 significant digits (or "–"). */
export function fmt(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  if (typeof value !== "number") return String(value);
  if (value !== 0 && (Math.abs(value) < 1e-3 || Math.abs(value) >= 1e5)) return value.toExponential(3);
  return Number(value.toPrecision(4)).toString();
}

/**
 * `value` (a number, or arrays and objects of them) with every non-integer number rounded to
 * `digits` significant digits: what the page shows of optimizer kwargs (the exact ones are copied).
 */
export function rounded(value, digits = 4) {
  if (typeof value === "number") return Number.isFinite(value) && !Number.isInteger(value) ? Number(value.toPrecision(digits)) : value;
  if (Array.isArray(value)) return value.map((v) => rounded(v, digits));
  if (value && typeof value === "object") return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, rounded(v, digits)]));
  return value;
}

/**
 * A number with `digits` significant digits, trailing zeros kept ("2.80", "9.00e-4") and a
 * true minus sign, for the read-outs of a sweep's results (or "–").
 */
export function sig(value, digits = 3) {
  if (typeof value !== "number" || !Number.isFinite(value)) return "–";
  const text = value !== 0 && (Math.abs(value) < 1e-3 || Math.abs(value) >= 1e5)
    ? value.toExponential(digits - 1)
    : value.toPrecision(digits);
  return text.replace(/^-/, "−");
}

/** A [lo, hi] interval with 3 significant digits: "2.80–2.96", or "−1.15 to −0.813" when a bound is negative. */
export function interval(ci, digits = 3) {
  if (!Array.isArray(ci) || ci.length !== 2 || ci.some((v) => typeof v !== "number" || !Number.isFinite(v))) return null;
  const [lo, hi] = ci.map((v) => sig(v, digits));
  return ci[0] < 0 || ci[1] < 0 ? `${lo} to ${hi}` : `${lo}–${hi}`;
}

/** "5 s", "3 min", "2 h", "4 d". */
export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  if (seconds < 60) return `${Math.round(seconds)} s`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min`;
  if (seconds < 86400) return `${(seconds / 3600).toFixed(1)} h`;
  return `${(seconds / 86400).toFixed(1)} d`;
}

/** Time since an ISO timestamp, e.g. "3 min ago". */
export function age(iso) {
  if (!iso) return "–";
  const stamp = /[zZ]|[+-]\d\d:?\d\d$/.test(iso) ? iso : `${iso}Z`;
  const seconds = Math.max(0, (Date.now() - Date.parse(stamp)) / 1000);
  return `${duration(seconds)} ago`;
}

/** Create an element with attributes and children (strings become text nodes). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "style") node.style.cssText = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/**
 * The stacked progress bar of a sweep: complete, pruned, failed, handed back (a worker's
 * shutdown: re-queued, not failed) and running, out of n_trials plus the re-runs of its
 * leading configs with fresh seeds (counted in the states, planned apart); when retries and
 * handed-back trials make more trials than planned, out of all of them, so the parts add up.
 */
export function progressBar(sweep) {
  const counts = sweep.counts || {};
  const parts = ["complete", "pruned", "failed", "handed_back", "running"];
  const re = sweep.reevaluation || {};
  const reruns = re.status === "queued" || re.status === "done" ? re.trials || 0 : 0;
  const planned = (sweep.n_trials || 0) + reruns;
  const total = Math.max(planned, parts.reduce((a, p) => a + (counts[p] || 0), 0), 1);
  const bar = el("div", { class: "bar", title: "" });
  for (const part of parts) {
    const n = counts[part] || 0;
    if (!n) continue;
    bar.append(el("span", { class: `seg ${part}`, "data-part": part, "data-n": n, style: `width:${(100 * n) / total}%` }));
  }
  const finished = sweep.finished ?? (counts.complete || 0) + (counts.pruned || 0) + (counts.failed || 0);
  bar.title = parts.map((p) => `${p.replace("_", " ")} ${counts[p] || 0}`).join(", ") + (reruns ? `; re-runs ${re.finished}/${reruns}` : "");
  bar.append(el("em", {}, `${finished} / ${sweep.n_trials}${reruns ? ` + re-runs ${re.finished}/${reruns}` : ""}`));
  return bar;
}

/**
 * A one-colour progress bar, `done` of `total` (e.g. a ladder's finished trials, whose states
 * per rung the caller does not have), labelled "done / total" unless `label` is given.
 */
export function fractionBar(done, total, label = null, title = "") {
  const bar = el("div", { class: "bar", title });
  const share = total > 0 ? Math.min(1, done / total) : 0;
  if (share > 0) bar.append(el("span", { class: "seg complete", style: `width:${100 * share}%` }));
  bar.append(el("em", {}, label ?? `${done} / ${total}`));
  return bar;
}
