// camscope viewer: choices on the left, maps on the right. Talks to the REST API with relative
// URLs only (works behind a path prefix); colours every map itself (render.js).
import { Picture, download, paintColorbar } from "./render.js";
import {
  chosenMethods, downloadGrid, fillRow, markPending, renderSkeleton, repaint, summaryJSON,
} from "./cards.js";
import {
  buildColormaps, buildDemos, buildMethods, layerSpec, loadModelInfo, refreshPasses,
  renderClassList, renderLayerList, syncLayerButtons,
} from "./panel.js";
import {
  $, api, explainRow, getJSON, hideError, hooks, showError, state, stem,
} from "./state.js";
import { modelTask, offerConcepts, repaintTask, runTask, showTaskView } from "./tasks.js";

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
  clearTimeout(timer); // a change made before the image is part of this run
  await run();
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
  $("progress").hidden = true; // an earlier run's bar, if it was still waiting for its answer
  hideError();
  const methods = chosenMethods();
  if (!methods.length) {
    showError("Choose at least one method on the left.");
    return;
  }
  const kind = await modelTask(); // detectors and segmentation models: tasks.js
  if (generation !== state.generation) return;
  showTaskView(kind !== "classification");
  offerConcepts(kind === "classification");
  if (kind !== "classification") {
    $("toolbar").hidden = true;
    try {
      await runTask(kind, methods, layerSpec());
    } catch (err) {
      if (generation === state.generation) showError(err.message);
    }
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
      refreshPasses();
      run();
    });
  });
  $("compare").addEventListener("change", () => {
    state.compare = $("compare").checked;
    syncLayerButtons();
    refreshPasses();
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
    repaintTask();
  });
  $("colormap").addEventListener("change", () => {
    state.colormap = $("colormap").value;
    paintColorbar($("colorbar"), state.luts[state.colormap]);
    repaint();
    repaintTask();
  });
  $("cancel").addEventListener("click", cancelJob);
  $("dl-json").addEventListener("click", () => {
    const text = JSON.stringify(summaryJSON(), null, 2);
    download(new Blob([text], { type: "application/json" }), `${stem()}.summary.json`);
  });
  $("dl-grid").addEventListener("click", downloadGrid);
}

hooks.run = run;
hooks.schedule = schedule;
hooks.setImage = setImage;

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
