// The convolution demo: draws the numbers that the server computed with cnnkit's F.conv2d (GET /api/conv) or
// that `cnnkit viz conv-demo --out demo.html` embedded as window.CONV_DEMO, and steps through the outputs.
"use strict";

const STEP_MS = 1200;        // time per output position while playing
const RELOAD_DELAY_MS = 250; // wait this long after the last control change before asking the server
const FIELDS = ["width", "height", "depth", "filters", "kernel", "stride", "padding", "dilation", "seed"];
const embedded = window.CONV_DEMO || null;

let demo = null;
let step = 0;
let timer = null;
let playing = true;
let reloadTimer = null;

const volumes = document.getElementById("volumes");
const detail = document.getElementById("step-detail");
const errorLine = document.getElementById("conv-error");
const playButton = document.getElementById("play");

function format(value) {
  return Number.isInteger(value) ? String(value) : value.toFixed(2);
}

function signed(value) {
  return value < 0 ? `(${format(value)})` : format(value);
}

function table(rows, id, padding = 0) {
  const element = document.createElement("table");
  element.className = "grid";
  if (id) element.id = id;
  const height = rows.length;
  rows.forEach((values, row) => {
    const line = element.insertRow();
    const width = values.length;
    values.forEach((value, col) => {
      const cell = line.insertCell();
      cell.textContent = format(value);
      cell.dataset.row = row;
      cell.dataset.col = col;
      if (row < padding || col < padding || row >= height - padding || col >= width - padding) {
        cell.classList.add("pad");
      }
    });
  });
  return element;
}

function column(className, title, id) {
  const element = document.createElement("div");
  element.className = `column ${className}`;
  if (id) element.id = id;
  const heading = document.createElement("h3");
  heading.textContent = title;
  element.appendChild(heading);
  return element;
}

function slice(parent, name, grid) {
  const wrap = document.createElement("div");
  wrap.className = "slice";
  const label = document.createElement("div");
  label.className = "name";
  label.textContent = name;
  wrap.append(label, grid);
  parent.appendChild(wrap);
}

function render(answer) {
  demo = answer;
  const s = demo.settings;
  const [filters, outHeight, outWidth] = demo.output_shape;
  volumes.innerHTML = "";
  const input = column("input", `Input volume (+pad ${s.padding}) ${s.width}×${s.height}×${s.depth}`);
  demo.padded.forEach((rows, d) => slice(input, `x[:, :, ${d}]`, table(rows, `x-${d}`, s.padding)));
  volumes.appendChild(input);
  demo.weights.forEach((filter, k) => {
    const element = column("filter", `Filter W${k} (${s.kernel}×${s.kernel}×${s.depth})`, `filter-${k}`);
    filter.forEach((rows, d) => slice(element, `w${k}[:, :, ${d}]`, table(rows, `w${k}-${d}`)));
    slice(element, `bias b${k}`, table([[demo.bias[k]]], `b-${k}`));
    volumes.appendChild(element);
  });
  const output = column("output", `Output volume ${outWidth}×${outHeight}×${filters}`);
  demo.output.forEach((rows, k) => slice(output, `o[:, :, ${k}]`, table(rows, `o-${k}`)));
  volumes.appendChild(output);
  showFormula(demo.formula);
  errorLine.hidden = true;
  volumes.hidden = false;
  show(Math.min(step, demo.steps.length - 1));
}

function showFormula(formula) {
  document.getElementById("formula").textContent =
    `output height: ${formula.height.text}    output width: ${formula.width.text}`;
}

function cellOf(id, row, col) {
  return document.querySelector(`#${id} td[data-row="${row}"][data-col="${col}"]`);
}

function show(index) {
  step = (index + demo.steps.length) % demo.steps.length;
  const current = demo.steps[step];
  const s = demo.settings;
  document.querySelectorAll(".hl").forEach((cell) => cell.classList.remove("hl"));
  document.querySelectorAll(".filter.active").forEach((element) => element.classList.remove("active"));
  for (let d = 0; d < s.depth; d += 1) {
    for (let i = 0; i < s.kernel; i += 1) {
      for (let j = 0; j < s.kernel; j += 1) {
        cellOf(`x-${d}`, current.top + i * s.dilation, current.left + j * s.dilation).classList.add("hl");
      }
    }
  }
  document.getElementById(`filter-${current.k}`).classList.add("active");
  cellOf(`o-${current.k}`, current.row, current.col).classList.add("hl");
  Object.assign(document.body.dataset, {step, k: current.k, row: current.row, col: current.col});
  document.getElementById("position").textContent =
    `output o[${current.row}, ${current.col}, ${current.k}]: step ${step + 1} of ${demo.steps.length}`;
  const lines = current.products.map((products, d) => {
    const terms = [];
    const window = [];
    products.forEach((row, i) => row.forEach((value, j) => {
      const x = demo.padded[d][current.top + i * s.dilation][current.left + j * s.dilation];
      window.push(`${signed(x)}·${signed(demo.weights[current.k][d][i][j])}`);
      terms.push(value);
    }));
    const partial = terms.reduce((total, value) => total + value, 0);
    return `x[:, :, ${d}] · w${current.k}[:, :, ${d}] = ${window.join(" + ")} = ${format(partial)}`;
  });
  lines.push(`sum of products = ${format(current.sum)};  + bias b${current.k} = ${format(current.bias)};  ` +
    `o[${current.row}, ${current.col}, ${current.k}] = ${format(current.value)}`);
  detail.textContent = lines.join("\n");
}

function play(on) {
  clearInterval(timer);
  playing = on;
  timer = on ? setInterval(() => { if (demo) show(step + 1); }, STEP_MS) : null;
  playButton.textContent = on ? "pause" : "play";
}

function showError(message, formula) {
  clearInterval(timer);
  volumes.hidden = true;
  volumes.innerHTML = "";
  detail.textContent = "";
  demo = null;
  if (formula) showFormula(formula);
  errorLine.textContent = message;
  errorLine.hidden = false;
}

function settingsQuery() {
  const query = new URLSearchParams();
  for (const name of FIELDS) query.set(name, document.querySelector(`input[name="${name}"]`).value);
  return query;
}

async function load() {
  try {
    const response = await fetch(`/api/conv?${settingsQuery()}`);
    const answer = await response.json();
    if (!response.ok) {
      showError(answer.error || `HTTP ${response.status}`, answer.formula);
      return;
    }
    step = 0;
    render(answer);
    play(playing);
  } catch (error) {
    showError(`could not load the demo: ${error.message}`);
  }
}

function fillControls(settings) {
  for (const name of FIELDS) document.querySelector(`input[name="${name}"]`).value = settings[name];
}

playButton.addEventListener("click", () => {
  if (demo) play(!playing);
});
document.getElementById("prev").addEventListener("click", () => {
  if (!demo) return;
  play(false);
  show(step - 1);
});
document.getElementById("next").addEventListener("click", () => {
  if (!demo) return;
  play(false);
  show(step + 1);
});

if (embedded) {
  // A file written by `cnnkit viz conv-demo`: no server to recompute, so the controls only show the settings.
  fillControls(embedded.settings);
  document.querySelectorAll("#controls input").forEach((input) => { input.disabled = true; });
  render(embedded);
  play(true);
} else {
  const query = new URLSearchParams(window.location.search);
  fetch("/api/conv/defaults").then((response) => response.json()).then((defaults) => {
    fillControls(Object.fromEntries(FIELDS.map((name) => [name, query.get(name) ?? defaults[name]])));
    document.querySelectorAll("#controls input").forEach((input) => input.addEventListener("input", () => {
      clearTimeout(reloadTimer);
      reloadTimer = setTimeout(load, RELOAD_DELAY_MS);
    }));
    load();
  });
}
