"use strict";
// The page of `seqlstm serve`: draw on #pad; while drawing, the drawing goes to api/predict as a
// PNG without traces (small and quick, for the live bars); when the pen lifts, once more with
// every gate traced, for the row-by-row view.

const LIVE_INTERVAL_MS = 150; // at most one live request per this interval while drawing
const PLAY_INTERVAL_MS = 140; // one row per tick when playing the reading
const ROW_HEIGHT_PX = 14; // per class in the per-row probability map
const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
const BLUE = [33, 102, 172], WHITE = [247, 247, 247], RED = [178, 24, 43];

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

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

const percent = (p) => `${(100 * p).toFixed(1)} %`;
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
  paint($("seen"), model.steps, model.steps, () => 0, () => [0, 0, 0]);
  $("row-marker").hidden = true;
  $("gates-card").hidden = true;
  status("");
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
    status(typeof answer.detail === "string" ? answer.detail : `The server refused the drawing (HTTP ${response.status}).`);
    return;
  }
  status("");
  const best = argmax(answer.probabilities);
  $("prediction").textContent = answer.prediction;
  $("prediction").classList.toggle("long", answer.prediction.length > 3);
  $("confidence").textContent = `${percent(answer.probabilities[best])} sure`;
  renderBars($("bars"), answer.probabilities);
  paint($("seen"), model.steps, model.steps, (x, y) => answer.image[y][x], (v) => [v, v, v]);
  if (full && last === null) {
    reading = answer;
    showReading();
  }
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
  const slider = $("step");
  slider.max = String(model.steps);
}

function showReading() {
  const traces = reading.traces;
  const card = $("gates-card");
  card.hidden = false;
  card.classList.remove("stale");
  paint($("step-probabilities"), model.steps, model.classes.length, (step, c) => traces.probabilities[step][c], viridis);
  drawGates();
  setStep(model.steps);
}

function drawGates() {
  const layer = Number($("layer").value) - 1;
  for (const canvas of $("gates").querySelectorAll("canvas")) {
    const values = reading.traces[canvas.dataset.name][layer]; // [step][unit]
    // Units in the order the server gives (by the step at which each is strongest), as `seqlstm explain` draws them.
    const order = reading.unit_order[layer];
    paint(canvas, model.steps, model.hidden_size, (step, column) => values[step][order[column]], colourFor(canvas.dataset.name, values));
  }
}

function setStep(step) {
  $("step").value = String(step);
  const after = reading.traces.probabilities[step - 1];
  const best = argmax(after);
  $("step-label").textContent = `After row ${step} of ${model.steps}: ${model.classes[best]} (${percent(after[best])})`;
  $("step-bars-title").textContent = `After row ${step}`;
  renderBars($("step-bars"), after);
  for (const marker of $("gates-card").querySelectorAll(".step-marker")) {
    marker.style.left = `${(100 * (step - 1)) / model.steps}%`;
    marker.style.width = `${100 / model.steps}%`;
  }
  const row = $("row-marker");
  row.hidden = false;
  row.style.top = `${(100 * (step - 1)) / model.steps}%`;
  row.style.height = `${100 / model.steps}%`;
}

function stop() {
  clearInterval(player);
  player = null;
  $("play").textContent = "Play";
}

function play() {
  if (player !== null) return stop();
  let step = Number($("step").value) >= model.steps ? 0 : Number($("step").value);
  $("play").textContent = "Pause";
  player = setInterval(() => {
    step += 1;
    setStep(step);
    if (step >= model.steps) stop();
  }, PLAY_INTERVAL_MS);
}

function describe() {
  const accuracy = model.test_accuracy == null ? "" : `, ${model.test_accuracy.toFixed(2)} % test accuracy`;
  return `${model.checkpoint}: ${model.cell} cell, ${model.num_layers} × ${model.hidden_size} units, ` +
    `trained on ${model.dataset}${accuracy}. Draw one digit below.`;
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
  buildGateView();
  clearPad();
  pad.addEventListener("pointerdown", penDown);
  pad.addEventListener("pointermove", penMove);
  pad.addEventListener("pointerup", penUp);
  pad.addEventListener("pointercancel", penUp);
  $("clear").addEventListener("click", clearPad);
  $("play").addEventListener("click", play);
  $("step").addEventListener("input", (event) => { stop(); setStep(Number(event.target.value)); });
  $("layer").addEventListener("change", drawGates);
  document.body.dataset.ready = "true";
}

start();
