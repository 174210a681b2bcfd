// The digit playground: draw on a canvas or upload an image, send it to the
// prediction API exactly as any client would, and show what the model read.
// Everything the page shows comes from this service's own API; text from responses
// is only ever set with textContent, never parsed as HTML.
"use strict";

(() => {
  const PREDICT_URL = "/api/v1/predict?include_input=true";
  const INFO_URL = "/api/info";
  // Long enough to wait for the next stroke of a 4 or a 7, short enough to feel live.
  const PREDICT_DELAY_MS = 350;
  const PAPER = "#ffffff";
  const INK = "#000000";
  const DIGITS = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];

  const ERROR_MESSAGES = {
    no_digit_found:
      "No digit found. Draw a digit on the canvas, or upload a picture of one.",
    upload_too_large: "That file is too large for the service.",
    image_too_large: "That image has too many pixels for the service.",
    unsupported_media_type:
      "That file is not an image the service can read. Use a PNG, JPEG, WEBP, " +
      "BMP, GIF or TIFF image.",
    undecodable_image: "The image could not be read; the file may be damaged.",
    empty_upload: "The file is empty.",
    model_unavailable: "No model is loaded right now. Try again in a moment.",
    overloaded: "The service is busy. Try again in a moment.",
  };

  const page = {
    playground: document.getElementById("playground"),
    canvas: document.getElementById("canvas"),
    dropZone: document.getElementById("drop-zone"),
    brushSize: document.getElementById("brush-size"),
    brushSizeValue: document.getElementById("brush-size-value"),
    predictButton: document.getElementById("predict-button"),
    undoButton: document.getElementById("undo-button"),
    clearButton: document.getElementById("clear-button"),
    uploadButton: document.getElementById("upload-button"),
    uploadInput: document.getElementById("upload-input"),
    status: document.getElementById("status"),
    result: document.getElementById("result"),
    placeholder: document.getElementById("result-placeholder"),
    prediction: document.getElementById("prediction"),
    digit: document.getElementById("prediction-digit"),
    confidence: document.getElementById("prediction-confidence"),
    modelInput: document.getElementById("model-input"),
    bars: document.getElementById("probability-bars"),
    meta: document.getElementById("result-meta"),
    modelInfo: document.getElementById("model-info"),
  };
  const context = page.canvas.getContext("2d");

  // Each stroke is {width, points: [{x, y}]} in canvas pixels; Undo redraws the rest.
  const strokes = [];
  let activeStroke = null;
  let activePointerId = null;
  let predictTimer = null;
  let inFlight = null;
  let requestSerial = 0;
  let shownModelVersion = null;

  // ---- Drawing -------------------------------------------------------------

  function paintPaper() {
    context.fillStyle = PAPER;
    context.fillRect(0, 0, page.canvas.width, page.canvas.height);
  }

  function paintStroke(stroke) {
    context.strokeStyle = INK;
    context.fillStyle = INK;
    context.lineWidth = stroke.width;
    context.lineCap = "round";
    context.lineJoin = "round";
    const [first, ...rest] = stroke.points;
    if (rest.length === 0) {
      context.beginPath();
      context.arc(first.x, first.y, stroke.width / 2, 0, 2 * Math.PI);
      context.fill();
      return;
    }
    context.beginPath();
    context.moveTo(first.x, first.y);
    for (const point of rest) {
      context.lineTo(point.x, point.y);
    }
    context.stroke();
  }

  function repaint() {
    paintPaper();
    strokes.forEach(paintStroke);
    if (activeStroke !== null) {
      paintStroke(activeStroke);
    }
    updateButtons();
  }

  function canvasPoint(event) {
    // The canvas keeps a fixed pixel size while CSS scales it to the screen.
    const box = page.canvas.getBoundingClientRect();
    const scaleX = page.canvas.width / page.canvas.clientWidth;
    const scaleY = page.canvas.height / page.canvas.clientHeight;
    return {
      x: (event.clientX - box.left - page.canvas.clientLeft) * scaleX,
      y: (event.clientY - box.top - page.canvas.clientTop) * scaleY,
    };
  }

  function startStroke(event) {
    const isMainButton = event.pointerType !== "mouse" || event.button === 0;
    if (activePointerId !== null || !isMainButton) {
      return;
    }
    event.preventDefault();
    cancelScheduledPrediction();
    page.canvas.setPointerCapture(event.pointerId);
    activePointerId = event.pointerId;
    activeStroke = { width: Number(page.brushSize.value), points: [] };
    extendStroke(event);
  }

  function extendStroke(event) {
    if (event.pointerId !== activePointerId) {
      return;
    }
    event.preventDefault();
    // Coalesced events keep fast strokes smooth where the browser offers them.
    const samples =
      event.type === "pointermove" && event.getCoalescedEvents
        ? event.getCoalescedEvents()
        : [];
    for (const sample of samples.length > 0 ? samples : [event]) {
      activeStroke.points.push(canvasPoint(sample));
    }
    repaint();
  }

  function finishStroke(event) {
    if (event.pointerId !== activePointerId) {
      return;
    }
    strokes.push(activeStroke);
    activeStroke = null;
    activePointerId = null;
    repaint();
    schedulePrediction();
  }

  function undoStroke() {
    if (strokes.length === 0) {
      return;
    }
    strokes.pop();
    repaint();
    if (strokes.length === 0) {
      // Back to an empty canvas: show nothing rather than a stale reading.
      resetResult();
      return;
    }
    schedulePrediction();
  }

  function clearCanvas() {
    strokes.length = 0;
    activeStroke = null;
    activePointerId = null;
    repaint();
    resetResult();
  }

  function updateButtons() {
    // aria-disabled rather than disabled: the button stays reachable with Tab.
    page.undoButton.setAttribute("aria-disabled", String(strokes.length === 0));
  }

  // ---- Talking to the API --------------------------------------------------

  function schedulePrediction() {
    cancelScheduledPrediction();
    predictTimer = window.setTimeout(predictDrawing, PREDICT_DELAY_MS);
  }

  function cancelScheduledPrediction() {
    if (predictTimer !== null) {
      window.clearTimeout(predictTimer);
      predictTimer = null;
    }
  }

  function abortRequest() {
    cancelScheduledPrediction();
    if (inFlight !== null) {
      inFlight.abort();
      inFlight = null;
    }
    requestSerial += 1;
  }

  function predictDrawing() {
    predictTimer = null;
    page.canvas.toBlob((blob) => {
      if (blob === null) {
        showError("The drawing could not be turned into an image.", "");
        return;
      }
      sendImage(blob, "drawing.png");
    }, "image/png");
  }

  function predictUpload(file) {
    // The result then describes the upload, so the canvas must not show a drawing.
    strokes.length = 0;
    repaint();
    sendImage(file, file.name || "upload");
  }

  async function sendImage(blob, filename) {
    abortRequest();
    const serial = requestSerial;
    const controller = new AbortController();
    inFlight = controller;
    page.result.setAttribute("aria-busy", "true");

    const body = new FormData();
    body.append("file", blob, filename);
    let response;
    let payload;
    try {
      response = await fetch(PREDICT_URL, {
        method: "POST",
        body,
        signal: controller.signal,
        headers: { Accept: "application/json" },
      });
      payload = await readJson(response);
    } catch (error) {
      if (serial === requestSerial) {
        finishRequest();
        if (error.name !== "AbortError") {
          showError(
            "Could not reach the service. Check the connection and try again.",
            "",
          );
        }
      }
      return;
    }
    if (serial !== requestSerial) {
      return; // A newer drawing or upload has replaced this one.
    }
    finishRequest();
    if (response.ok && payload !== null) {
      showPrediction(payload);
    } else {
      showApiError(response.status, payload);
    }
  }

  async function readJson(response) {
    try {
      return await response.json();
    } catch (error) {
      if (error.name === "AbortError") {
        throw error;
      }
      return null; // Not JSON: a proxy's error page, for example.
    }
  }

  function finishRequest() {
    inFlight = null;
    page.result.removeAttribute("aria-busy");
  }

  // ---- Showing results -----------------------------------------------------

  function buildBars() {
    for (const digit of DIGITS) {
      const item = document.createElement("li");
      const label = document.createElement("span");
      label.className = "bar-label";
      label.textContent = String(digit);
      const track = document.createElement("span");
      track.className = "bar-track";
      track.setAttribute("aria-hidden", "true");
      const fill = document.createElement("span");
      fill.className = "bar-fill";
      track.append(fill);
      const value = document.createElement("span");
      value.className = "bar-value";
      item.append(label, track, value);
      item.dataset.digit = String(digit);
      page.bars.append(item);
    }
  }

  function formatPercent(probability) {
    // One decimal would round a near-certain 0.9997 up to a false "100.0%".
    if (probability > 0 && probability < 0.0005) {
      return "<0.1%";
    }
    if (probability < 1 && probability >= 0.9995) {
      return ">99.9%";
    }
    return `${(probability * 100).toFixed(1)}%`;
  }

  function showPrediction(payload) {
    const probabilities = Array.isArray(payload.probabilities)
      ? payload.probabilities
      : [];
    page.digit.textContent = String(payload.prediction);
    page.confidence.textContent = `${formatPercent(payload.confidence)} confident`;
    page.bars.querySelectorAll("li").forEach((item, digit) => {
      const probability = Number(probabilities[digit] ?? 0);
      item.classList.toggle("top", digit === payload.prediction);
      item.querySelector(".bar-fill").style.width = `${probability * 100}%`;
      item.querySelector(".bar-value").textContent = formatPercent(probability);
    });
    if (typeof payload.input_image === "string" && payload.input_image !== "") {
      page.modelInput.src = `data:image/png;base64,${payload.input_image}`;
      page.modelInput.parentElement.hidden = false;
    } else {
      page.modelInput.removeAttribute("src");
      page.modelInput.parentElement.hidden = true;
    }
    page.meta.textContent = describeTiming(payload);

    page.placeholder.hidden = true;
    page.prediction.hidden = false;
    page.bars.hidden = false;
    page.result.dataset.state = "shown";
    setStatus(
      "info",
      `The model reads ${payload.prediction} ` +
        `with ${formatPercent(payload.confidence)} confidence.`,
      "",
    );
    if (payload.model_version && payload.model_version !== shownModelVersion) {
      loadModelInfo(); // The service switched models since the page loaded.
    }
  }

  function describeTiming(payload) {
    const parts = [];
    if (payload.model_version) {
      parts.push(`Model ${payload.model_version}`);
    }
    if (typeof payload.processing_time_ms === "number") {
      parts.push(`${payload.processing_time_ms.toFixed(1)} ms on the server`);
    }
    return parts.join(" · ");
  }

  function showApiError(status, payload) {
    const code = payload && typeof payload.code === "string" ? payload.code : "";
    const message =
      ERROR_MESSAGES[code] ?? `The service could not read the image (HTTP ${status}).`;
    const parts = [];
    if (payload && typeof payload.detail === "string") {
      parts.push(`Service: ${payload.detail}`);
    }
    if (payload && typeof payload.request_id === "string") {
      parts.push(`Request ${payload.request_id}`);
    }
    showError(message, parts.join(" · "));
  }

  function showError(message, detail) {
    hideResult();
    setStatus("error", message, detail);
  }

  function hideResult() {
    page.placeholder.hidden = false;
    page.prediction.hidden = true;
    page.bars.hidden = true;
    page.digit.textContent = "";
    page.confidence.textContent = "";
    page.meta.textContent = "";
    page.modelInput.removeAttribute("src");
    page.result.dataset.state = "empty";
  }

  function resetResult() {
    abortRequest();
    finishRequest();
    hideResult();
    setStatus("idle", "", "");
  }

  function setStatus(kind, message, detail) {
    page.status.dataset.kind = kind;
    page.status.replaceChildren();
    if (message === "") {
      return;
    }
    const headline = document.createElement("span");
    headline.className = "status-message";
    headline.textContent = message;
    page.status.append(headline);
    if (detail !== "") {
      const small = document.createElement("span");
      small.className = "status-detail";
      small.textContent = detail;
      page.status.append(small);
    }
  }

  // ---- The active model ----------------------------------------------------

  async function loadModelInfo() {
    let info;
    try {
      const response = await fetch(INFO_URL, { headers: { Accept: "application/json" } });
      info = response.ok ? await response.json() : null;
    } catch (error) {
      info = null;
    }
    showModelInfo(info);
  }

  function showModelInfo(info) {
    if (info === null || typeof info !== "object") {
      page.modelInfo.textContent = "Model details are unavailable.";
      page.modelInfo.dataset.state = "unavailable";
      return;
    }
    const model = info.model;
    if (!model || typeof model.model_version !== "string") {
      page.modelInfo.textContent = "No model is loaded yet; predictions are unavailable.";
      page.modelInfo.dataset.state = "no-model";
      return;
    }
    shownModelVersion = model.model_version;
    const accuracy = model.card?.metrics?.test_accuracy;
    const parts = [`Model ${model.model_version}`];
    if (typeof accuracy === "number") {
      parts.push(`test accuracy ${(accuracy * 100).toFixed(2)}%`);
    }
    page.modelInfo.textContent = parts.join(" · ");
    page.modelInfo.dataset.state = "ready";
  }

  // ---- Uploads and drag-and-drop --------------------------------------------

  function hasFiles(event) {
    return Array.from(event.dataTransfer?.types ?? []).includes("Files");
  }

  function acceptDrag(event) {
    if (!hasFiles(event)) {
      return;
    }
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
    page.dropZone.classList.add("dragging");
  }

  function endDrag(event) {
    // Leaving one element for another inside the page is not the end of a drag.
    if (event.type === "dragleave" && event.relatedTarget !== null) {
      return;
    }
    page.dropZone.classList.remove("dragging");
  }

  function dropFile(event) {
    if (!hasFiles(event)) {
      return;
    }
    event.preventDefault();
    page.dropZone.classList.remove("dragging");
    const [file] = event.dataTransfer.files;
    if (file) {
      predictUpload(file);
    }
  }

  function chooseFile() {
    const [file] = page.uploadInput.files;
    if (file) {
      predictUpload(file);
    }
    // Choosing the same file again must still fire a change event.
    page.uploadInput.value = "";
  }

  // ---- Wiring ------------------------------------------------------------

  function showBrushSize() {
    page.brushSizeValue.textContent = `${page.brushSize.value} px`;
  }

  function start() {
    buildBars();
    paintPaper();
    updateButtons();
    showBrushSize();

    page.canvas.addEventListener("pointerdown", startStroke);
    page.canvas.addEventListener("pointermove", extendStroke);
    page.canvas.addEventListener("pointerup", finishStroke);
    page.canvas.addEventListener("pointercancel", finishStroke);
    page.brushSize.addEventListener("input", showBrushSize);
    page.predictButton.addEventListener("click", () => {
      cancelScheduledPrediction();
      predictDrawing();
    });
    page.undoButton.addEventListener("click", undoStroke);
    page.clearButton.addEventListener("click", clearCanvas);
    page.uploadButton.addEventListener("click", () => page.uploadInput.click());
    page.uploadInput.addEventListener("change", chooseFile);
    document.addEventListener("dragenter", acceptDrag);
    document.addEventListener("dragover", acceptDrag);
    document.addEventListener("dragleave", endDrag);
    document.addEventListener("dragend", endDrag);
    document.addEventListener("drop", dropFile);

    page.playground.hidden = false;
    loadModelInfo();
  }

  start();
})();
