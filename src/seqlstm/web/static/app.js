"use strict";
// The page of `seqlstm serve`. An image model: draw on #pad; while drawing, the drawing goes to
// api/predict as a PNG without traces (small and quick, for the live bars); when the pen lifts,
// once more with every gate traced and the attributions, for the step-by-step view. A sequence
// model: one of its test sequences (api/samples/N), a pasted line or an uploaded file goes to
// api/predict once, with the traces.

const LIVE_INTERVAL_MS = 150; // at most one live request per this interval while drawing
const PLAY_INTERVAL_MS = 140; // one row per tick when playing the reading
const ROW_HEIGHT_PX = 14; // per class in the per-row probability map
const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
const BLUE = [33, 102, 172], WHITE = [247, 247, 247], RED = [178, 24, 43];
const SHOWN_FEATURES = 8; // a sequence's features drawn, those with the most attribution
const TITLES = { mnist: "Draw a digit and watch the model read it", "fashion-mnist": "Draw a piece of clothing and watch the model read it" };

const $ = (id) => document.getElementById(id);
const pad = $("pad");
const ink = pad.getContext("2d");

let model = null; // what GET api/model says
let reading = null; // the last answer with traces
let inked = false;
let last = null; // the pen's last point while it is down
let generation = 0; // bumped by Clear: answers about an earlier drawing are dropped
let busy = false;
let wanted = null; // null, "live" or "full": the request to send when the one in flight is done
let player = null;
let steps = 0; // steps of the reading shown

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

const percent = (p) => `${(100 * p).toFixed(1)} %`;
// The largest magnitude in a nested array (a spread would overflow the call stack on long sequences).
const largest = (values) => values.flat().reduce((most, v) => Math.max(most, Math.abs(v)), 0);
// FastAPI's own validation errors give `detail` as a list of problems; ours, as one sentence.
const problem = (answer, status) => (typeof answer.detail === "string" ? answer.detail
  : Array.isArray(answer.detail) ? answer.detail.map((d) => d.msg).join("; ") : `HTTP ${status}`);
const argmax = (values) => values.reduce((best, v, i) => (v > values[best] ? i : best), 0);
const status = (text) => { $("status").textContent = text; };

function mix(a, b, t) {
  return a.map((x, i) => Math.round(x + (b[i] - x) * t));
}

function viridis(value) {
  const t = Math.min(Math.max(value, 0), 1) * (VIRIDIS.length - 1);
  const i = Math.min(Math.floor(t), VIRIDIS.length - 2);
  return mix(VIRIDIS[i], VIRIDIS[i + 1], t - i);
}

function diverging(limit) {
  return (value) => {
    const t = Math.min(Math.max(value / limit, -1), 1);
    return t < 0 ? mix(WHITE, BLUE, -t) : mix(WHITE, RED, t);
  };
}

// Gates are sigmoids in (0, 1); candidates and LSTM/GRU hidden states tanh-bounded in (-1, 1);
// the cell state (and the seed cell's hidden state) is unbounded, so its scale is the 99th
// percentile of its magnitudes: a few large units would otherwise wash out all the rest.
function colourFor(name, values) {
  if (model.gates.includes(name)) return viridis;
  if (name === "candidate" || (name === "hidden" && model.cell !== "seed")) return diverging(1);
  const magnitudes = values.flat().map(Math.abs).sort((a, b) => a - b);
  return diverging(magnitudes[Math.floor(0.99 * (magnitudes.length - 1))] || 1);
}

// Paints `canvas` one pixel per cell: `cols` x `rows`, coloured by colour(valueAt(col, row)).
function paint(canvas, cols, rows, valueAt, colour) {
  canvas.width = cols;
  canvas.height = rows;
  const context = canvas.getContext("2d");
  const image = context.createImageData(cols, rows);
  for (let row = 0; row < rows; row++) {
    for (let col = 0; col < cols; col++) {
      const [r, g, b] = colour(valueAt(col, row));
      image.data.set([r, g, b, 255], 4 * (row * cols + col));
    }
  }
  context.putImageData(image, 0, 0);
}

function renderBars(container, values) {
  if (container.children.length !== model.classes.length) {
    container.replaceChildren(...model.classes.map((name) => {
      const bar = el("div", "bar");
      const track = el("div", "track");
      track.append(el("div", "fill"));
      bar.append(el("span", "label", name), track, el("span", "value"));
      return bar;
    }));
  }
  const best = values ? argmax(values) : -1;
  [...container.children].forEach((bar, i) => {
    bar.classList.toggle("top", i === best);
    bar.querySelector(".fill").style.width = values ? `${100 * values[i]}%` : "0";
    bar.querySelector(".value").textContent = values ? percent(values[i]) : "";
  });
}

function clearPad() {
  ink.fillStyle = "#fff";
  ink.fillRect(0, 0, pad.width, pad.height);
  inked = false;
  reading = null;
  generation++;
  stop();
  $("prediction").textContent = "–";
  $("confidence").textContent = "";
  renderBars($("bars"), null);
  paint($("seen"), 28, 28, () => 0, () => [0, 0, 0]);
  $("row-marker").hidden = true;
  $("attribution-view").hidden = true;
  $("gates-card").hidden = true;
  status("");
}

// An uploaded picture goes on the pad, fitted and centred on white, and is read like a drawing:
// the server prepares it as it prepares any picture.
async function uploadPicture(file) {
  let picture;
  try {
    picture = await createImageBitmap(file);
  } catch (error) {
    status(`${file.name} is no picture this browser can read.`);
    return;
  }
  clearPad();
  const scale = Math.min(pad.width / picture.width, pad.height / picture.height);
  const width = picture.width * scale, height = picture.height * scale;
  ink.drawImage(picture, (pad.width - width) / 2, (pad.height - height) / 2, width, height);
  inked = true;
  want("full");
}

function pointOf(event) {
  const box = pad.getBoundingClientRect();
  return { x: (event.clientX - box.left) * pad.width / box.width, y: (event.clientY - box.top) * pad.height / box.height };
}

function line(from, to) {
  ink.strokeStyle = "#111";
  ink.lineWidth = pad.width / 15;
  ink.lineCap = "round";
  ink.lineJoin = "round";
  ink.beginPath();
  ink.moveTo(from.x, from.y);
  ink.lineTo(to.x, to.y);
  ink.stroke();
  inked = true;
}

function penDown(event) {
  event.preventDefault();
  pad.setPointerCapture(event.pointerId);
  last = pointOf(event);
  line(last, last);
  want("live");
}

function penMove(event) {
  if (last === null) return;
  const coalesced = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
  for (const e of coalesced.length ? coalesced : [event]) {
    const point = pointOf(e);
    line(last, point);
    last = point;
  }
  want("live");
}

function penUp() {
  if (last === null) return;
  last = null;
  want("full");
}

// One request at a time: what is wanted meanwhile is sent when it is done, a full request
// (with traces) taking precedence over a live one; live requests are spaced LIVE_INTERVAL_MS apart.
function want(kind) {
  if (!inked) return;
  if (wanted !== "full") wanted = kind;
  if (reading) $("gates-card").classList.add("stale");
  pump();
}

async function pump() {
  if (busy || wanted === null) return;
  const full = wanted === "full";
  wanted = null;
  busy = true;
  const started = performance.now();
  try {
    await ask(full);
  } catch (error) {
    status(`The server did not answer (${error.message}).`);
  } finally {
    busy = false;
    setTimeout(pump, full ? 0 : Math.max(0, LIVE_INTERVAL_MS - (performance.now() - started)));
  }
}

async function ask(full) {
  const mine = generation;
  const drawing = await new Promise((resolve) => pad.toBlob(resolve, "image/png"));
  const response = await fetch(`api/predict?traces=${full}`, {
    method: "POST",
    headers: { "Content-Type": "image/png" },
    body: drawing,
  });
  const answer = await response.json();
  if (mine !== generation) return;
  if (!response.ok) {
    status(problem(answer, response.status));
    return;
  }
  status("");
  showAnswer(answer);
  paint($("seen"), 28, 28, (x, y) => answer.image[y][x], (v) => [v, v, v]);
  if (full && last === null) {
    reading = answer;
    showReading();
  }
}

function showAnswer(answer) {
  const best = argmax(answer.probabilities);
  $("prediction").textContent = answer.prediction;
  $("prediction").classList.toggle("long", answer.prediction.length > 3);
  $("confidence").textContent = `${percent(answer.probabilities[best])} sure`;
  renderBars($("bars"), answer.probabilities);
}

// A sequence model's reading: one request with the traces, whatever the sequence came from.
async function readSequence(body, contentType, note) {
  const mine = ++generation;
  stop();
  $("sequence-status").textContent = "Reading…";
  let answer, response;
  try {
    response = await fetch("api/predict?traces=true", { method: "POST", headers: { "Content-Type": contentType }, body });
    answer = await response.json();
  } catch (error) {
    if (mine === generation) $("sequence-status").textContent = `No answer from the server (${error.message}).`;
    return;
  }
  if (mine !== generation) return;
  if (!response.ok) {
    $("sequence-status").textContent = problem(answer, response.status);
    return;
  }
  $("sequence-status").textContent = `${note}: ${answer.inputs.length} steps of ${model.features} feature${model.features > 1 ? "s" : ""}.`;
  showAnswer(answer);
  reading = answer;
  drawTrace(answer);
  showReading();
}

async function readSample(index) {
  let response, sample;
  try {
    response = await fetch(`api/samples/${index}`);
    sample = await response.json();
  } catch (error) {
    $("sequence-status").textContent = `No answer from the server (${error.message}).`;
    return;
  }
  if (!response.ok) {
    $("sequence-status").textContent = problem(sample, response.status);
    return;
  }
  $("sample").value = String(index);
  await readSequence(JSON.stringify(sample.values), "application/json", `Test sequence ${index}, true class ${sample.label}`);
}

// The first line of values in a .ts file (after @data) or a .csv file.
function firstCase(text, name) {
  const lines = text.split(/\r?\n/).map((line) => line.trim());
  const data = name.toLowerCase().endsWith(".ts") ? lines.findIndex((line) => line.toLowerCase() === "@data") + 1 : 0;
  return lines.slice(data).find((line) => line && !line.startsWith("#") && !line.startsWith("@")) || "";
}

async function readUpload(file) {
  if (file.name.toLowerCase().endsWith(".npy")) {
    await readSequence(await file.arrayBuffer(), "application/octet-stream", file.name);
  } else {
    await readSequence(firstCase(await file.text(), file.name), "text/plain", `${file.name}, its first sequence`);
  }
}

// Each feature (at most SHOWN_FEATURES, those with the most attribution) as a line over a band
// coloured by each step's attribution: red for the answer, blue against it.
function drawTrace(answer) {
  const canvas = $("trace");
  const values = answer.inputs; // [step][feature]
  const shares = answer.attribution ? answer.attribution.values : null;
  const total = (k) => (shares ? shares.reduce((sum, step) => sum + Math.abs(step[k]), 0) : 0);
  const features = [...Array(model.features).keys()].sort((a, b) => total(b) - total(a)).slice(0, SHOWN_FEATURES).sort((a, b) => a - b);
  const band = 80;
  canvas.width = 600;
  canvas.height = band * features.length;
  const context = canvas.getContext("2d");
  context.fillStyle = "#fff";
  context.fillRect(0, 0, canvas.width, canvas.height);
  const width = canvas.width / values.length;
  const limit = shares ? largest(shares) || 1 : 1;
  const colour = diverging(limit);
  features.forEach((k, row) => {
    if (shares) {
      shares.forEach((step, t) => {
        const [r, g, b] = colour(step[k]);
        context.fillStyle = `rgb(${r},${g},${b})`;
        context.fillRect(t * width, row * band, Math.ceil(width), band);
      });
    }
    const line = values.map((step) => step[k]);
    const low = line.reduce((a, b) => Math.min(a, b)), span = line.reduce((a, b) => Math.max(a, b)) - low || 1;
    context.strokeStyle = "#111";
    context.lineWidth = 1.5;
    context.beginPath();
    line.forEach((v, t) => {
      const x = (t + 0.5) * width, y = row * band + band - 6 - ((v - low) / span) * (band - 12);
      if (t === 0) context.moveTo(x, y); else context.lineTo(x, y);
    });
    context.stroke();
  });
  canvas.hidden = false;
  canvas.dataset.features = features.join(",");
  $("attribution-note").hidden = !shares;
}

// An image's attributions as a map beside it.
function drawAttributionMap(attribution) {
  const values = attribution.values; // [row][column]
  const limit = largest(values) || 1;
  paint($("attribution"), values[0].length, values.length, (x, y) => values[y][x], diverging(limit));
  $("attribution-view").hidden = false;
  $("attribution-note").hidden = false;
}

function buildGateView() {
  const labels = $("class-labels");
  labels.replaceChildren(...model.classes.map((name) => el("span", "", name)));
  labels.style.gridTemplateRows = `repeat(${model.classes.length}, ${ROW_HEIGHT_PX}px)`;
  $("step-probabilities").style.height = `${model.classes.length * ROW_HEIGHT_PX}px`;
  $("gates").replaceChildren(...model.traced.map((name) => {
    const figure = el("figure", "panel");
    const heat = el("div", "heat");
    const canvas = el("canvas");
    canvas.dataset.name = name;
    heat.append(canvas, el("div", "step-marker"));
    figure.append(el("figcaption", "", model.titles[name] || name), heat);
    return figure;
  }));
  const layers = $("layer");
  layers.replaceChildren(...Array.from({ length: model.num_layers }, (_, k) => el("option", "", String(k + 1))));
  layers.value = String(model.num_layers);
  $("layer-picker").hidden = model.num_layers < 2;
}

function showReading() {
  const traces = reading.traces;
  steps = traces.probabilities.length;
  $("step").max = String(steps);
  const card = $("gates-card");
  card.hidden = false;
  card.classList.remove("stale");
  paint($("step-probabilities"), steps, model.classes.length, (step, c) => traces.probabilities[step][c], viridis);
  drawGates();
  setStep(steps);
  if (reading.attribution && model.input === "images") drawAttributionMap(reading.attribution);
}

function drawGates() {
  const layer = Number($("layer").value) - 1;
  for (const canvas of $("gates").querySelectorAll("canvas")) {
    const values = reading.traces[canvas.dataset.name][layer]; // [step][unit]
    // Units in the order the server gives (by the step at which each is strongest), as `seqlstm explain` draws them.
    const order = reading.unit_order[layer];
    paint(canvas, steps, model.hidden_size, (step, column) => values[step][order[column]], colourFor(canvas.dataset.name, values));
  }
}

function setStep(step) {
  $("step").value = String(step);
  const after = reading.traces.probabilities[step - 1];
  const best = argmax(after);
  $("step-label").textContent = `After ${model.step_name} ${step} of ${steps}: ${model.classes[best]} (${percent(after[best])})`;
  $("step-bars-title").textContent = `After ${model.step_name} ${step}`;
  renderBars($("step-bars"), after);
  for (const marker of $("gates-card").querySelectorAll(".step-marker")) {
    marker.style.left = `${(100 * (step - 1)) / steps}%`;
    marker.style.width = `${100 / steps}%`;
  }
  if (model.view === "rows") { // the image's row being read
    const row = $("row-marker");
    row.hidden = false;
    row.style.top = `${(100 * (step - 1)) / steps}%`;
    row.style.height = `${100 / steps}%`;
  }
}

function stop() {
  clearInterval(player);
  player = null;
  $("play").textContent = "Play";
}

function play() {
  if (player !== null) return stop();
  let step = Number($("step").value) >= steps ? 0 : Number($("step").value);
  $("play").textContent = "Pause";
  // Long sequences (784 pixels) play in about the time 28 rows take.
  const stride = Math.max(1, Math.round(steps / 28));
  player = setInterval(() => {
    step = Math.min(step + stride, steps);
    setStep(step);
    if (step >= steps) stop();
  }, PLAY_INTERVAL_MS);
}

function describe() {
  const accuracy = model.test_accuracy == null ? "" : `, ${model.test_accuracy.toFixed(2)} % test accuracy`;
  const what = model.input === "images"
    ? `Draw below; it is read one ${model.step_name} per step.`
    : `${model.features} feature${model.features > 1 ? "s" : ""} per step; ` +
      (model.test_samples ? `${model.test_samples} test sequences to try.` : "paste or upload a sequence.");
  return `${model.checkpoint}: ${model.cell} cell, ${model.num_layers} × ${model.hidden_size} units, ` +
    `trained on ${model.dataset}${accuracy}. ${what}`;
}

async function start() {
  try {
    const response = await fetch("api/model");
    model = await response.json();
  } catch (error) {
    $("model").textContent = `Cannot reach the server (${error.message}); is \`seqlstm serve\` running?`;
    return;
  }
  $("model").textContent = describe();
  $("title").textContent = model.input === "images" ? TITLES[model.dataset] || "Draw and watch the model read it"
    : "Give a sequence and watch the model read it";
  $("probabilities-title").textContent = `Class probabilities after each ${model.step_name}`;
  buildGateView();
  if (model.input === "images") {
    $("draw-card").hidden = false;
    $("image-view").hidden = false;
    $("image-note").hidden = false;
    clearPad();
    pad.addEventListener("pointerdown", penDown);
    pad.addEventListener("pointermove", penMove);
    pad.addEventListener("pointerup", penUp);
    pad.addEventListener("pointercancel", penUp);
    $("clear").addEventListener("click", clearPad);
    $("image-upload").addEventListener("change", (event) => { if (event.target.files[0]) uploadPicture(event.target.files[0]); });
  } else {
    $("sequence-card").hidden = false;
    $("baseline").textContent = "the training data's mean";
    renderBars($("bars"), null);
    $("sample").max = String(Math.max(model.test_samples - 1, 0));
    $("read-sample").disabled = $("random-sample").disabled = model.test_samples === 0;
    $("read-sample").addEventListener("click", () => readSample(Number($("sample").value)));
    $("random-sample").addEventListener("click", () => readSample(Math.floor(Math.random() * model.test_samples)));
    $("read-pasted").addEventListener("click", () => readSequence($("pasted").value, "text/plain", "The pasted sequence"));
    $("upload").addEventListener("change", (event) => { if (event.target.files[0]) readUpload(event.target.files[0]); });
  }
  $("play").addEventListener("click", play);
  $("step").addEventListener("input", (event) => { stop(); setStep(Number(event.target.value)); });
  $("layer").addEventListener("change", drawGates);
  document.body.dataset.ready = "true";
}

start();
