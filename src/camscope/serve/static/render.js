// Pixels in the browser: maps arrive as float16 and are coloured here, so opacity and colour map
// change without a server call. The blend is camscope.viz.overlay's:
//   pixel = round((1 - alpha) * image + alpha * colour(map)),
// with colour(v) = entry min(floor(256 v), 255) of the colour map's table (matplotlib's rule), and
// the map resized bilinearly with half-pixel centres (torch's align_corners=False, as io.resize_map).

// float16 bits -> float32 value, for all 65536 bit patterns (computed once).
const HALF = (() => {
  const table = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const frac = h & 0x3ff;
    if (exp === 0) table[h] = sign * frac * 2 ** -24;
    else if (exp === 31) table[h] = frac ? NaN : sign * Infinity;
    else table[h] = sign * (1 + frac / 1024) * 2 ** (exp - 15);
  }
  return table;
})();

/** Base64 of little-endian float16 values -> Float32Array. */
export function decodeHalf(base64) {
  const text = atob(base64);
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  const halves = new Uint16Array(bytes.buffer, 0, bytes.length >> 1);
  const out = new Float32Array(halves.length);
  for (let i = 0; i < halves.length; i++) out[i] = HALF[halves[i]];
  return out;
}

/** Bilinear resize of an (h, w) map to (outH, outW), half-pixel centres, clamped to [0, 1]. */
export function resizeMap(map, h, w, outH, outW) {
  const out = new Float32Array(outH * outW);
  const sy = h / outH;
  const sx = w / outW;
  const x0s = new Int32Array(outW);
  const x1s = new Int32Array(outW);
  const wxs = new Float32Array(outW);
  for (let x = 0; x < outW; x++) {
    const src = Math.max((x + 0.5) * sx - 0.5, 0);
    const x0 = Math.min(Math.floor(src), w - 1);
    x0s[x] = x0;
    x1s[x] = Math.min(x0 + 1, w - 1);
    wxs[x] = src - x0;
  }
  for (let y = 0; y < outH; y++) {
    const src = Math.max((y + 0.5) * sy - 0.5, 0);
    const y0 = Math.min(Math.floor(src), h - 1);
    const y1 = Math.min(y0 + 1, h - 1);
    const wy = src - y0;
    const r0 = y0 * w;
    const r1 = y1 * w;
    for (let x = 0; x < outW; x++) {
      const a = map[r0 + x0s[x]] * (1 - wxs[x]) + map[r0 + x1s[x]] * wxs[x];
      const b = map[r1 + x0s[x]] * (1 - wxs[x]) + map[r1 + x1s[x]] * wxs[x];
      const v = a * (1 - wy) + b * wy;
      out[y * outW + x] = v > 1 ? 1 : v > 0 ? v : 0;
    }
  }
  return out;
}

/** Pixels of an image drawn at (w, h), cached per size. */
export class Picture {
  constructor(source, width, height) {
    this.source = source; // an ImageBitmap or a loaded HTMLImageElement
    this.width = width;
    this.height = height;
    this.sizes = new Map();
  }

  pixels(w, h) {
    const key = `${w}x${h}`;
    if (!this.sizes.has(key)) {
      const canvas = document.createElement("canvas");
      canvas.width = w;
      canvas.height = h;
      const ctx = canvas.getContext("2d", { willReadFrequently: true });
      ctx.imageSmoothingQuality = "high";
      ctx.drawImage(this.source, 0, 0, w, h);
      this.sizes.set(key, ctx.getImageData(0, 0, w, h).data);
      if (this.sizes.size > 8) this.sizes.delete(this.sizes.keys().next().value);
    }
    return this.sizes.get(key);
  }
}

/** Blend a map already resized to (w, h) over base pixels: an ImageData. */
export function blend(resized, base, w, h, lut, alpha) {
  const out = new ImageData(w, h);
  const px = out.data;
  const keep = 1 - alpha;
  for (let i = 0, j = 0; i < resized.length; i++, j += 4) {
    const v = resized[i];
    const k = 3 * (v >= 1 ? 255 : Math.floor(v * 256));
    px[j] = Math.round(keep * base[j] + alpha * lut[k]);
    px[j + 1] = Math.round(keep * base[j + 1] + alpha * lut[k + 1]);
    px[j + 2] = Math.round(keep * base[j + 2] + alpha * lut[k + 2]);
    px[j + 3] = 255;
  }
  return out;
}

/** A canvas of width w showing `map` (mapH x mapW) over the picture. */
export function overlayCanvas(picture, map, mapH, mapW, w, lut, alpha) {
  const h = Math.max(1, Math.round((w * picture.height) / picture.width));
  const canvas = document.createElement("canvas");
  canvas.width = w;
  canvas.height = h;
  const resized = resizeMap(map, mapH, mapW, h, w);
  canvas.getContext("2d").putImageData(blend(resized, picture.pixels(w, h), w, h, lut, alpha), 0, 0);
  return canvas;
}

/** A float32 .npy file (NumPy format 1.0) of `data` with `shape`. */
export function npyBlob(data, shape) {
  const dims = shape.length === 1 ? `${shape[0]},` : shape.join(", ");
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${dims}), }`;
  const unpadded = 10 + header.length + 1;
  header += " ".repeat((64 - (unpadded % 64)) % 64) + "\n";
  const head = new Uint8Array(10 + header.length);
  head.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0, header.length & 0xff, header.length >> 8]);
  for (let i = 0; i < header.length; i++) head[10 + i] = header.charCodeAt(i);
  return new Blob([head, new Float32Array(data).buffer], { type: "application/octet-stream" });
}

/** Save a blob under `name` through the browser's download. */
export function download(blob, name) {
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

export function canvasBlob(canvas) {
  return new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
}

/** Paint a colour map's table as a horizontal bar. */
export function paintColorbar(canvas, lut) {
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(256, canvas.height);
  for (let y = 0; y < canvas.height; y++) {
    for (let x = 0; x < 256; x++) {
      const j = 4 * (y * 256 + x);
      img.data.set([lut[3 * x], lut[3 * x + 1], lut[3 * x + 2], 255], j);
    }
  }
  ctx.putImageData(img, 0, 0);
}

/**
 * The whole grid as one picture: one row per layer, the input then one column per method, each
 * tile titled. `rows`: [{label, tiles: [{title, subtitle, canvas}]}].
 */
export function gridCanvas(picture, rows, tileWidth) {
  const tileH = Math.round((tileWidth * picture.height) / picture.width);
  const pad = 12;
  const titleH = 40;
  const labelH = 22;
  const cols = 1 + Math.max(...rows.map((r) => r.tiles.length));
  const width = pad + cols * (tileWidth + pad);
  const height = pad + rows.length * (labelH + tileH + titleH + pad);
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#ffffff";
  ctx.fillRect(0, 0, width, height);
  ctx.textBaseline = "top";
  rows.forEach((row, r) => {
    const top = pad + r * (labelH + tileH + titleH + pad);
    ctx.fillStyle = "#1d2230";
    ctx.font = "600 14px system-ui, sans-serif";
    ctx.fillText(row.label, pad, top);
    const y = top + labelH;
    ctx.drawImage(picture.source, pad, y, tileWidth, tileH);
    ctx.font = "13px system-ui, sans-serif";
    ctx.fillStyle = "#667085";
    ctx.fillText("input", pad, y + tileH + 6);
    row.tiles.forEach((tile, c) => {
      const x = pad + (c + 1) * (tileWidth + pad);
      ctx.drawImage(tile.canvas, x, y, tileWidth, tileH);
      ctx.fillStyle = "#1d2230";
      ctx.font = "600 13px system-ui, sans-serif";
      ctx.fillText(tile.title, x, y + tileH + 6, tileWidth);
      ctx.fillStyle = "#667085";
      ctx.font = "12px system-ui, sans-serif";
      ctx.fillText(tile.subtitle, x, y + tileH + 22, tileWidth);
    });
  });
  return canvas;
}
