// camscope viewer: choices on the left, maps on the right. Talks to the REST API with relative
// URLs only (works behind a path prefix); colours every map itself (render.js).
import {
  Picture, blend, canvasBlob, decodeHalf, download, gridCanvas, npyBlob, overlayCanvas,
  paintColorbar, resizeMap,
} from "./render.js";

const $ = (id) => document.getElementById(id);
const CARD_MIN = 200;
const CARD_MAX = 300;
const CARD_GAP = 14;
const GRID_TILE = 320;
const EXPORT_MAX_SIDE = 2048;
const COST_CLASS = { "one pass": "one", "guided pass": "guided", perturbation: "slow" };
const COST_TITLE = {
  "one pass": "One pass: one forward and one backward, shared",
  "guided pass": "Guided pass: one extra guided backward",
  perturbation: "Perturbation: many forward passes, cancellable",
};
const HIDDEN_METHODS = new Set(["counterfactual"]); // the Target section's toggle adds it

const state = {
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

// ---------------------------------------------------------------------------------------------
// Talking to the server

async function api(path, options) {
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

async function getJSON(path) {
  return (await api(path)).json();
}

async function explainRow(row, methods, job) {
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

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = false;
}

function hideError() {
  $("error").hidden = true;
}

function stem() {
  const base = state.fileName.replace(/\.[^.]+$/, "") || "image";
  return base.replace(/[^A-Za-z0-9._-]+/g, "_").slice(0, 80);
}

function percent(p) {
  return `${(100 * p).toFixed(p >= 0.1 ? 0 : 1)}%`;
}

function milliseconds(s) {
  return s >= 1 ? `${s.toFixed(2)} s` : `${Math.round(1000 * s)} ms`;
}

// ---------------------------------------------------------------------------------------------
// Building the settings panel

function buildDemos() {
  const box = $("demos");
  for (const name of state.config.demo_images) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "demo";
    button.title = `Demo photo: ${name}`;
    button.dataset.demo = name;
    button.innerHTML = `<img alt="" loading="lazy"><span></span>`;
    button.querySelector("img").src = `api/demo/${encodeURIComponent(name)}`;
    button.querySelector("span").textContent = name;
    button.addEventListener("click", async () => {
      try {
        const blob = await (await api(`api/demo/${encodeURIComponent(name)}`)).blob();
        document.querySelectorAll(".demo").forEach((d) => d.classList.toggle("on", d === button));
        await setImage(blob, `${name}.png`);
      } catch (err) {
        showError(err.message);
      }
    });
    box.appendChild(button);
  }
}

function buildMethods() {
  const box = $("methods");
  box.innerHTML = "";
  for (const cost of ["one pass", "guided pass", "perturbation"]) {
    const group = document.createElement("div");
    group.className = "group";
    const title = document.createElement("div");
    title.className = "group-title";
    title.textContent = COST_TITLE[cost];
    group.appendChild(title);
    for (const method of state.methods.filter((m) => m.cost === cost && !HIDDEN_METHODS.has(m.name))) {
      const label = document.createElement("label");
      label.className = "method";
      label.title = [method.summary, method.paper].filter(Boolean).join(" | ");
      label.innerHTML = `<input type="checkbox"><span class="name"></span><span class="badge"></span>`;
      const box2 = label.querySelector("input");
      box2.value = method.name;
      box2.checked = state.selected.has(method.name);
      box2.addEventListener("change", () => {
        if (box2.checked) state.selected.add(method.name);
        else state.selected.delete(method.name);
        updateMethodCount();
        schedule();
      });
      label.querySelector(".name").textContent = method.name;
      const badge = label.querySelector(".badge");
      badge.classList.add(COST_CLASS[cost]);
      badge.textContent = cost;
      group.appendChild(label);
    }
    box.appendChild(group);
  }
  updateMethodCount();
}

function updateMethodCount() {
  $("method-count").textContent = `${state.selected.size} chosen`;
}

function buildColormaps() {
  const select = $("colormap");
  for (const name of Object.keys(state.luts)) {
    const option = document.createElement("option");
    option.value = option.textContent = name;
    select.appendChild(option);
  }
  select.value = state.colormap;
  paintColorbar($("colorbar"), state.luts[state.colormap]);
}

async function loadModelInfo() {
  const model = encodeURIComponent(state.model);
  const [layers, classes] = await Promise.all([
    getJSON(`api/layers?model=${model}`),
    getJSON(`api/classes?model=${model}`),
  ]);
  state.layers = layers.layers;
  state.classes = classes.classes;
  renderLayerList();
}

function layerSpec() {
  return state.fused.size ? [...state.fused].join(",") : state.layer;
}

function renderLayerList() {
  const filter = $("layer-filter").value.trim().toLowerCase();
  const box = $("layer-list");
  box.innerHTML = "";
  const shown = state.layers.filter((l) => !filter || l.name.toLowerCase().includes(filter));
  for (const layer of shown.slice(0, 400)) {
    const label = document.createElement("label");
    label.innerHTML = `<input type="checkbox"><span class="lname"></span><span class="mark"></span><span class="shape"></span>`;
    const tick = label.querySelector("input");
    tick.checked = state.fused.has(layer.name);
    tick.addEventListener("change", () => {
      if (tick.checked) state.fused.add(layer.name);
      else state.fused.delete(layer.name);
      syncLayerButtons();
      schedule();
    });
    label.querySelector(".lname").textContent = layer.name;
    label.querySelector(".mark").textContent = layer.marks.join(" ");
    label.querySelector(".shape").textContent = layer.shape.join(" x ");
    label.title = `${layer.kind}, ${layer.layout}`;
    box.appendChild(label);
  }
  syncLayerButtons();
}

function syncLayerButtons() {
  document.querySelectorAll("#layer-buttons button").forEach((b) => {
    b.classList.toggle("on", !state.fused.size && !state.compare && b.dataset.layer === state.layer);
  });
  $("layer-picked").textContent = state.fused.size ? `(${state.fused.size} fused)` : "";
}

function renderChips() {
  const box = $("chips");
  box.innerHTML = "";
  const chosen = state.targets.length ? state.targets[0].index : null;
  for (const entry of state.top5) {
    const chip = document.createElement("button");
    chip.type = "button";
    chip.className = "chip";
    chip.classList.toggle("on", entry.index === chosen);
    chip.title = `class ${entry.index}`;
    chip.innerHTML = `<span class="l"></span><span class="p"></span>`;
    chip.querySelector(".l").textContent = entry.label;
    chip.querySelector(".p").textContent = percent(entry.probability);
    chip.addEventListener("click", () => chooseTarget(entry.index));
    box.appendChild(chip);
  }
  if (chosen !== null && !state.top5.some((e) => e.index === chosen)) {
    const chip = document.createElement("span");
    chip.className = "chip on";
    chip.textContent = `${state.targets[0].label} ${percent(state.targets[0].probability)}`;
    box.appendChild(chip);
  }
}

function renderClassList() {
  const text = $("class-filter").value.trim().toLowerCase();
  const box = $("class-list");
  box.innerHTML = "";
  box.hidden = !text;
  if (!text) return;
  const matches = [];
  state.classes.forEach((name, index) => {
    if (matches.length < 80 && (name.toLowerCase().includes(text) || String(index) === text)) {
      matches.push([index, name]);
    }
  });
  if (!matches.length) box.innerHTML = `<div class="hint" style="padding:6px 8px">No class matches.</div>`;
  for (const [index, name] of matches) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = `${index} · ${name}`;
    button.addEventListener("click", () => {
      $("class-filter").value = "";
      renderClassList();
      chooseTarget(index);
    });
    box.appendChild(button);
  }
}

function chooseTarget(index) {
  state.target = index;
  run();
}

// ---------------------------------------------------------------------------------------------
// The image

async function decodeInBrowser(blob) {
  if (window.createImageBitmap) return createImageBitmap(blob);
  throw new Error("no createImageBitmap");
}

async function setImage(blob, name) {
  hideError();
  let bitmap;
  try {
    bitmap = await decodeInBrowser(blob);
  } catch (_) {
    // The browser cannot show this format (TIFF, PPM, ...) or it is no image at all: ask the
    // server, which either sends a PNG copy or says what is wrong with the file.
    const form = new FormData();
    form.append("image", blob, name);
    try {
      const png = await (await api("api/preview", { method: "POST", body: form })).blob();
      bitmap = await createImageBitmap(png);
    } catch (err) {
      showError(err.message);
      return;
    }
  }
  state.file = blob;
  state.fileName = name;
  state.picture = new Picture(bitmap, bitmap.width, bitmap.height);
  state.target = "top1";
  state.targets = [];
  $("empty").hidden = true;
  $("drop-hint").textContent = `${name} (${bitmap.width} x ${bitmap.height})`;
  await run();
}

// ---------------------------------------------------------------------------------------------
// Cards

function chosenMethods() {
  const names = state.methods.map((m) => m.name).filter((n) => state.selected.has(n));
  if (state.counterfactual && !names.includes("counterfactual")) names.push("counterfactual");
  return names;
}

function fitCards(count) {
  // as many cards per row as fit, between CARD_MIN and CARD_MAX CSS pixels wide
  const room = $("grid").clientWidth || 900;
  let perRow = Math.max(1, Math.min(count, Math.floor((room + CARD_GAP) / (CARD_MIN + CARD_GAP))));
  state.cardWidth = Math.min(CARD_MAX, Math.floor((room - CARD_GAP * (perRow - 1)) / perRow));
  $("grid").style.setProperty("--card", `${state.cardWidth}px`);
}

function canvasSize() {
  const ratio = Math.min(window.devicePixelRatio || 1, 2);
  const w = Math.round(state.cardWidth * ratio);
  const h = Math.max(1, Math.round((w * state.picture.height) / state.picture.width));
  return [w, h];
}

function makeCard(title) {
  const figure = document.createElement("figure");
  figure.className = "card";
  const [, h] = canvasSize();
  const cssH = Math.round((state.cardWidth * state.picture.height) / state.picture.width);
  figure.innerHTML = `<div class="placeholder" style="height:${cssH}px"><div class="spinner"></div></div>
    <figcaption><div class="title"><b></b><span class="badge"></span></div>
    <div class="meta"><span class="time"></span><span class="cached"></span><span class="spacer"></span></div></figcaption>`;
  figure.querySelector("b").textContent = title;
  figure.dataset.height = String(h);
  return figure;
}

function renderSkeleton(methods) {
  const grid = $("grid");
  grid.innerHTML = "";
  fitCards(1 + methods.length);
  for (const row of state.rows) {
    const section = document.createElement("section");
    section.className = "row";
    const label = document.createElement("div");
    label.className = "row-label";
    row.labelEl = label;
    section.appendChild(label);
    const cards = document.createElement("div");
    cards.className = "cards";
    const input = makeCard("input");
    input.classList.add("input-card");
    const canvas = document.createElement("canvas");
    const [w, h] = canvasSize();
    canvas.width = w;
    canvas.height = h;
    canvas.getContext("2d").drawImage(state.picture.source, 0, 0, w, h);
    input.querySelector(".placeholder").replaceWith(canvas);
    input.querySelector(".badge").remove();
    input.querySelector(".time").textContent = `${state.picture.width} x ${state.picture.height} px`;
    cards.appendChild(input);
    for (const method of methods) {
      const el = makeCard(method);
      const cost = state.costs[method];
      const badge = el.querySelector(".badge");
      badge.classList.add(COST_CLASS[cost]);
      badge.textContent = cost;
      const card = { method, el, map: null, resized: null };
      row.cards.set(method, card);
      cards.appendChild(el);
    }
    section.appendChild(cards);
    grid.appendChild(section);
    updateRowLabel(row);
  }
  $("toolbar").hidden = false;
}

function updateRowLabel(row) {
  const info = state.layers.find((l) => l.name === row.layerName);
  const shape = info ? ` (${info.shape.join(" x ")})` : "";
  const name = row.layerName ? `<b></b>${shape}` : "";
  row.labelEl.innerHTML = state.compare ? `${row.spec} layer · ${name}` : `layer ${name}`;
  const b = row.labelEl.querySelector("b");
  if (b) b.textContent = row.layerName;
}

function fillRow(row, result) {
  const { body, reused, methods } = result;
  row.layerName = body.layer;
  row.response = body;
  updateRowLabel(row);
  state.top5 = body.top5;
  state.targets = body.targets;
  renderChips();
  updateSummary();
  for (const [method, entry] of Object.entries(body.maps)) {
    const card = row.cards.get(method);
    if (!card) continue;
    const [mapH, mapW] = entry.shape.slice(-2);
    card.map = decodeHalf(entry.map).subarray(0, mapH * mapW);
    card.shape = [mapH, mapW];
    card.seconds = body.seconds[method];
    card.reused = reused.includes(method);
    card.shared = methods.filter((m) => m !== method && state.costs[m] === state.costs[method]);
    drawCard(card);
  }
}

function drawCard(card) {
  const [w, h] = canvasSize();
  let canvas = card.el.querySelector("canvas");
  if (!canvas) {
    canvas = document.createElement("canvas");
    canvas.dataset.method = card.method;
    card.el.querySelector(".placeholder").replaceWith(canvas);
  }
  canvas.width = w;
  canvas.height = h;
  card.canvas = canvas;
  card.resized = resizeMap(card.map, card.shape[0], card.shape[1], h, w);
  paintCard(card);
  const time = card.el.querySelector(".time");
  time.textContent = milliseconds(card.seconds);
  time.title = card.shared.length
    ? `one call shared with ${card.shared.join(", ")}`
    : "its own call";
  card.el.querySelector(".cached").textContent = card.reused ? "reused" : "";
  const meta = card.el.querySelector(".meta");
  if (!meta.querySelector("button")) {
    for (const [kind, text] of [["png", "PNG"], ["npy", ".npy"]]) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "btn small";
      button.dataset.download = kind;
      button.textContent = text;
      button.addEventListener("click", () => downloadCard(card, kind));
      meta.appendChild(button);
    }
  }
}

function paintCard(card) {
  if (!card.resized) return;
  const { width: w, height: h } = card.canvas;
  const lut = state.luts[state.colormap];
  const image = blend(card.resized, state.picture.pixels(w, h), w, h, lut, state.opacity);
  card.canvas.getContext("2d").putImageData(image, 0, 0);
}

function markPending(text) {
  for (const row of state.rows) {
    for (const card of row.cards.values()) {
      if (!card.map) {
        const holder = card.el.querySelector(".placeholder");
        if (holder) holder.textContent = text;
      }
    }
  }
}

function repaint() {
  for (const row of state.rows) for (const card of row.cards.values()) paintCard(card);
}

function updateSummary() {
  const target = state.targets[0];
  if (!target) return;
  const layers = state.rows.map((r) => r.layerName).filter(Boolean).join(" | ");
  $("summary").innerHTML = `<b></b> · class ${target.index} · p = ${target.probability.toFixed(3)}`;
  $("summary").querySelector("b").textContent = target.label;
  $("headline").innerHTML = `<b></b> · ${percent(target.probability)} · `;
  $("headline").querySelector("b").textContent = target.label;
  $("headline").append(`${state.model} · ${layers}`);
}

// ---------------------------------------------------------------------------------------------
// Running

let timer = null;
function schedule() {
  clearTimeout(timer);
  timer = setTimeout(run, 150);
}

async function cancelJob() {
  if (!state.job) return;
  const form = new FormData();
  form.append("job", state.job);
  state.job = null;
  try {
    await api("api/cancel", { method: "POST", body: form });
  } catch (_) { /* the job ended meanwhile */ }
}

function showProgress(text, fraction) {
  $("progress").hidden = false;
  $("progress-label").textContent = text;
  $("progress-fill").style.width = `${Math.round(100 * fraction)}%`;
}

async function runSlow(row, method, generation) {
  const job = `job-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
  state.job = job;
  const where = state.compare ? ` (${row.spec} layer)` : "";
  showProgress(`${method}${where}: starting...`, 0);
  const poll = setInterval(async () => {
    try {
      const p = await getJSON(`api/progress?job=${job}`);
      if (generation === state.generation && p.total) {
        showProgress(`${method}${where}: ${p.done} / ${p.total} passes`, p.done / p.total);
      }
    } catch (_) { /* the next poll will tell */ }
  }, 300);
  try {
    return await explainRow(row, [method], job);
  } finally {
    clearInterval(poll);
    if (state.job === job) state.job = null;
  }
}

async function run() {
  if (!state.file || !state.picture) return;
  const generation = ++state.generation;
  await cancelJob();
  hideError();
  const methods = chosenMethods();
  if (!methods.length) {
    showError("Choose at least one method on the left.");
    return;
  }
  const specs = state.compare ? ["first", "middle", "last"] : [layerSpec()];
  state.rows = specs.map((spec) => ({ spec, layerName: "", cards: new Map() }));
  renderSkeleton(methods);
  const quick = methods.filter((m) => state.costs[m] !== "perturbation");
  const slow = methods.filter((m) => state.costs[m] === "perturbation");
  try {
    for (const row of state.rows) {
      if (!quick.length) continue;
      const result = await explainRow(row, quick, null);
      if (generation !== state.generation) return;
      fillRow(row, result);
    }
    for (const row of state.rows) {
      for (const method of slow) {
        const result = await runSlow(row, method, generation);
        if (generation !== state.generation) return;
        fillRow(row, result);
      }
    }
  } catch (err) {
    if (generation !== state.generation) return;
    if (err.status === 409) markPending("cancelled");
    else {
      markPending("failed");
      showError(err.message);
    }
  } finally {
    if (generation === state.generation) $("progress").hidden = true;
  }
}

// ---------------------------------------------------------------------------------------------
// Downloads

async function downloadCard(card, kind) {
  if (kind === "npy") {
    download(npyBlob(card.map, card.shape), `${stem()}.${card.method}.npy`);
    return;
  }
  const side = Math.min(EXPORT_MAX_SIDE, state.picture.width);
  const canvas = overlayCanvas(
    state.picture, card.map, card.shape[0], card.shape[1], side, state.luts[state.colormap], state.opacity,
  );
  download(await canvasBlob(canvas), `${stem()}.${card.method}.png`);
}

function summaryJSON() {
  return {
    camscope: state.config.version,
    image: { name: state.fileName, width: state.picture.width, height: state.picture.height },
    model: state.model,
    target: state.target,
    targets: state.targets,
    top5: state.top5,
    colormap: state.colormap,
    opacity: state.opacity,
    rows: state.rows.map((row) => ({
      layer_choice: row.spec,
      layer: row.layerName,
      methods: [...row.cards.values()].filter((c) => c.map).map((c) => ({
        method: c.method,
        cost: state.costs[c.method],
        seconds: c.seconds,
        reused: c.reused,
        shape: c.shape,
      })),
      seconds: row.response ? row.response.seconds : {},
    })),
  };
}

async function downloadGrid() {
  const lut = state.luts[state.colormap];
  const rows = state.rows.map((row) => ({
    label: `${state.compare ? `${row.spec} layer: ` : "layer "}${row.layerName}`,
    tiles: [...row.cards.values()].filter((c) => c.map).map((c) => ({
      title: c.method,
      subtitle: `${state.targets[0] ? state.targets[0].label : ""} · ${milliseconds(c.seconds)}`,
      canvas: overlayCanvas(state.picture, c.map, c.shape[0], c.shape[1], GRID_TILE, lut, state.opacity),
    })),
  }));
  download(await canvasBlob(gridCanvas(state.picture, rows, GRID_TILE)), `${stem()}.grid.png`);
}

// ---------------------------------------------------------------------------------------------
// Wiring

function wire() {
  const drop = $("drop");
  const input = $("file");
  drop.addEventListener("click", () => input.click());
  drop.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      input.click();
    }
  });
  input.addEventListener("change", () => {
    if (input.files && input.files[0]) setImage(input.files[0], input.files[0].name);
    input.value = "";
  });
  for (const name of ["dragenter", "dragover"]) {
    document.addEventListener(name, (e) => {
      e.preventDefault();
      drop.classList.add("over");
    });
  }
  document.addEventListener("dragleave", (e) => {
    if (!e.relatedTarget) drop.classList.remove("over");
  });
  document.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    const file = e.dataTransfer && e.dataTransfer.files[0];
    if (file) setImage(file, file.name);
  });
  $("url-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const url = $("url").value.trim();
    if (!url) return;
    const form = new FormData();
    form.append("url", url);
    try {
      hideError();
      const blob = await (await api("api/fetch", { method: "POST", body: form })).blob();
      const name = (url.split(/[?#]/)[0].split("/").pop() || "url").replace(/\.[^.]+$/, "");
      await setImage(blob, `${name}.png`);
    } catch (err) {
      showError(err.message);
    }
  });
  $("model").addEventListener("change", async () => {
    state.model = $("model").value;
    state.target = "top1";
    state.fused.clear();
    try {
      await loadModelInfo();
    } catch (err) {
      showError(err.message);
    }
    run();
  });
  document.querySelectorAll("#layer-buttons button").forEach((button) => {
    button.addEventListener("click", () => {
      state.layer = button.dataset.layer;
      state.fused.clear();
      state.compare = false;
      $("compare").checked = false;
      renderLayerList();
      run();
    });
  });
  $("compare").addEventListener("change", () => {
    state.compare = $("compare").checked;
    syncLayerButtons();
    run();
  });
  $("layer-filter").addEventListener("input", renderLayerList);
  $("class-filter").addEventListener("input", renderClassList);
  $("counterfactual").addEventListener("change", () => {
    state.counterfactual = $("counterfactual").checked;
    run();
  });
  $("opacity").addEventListener("input", () => {
    state.opacity = Number($("opacity").value);
    $("opacity-value").textContent = state.opacity.toFixed(2);
    repaint(); // no request: the maps are here
  });
  $("colormap").addEventListener("change", () => {
    state.colormap = $("colormap").value;
    paintColorbar($("colorbar"), state.luts[state.colormap]);
    repaint();
  });
  $("cancel").addEventListener("click", cancelJob);
  $("dl-json").addEventListener("click", () => {
    const text = JSON.stringify(summaryJSON(), null, 2);
    download(new Blob([text], { type: "application/json" }), `${stem()}.summary.json`);
  });
  $("dl-grid").addEventListener("click", downloadGrid);
}

async function init() {
  try {
    const [config, methods, models, colormaps] = await Promise.all([
      getJSON("api/config"),
      getJSON("api/methods"),
      getJSON("api/models"),
      getJSON("api/colormaps"),
    ]);
    state.config = config;
    state.methods = methods;
    state.costs = Object.fromEntries(methods.map((m) => [m.name, m.cost]));
    state.luts = colormaps.colormaps;
    state.colormap = colormaps.default in state.luts ? colormaps.default : Object.keys(state.luts)[0];
    const select = $("model");
    for (const model of models) {
      const option = document.createElement("option");
      option.value = option.textContent = model.name;
      select.appendChild(option);
    }
    state.model = config.default_model;
    select.value = state.model;
    $("url-form").hidden = !config.url_fetch;
    buildDemos();
    buildMethods();
    buildColormaps();
    wire();
    await loadModelInfo();
    document.body.dataset.ready = "true";
  } catch (err) {
    showError(`The viewer could not start: ${err.message}`);
  }
}

init();
