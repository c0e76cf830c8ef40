// The settings panel: demo photos, methods by cost, colour maps, layers, target chips and classes.
import { paintColorbar } from "./render.js";
import {
  $, COSTS, COST_CLASS, COST_TITLE, HIDDEN_METHODS, api, getJSON, hooks, percent, showError, state,
} from "./state.js";

// ---------------------------------------------------------------------------------------------
// Building the settings panel

export function buildDemos() {
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
        await hooks.setImage(blob, `${name}.png`);
      } catch (err) {
        showError(err.message);
      }
    });
    box.appendChild(button);
  }
}

export function buildMethods() {
  const box = $("methods");
  box.innerHTML = "";
  for (const cost of COSTS) {
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
        hooks.schedule();
      });
      label.querySelector(".name").textContent = method.name;
      label.dataset.method = method.name;
      const badge = label.querySelector(".badge");
      badge.classList.add(COST_CLASS[cost]);
      badge.textContent = cost;
      badge.title = `passes beyond the shared ones: ${method.passes_text}`;
      group.appendChild(label);
    }
    box.appendChild(group);
  }
  updateMethodCount();
}

// The passes each method adds on this model at this layer (GET /api/methods?model=&layer=):
// shown on the badges of the costly methods; those over the server's budget are struck through.
export async function refreshPasses() {
  const layer = state.compare ? "auto" : layerSpec();
  const query = `model=${encodeURIComponent(state.model)}&layer=${encodeURIComponent(layer)}`;
  let rows;
  try {
    rows = await getJSON(`api/methods?${query}`);
  } catch (_) {
    return; // a bad layer choice: the explain request will say what is wrong
  }
  const budget = state.config.max_passes;
  for (const row of rows) {
    const label = document.querySelector(`#methods label[data-method="${CSS.escape(row.name)}"]`);
    if (!label) continue;
    const badge = label.querySelector(".badge");
    const costly = row.cost === "few passes" || row.cost === "perturbation";
    const plural = row.passes === 1 ? "pass" : "passes";
    badge.textContent = costly ? `${row.passes.toLocaleString("en")} ${plural}` : row.cost;
    label.classList.toggle("over", row.over_budget);
    label.title = [row.summary, row.paper].filter(Boolean).join(" | ") + (row.over_budget
      ? ` | over this server's budget of ${budget.toLocaleString("en")} passes per request (camscope serve --max-passes)`
      : "");
  }
}

export function updateMethodCount() {
  $("method-count").textContent = `${state.selected.size} chosen`;
}

export function buildColormaps() {
  const select = $("colormap");
  for (const name of Object.keys(state.luts)) {
    const option = document.createElement("option");
    option.value = option.textContent = name;
    select.appendChild(option);
  }
  select.value = state.colormap;
  paintColorbar($("colorbar"), state.luts[state.colormap]);
}

export async function loadModelInfo() {
  const model = encodeURIComponent(state.model);
  const [layers, classes] = await Promise.all([
    getJSON(`api/layers?model=${model}`),
    getJSON(`api/classes?model=${model}`),
  ]);
  state.layers = layers.layers;
  state.classes = classes.classes;
  renderLayerList();
  refreshPasses();
}

export function layerSpec() {
  return state.fused.size ? [...state.fused].join(",") : state.layer;
}

export function renderLayerList() {
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
      refreshPasses();
      hooks.schedule();
    });
    label.querySelector(".lname").textContent = layer.name;
    label.querySelector(".mark").textContent = layer.marks.join(" ");
    label.querySelector(".shape").textContent = layer.shape.join(" x ");
    label.title = `${layer.kind}, ${layer.layout}`;
    box.appendChild(label);
  }
  syncLayerButtons();
}

export function syncLayerButtons() {
  document.querySelectorAll("#layer-buttons button").forEach((b) => {
    b.classList.toggle("on", !state.fused.size && !state.compare && b.dataset.layer === state.layer);
  });
  $("layer-picked").textContent = state.fused.size ? `(${state.fused.size} fused)` : "";
}

export function renderChips() {
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

export function renderClassList() {
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

export function chooseTarget(index) {
  state.target = index;
  hooks.run();
}
