// cnnkit serve: draw on the canvas, get predictions and feature maps from /api/predict, hover a
// feature-map pixel to see its receptive field. Plain JavaScript, no build step, no network beyond this server.
"use strict";

const PREDICT_INTERVAL_MS = 120;   // while drawing, at most one prediction per interval
const canvas = document.getElementById("canvas");
const context = canvas.getContext("2d");
const brush = document.getElementById("brush");
const rfBox = document.getElementById("rf-box");
const rfBoxInput = document.getElementById("rf-box-input");
const modelInput = document.getElementById("model-input");
const statusLine = document.getElementById("status");
const featuresDiv = document.getElementById("features");
const rfCaption = document.getElementById("rf-caption");
const rfCaptionDefault = rfCaption.textContent;

let hasInk = false;
let lastPoint = null;
let timer = null;
let inFlight = false;
let pending = false;
let latest = null;       // the last /api/predict answer
let unitBox = null;      // the outline of the hovered feature-map pixel

// ------------------------------------------------------------------ drawing
function clearCanvas() {
  context.fillStyle = "#ffffff";
  context.fillRect(0, 0, canvas.width, canvas.height);
  hasInk = false;
  latest = null;
  document.getElementById("predictions").innerHTML = '<li class="empty">draw something</li>';
  featuresDiv.innerHTML = "";
  modelInput.removeAttribute("src");
  hideReceptiveField();
  setStatus("");
}

function canvasPoint(event) {
  const rect = canvas.getBoundingClientRect();
  return {
    x: (event.clientX - rect.left) * canvas.width / rect.width,
    y: (event.clientY - rect.top) * canvas.height / rect.height,
  };
}

function strokeTo(point) {
  context.strokeStyle = "#000000";
  context.fillStyle = "#000000";
  context.lineWidth = Number(brush.value);
  context.lineCap = "round";
  context.lineJoin = "round";
  if (lastPoint === null) {
    context.beginPath();
    context.arc(point.x, point.y, context.lineWidth / 2, 0, 2 * Math.PI);
    context.fill();
  } else {
    context.beginPath();
    context.moveTo(lastPoint.x, lastPoint.y);
    context.lineTo(point.x, point.y);
    context.stroke();
  }
  lastPoint = point;
  hasInk = true;
}

canvas.addEventListener("pointerdown", (event) => {
  event.preventDefault();
  canvas.setPointerCapture(event.pointerId);
  lastPoint = null;
  strokeTo(canvasPoint(event));
  predictSoon();
});
canvas.addEventListener("pointermove", (event) => {
  if (lastPoint === null || !(event.buttons & 1 || event.pointerType === "touch")) return;
  event.preventDefault();
  strokeTo(canvasPoint(event));
  predictSoon();
});
function endStroke() {
  if (lastPoint !== null) {
    lastPoint = null;
    schedulePredict(0);
  }
}
canvas.addEventListener("pointerup", endStroke);
canvas.addEventListener("pointercancel", endStroke);
document.getElementById("clear").addEventListener("click", clearCanvas);

// ------------------------------------------------------------------ talking to the server
function setStatus(text, isError = false) {
  statusLine.textContent = text;
  statusLine.classList.toggle("error", isError);
}

function schedulePredict(delay) {
  clearTimeout(timer);
  timer = setTimeout(sendPredict, delay);
}

// A throttle, not a debounce: a pen that never pauses still gets predictions while it moves.
function predictSoon() {
  if (timer === null) timer = setTimeout(sendPredict, PREDICT_INTERVAL_MS);
}

async function sendPredict() {
  timer = null;
  if (!hasInk) return;
  if (inFlight) {            // one request at a time; send the newest drawing when it returns
    pending = true;
    return;
  }
  inFlight = true;
  pending = false;
  const started = performance.now();
  const image = canvas.toDataURL("image/png");
  try {
    const response = await fetch("/api/predict", {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({image}),
    });
    const answer = await response.json();
    if (!response.ok) throw new Error(answer.error || `HTTP ${response.status}`);
    if (hasInk) {
      latest = answer;
      render(answer);
      setStatus(`answered in ${Math.round(performance.now() - started)} ms`);
      // evidence.js asks for the top class's heat map; awaited, so it shares the one-request-at-a-time rule.
      if (window.onPrediction) await window.onPrediction(image);
    }
  } catch (error) {
    setStatus(`prediction failed: ${error.message}`, true);
  } finally {
    inFlight = false;
    if (pending) schedulePredict(0);
  }
}

// ------------------------------------------------------------------ rendering
function render(answer) {
  renderPredictions(answer.top5);
  modelInput.src = answer.input.image;
  const [height, width] = answer.input.size;
  document.getElementById("input-caption").textContent =
    `what the model sees: ${height}×${width}` + (answer.input.inverted ? ", colours inverted" : "");
  renderFeatures(answer.layers);
}

function renderPredictions(top) {
  const list = document.getElementById("predictions");
  list.innerHTML = "";
  for (const {label, prob} of top) {
    const item = document.createElement("li");
    item.className = "prediction";
    item.innerHTML = '<span class="label"></span><span class="bar"><span></span></span><span class="prob"></span>';
    item.querySelector(".label").textContent = label;
    item.querySelector(".bar > span").style.width = `${(100 * prob).toFixed(1)}%`;
    item.querySelector(".prob").textContent = `${(100 * prob).toFixed(1)}%`;
    list.appendChild(item);
  }
}

function layerSignature(layers) {
  return layers.map((layer) => `${layer.name}:${layer.shape.join("x")}:${layer.maps.length}`).join("|");
}

function renderFeatures(layers) {
  const signature = layerSignature(layers);
  if (featuresDiv.dataset.signature === signature) {   // same layout: swap the pictures only (no flicker)
    layers.forEach((layer, layerIndex) => {
      layer.maps.forEach((map, channel) => {
        featuresDiv.querySelector(`img[data-layer="${layerIndex}"][data-channel="${channel}"]`).src = map;
      });
    });
    return;
  }
  featuresDiv.innerHTML = "";
  featuresDiv.dataset.signature = signature;
  layers.forEach((layer, layerIndex) => {
    const block = document.createElement("div");
    block.className = "layer";
    const [channels, height, width] = layer.shape;
    const shown = layer.maps.length < channels ? ` (first ${layer.maps.length})` : "";
    const title = document.createElement("h3");
    title.textContent = layer.name;
    const meta = document.createElement("span");
    meta.className = "meta";
    meta.textContent = `${layer.type} · ${channels}×${height}×${width}${shown} · receptive field ` +
      `${layer.rf.rf[0]}×${layer.rf.rf[1]}, jump ${layer.rf.jump[0]}`;
    title.appendChild(meta);
    block.appendChild(title);
    const maps = document.createElement("div");
    maps.className = "maps";
    layer.maps.forEach((map, channel) => {
      const wrap = document.createElement("div");
      wrap.className = "fmap-wrap";
      const image = document.createElement("img");
      image.className = "fmap";
      image.src = map;
      image.alt = `${layer.name} channel ${channel}`;
      image.dataset.layer = layerIndex;
      image.dataset.channel = channel;
      image.addEventListener("mousemove", onMapHover);
      image.addEventListener("mouseleave", hideReceptiveField);
      wrap.appendChild(image);
      maps.appendChild(wrap);
    });
    block.appendChild(maps);
    featuresDiv.appendChild(block);
  });
}

// ------------------------------------------------------------------ receptive fields
// Unit (row, col) of a layer sees model-input pixels offset + index * jump .. + rf - 1 on each axis
// (clipped to the input), as computed by cnnkit.viz.geometry on the server.
function unitSpan(rf, axis, index, size) {
  const first = rf.offset[axis] + index * rf.jump[axis];
  const last = first + rf.rf[axis] - 1;
  return [Math.max(0, Math.floor(first)), Math.min(size - 1, Math.ceil(last))];
}

function placeBox(box, element, span, scale) {
  // span: model-input rows/cols; scale: {x0, y0, sx, sy, width, height} from model pixels to element pixels
  const left = Math.max(0, scale.x0 + span.left * scale.sx);
  const top = Math.max(0, scale.y0 + span.top * scale.sy);
  const right = Math.min(scale.width, scale.x0 + (span.right + 1) * scale.sx);
  const bottom = Math.min(scale.height, scale.y0 + (span.bottom + 1) * scale.sy);
  box.style.left = `${element.offsetLeft + element.clientLeft + left}px`;
  box.style.top = `${element.offsetTop + element.clientTop + top}px`;
  box.style.width = `${Math.max(2, right - left)}px`;
  box.style.height = `${Math.max(2, bottom - top)}px`;
  box.hidden = false;
}

function onMapHover(event) {
  if (!latest) return;
  const image = event.currentTarget;
  const layer = latest.layers[Number(image.dataset.layer)];
  const [, height, width] = layer.shape;
  const row = Math.min(height - 1, Math.max(0, Math.floor(event.offsetY / image.clientHeight * height)));
  const col = Math.min(width - 1, Math.max(0, Math.floor(event.offsetX / image.clientWidth * width)));
  const [inputHeight, inputWidth] = latest.input.size;
  const [top, bottom] = unitSpan(layer.rf, 0, row, inputHeight);
  const [left, right] = unitSpan(layer.rf, 1, col, inputWidth);
  const span = {top, left, bottom, right};

  // On the drawing: model pixels -> source-canvas pixels (the view the server cut out) -> CSS pixels.
  const view = latest.input.view;
  const cssPerSourceX = canvas.clientWidth / view.source_width;
  const cssPerSourceY = canvas.clientHeight / view.source_height;
  placeBox(rfBox, canvas, span, {
    x0: view.left * cssPerSourceX, y0: view.top * cssPerSourceY,
    sx: view.width / inputWidth * cssPerSourceX, sy: view.height / inputHeight * cssPerSourceY,
    width: canvas.clientWidth, height: canvas.clientHeight,
  });
  // On the model's input picture: model pixels -> CSS pixels directly.
  placeBox(rfBoxInput, modelInput, span, {
    x0: 0, y0: 0, sx: modelInput.clientWidth / inputWidth, sy: modelInput.clientHeight / inputHeight,
    width: modelInput.clientWidth, height: modelInput.clientHeight,
  });
  showUnit(image, row, col, height, width);
  rfBox.dataset.layer = layer.name;
  rfBox.dataset.unit = `${row},${col}`;
  rfBox.dataset.span = `${top},${left},${bottom},${right}`;
  rfCaption.textContent = `${layer.name} (${layer.type}) channel ${image.dataset.channel}, unit (${row}, ${col}) ` +
    `sees input rows ${top}–${bottom}, cols ${left}–${right} of ${inputHeight}×${inputWidth} ` +
    `(receptive field ${layer.rf.rf[0]}×${layer.rf.rf[1]}, jump ${layer.rf.jump[0]})` +
    (layer.rf.approximate ? ", approximately" : "");
}

function showUnit(image, row, col, height, width) {
  if (unitBox === null) {
    unitBox = document.createElement("div");
    unitBox.className = "unit-box";
  }
  if (unitBox.parentElement !== image.parentElement) image.parentElement.appendChild(unitBox);
  const cellWidth = image.clientWidth / width;
  const cellHeight = image.clientHeight / height;
  unitBox.style.left = `${col * cellWidth - 1}px`;
  unitBox.style.top = `${row * cellHeight - 1}px`;
  unitBox.style.width = `${cellWidth + 2}px`;
  unitBox.style.height = `${cellHeight + 2}px`;
  unitBox.hidden = false;
}

function hideReceptiveField() {
  rfBox.hidden = true;
  rfBoxInput.hidden = true;
  if (unitBox !== null) unitBox.hidden = true;
  rfCaption.textContent = rfCaptionDefault;
}

// ------------------------------------------------------------------ model summary
function formatNumber(value) {
  return typeof value === "number" ? value.toLocaleString("en-US") : String(value ?? "");
}

function formatCell(value) {
  // shapes: [1, 6, 28, 28] -> 1×6×28×28; several outputs: [[...], [...]] -> "a, b"
  if (Array.isArray(value)) return value.map((item) => (Array.isArray(item) ? formatCell(item) : item)).join(
    value.some(Array.isArray) ? ", " : "×");
  return formatNumber(value);
}

async function loadModel() {
  try {
    const response = await fetch("/api/model");
    const model = await response.json();
    if (!response.ok) throw new Error(model.error || `HTTP ${response.status}`);
    const [height, width] = model.input.size;
    document.getElementById("model-name").textContent =
      `${model.name} · ${model.classes.length} classes (${model.classes.join(", ")}) · ` +
      `input ${model.input.channels}×${height}×${width}`;
    renderSummary(model.summary);
  } catch (error) {
    setStatus(`could not load the model summary: ${error.message}`, true);
  }
}

function renderSummary(summary) {
  const target = document.getElementById("summary");
  const layers = summary.layers || [];
  const columns = [["name", "layer"], ["type", "type"], ["output_shape", "output"], ["params", "params"],
    ["macs", "MACs"], ["rf", "RF"]].filter(([key]) => layers.some((layer) => key in layer));
  const table = document.createElement("table");
  const head = table.createTHead().insertRow();
  for (const [, title] of columns) {
    const cell = document.createElement("th");
    cell.textContent = title;
    head.appendChild(cell);
  }
  const body = table.createTBody();
  for (const layer of layers) {
    const row = body.insertRow();
    for (const [key] of columns) {
      const cell = row.insertCell();
      cell.textContent = formatCell(layer[key]);
      if (typeof layer[key] === "number") cell.className = "num";
    }
  }
  target.innerHTML = "";
  target.appendChild(table);
  if ("total_params" in summary) {
    const total = document.createElement("p");
    total.className = "total";
    total.textContent = `${formatNumber(summary.total_params)} parameters`;
    target.appendChild(total);
  }
}

clearCanvas();
loadModel();
