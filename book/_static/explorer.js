// The latent-space explorer of Chapter 5: the 2-D VAE's decoder, run in the reader's browser.
//
// The data (window.UVBOOK_VAE2D) is written by uvbook.explorer.export_explorer when the
// chapter runs: the decoder's dense layers in half precision, the test images' codes and
// classes, and the pad's geometry. This file is the whole forward pass: for a latent point
// z, h = act(W^T h + b) layer after layer, then the sigmoid that turns the Bernoulli
// decoder's logits into pixel probabilities. No library, nothing loaded from elsewhere.
(function () {
  "use strict";

  // --- decoding the exported arrays -------------------------------------------------
  function bytes(b64) {
    const s = atob(b64);
    const out = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
    return out;
  }

  // IEEE 754 half precision (little-endian) to float32.
  function halves(b64) {
    const b = bytes(b64);
    const out = new Float32Array(b.length / 2);
    for (let i = 0; i < out.length; i++) {
      const h = b[2 * i] | (b[2 * i + 1] << 8);
      const sign = h & 0x8000 ? -1 : 1;
      const exp = (h >> 10) & 0x1f;
      const frac = h & 0x3ff;
      if (exp === 0) out[i] = sign * Math.pow(2, -14) * (frac / 1024);
      else if (exp === 31) out[i] = frac ? NaN : sign * Infinity;
      else out[i] = sign * Math.pow(2, exp - 15) * (1 + frac / 1024);
    }
    return out;
  }

  // --- the decoder -------------------------------------------------------------------
  function makeDecoder(data) {
    const layers = data.layers.map(function (l) {
      return { n: l.inputs, m: l.units, act: l.activation, W: halves(l.kernel), b: halves(l.bias) };
    });
    return function decode(z1, z2) {
      let h = new Float32Array([z1, z2]);
      for (const l of layers) {
        const out = new Float32Array(l.m);
        for (let j = 0; j < l.m; j++) out[j] = l.b[j];
        for (let i = 0; i < l.n; i++) {            // kernel is (inputs, units), row-major
          const hi = h[i];
          if (hi === 0) continue;
          const row = i * l.m;
          for (let j = 0; j < l.m; j++) out[j] += hi * l.W[row + j];
        }
        if (l.act === "relu") for (let j = 0; j < l.m; j++) out[j] = Math.max(0, out[j]);
        else if (l.act === "sigmoid") for (let j = 0; j < l.m; j++) out[j] = 1 / (1 + Math.exp(-out[j]));
        h = out;
      }
      for (let j = 0; j < h.length; j++) {
        h[j] = data.output === "sigmoid" ? 1 / (1 + Math.exp(-h[j])) : Math.min(1, Math.max(0, h[j]));
      }
      return h;                                     // 784 pixel probabilities, row-major 28x28
    };
  }

  // --- drawing -----------------------------------------------------------------------
  const TAB10 = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                 "#7f7f7f", "#bcbd22", "#17becf"];

  // Dark garment on white, as the book's figures draw images (matplotlib's gray_r).
  function drawImage(ctx, pixels, x0, y0) {
    const img = ctx.createImageData(28, 28);
    for (let i = 0; i < 784; i++) {
      const v = Math.round(255 * (1 - pixels[i]));
      img.data[4 * i] = img.data[4 * i + 1] = img.data[4 * i + 2] = v;
      img.data[4 * i + 3] = 255;
    }
    ctx.putImageData(img, x0 || 0, y0 || 0);
  }

  function el(tag, attrs, parent) {
    const e = document.createElement(tag);
    for (const k in attrs) {
      if (k === "text") e.textContent = attrs[k];
      else e.setAttribute(k, attrs[k]);
    }
    if (parent) parent.appendChild(e);
    return e;
  }

  // What start() needs, checked before the page is touched: a message naming the first problem,
  // or null. A failure leaves the page's static fallback in place.
  function problem(data) {
    if (data.format !== "uvbook latent explorer 1") return "format " + data.format + ", expected uvbook latent explorer 1";
    let width = 2;
    for (const l of data.layers) {
      if (l.inputs !== width) return "a layer takes " + l.inputs + " inputs after a layer of " + width;
      if (halves(l.kernel).length !== l.inputs * l.units || halves(l.bias).length !== l.units) {
        return "a layer's weights do not match its " + l.inputs + " x " + l.units + " shape";
      }
      width = l.units;
    }
    if (width !== 784) return "the decoder ends with " + width + " values, expected 784 (28 x 28)";
    const n = bytes(data.classes).length;
    if (halves(data.points).length !== 2 * n) return "the points and classes have different lengths";
    return null;
  }

  function start(root, data) {
    const decode = makeDecoder(data);
    const W = data.pad.pixels, R = data.pad.radius;
    const pts = halves(data.points), cls = bytes(data.classes);
    const n = cls.length;
    const toZ = (c, r) => [-R + (Math.floor(c) + 0.5) * 2 * R / W, R - (Math.floor(r) + 0.5) * 2 * R / W];
    const toPx = (z1, z2) => [(z1 + R) * W / (2 * R), (R - z2) * W / (2 * R)];

    root.textContent = "";
    const row = el("div", { class: "uvbook-explorer-row" }, root);
    const padBox = el("div", {}, row);
    const dpr = Math.max(1, Math.round(window.devicePixelRatio || 1));   // sharp dots on dense screens
    const pad = el("canvas", { width: W * dpr, height: W * dpr, class: "uvbook-explorer-pad", tabindex: "0",
                               role: "application",
                               "aria-label": "Latent pad: click or drag to decode a point; arrow keys move it" }, padBox);
    el("div", { class: "uvbook-explorer-caption",
                text: "The 2-D code of every test image, coloured by class. Click or drag." }, padBox);
    const outBox = el("div", {}, row);
    const out = el("canvas", { width: 28, height: 28, class: "uvbook-explorer-image", role: "img",
                               "aria-label": "The image decoded at the chosen point" }, outBox);
    const where = el("div", { class: "uvbook-explorer-caption", "aria-live": "polite" }, outBox);
    const legend = el("ul", { class: "uvbook-explorer-legend" }, outBox);
    data.class_names.forEach(function (name, c) {
      const li = el("li", {}, legend);
      el("span", { style: "background:" + TAB10[c % 10] }, li);
      li.appendChild(document.createTextNode(name));
    });

    const interp = el("div", { class: "uvbook-explorer-interp" }, root);
    const buttons = el("div", {}, interp);
    const setA = el("button", { type: "button", text: "Set A to the test image nearest the marker" }, buttons);
    const setB = el("button", { type: "button", text: "Set B to the test image nearest the marker" }, buttons);
    const STEPS = 9;
    const strip = el("canvas", { width: 28 * STEPS, height: 28, class: "uvbook-explorer-strip", role: "img",
                                 "aria-label": "Decoded images along the straight line between two test images' codes" }, interp);
    const path = el("div", { class: "uvbook-explorer-caption", "aria-live": "polite" }, interp);

    const pctx = pad.getContext("2d");
    pctx.scale(dpr, dpr);                             // draw in CSS pixels, W x W
    const base = document.createElement("canvas");
    base.width = base.height = W * dpr;
    const bctx = base.getContext("2d");
    bctx.scale(dpr, dpr);
    bctx.fillStyle = "#fff";
    bctx.fillRect(0, 0, W, W);
    bctx.strokeStyle = "#ccc";
    bctx.beginPath();
    bctx.moveTo(W / 2, 0); bctx.lineTo(W / 2, W); bctx.moveTo(0, W / 2); bctx.lineTo(W, W / 2);
    bctx.stroke();
    bctx.globalAlpha = 0.6;
    for (let i = 0; i < n; i++) {
      const p = toPx(pts[2 * i], pts[2 * i + 1]);
      bctx.fillStyle = TAB10[cls[i] % 10];
      bctx.fillRect(p[0] - 1, p[1] - 1, 2, 2);
    }
    bctx.globalAlpha = 1;

    let current = [W / 2, W / 2];
    let ends = [nearestTo(-1.5, 0), nearestTo(1.5, 0)];

    function nearestTo(z1, z2) {
      let best = 0, bestD = Infinity;
      for (let i = 0; i < n; i++) {
        const d = (pts[2 * i] - z1) ** 2 + (pts[2 * i + 1] - z2) ** 2;
        if (d < bestD) { bestD = d; best = i; }
      }
      return best;
    }

    function drawPad() {
      pctx.drawImage(base, 0, 0, W, W);
      for (const [k, i] of ends.entries()) {
        const p = toPx(pts[2 * i], pts[2 * i + 1]);
        pctx.strokeStyle = "#000";
        pctx.strokeRect(p[0] - 4, p[1] - 4, 8, 8);
        pctx.fillStyle = "#000";
        pctx.fillText(k ? "B" : "A", p[0] + 6, p[1] - 6);
      }
      const a = toPx(pts[2 * ends[0]], pts[2 * ends[0] + 1]), b = toPx(pts[2 * ends[1]], pts[2 * ends[1] + 1]);
      pctx.setLineDash([3, 3]);
      pctx.beginPath(); pctx.moveTo(a[0], a[1]); pctx.lineTo(b[0], b[1]); pctx.stroke();
      pctx.setLineDash([]);
      pctx.beginPath();
      pctx.arc(current[0], current[1], 6, 0, 2 * Math.PI);
      pctx.lineWidth = 2; pctx.stroke(); pctx.lineWidth = 1;
    }

    function show(c, r) {
      current = [Math.floor(c) + 0.5, Math.floor(r) + 0.5];
      const z = toZ(c, r);
      drawImage(out.getContext("2d"), decode(z[0], z[1]));
      out.dataset.z1 = z[0].toFixed(4);
      out.dataset.z2 = z[1].toFixed(4);
      where.textContent = "z = (" + z[0].toFixed(2) + ", " + z[1].toFixed(2) + ")";
      drawPad();
    }

    function drawPath() {
      const ctx = strip.getContext("2d");
      const a = [pts[2 * ends[0]], pts[2 * ends[0] + 1]], b = [pts[2 * ends[1]], pts[2 * ends[1] + 1]];
      for (let s = 0; s < STEPS; s++) {
        const t = s / (STEPS - 1);
        drawImage(ctx, decode(a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1])), 28 * s, 0);
      }
      path.textContent = "From A, a test " + data.class_names[cls[ends[0]]] + ", to B, a test " +
        data.class_names[cls[ends[1]]] + ", in " + (STEPS - 1) + " equal steps of the code.";
      drawPad();
    }

    function fromEvent(e) {
      // offsetX/Y: from the canvas's padding edge (inside its border), in CSS pixels
      const c = Math.min(W - 1, Math.max(0, e.offsetX * W / pad.clientWidth));
      const r = Math.min(W - 1, Math.max(0, e.offsetY * W / pad.clientHeight));
      show(c, r);
    }

    let dragging = false;
    pad.addEventListener("pointerdown", function (e) {
      dragging = true;
      pad.setPointerCapture(e.pointerId);            // a drag past the edge clamps to it
      fromEvent(e);
    });
    pad.addEventListener("pointermove", function (e) { if (dragging) fromEvent(e); });
    window.addEventListener("pointerup", function () { dragging = false; });
    pad.addEventListener("keydown", function (e) {
      const moves = { ArrowLeft: [-4, 0], ArrowRight: [4, 0], ArrowUp: [0, -4], ArrowDown: [0, 4] };
      if (!moves[e.key]) return;
      e.preventDefault();
      show(Math.min(W - 1, Math.max(0, current[0] + moves[e.key][0])),
           Math.min(W - 1, Math.max(0, current[1] + moves[e.key][1])));
    });
    setA.addEventListener("click", function () { const z = toZ(current[0], current[1]); ends[0] = nearestTo(z[0], z[1]); drawPath(); });
    setB.addEventListener("click", function () { const z = toZ(current[0], current[1]); ends[1] = nearestTo(z[0], z[1]); drawPath(); });

    show(W / 2, W / 2);
    drawPath();
    root.dataset.ready = "true";
  }

  // Without its data, or with data it cannot use, the explorer leaves the page as it is (the
  // sentence that points to the static figure) and tells the console why.
  function init() {
    const root = document.getElementById("uvbook-latent-explorer");
    if (!root) return;
    const data = window.UVBOOK_VAE2D;
    const why = data ? problem(data) : "its data (_static/explorer/vae2d.js) did not load; run Chapter 5 before building the site";
    if (why) {
      console.warn("uvbook latent explorer not started: " + why);
      return;
    }
    const fallback = root.innerHTML;
    try {
      start(root, data);
    } catch (err) {
      root.innerHTML = fallback;
      console.warn("uvbook latent explorer not started: " + err);
    }
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
