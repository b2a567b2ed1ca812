// Class evidence on the drawing page: after each prediction, ask POST /api/explain for the top class's heat map
// (Grad-CAM, CAM, saliency or occlusion, computed by cnnkit on the server) and lay it over the drawing.
"use strict";
(() => {
  const METHOD_NAMES = {cam: "CAM", gradcam: "Grad-CAM", saliency: "gradient saliency", occlusion: "occlusion"};
  const select = document.getElementById("evidence-method");
  const overlay = document.getElementById("heat-overlay");
  const overlayInput = document.getElementById("heat-overlay-input");
  const caption = document.getElementById("evidence-caption");
  const drawing = document.getElementById("canvas");
  const modelPicture = document.getElementById("model-input");
  let busy = false;
  let queued = null;
  let lastImage = null;

  function hide() {
    overlay.hidden = true;
    overlayInput.hidden = true;
    caption.textContent = "";
  }

  function place(answer) {
    // The model saw the rectangle `view` of the canvas (in canvas pixels); the map covers exactly that rectangle.
    const view = answer.view;
    const sx = drawing.clientWidth / view.source_width;
    const sy = drawing.clientHeight / view.source_height;
    overlay.src = answer.heatmap;
    overlay.style.left = `${drawing.offsetLeft + drawing.clientLeft + view.left * sx}px`;
    overlay.style.top = `${drawing.offsetTop + drawing.clientTop + view.top * sy}px`;
    overlay.style.width = `${view.width * sx}px`;
    overlay.style.height = `${view.height * sy}px`;
    overlay.hidden = false;
    overlayInput.src = answer.heatmap;
    overlayInput.style.width = `${modelPicture.clientWidth}px`;
    overlayInput.style.height = `${modelPicture.clientHeight}px`;
    overlayInput.hidden = false;
    overlay.dataset.method = answer.method;
    overlay.dataset.label = answer.label;
    caption.textContent = `${METHOD_NAMES[answer.method] || answer.method} evidence for class ${answer.label}` +
      (answer.layer ? ` (layer ${answer.layer})` : "");
  }

  async function request(image) {
    if (select.value === "off" || image === null) {
      hide();
      return;
    }
    if (busy) {                // one request at a time; the newest drawing follows when it returns
      queued = image;
      return;
    }
    busy = true;
    try {
      const response = await fetch("/api/explain", {
        method: "POST",
        headers: {"Content-Type": "application/json"},
        body: JSON.stringify({image, method: select.value}),
      });
      const answer = await response.json();
      if (!response.ok) throw new Error(answer.error || `HTTP ${response.status}`);
      if (lastImage !== null && select.value === answer.method) place(answer);
    } catch (error) {
      hide();
      caption.textContent = `evidence failed: ${error.message}`;
    } finally {
      busy = false;
      if (queued !== null) {
        const next = queued;
        queued = null;
        request(next);
      }
    }
  }

  window.onPrediction = (image) => {
    lastImage = image;
    request(image);
  };
  select.addEventListener("change", () => request(lastImage));
  document.getElementById("clear").addEventListener("click", () => {
    lastImage = null;
    queued = null;
    hide();
  });

  fetch("/api/model").then((response) => response.json()).then((model) => {
    const methods = (model.explain && model.explain.methods) || [];
    for (const method of methods) {
      const option = document.createElement("option");
      option.value = method;
      option.textContent = METHOD_NAMES[method] || method;
      select.appendChild(option);
    }
    if (methods.includes("gradcam")) select.value = "gradcam";
  }).catch(() => { caption.textContent = "evidence methods unavailable"; });
})();
