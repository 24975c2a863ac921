// unembed demo page: plain JavaScript, no build step, no external resources.
// Talks to the API of the same origin: /api/models, /api/encode, /api/invert (Server-Sent Events over fetch),
// /api/identify (the known-value attack).
"use strict";

const EXAMPLES = [
  "The quick brown fox jumps over the lazy dog.",
  "My bank account number is stored in the customer database.",
  "The patient was prescribed antibiotics for a chest infection.",
  "We will meet at the train station at nine tomorrow morning.",
  "Embeddings leak information about the text they came from.",
];
const MAX_CANDIDATES = 10000; // the API's limits (server/schemas.py), checked here to explain them beside the input
const MAX_CANDIDATE_CHARS = 300;
const STEP_MS = 160; // pace of the live animation: fast servers still show every step

const $ = (id) => document.getElementById(id);
const state = {
  models: [],
  vector: null, // the last embedding shown in the vector panel
  steps: [], // StepEvent objects of the current inversion
  shown: 0, // how many steps the live animation has drawn
  final: null,
  original: "",
  controller: null, // AbortController of the running request
  timer: null,
  playing: null,
};

// ---- small helpers ---------------------------------------------------------------------------------

function setStatus(message, isError = false) {
  const el = $("status");
  el.textContent = message;
  el.classList.toggle("error", isError);
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function currentModel() {
  return state.models.find((m) => m.name === $("model").value) || state.models[0];
}

async function apiError(response) {
  let message = `${response.status} ${response.statusText}`;
  const type = response.headers.get("content-type") || "";
  if (type.includes("application/json")) {
    const body = await response.json();
    if (body && body.error) message = `${response.status}: ${body.error}`;
  }
  if (response.status === 503) {
    const retry = response.headers.get("retry-after");
    message += retry ? ` (try again in ${retry} s)` : "";
  }
  return new Error(message);
}

async function postJSON(path, payload, signal) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(payload),
    signal,
  });
  if (!response.ok) throw await apiError(response);
  return response;
}

// ---- models and controls -------------------------------------------------------------------------

async function loadModels() {
  const response = await fetch("/api/models");
  if (!response.ok) throw await apiError(response);
  state.models = (await response.json()).models;
  const select = $("model");
  select.replaceChildren(...state.models.map((m) => el("option", "", m.name)));
  select.addEventListener("change", applyModel);
  applyModel();
}

function applyModel() {
  const m = currentModel();
  const strategy = $("strategy");
  strategy.replaceChildren(...m.strategies.map((s) => el("option", "", s)));
  strategy.value = m.default_strategy;
  const steps = $("steps");
  steps.max = String(m.seq_len);
  steps.value = String(Math.min(m.default_num_steps, m.seq_len));
  buildGrid(m.seq_len);
  setStatus(`Model ${m.name}: encoder ${m.encoder}, ${m.dim} dimensions, ${m.seq_len} token positions.`);
}

function inversionOptions() {
  const m = currentModel();
  const steps = Number($("steps").value); // Number, not parseInt: "2.5" is refused, not read as 2
  const seed = Number($("seed").value);
  if (!Number.isInteger(steps) || steps < 1 || steps > m.seq_len) {
    throw new Error(`Steps must be a whole number from 1 to ${m.seq_len}.`);
  }
  if (!Number.isInteger(seed) || seed < 0) throw new Error("Seed must be a whole number, 0 or more.");
  return { model: m.name, strategy: $("strategy").value, num_steps: steps, seed };
}

// ---- the vector panel -----------------------------------------------------------------------------

async function embed(text, signal) {
  const response = await postJSON("/api/encode", { text, model: currentModel().name }, signal);
  const result = await response.json();
  showVector(result.embedding, `${result.tokens.length} tokens${result.truncated ? " (cut to fit)" : ""}`);
  return result;
}

function showVector(vector, note) {
  state.vector = vector;
  const norm = Math.sqrt(vector.reduce((s, x) => s + x * x, 0));
  const max = vector.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
  $("vector-summary").textContent =
    `${vector.length} dimensions · norm ${norm.toFixed(4)} · largest |component| ${max.toFixed(4)}` +
    (note ? ` · ${note}` : "");
  plotVector(vector);
}

function plotVector(vector) {
  const canvas = $("vector-plot");
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || canvas.width;
  const height = canvas.clientHeight || canvas.height;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  const mid = height / 2;
  ctx.strokeStyle = "#c5cad1";
  ctx.beginPath();
  ctx.moveTo(0, mid);
  ctx.lineTo(width, mid);
  ctx.stroke();
  const max = vector.reduce((m, x) => Math.max(m, Math.abs(x)), 1e-12);
  const bar = width / vector.length;
  vector.forEach((x, i) => {
    const h = (x / max) * (mid - 4);
    ctx.fillStyle = x >= 0 ? "#2f6fde" : "#c63b3b";
    ctx.fillRect(i * bar, h >= 0 ? mid - h : mid, Math.max(bar - 0.3, 0.6), Math.abs(h));
  });
}

function parsePastedVector() {
  const raw = $("vector-input").value.trim();
  if (!raw) throw new Error("Paste a JSON array of numbers first.");
  let parsed;
  try {
    parsed = JSON.parse(raw);
  } catch (err) {
    throw new Error(`That is not valid JSON: ${err.message}`);
  }
  if (!Array.isArray(parsed) || !parsed.every((x) => typeof x === "number" && Number.isFinite(x))) {
    throw new Error("The vector must be a JSON array of finite numbers.");
  }
  const dim = currentModel().dim;
  if (parsed.length !== dim) throw new Error(`The vector has ${parsed.length} numbers; this model needs ${dim}.`);
  return parsed;
}

// ---- the token grid ---------------------------------------------------------------------------------

function buildGrid(seqLen) {
  const grid = $("grid");
  const cells = [];
  for (let i = 0; i < seqLen; i++) {
    const cell = el("div", "cell masked");
    cell.append(el("span", "pos", String(i)), el("span", "tok", "[MASK]"), el("span", "bar"));
    cells.push(cell);
  }
  grid.replaceChildren(...cells);
  grid.dataset.step = "0";
}

function confidenceColour(c) {
  return `hsl(${Math.round(120 * Math.max(0, Math.min(1, c)))}, 65%, 80%)`;
}

// What a revealed position holds: the end-of-sentence token, padding after it, or a word piece.
function special(ids, i, m) {
  if (i === ids.indexOf(m.eos_id)) return "eos";
  if (ids[i] === m.pad_id || ids[i] === m.eos_id) return "pad"; // a later EOS pads too (pad = eos in some tokenizers)
  return "";
}

function drawStep(index) {
  const ev = state.steps[index];
  const grid = $("grid");
  if (!ev) return;
  const m = currentModel();
  if (grid.children.length !== ev.tokens.length) buildGrid(ev.tokens.length);
  ev.tokens.forEach((token, i) => {
    const cell = grid.children[i];
    const kind = ev.states[i];
    const conf = ev.confidence[i];
    const hidden = kind === "masked" || kind === "remasked";
    const sp = hidden ? "" : special(ev.ids, i, m);
    cell.className = `cell ${kind}${sp ? ` ${sp}` : ""}`;
    cell.querySelector(".tok").textContent = hidden ? "[MASK]" : sp === "eos" ? "END" : sp === "pad" ? "pad" : token;
    cell.style.backgroundColor = hidden || sp ? "" : confidenceColour(conf);
    cell.querySelector(".bar").style.width = `${Math.round(100 * conf)}%`;
    const what = sp === "eos" ? `end of sentence (${token})` : sp === "pad" ? `padding after the end (${token})` : token;
    cell.title = `position ${i}: ${hidden ? kind : `${kind}, ${what}`}, confidence ${conf.toFixed(3)}`;
  });
  grid.dataset.step = String(ev.step);
  const counts = ev.states.reduce((acc, k) => ((acc[k] = (acc[k] || 0) + 1), acc), {});
  // The grid shows the state after this pass: its noise level is the next pass's t, and 0 after the last.
  const next = state.steps[index + 1];
  const after = ev.step === ev.num_steps ? 0 : next ? next.t : null;
  const level = after === null ? `pass at t = ${ev.t.toFixed(3)}` : `t = ${after === 0 ? "0" : after.toFixed(3)}`;
  $("step-label").textContent =
    `Step ${ev.step} of ${ev.num_steps} · ${level} · ` +
    `${counts.new || 0} new, ${counts.kept || 0} kept, ${counts.masked || 0} masked` +
    (counts.remasked ? `, ${counts.remasked} re-masked` : "") + ` · ${ev.elapsed_ms.toFixed(1)} ms`;
  const slider = $("slider");
  slider.max = String(Math.max(ev.num_steps, 1));
  slider.value = String(index + 1);
}

// Stop the animation and empty the result panel (a new run starts, or the input changed).
function clearRun() {
  clearInterval(state.timer);
  clearInterval(state.playing);
  state.timer = state.playing = null;
  state.steps = [];
  state.shown = 0;
  state.final = null;
  $("slider").disabled = true;
  $("play").disabled = true;
  for (const id of ["final-text", "original-text", "order-text"]) $(id).replaceChildren();
  $("word-summary").textContent = "";
  $("metrics").textContent = "";
}

// The input changed: what the panels show no longer belongs to it.
function clearStale() {
  if (state.controller) state.controller.abort();
  state.controller = null;
  clearRun();
  delete $("final-text").dataset.state;
  state.vector = null;
  $("vector-summary").textContent = "Embed a sentence to see its vector.";
  const canvas = $("vector-plot");
  canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
  $("grid").replaceChildren();
  $("step-label").textContent = "Invert to watch the decoder reveal tokens step by step.";
  setStatus("");
  vectorStatus("");
  clearIdentified();
}

function vectorStatus(message, isError = false) {
  const node = $("vector-status");
  node.textContent = message;
  node.classList.toggle("error", isError);
}

function resetRun() {
  clearRun();
  $("final-text").dataset.state = "running";
  buildGrid(currentModel().seq_len);
}

// Live animation: draw the next received step every STEP_MS; show the result after the last one.
function tick() {
  if (state.shown < state.steps.length) {
    drawStep(state.shown);
    state.shown += 1;
    return;
  }
  if (state.final) {
    clearInterval(state.timer);
    state.timer = null;
    showFinal();
  }
}

// ---- the result -------------------------------------------------------------------------------------

function words(text) {
  return text.split(/\s+/).filter(Boolean);
}

function norm(word) {
  return word.toLowerCase().replace(/[^\p{L}\p{N}]/gu, "");
}

// Word-level longest common subsequence: which words of a and b are shared, in order.
function lcsMarks(a, b) {
  const n = a.length;
  const m = b.length;
  const table = Array.from({ length: n + 1 }, () => new Uint16Array(m + 1));
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      table[i][j] = norm(a[i]) === norm(b[j]) ? table[i + 1][j + 1] + 1 : Math.max(table[i + 1][j], table[i][j + 1]);
    }
  }
  const inA = new Array(n).fill(false);
  const inB = new Array(m).fill(false);
  let i = 0;
  let j = 0;
  while (i < n && j < m) {
    if (norm(a[i]) === norm(b[j])) {
      inA[i++] = true;
      inB[j++] = true;
    } else if (table[i + 1][j] >= table[i][j + 1]) {
      i++;
    } else {
      j++;
    }
  }
  return [inA, inB];
}

// Bag of words: a word counts as recovered wherever it appears (each occurrence credits one).
// Today's decoders often recover the words of a sentence out of order, and that is still a leak.
function bagMarks(a, b) {
  const credit = (words, pool) => {
    const left = new Map();
    pool.forEach((w) => left.set(norm(w), (left.get(norm(w)) || 0) + 1));
    return words.map((w) => {
      const n = left.get(norm(w)) || 0;
      if (n > 0) left.set(norm(w), n - 1);
      return n > 0;
    });
  };
  return [credit(a, b), credit(b, a)];
}

function renderWords(target, list, classes) {
  const nodes = [];
  list.forEach((word, i) => {
    if (i > 0) nodes.push(document.createTextNode(" "));
    nodes.push(el("span", classes[i], word));
  });
  target.replaceChildren(...nodes);
}

function showFinal() {
  const f = state.final;
  const original = words(state.original);
  const recon = words(f.text);
  if (f.input_text !== null) {
    const [foundA, foundB] = bagMarks(original, recon);
    const [orderA] = lcsMarks(original, recon);
    renderWords($("original-text"), original, foundA.map((ok) => (ok ? "same" : "del")));
    renderWords($("final-text"), recon, foundB.map((ok) => (ok ? "same" : "ins")));
    renderWords($("order-text"), original, orderA.map((inOrder, i) => (inOrder ? "same" : foundA[i] ? "moved" : "del")));
    const n = original.length;
    const anywhere = foundA.filter(Boolean).length;
    const inOrder = orderA.filter(Boolean).length;
    $("word-summary").textContent =
      `Words recovered: ${anywhere} of ${n} anywhere in the reconstruction (bag of words), ` +
      `${inOrder} of ${n} in the original order.`;
  } else {
    $("original-text").textContent = "(a pasted vector: no original text)";
    $("final-text").textContent = f.text;
    $("order-text").replaceChildren();
    $("word-summary").textContent = "";
  }
  if (!f.text) $("final-text").textContent = "(empty)";
  $("final-text").dataset.state = "done";
  const t = f.timings;
  const acc = f.token_accuracy === null ? "" : ` · token accuracy ${(100 * f.token_accuracy).toFixed(1)}%`;
  $("metrics").textContent =
    `cosine of the reconstruction's embedding to the target ${f.cosine.toFixed(3)}${acc} · ` +
    `${f.strategy}, ${f.num_steps} steps, seed ${f.seed} · denoise ${t.denoise_ms.toFixed(0)} ms, ` +
    `total ${t.total_ms.toFixed(0)} ms` + (f.batch_size > 1 ? ` · batched with ${f.batch_size - 1} other(s)` : "");
  const slider = $("slider");
  slider.max = String(state.steps.length);
  slider.value = String(state.steps.length);
  slider.disabled = state.steps.length < 2;
  $("play").disabled = state.steps.length < 2;
  setStatus("Done. Drag the slider to replay the steps.");
}

// ---- streaming an inversion ---------------------------------------------------------------------

function parseEvent(block) {
  let name = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) name = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
  }
  return data.length ? { name, data: JSON.parse(data.join("\n")) } : null;
}

function handleEvent(ev) {
  if (ev.name === "step") {
    state.steps.push(ev.data);
  } else if (ev.name === "final") {
    state.final = ev.data;
  } else if (ev.name === "error") {
    throw new Error(`The server failed during decoding: ${ev.data.message}`);
  }
}

async function streamInversion(payload, signal) {
  const response = await postJSON("/api/invert", payload, signal);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const ev = parseEvent(buffer.slice(0, cut));
      buffer = buffer.slice(cut + 2);
      if (ev) handleEvent(ev);
    }
  }
  if (!state.final) throw new Error("The stream ended before the final result.");
}

async function runInversion(source) {
  if (state.controller) state.controller.abort();
  const controller = new AbortController();
  state.controller = controller;
  let options;
  try {
    options = inversionOptions();
  } catch (err) {
    setStatus(err.message, true);
    return;
  }
  resetRun();
  state.timer = setInterval(tick, STEP_MS);
  try {
    if (source.text !== undefined) {
      state.original = source.text;
      setStatus("Embedding…");
      await embed(source.text, controller.signal);
      setStatus("Inverting the vector…");
      await streamInversion({ ...options, text: source.text }, controller.signal);
    } else {
      state.original = "";
      showVector(source.embedding, "pasted");
      setStatus("Inverting the pasted vector…");
      await streamInversion({ ...options, embedding: source.embedding }, controller.signal);
    }
  } catch (err) {
    if (err.name === "AbortError") return; // a newer request replaced this one; it reports its own status
    clearInterval(state.timer);
    state.timer = null;
    $("final-text").dataset.state = "error";
    setStatus(err.message, true);
  }
}

// ---- the known-value attack ----------------------------------------------------------------------------

function identifyStatus(message, isError = false) {
  const node = $("identify-status");
  node.textContent = message;
  node.classList.toggle("error", isError);
}

function clearIdentified() {
  $("identify-table").hidden = true;
  $("identify-table").querySelector("tbody").replaceChildren();
  identifyStatus("");
}

function identifyRequest() {
  const body = { model: currentModel() ? currentModel().name : undefined, top_k: 10 };
  if (state.vector) body.embedding = state.vector;
  else if ($("text").value.trim()) body.text = $("text").value;
  else throw new Error("Embed or invert a sentence first: the candidates are ranked for its vector.");
  const builtin = $("builtin").value;
  if (builtin) {
    body.builtin = builtin;
    return body;
  }
  const lines = $("candidates").value.split("\n").map((x) => x.trim()).filter((x) => x);
  if (!lines.length) throw new Error("Paste at least one candidate (one per line) or pick a built-in list.");
  if (lines.length > MAX_CANDIDATES) throw new Error(`At most ${MAX_CANDIDATES.toLocaleString()} candidates, got ${lines.length.toLocaleString()}.`);
  const long = lines.findIndex((x) => x.length > MAX_CANDIDATE_CHARS);
  if (long >= 0) throw new Error(`Candidate ${long + 1} has ${lines[long].length} characters; at most ${MAX_CANDIDATE_CHARS} characters each.`);
  body.candidates = lines;
  body.type = $("candidate-type").value.trim() || "value";
  return body;
}

async function runIdentify() {
  clearIdentified();
  let body;
  try {
    body = identifyRequest();
  } catch (err) {
    identifyStatus(err.message, true);
    return;
  }
  identifyStatus(body.builtin ? "Ranking (a built-in list is embedded once, then cached)…" : "Ranking…");
  try {
    const result = await (await postJSON("/api/identify", body)).json();
    const rows = result.candidates.map((c) => {
      const tr = el("tr");
      tr.append(el("td", "", c.value), el("td", "", c.type), el("td", "", c.score.toFixed(2)));
      const pct = 100 * c.probability;
      tr.append(el("td", "", pct > 0 && pct < 0.1 ? "< 0.1%" : `${pct.toFixed(1)}%`));
      return tr;
    });
    $("identify-table").querySelector("tbody").replaceChildren(...rows);
    $("identify-table").hidden = false;
    const how = result.scorer === "whitened" ? "the score fitted for this encoder (whitened)" : "raw cosine";
    identifyStatus(`${result.list_size.toLocaleString()} candidates from ${result.source}, ranked by ${how}.`);
  } catch (err) {
    identifyStatus(err.message, true);
  }
}

// ---- wiring -----------------------------------------------------------------------------------------

function textOrComplain() {
  const text = $("text").value;
  if (!text.trim()) {
    setStatus("Type a sentence first (or pick an example).", true);
    return null;
  }
  return text;
}

function replayTo(value) {
  clearInterval(state.playing);
  state.playing = null;
  drawStep(value - 1);
}

function play() {
  clearInterval(state.playing);
  let i = 0;
  state.playing = setInterval(() => {
    drawStep(i);
    i += 1;
    if (i >= state.steps.length) {
      clearInterval(state.playing);
      state.playing = null;
    }
  }, STEP_MS * 2);
}

function wire() {
  const examples = $("examples");
  EXAMPLES.forEach((sentence) => {
    const button = el("button", "", sentence);
    button.type = "button";
    button.addEventListener("click", () => {
      $("text").value = sentence;
    });
    examples.append(button);
  });
  $("embed").addEventListener("click", async () => {
    const text = textOrComplain();
    if (text === null) return;
    try {
      setStatus("Embedding…");
      await embed(text);
      setStatus("Embedded. Invert to recover the text from this vector.");
    } catch (err) {
      setStatus(err.message, true);
    }
  });
  $("invert").addEventListener("click", () => {
    const text = textOrComplain();
    if (text !== null) runInversion({ text });
  });
  $("invert-vector").addEventListener("click", () => {
    let embedding;
    try {
      embedding = parsePastedVector();
    } catch (err) {
      vectorStatus(err.message, true);
      return;
    }
    vectorStatus("");
    runInversion({ embedding });
  });
  $("vector-input").addEventListener("input", () => clearStale());
  $("copy-vector").addEventListener("click", () => {
    if (!state.vector) {
      setStatus("Embed a sentence first.", true);
      return;
    }
    $("vector-input").value = JSON.stringify(state.vector.map((x) => Number(x.toFixed(6))));
  });
  $("identify").addEventListener("click", runIdentify);
  $("text").addEventListener("input", () => clearStale());
  $("candidates").addEventListener("input", clearIdentified);
  $("model").addEventListener("change", () => clearStale());
  $("builtin").addEventListener("change", clearIdentified);
  $("slider").addEventListener("input", (e) => replayTo(parseInt(e.target.value, 10)));
  $("play").addEventListener("click", play);
}

window.addEventListener("DOMContentLoaded", () => {
  wire();
  loadModels().catch((err) => setStatus(`Cannot list the models: ${err.message}`, true));
});
