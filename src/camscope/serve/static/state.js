// The viewer's shared state, constants and the calls to the server (relative URLs only).
export const $ = (id) => document.getElementById(id);
export const CARD_MIN = 200;
export const CARD_MAX = 300;
export const CARD_GAP = 14;
export const GRID_TILE = 320;
export const EXPORT_MAX_SIDE = 2048;
// The cost classes of GET /api/methods, read from each method's registration (its passes).
export const COSTS = ["one pass", "guided pass", "few passes", "perturbation"];
export const COST_CLASS = {
  "one pass": "one", "guided pass": "guided", "few passes": "few", perturbation: "slow",
};
export const COST_TITLE = {
  "one pass": "One pass: one forward and one backward, shared",
  "guided pass": "Guided pass: one extra guided backward",
  "few passes": "A few passes of their own",
  perturbation: "Perturbation: many forward passes, cancellable",
};
export const HIDDEN_METHODS = new Set(["counterfactual"]); // the Target section's toggle adds it

export const state = {
  config: null,
  methods: [],
  costs: {},
  luts: {},
  colormap: "inferno",
  opacity: 0.5,
  model: "",
  layers: [],
  classes: [],
  layer: "auto",
  fused: new Set(),
  compare: false,
  target: "top1",
  counterfactual: false,
  selected: new Set(["gradcam", "gradcam++", "layercam"]),
  file: null,
  fileName: "",
  picture: null,
  rows: [],
  top5: [],
  targets: [],
  generation: 0,
  job: null,
  cardWidth: 272,
};

/** Filled by viewer.js: the functions the other modules call back into. */
export const hooks = { run: () => {}, schedule: () => {}, setImage: async () => {} };

// ---------------------------------------------------------------------------------------------
// Talking to the server

export async function api(path, options) {
  const response = await fetch(path, options);
  if (!response.ok) {
    let detail = `${response.status} ${response.statusText}`;
    try {
      const body = await response.json();
      if (body.detail) detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    } catch (_) { /* not JSON: keep the status line */ }
    const error = new Error(detail);
    error.status = response.status;
    throw error;
  }
  return response;
}

export async function getJSON(path) {
  return (await api(path)).json();
}

export async function explainRow(row, methods, job) {
  const form = new FormData();
  form.append("image", state.file, state.fileName);
  form.append("model", state.model);
  form.append("methods", methods.join(","));
  form.append("layer", row.spec);
  form.append("target", String(state.target));
  form.append("colormap", state.colormap);
  form.append("overlays", "false"); // the page colours maps itself
  if (job) form.append("job", job);
  const response = await api("api/explain", { method: "POST", body: form });
  const reused = (response.headers.get("X-Camscope-Reused") || "").split(",").filter(Boolean);
  return { body: await response.json(), reused, methods };
}

// ---------------------------------------------------------------------------------------------
// Messages

export function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = false;
}

export function hideError() {
  $("error").hidden = true;
}

export function stem() {
  const base = state.fileName.replace(/\.[^.]+$/, "") || "image";
  return base.replace(/[^A-Za-z0-9._-]+/g, "_").slice(0, 80);
}

export function percent(p) {
  return `${(100 * p).toFixed(p >= 0.1 ? 0 : 1)}%`;
}

export function milliseconds(s) {
  return s >= 1 ? `${s.toFixed(2)} s` : `${Math.round(1000 * s)} ms`;
}
