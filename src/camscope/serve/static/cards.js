// The map cards: skeletons, filling them from an answer, painting, and the downloads.
import {
  blend, canvasBlob, decodeHalf, download, gridCanvas, npyBlob, overlayCanvas, resizeMap,
} from "./render.js";
import { renderChips } from "./panel.js";
import {
  $, CARD_GAP, CARD_MAX, CARD_MIN, COST_CLASS, EXPORT_MAX_SIDE, GRID_TILE, milliseconds, percent,
  state, stem,
} from "./state.js";

// ---------------------------------------------------------------------------------------------
// Cards

export function chosenMethods() {
  const names = state.methods.map((m) => m.name).filter((n) => state.selected.has(n));
  if (state.counterfactual && !names.includes("counterfactual")) names.push("counterfactual");
  return names;
}

export function fitCards(count) {
  // as many cards per row as fit, between CARD_MIN and CARD_MAX CSS pixels wide
  const room = $("grid").clientWidth || 900;
  let perRow = Math.max(1, Math.min(count, Math.floor((room + CARD_GAP) / (CARD_MIN + CARD_GAP))));
  state.cardWidth = Math.min(CARD_MAX, Math.floor((room - CARD_GAP * (perRow - 1)) / perRow));
  $("grid").style.setProperty("--card", `${state.cardWidth}px`);
}

export function canvasSize() {
  const ratio = Math.min(window.devicePixelRatio || 1, 2);
  const w = Math.round(state.cardWidth * ratio);
  const h = Math.max(1, Math.round((w * state.picture.height) / state.picture.width));
  return [w, h];
}

export function makeCard(title) {
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

export function renderSkeleton(methods) {
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

export function updateRowLabel(row) {
  const info = state.layers.find((l) => l.name === row.layerName);
  const shape = info ? ` (${info.shape.join(" x ")})` : "";
  const name = row.layerName ? `<b></b>${shape}` : "";
  row.labelEl.innerHTML = state.compare ? `${row.spec} layer · ${name}` : `layer ${name}`;
  const b = row.labelEl.querySelector("b");
  if (b) b.textContent = row.layerName;
}

export function fillRow(row, result) {
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

export function drawCard(card) {
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

export function paintCard(card) {
  if (!card.resized) return;
  const { width: w, height: h } = card.canvas;
  const lut = state.luts[state.colormap];
  const image = blend(card.resized, state.picture.pixels(w, h), w, h, lut, state.opacity);
  card.canvas.getContext("2d").putImageData(image, 0, 0);
}

export function markPending(text) {
  for (const row of state.rows) {
    for (const card of row.cards.values()) {
      if (!card.map) {
        const holder = card.el.querySelector(".placeholder");
        if (holder) holder.textContent = text;
      }
    }
  }
}

export function repaint() {
  for (const row of state.rows) for (const card of row.cards.values()) paintCard(card);
}

export function updateSummary() {
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
// Downloads

export async function downloadCard(card, kind) {
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

export function summaryJSON() {
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

export async function downloadGrid() {
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

