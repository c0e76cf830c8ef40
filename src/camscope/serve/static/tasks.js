// Tasks beyond classification: a detector's boxes (click one to explain it, or drag to draw a
// box), a segmentation model's class (pick one, optionally paint the region), the similarity to
// a reference image, and DFF's concepts of a classifier. Maps are coloured here, as in cards.js.
import { blend, decodeHalf, resizeMap } from "./render.js";
import { $, api, getJSON, hideError, showError, state } from "./state.js";

const PALETTE = ["#e69f00", "#56b4e9", "#009e73", "#f0e442", "#0072b2", "#d55e00", "#cc79a7", "#000000"];
const VIEW_WIDTH = 640; // CSS pixels of the task picture
const BRUSH = 0.04; // brush radius, as a fraction of the picture's longer side

const task = {
  kinds: {}, // model name -> task, read from GET /api/models once the model is loaded
  kind: "classification",
  boxes: [],
  selected: null, // index of the explained box, or "drawn"
  drawn: null, // a box drawn by the user, in image pixels
  drag: null,
  mask: null, // an offscreen canvas at the image's size: the painted region (alpha)
  painting: false,
  maps: [], // [{method, map, shape, canvas}]
  box: null, // the box the maps explain (image pixels), drawn over them
  reference: null,
  generation: 0,
};

function form(extra) {
  const data = new FormData();
  data.append("image", state.file, state.fileName);
  data.append("model", state.model);
  for (const [key, value] of Object.entries(extra)) {
    if (value !== undefined && value !== null) data.append(key, value);
  }
  return data;
}

async function post(path, extra) {
  return (await api(path, { method: "POST", body: form(extra) })).json();
}

/** The task of the model in use ("classification" for classifiers). */
export async function modelTask() {
  if (!(state.model in task.kinds)) {
    for (const m of await getJSON("api/models")) if (m.task) task.kinds[m.name] = m.task;
  }
  return task.kinds[state.model] || "classification";
}

// ---------------------------------------------------------------------------------------------
// The view

function view() {
  let root = $("task-view");
  if (root) return root;
  root = document.createElement("section");
  root.id = "task-view";
  root.className = "task-view";
  root.hidden = true;
  root.innerHTML = `
    <div class="task-bar">
      <span class="task-kind" id="task-kind"></span>
      <label class="field det-only">Box threshold <output id="task-threshold-value">0.50</output>
        <input type="range" id="task-threshold" min="0" max="1" step="0.01" value="0.5"></label>
      <label class="field seg-only">Class <select id="seg-class" aria-label="Class to explain"></select></label>
      <button type="button" class="btn seg-only" id="paint" aria-pressed="false">Paint the region</button>
      <button type="button" class="btn seg-only" id="paint-clear">Clear</button>
      <button type="button" class="btn seg-only" id="seg-explain">Explain</button>
      <label class="field sim-only">Reference image <input type="file" id="task-reference" accept="image/*"></label>
    </div>
    <div class="hint" id="task-hint"></div>
    <canvas id="task-canvas" class="task-canvas"></canvas>
    <div class="task-caption" id="task-caption" aria-live="polite"></div>
    <div class="cards" id="task-maps"></div>`;
  $("grid").before(root);
  $("task-threshold").addEventListener("input", () => {
    $("task-threshold-value").textContent = Number($("task-threshold").value).toFixed(2);
  });
  $("task-threshold").addEventListener("change", () => detectBoxes(task.generation));
  $("seg-class").addEventListener("change", () => explainRegion());
  $("seg-explain").addEventListener("click", () => explainRegion());
  $("paint").addEventListener("click", () => {
    task.painting = !task.painting;
    $("paint").setAttribute("aria-pressed", String(task.painting));
    $("paint").classList.toggle("on", task.painting);
  });
  $("paint-clear").addEventListener("click", () => {
    task.mask = null;
    drawPicture();
  });
  $("task-reference").addEventListener("change", () => {
    const file = $("task-reference").files[0];
    if (file) {
      task.reference = file;
      explainSimilarity();
    }
  });
  wireCanvas($("task-canvas"));
  return root;
}

/** Show the task view (true) or the classifier's cards (false). */
export function showTaskView(on) {
  const root = view();
  root.hidden = !on;
  $("grid").hidden = on;
}

function canvasSize() {
  const cssW = Math.min(VIEW_WIDTH, ($("task-view").clientWidth || VIEW_WIDTH) - 4);
  const ratio = Math.min(window.devicePixelRatio || 1, 2);
  const w = Math.max(1, Math.round(cssW * ratio));
  const h = Math.max(1, Math.round((w * state.picture.height) / state.picture.width));
  return { w, h, cssW };
}

function drawPicture() {
  const canvas = $("task-canvas");
  const { w, h, cssW } = canvasSize();
  canvas.width = w;
  canvas.height = h;
  canvas.style.width = `${cssW}px`;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(state.picture.source, 0, 0, w, h);
  if (task.mask) {
    ctx.globalAlpha = 0.45;
    ctx.drawImage(task.mask, 0, 0, w, h);
    ctx.globalAlpha = 1;
  }
  drawBoxes(ctx, w / state.picture.width);
  canvas.dataset.boxCount = String(task.boxes.length);
  canvas.dataset.boxes = JSON.stringify(task.boxes.map((b) => b.box)); // image pixels
}

function drawBoxes(ctx, scale, only) {
  const line = Math.max(1, Math.round(ctx.canvas.width / 300));
  ctx.font = `${Math.max(11, Math.round(ctx.canvas.width / 45))}px system-ui, sans-serif`;
  ctx.textBaseline = "bottom";
  const shown = only ? [only] : task.boxes;
  shown.forEach((entry, k) => {
    const [x0, y0, x1, y1] = entry.box.map((v) => v * scale);
    const colour = PALETTE[(entry.index ?? k) % PALETTE.length];
    const chosen = only || task.selected === entry.index;
    ctx.lineWidth = chosen ? 3 * line : line;
    ctx.strokeStyle = colour;
    ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
    if (entry.label) {
      const text = `${entry.index ?? ""}: ${entry.label} ${entry.score.toFixed(2)}`;
      const width = ctx.measureText(text).width + 6;
      const top = y0 >= 16 ? y0 : y0 + 16;
      ctx.fillStyle = colour;
      ctx.fillRect(x0, top - 16, width, 16);
      ctx.fillStyle = "#000";
      ctx.fillText(text, x0 + 3, top - 2);
    }
  });
  if (task.drawn && !only) {
    const [x0, y0, x1, y1] = task.drawn.map((v) => v * scale);
    ctx.setLineDash([6, 4]);
    ctx.lineWidth = 2 * line;
    ctx.strokeStyle = "#ffffff";
    ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
    ctx.setLineDash([]);
  }
}

function imagePoint(canvas, event) {
  const rect = canvas.getBoundingClientRect();
  return [
    ((event.clientX - rect.left) / rect.width) * state.picture.width,
    ((event.clientY - rect.top) / rect.height) * state.picture.height,
  ];
}

function wireCanvas(canvas) {
  canvas.addEventListener("mousedown", (event) => {
    if (!state.picture) return;
    task.drag = { start: imagePoint(canvas, event), moved: false };
    if (task.kind === "segmentation" && task.painting) paintAt(task.drag.start);
  });
  canvas.addEventListener("mousemove", (event) => {
    if (!task.drag) return;
    const [x, y] = imagePoint(canvas, event);
    if (task.kind === "segmentation" && task.painting) {
      paintAt([x, y]);
      return;
    }
    if (task.kind !== "detection") return;
    const [sx, sy] = task.drag.start;
    if (Math.hypot(x - sx, y - sy) > 4) {
      task.drag.moved = true;
      task.drawn = [Math.min(sx, x), Math.min(sy, y), Math.max(sx, x), Math.max(sy, y)];
      drawPicture();
    }
  });
  canvas.addEventListener("mouseup", (event) => {
    const drag = task.drag;
    task.drag = null;
    if (!drag || task.kind !== "detection") return;
    if (drag.moved && task.drawn) {
      task.selected = "drawn";
      explainBox(task.drawn, null);
      return;
    }
    const [x, y] = imagePoint(canvas, event);
    const inside = task.boxes.filter(
      (b) => x >= b.box[0] && x <= b.box[2] && y >= b.box[1] && y <= b.box[3],
    );
    if (!inside.length) return;
    inside.sort((a, b) => area(a.box) - area(b.box)); // the innermost box
    task.drawn = null;
    task.selected = inside[0].index;
    explainBox(inside[0].box, inside[0]);
  });
}

function area(box) {
  return (box[2] - box[0]) * (box[3] - box[1]);
}

function paintAt([x, y]) {
  if (!task.mask) {
    task.mask = document.createElement("canvas");
    task.mask.width = state.picture.width;
    task.mask.height = state.picture.height;
  }
  const ctx = task.mask.getContext("2d");
  ctx.fillStyle = "#ff3b30";
  ctx.beginPath();
  ctx.arc(x, y, BRUSH * Math.max(state.picture.width, state.picture.height), 0, 2 * Math.PI);
  ctx.fill();
  drawPicture();
}

// ---------------------------------------------------------------------------------------------
// The maps

function renderMaps(answer, box) {
  const holder = $("task-maps");
  holder.innerHTML = "";
  task.maps = [];
  task.box = box;
  for (const [method, entry] of Object.entries(answer.maps)) {
    const [mapH, mapW] = entry.shape.slice(-2);
    const figure = document.createElement("figure");
    figure.className = "card";
    const canvas = document.createElement("canvas");
    canvas.dataset.taskMethod = method;
    figure.appendChild(canvas);
    const caption = document.createElement("figcaption");
    caption.innerHTML = "<div class='title'><b></b></div>";
    caption.querySelector("b").textContent = method;
    figure.appendChild(caption);
    holder.appendChild(figure);
    task.maps.push({ method, map: decodeHalf(entry.map).subarray(0, mapH * mapW), shape: [mapH, mapW], canvas });
  }
  $("task-caption").textContent = (answer.captions || []).join(" · ");
  repaintTask();
}

/** Colour the task's maps again (opacity or colour map changed). */
export function repaintTask() {
  if (!state.picture) return;
  const lut = state.luts[state.colormap];
  for (const card of task.maps) {
    const w = Math.round(state.cardWidth * Math.min(window.devicePixelRatio || 1, 2));
    const h = Math.max(1, Math.round((w * state.picture.height) / state.picture.width));
    card.canvas.width = w;
    card.canvas.height = h;
    card.canvas.style.width = `${state.cardWidth}px`;
    const resized = resizeMap(card.map, card.shape[0], card.shape[1], h, w);
    const ctx = card.canvas.getContext("2d");
    ctx.putImageData(blend(resized, state.picture.pixels(w, h), w, h, lut, state.opacity), 0, 0);
    if (task.box) drawBoxes(ctx, w / state.picture.width, task.box);
  }
}

function methodsFor(methods) {
  // perturbation methods score perturbed inputs by class: they cannot explain a box or region
  return methods.filter((m) => state.costs[m] !== "perturbation");
}

async function explainBox(box, entry) {
  const generation = task.generation;
  drawPicture();
  try {
    hideError();
    $("task-caption").textContent = "Explaining the box...";
    const answer = await post("api/explain-task", {
      task: "detection",
      methods: task.methods.join(","),
      layer: task.layer,
      box: box.map((v) => v.toFixed(2)).join(","),
    });
    if (generation !== task.generation) return;
    const target = answer.targets[0];
    renderMaps(answer, { ...target, index: entry ? entry.index : target.index });
    const what = entry ? `box ${entry.index}` : "the drawn box";
    $("task-caption").textContent = `${what}: ${target.label}, score ${target.score.toFixed(2)}`;
    $("task-maps").dataset.explained = JSON.stringify(target.box); // the matched detection
    $("task-maps").dataset.box = entry ? String(entry.index) : "drawn";
  } catch (err) {
    if (generation === task.generation) showError(err.message);
  }
}

async function detectBoxes(generation) {
  const threshold = Number($("task-threshold").value);
  const answer = await post("api/detect", { threshold: String(threshold) });
  if (generation !== task.generation) return;
  task.boxes = answer.boxes;
  task.selected = null;
  task.drawn = null;
  drawPicture();
  $("task-hint").textContent = task.boxes.length
    ? `${task.boxes.length} box(es) at ${threshold.toFixed(2)} or more: click one to explain it, or drag to draw a box.`
    : `No box scores ${threshold.toFixed(2)} or more: lower the threshold, or drag to draw a box.`;
  if (task.boxes.length) {
    task.selected = task.boxes[0].index;
    drawPicture();
    await explainBox(task.boxes[0].box, task.boxes[0]);
  }
}

async function maskBlob() {
  if (!task.mask) return null;
  return new Promise((resolve) => task.mask.toBlob(resolve, "image/png"));
}

async function explainRegion() {
  const generation = task.generation;
  const cls = $("seg-class").value;
  if (cls === "") return;
  try {
    hideError();
    $("task-caption").textContent = "Explaining the class...";
    const data = form({ task: "segmentation", class: cls, methods: task.methods.join(","), layer: task.layer });
    const mask = await maskBlob();
    if (mask) data.append("region", mask, "region.png");
    const answer = await (await api("api/explain-task", { method: "POST", body: data })).json();
    if (generation === task.generation) renderMaps(answer, null);
  } catch (err) {
    if (generation === task.generation) showError(err.message);
  }
}

async function segmentClasses(generation) {
  const answer = await post("api/segment-classes", {});
  if (generation !== task.generation) return;
  const select = $("seg-class");
  select.innerHTML = "";
  const present = new Set();
  for (const c of answer.classes) {
    const option = document.createElement("option");
    option.value = String(c.index);
    option.textContent = `${c.label} (${(100 * c.fraction).toFixed(1)}% of pixels)`;
    select.appendChild(option);
    present.add(c.index);
  }
  state.classes.forEach((label, index) => {
    if (present.has(index)) return;
    const option = document.createElement("option");
    option.value = String(index);
    option.textContent = label;
    select.appendChild(option);
  });
  const first = answer.classes.find((c) => c.label !== "__background__") || answer.classes[0];
  if (first) select.value = String(first.index);
  $("task-hint").textContent = "Pick a class; paint a region to explain it there only (default: where the model sees it).";
  await explainRegion();
}

async function explainSimilarity() {
  if (!task.reference) {
    $("task-hint").textContent = "Choose a reference image: the maps show what makes this image similar to it.";
    return;
  }
  const generation = task.generation;
  try {
    hideError();
    const data = form({ task: "similarity", methods: task.methods.join(","), layer: task.layer });
    data.append("reference", task.reference, task.reference.name);
    const answer = await (await api("api/explain-task", { method: "POST", body: data })).json();
    if (generation === task.generation) renderMaps(answer, null);
  } catch (err) {
    if (generation === task.generation) showError(err.message);
  }
}

/** Run the task of a detector or segmentation model for the current image. */
export async function runTask(kind, methods, layer) {
  const generation = ++task.generation;
  task.kind = kind;
  task.methods = methodsFor(methods);
  task.layer = layer;
  task.maps = [];
  task.box = null;
  task.mask = null;
  task.boxes = [];
  view().dataset.kind = kind;
  $("task-kind").textContent = kind;
  $("task-maps").innerHTML = "";
  $("task-caption").textContent = "";
  drawPicture();
  if (!task.methods.length) {
    showError("Choose a one-pass or guided method: perturbation methods cannot explain a box or a region.");
    return;
  }
  if (kind === "detection") await detectBoxes(generation);
  else if (kind === "segmentation") await segmentClasses(generation);
  else await explainSimilarity();
}

// ---------------------------------------------------------------------------------------------
// DFF concepts of a classifier

export function offerConcepts(on) {
  let box = $("concepts-view");
  if (!box) {
    box = document.createElement("section");
    box.id = "concepts-view";
    box.className = "concepts-view";
    box.innerHTML = `<button type="button" class="btn" id="concepts-button">Concepts (DFF)</button>
      <span class="hint">Deep Feature Factorization: the layer's concepts, each with the classes it scores highest.</span>
      <div class="cards" id="concepts"></div>`;
    $("grid").after(box);
    $("concepts-button").addEventListener("click", showConcepts);
  }
  box.hidden = !on;
  $("concepts").innerHTML = ""; // a new run: the concepts of the last image are gone
  task.maps = [];
}

async function showConcepts() {
  const holder = $("concepts");
  holder.innerHTML = "<span class='hint'>Factorizing...</span>";
  try {
    const layer = (state.rows[0] && state.rows[0].layerName) || "auto";
    const answer = await post("api/concepts", { layer, num_concepts: "5" });
    holder.innerHTML = "";
    task.concepts = [];
    for (const concept of answer.concepts) {
      const figure = document.createElement("figure");
      figure.className = "card";
      const canvas = document.createElement("canvas");
      canvas.dataset.concept = String(concept.index);
      figure.appendChild(canvas);
      const caption = document.createElement("figcaption");
      const title = document.createElement("b");
      title.textContent = `concept ${concept.index}`;
      caption.appendChild(title);
      for (const c of concept.top) {
        const line = document.createElement("div");
        line.className = "concept-class";
        line.textContent = `${c.label} · ${(100 * c.probability).toFixed(1)}%`;
        caption.appendChild(line);
      }
      figure.appendChild(caption);
      holder.appendChild(figure);
      const [mapH, mapW] = concept.shape;
      task.maps.push({ method: `concept ${concept.index}`, map: decodeHalf(concept.map).subarray(0, mapH * mapW), shape: [mapH, mapW], canvas });
    }
    repaintTask();
  } catch (err) {
    holder.innerHTML = "";
    showError(err.message);
  }
}
