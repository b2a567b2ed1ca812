// Class evidence on the drawing page: after each prediction app.js awaits window.onPrediction, which asks
// POST /api/explain for the top class's heat map (Grad-CAM, CAM, saliency or occlusion, computed by cnnkit on
// the server) and lays it over the drawing and over the picture the model saw.
"use strict";
(() => {
  const METHOD_NAMES = {cam: "CAM", gradcam: "Grad-CAM", saliency: "gradient saliency", occlusion: "occlusion"};
  const [select, overlay, overlayInput, caption, drawing, modelPicture] = ["evidence-method", "heat-overlay",
    "heat-overlay-input", "evidence-caption", "canvas", "model-input"].map((id) => document.getElementById(id));
  let lastImage = null;

  function hide(message = "") {
    overlay.hidden = true;
    overlayInput.hidden = true;
    caption.textContent = message;
  }

  function place(answer) {
    // The model saw the rectangle `view` of the canvas (in canvas pixels); the map covers exactly that rectangle.
    const view = answer.view;
    const sx = drawing.clientWidth / view.source_width;
    const sy = drawing.clientHeight / view.source_height;
    Object.assign(overlay.style, {
      left: `${drawing.offsetLeft + drawing.clientLeft + view.left * sx}px`,
      top: `${drawing.offsetTop + drawing.clientTop + view.top * sy}px`,
      width: `${view.width * sx}px`,
      height: `${view.height * sy}px`,
    });
    Object.assign(overlayInput.style, {width: `${modelPicture.clientWidth}px`,
                                       height: `${modelPicture.clientHeight}px`});
    for (const image of [overlay, overlayInput]) {
      image.src = answer.heatmap;
      image.hidden = false;
    }
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
    try {
      const response = await fetch("/api/explain", {
        method: "POST",
        headers: {"Content-Type": "application/json"},
        body: JSON.stringify({image, method: select.value}),
      });
      const answer = await response.json();
      if (!response.ok) throw new Error(answer.error || `HTTP ${response.status}`);
      // A cleared canvas or a method changed meanwhile makes this answer stale.
      if (lastImage === image && select.value === answer.method) place(answer);
    } catch (error) {
      hide(`evidence failed: ${error.message}`);
    }
  }

  window.onPrediction = (image) => {
    lastImage = image;
    return request(image);
  };
  select.addEventListener("change", () => request(lastImage));
  document.getElementById("clear").addEventListener("click", () => {
    lastImage = null;
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
  }).catch(() => hide("evidence methods unavailable"));
})();
