// The playground and operator dashboard: plain JS, no framework, nothing from another origin.
// It is a client of the API like any other: every call goes through api(), errors are shown as
// the error envelope's message, charts are drawn as SVG.
"use strict";

const POLL_MS = 3000;           // operator panel refresh
const JOB_POLL_MS = 1000;       // animation job progress refresh
const MEMORY_SAMPLES = 120;     // points kept in the memory chart (6 minutes at POLL_MS)
const RECORD_SLICE_MS = 250;    // the recorder hands over audio this often (the button counts the pieces)
const FALLBACK_FORMATS = ["mp3", "opus", "flac", "wav", "pcm"];  // when /openapi.json does not list them
const STORE = { apiKey: "speech-api.api-key", adminKey: "speech-api.admin-key" };
const SVG_NS = "http://www.w3.org/2000/svg";

const $ = (id) => document.getElementById(id);

// --- talking to the API --------------------------------------------------------------------------
class ApiError extends Error {}

// A message as a sentence: capital first letter, closing full stop. The one place messages are shaped.
function sentence(text) {
  const s = String(text || "").trim();
  if (!s) return "Something went wrong.";
  const first = s[0].toUpperCase() + s.slice(1);
  return /[.!?]$/.test(first) ? first : first + ".";
}

function keyHeaders(admin) {
  const key = (admin && $("admin-key").value.trim()) || $("api-key").value.trim();
  return key ? { "x-api-key": key } : {};
}

async function errorFrom(response) {
  let message = `the server answered ${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    message = (body.error && body.error.message) || body.message || message;
  } catch (_) { /* not JSON: keep the status line */ }
  const retry = response.headers.get("Retry-After");
  const text = sentence(message);
  return new ApiError(retry ? `${text} Retry in ${retry} s.` : text);
}

async function api(path, { method = "GET", headers = {}, body, admin = false } = {}) {
  let response;
  try {
    response = await fetch(path, { method, body, headers: { ...keyHeaders(admin), ...headers } });
  } catch (_) {
    throw new ApiError("The server could not be reached. Check that it is running.");
  }
  if (!response.ok) throw await errorFrom(response);
  return response;
}

function showError(id, error) {
  const el = $(id);
  el.textContent = error instanceof ApiError ? error.message : sentence(error && error.message);
  el.hidden = false;
}

function clearError(id) {
  $(id).hidden = true;
  $(id).textContent = "";
}

function setStatus(id, text) { $(id).textContent = text; }

// The OpenAPI document, when the server has one: it says which formats and endpoints exist.
let apiDocument;
function openApi() {
  apiDocument = apiDocument || fetch("/openapi.json").then((r) => (r.ok ? r.json() : null)).catch(() => null);
  return apiDocument;
}

function resolveRef(doc, schema) {
  let s = schema;
  while (s && s.$ref) s = s.$ref.split("/").slice(1).reduce((node, part) => node && node[part], doc);
  return s;
}

function enumOf(doc, schema) {  // an enum, through $ref, anyOf/oneOf/allOf and arrays
  const s = resolveRef(doc, schema);
  if (!s) return null;
  if (Array.isArray(s.enum)) return s.enum;
  for (const key of ["anyOf", "oneOf", "allOf"]) {
    for (const part of s[key] || []) {
      const found = enumOf(doc, part);
      if (found) return found;
    }
  }
  return s.items ? enumOf(doc, s.items) : null;
}

function requestField(doc, path, field) {
  const content = doc && doc.paths && doc.paths[path] && doc.paths[path].post &&
    doc.paths[path].post.requestBody && doc.paths[path].post.requestBody.content;
  const schema = resolveRef(doc, content && content["application/json"] && content["application/json"].schema);
  return schema && schema.properties ? schema.properties[field] : null;
}

// --- small SVG charts -----------------------------------------------------------------------------
function svg(tag, attrs = {}, text) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  return el;
}

// Drawn in CSS pixels of the chart's own width, so text stays legible from 360 px up.
function widthOf(chart, fallback) {
  return Math.max(240, Math.round(chart.getBoundingClientRect().width) || fallback);
}

function reset(chart, width, height) {
  chart.replaceChildren();
  chart.setAttribute("viewBox", `0 0 ${width} ${height}`);
  chart.setAttribute("preserveAspectRatio", "xMidYMid meet");
}

const languageNames = typeof Intl.DisplayNames === "function" ? new Intl.DisplayNames(["en"], { type: "language" }) : null;
function languageName(code) {
  try { return (languageNames && languageNames.of(code)) || code; } catch (_) { return code; }
}

function drawBars(chart, rows) {  // rows: [{language, probability}]
  const rowH = 26, labelW = 110, width = Math.min(widthOf(chart, 310), 520), barW = width - labelW - 50;
  reset(chart, width, rows.length * rowH + 4);
  rows.forEach((row, i) => {
    const y = i * rowH + 4;
    chart.append(svg("text", { x: labelW - 6, y: y + 15, class: "label", "text-anchor": "end" },
      `${languageName(row.language)} (${row.language})`));
    chart.append(svg("rect", { x: labelW, y, width: barW, height: rowH - 8, class: "track" }));
    chart.append(svg("rect", { x: labelW, y, width: Math.max(1, row.probability * barW), height: rowH - 8,
      class: "bar", "data-language": row.language }));
    chart.append(svg("text", { x: labelW + barW + 6, y: y + 15, class: "value" }, `${(100 * row.probability).toFixed(1)}%`));
  });
}

function arcPoint(t, r) {  // t in 0..1 along a half circle from the left to the right
  return [100 - r * Math.cos(Math.PI * t), 100 - r * Math.sin(Math.PI * t)];
}

function drawGauge(chart, score, threshold) {
  reset(chart, 200, 120);
  const r = 80;
  const arc = (from, to, cls) => {
    const [x0, y0] = arcPoint(from, r), [x1, y1] = arcPoint(to, r);
    chart.append(svg("path", { d: `M ${x0} ${y0} A ${r} ${r} 0 0 1 ${x1} ${y1}`, class: cls }));
  };
  arc(0, 1, "gauge-track");
  if (score > 0) arc(0, Math.min(score, 0.9999), score >= threshold ? "gauge-value high" : "gauge-value");
  const [tx0, ty0] = arcPoint(threshold, r - 16), [tx1, ty1] = arcPoint(threshold, r + 14);
  chart.append(svg("line", { x1: tx0, y1: ty0, x2: tx1, y2: ty1, class: "threshold" }));
  chart.append(svg("text", { x: 100, y: 92, "text-anchor": "middle", class: "gauge-score" }, score.toFixed(2)));
  chart.append(svg("text", { x: 100, y: 112, "text-anchor": "middle", class: "label" }, `threshold ${threshold.toFixed(2)}`));
}

// A line over evenly spaced samples, with horizontal reference lines [{value, cls, label}].
function drawLine(chart, values, { max, lines = [], unit = "", h = 120 }) {
  const w = widthOf(chart, 320);
  reset(chart, w, h);
  const left = 4, right = 60, top = 6, bottom = 6;
  const yMax = Math.max(max, ...values, ...lines.map((l) => l.value)) * 1.05 || 1;
  const x = (i) => left + (values.length > 1 ? (i * (w - left - right)) / (values.length - 1) : 0);
  const y = (v) => top + (h - top - bottom) * (1 - v / yMax);
  chart.append(svg("rect", { x: left, y: top, width: w - left - right, height: h - top - bottom, class: "plot" }));
  let lastLabelY = -Infinity;
  for (const line of lines.slice().sort((a, b) => b.value - a.value)) {  // top first; labels never overlap
    chart.append(svg("line", { x1: left, x2: w - right, y1: y(line.value), y2: y(line.value), class: line.cls }));
    const labelY = Math.max(y(line.value) + 4, lastLabelY + 12);
    chart.append(svg("text", { x: w - right + 4, y: labelY, class: "label" }, `${line.label}${unit}`));
    lastLabelY = labelY;
  }
  if (values.length) {
    const points = values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
    chart.append(svg("polyline", { points, class: "series" }));
    const last = values.length - 1;
    chart.append(svg("circle", { cx: x(last), cy: y(values[last]), r: 2.5, class: "series-dot" }));
  }
}

// --- audio helpers --------------------------------------------------------------------------------
function wavFromPcm16(pcm, rate) {  // 16-bit little-endian mono samples -> a WAV file
  const header = new DataView(new ArrayBuffer(44));
  const text = (offset, s) => [...s].forEach((c, i) => header.setUint8(offset + i, c.charCodeAt(0)));
  text(0, "RIFF"); header.setUint32(4, 36 + pcm.byteLength, true); text(8, "WAVE");
  text(12, "fmt "); header.setUint32(16, 16, true); header.setUint16(20, 1, true); header.setUint16(22, 1, true);
  header.setUint32(24, rate, true); header.setUint32(28, rate * 2, true); header.setUint16(32, 2, true);
  header.setUint16(34, 16, true); text(36, "data"); header.setUint32(40, pcm.byteLength, true);
  return new Blob([header.buffer, pcm], { type: "audio/wav" });
}

function wavFromFloat(samples, rate) {
  const pcm = new Int16Array(samples.length);
  for (let i = 0; i < samples.length; i++) pcm[i] = Math.max(-1, Math.min(1, samples[i])) * 32767;
  return wavFromPcm16(pcm.buffer, rate);
}

function appendChunk(buffer, chunk) {
  return new Promise((resolve, reject) => {
    buffer.addEventListener("updateend", resolve, { once: true });
    buffer.addEventListener("error", () => reject(new Error("the browser could not decode the audio stream")), { once: true });
    buffer.appendBuffer(chunk);
  });
}

// MP3 through MediaSource: playback starts with the first piece while the server synthesises the rest.
async function playStreaming(response, audio) {
  const source = new MediaSource();
  audio.src = URL.createObjectURL(source);
  await new Promise((resolve) => source.addEventListener("sourceopen", resolve, { once: true }));
  const buffer = source.addSourceBuffer("audio/mpeg");
  buffer.mode = "sequence";  // each piece is its own MP3 stream: play them one after another
  const reader = response.body.getReader();
  const parts = [];
  // How many pieces had arrived when playback began: fewer than all = it began before synthesis ended.
  audio.addEventListener("playing", () => { audio.dataset.playingAfterChunks = String(parts.length); }, { once: true });
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    parts.push(value);
    await appendChunk(buffer, value);
    if (parts.length === 1) {
      audio.play().catch(() => { /* autoplay refused: the controls still play it */ });
      setStatus("tts-status", "Playing while the rest is synthesised…");
    }
  }
  audio.dataset.chunks = String(parts.length);
  source.endOfStream();
  return new Blob(parts, { type: "audio/mpeg" });
}

// --- Speak ----------------------------------------------------------------------------------------
const EXTENSIONS = { opus: "ogg", pcm: "pcm" };

async function loadVoices() {
  const select = $("tts-voice");
  clearError("tts-error");
  try {
    const data = await (await api("/v1/audio/voices")).json();
    const voices = document.createElement("optgroup");
    voices.label = "Installed voices";
    for (const v of data.voices) {
      const gender = { f: "female", m: "male" }[v.name[1]] || "";
      const option = new Option(`${v.name} — ${v.language}${gender ? ", " + gender : ""}`, v.name);
      option.selected = v.name === data.default;
      voices.append(option);
    }
    const aliases = document.createElement("optgroup");
    aliases.label = "OpenAI voice names";
    for (const a of data.aliases) {
      aliases.append(new Option(a.installed ? `${a.name} → ${a.voice}` : `${a.name} → ${a.speaks} (${a.voice} not installed)`, a.name));
    }
    select.replaceChildren(voices, aliases);
  } catch (error) {
    showError("tts-error", error);
  }
}

// What /api/tts accepts, from the API document: formats, and the options this server has.
async function loadSpeechOptions() {
  const doc = await openApi();
  const formats = (doc && enumOf(doc, requestField(doc, "/api/tts", "format"))) || FALLBACK_FORMATS;
  $("tts-format").replaceChildren(...formats.map((f) => new Option(f, f, false, f === "mp3")));
  const inputTypes = doc && enumOf(doc, requestField(doc, "/api/tts", "input_type"));
  if (inputTypes) {
    $("tts-input-type").replaceChildren(...inputTypes.map((t) => new Option(t, t, false, t === "text")));
    $("tts-input-type-field").hidden = false;
  }
  $("tts-normalize-field").hidden = !(doc && requestField(doc, "/api/tts", "normalize"));
  $("tts-captions-field").hidden = !(doc && requestField(doc, "/api/tts", "captions"));
}

// Word highlighting: /api/tts with captions answers JSON, the audio in base64 and each word's start and end.
function showWords(words, audio) {
  const box = $("tts-words");
  const spans = words.map((w) => {
    const span = Object.assign(document.createElement("span"), { textContent: w.word });
    Object.assign(span.dataset, { start: w.start_time, end: w.end_time });
    return span;
  });
  box.replaceChildren(...spans.flatMap((span) => [span, " "]));
  box.hidden = words.length === 0;
  let current = -1;
  const mark = () => {
    const t = audio.currentTime;
    let index = -1;
    for (let i = 0; i < words.length && words[i].start_time <= t; i += 1) index = i;
    if (index >= 0 && t > words[index].end_time + 0.25) index = -1;  // between sentences: nothing lit
    if (index === current) return;
    if (current >= 0) spans[current].classList.remove("spoken-now");
    if (index >= 0) spans[index].classList.add("spoken-now");
    current = index;
  };
  const tick = () => { mark(); if (!audio.paused && !audio.ended) requestAnimationFrame(tick); };
  audio.onplay = () => requestAnimationFrame(tick);
  audio.onseeked = mark;
  audio.onended = mark;
}

function base64Blob(text, type) {
  const bytes = Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
  return new Blob([bytes], { type });
}

function speechBody(format) {
  const body = { text: $("tts-text").value, voice: $("tts-voice").value || undefined,
    speed: Number($("tts-speed").value), format };
  if (!$("tts-input-type-field").hidden) body.input_type = $("tts-input-type").value;
  if (!$("tts-normalize-field").hidden) body.normalize = $("tts-normalize").checked;
  if (!$("tts-captions-field").hidden && $("tts-captions").checked) body.captions = "json";
  return body;
}

async function speak(event) {
  event.preventDefault();
  clearError("tts-error");
  const button = $("tts-submit"), audio = $("tts-audio");
  const format = $("tts-format").value;
  button.disabled = true;
  setStatus("tts-status", "Synthesising…");
  const previous = audio.src;  // the previous answer's stream or file: freed once replaced
  try {
    const response = await api("/api/tts", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify(speechBody(format)),
    });
    $("tts-result").hidden = false;
    const captioned = response.headers.get("Content-Type") === "application/json";
    if (!captioned) $("tts-words").hidden = true;
    const streamable = !captioned && format === "mp3" && window.MediaSource && MediaSource.isTypeSupported("audio/mpeg") && response.body;
    let file;
    if (streamable) {
      audio.dataset.mode = "stream";
      file = await playStreaming(response, audio);
    } else if (captioned) {
      audio.dataset.mode = "whole";
      const answer = await response.json();
      file = base64Blob(answer.audio, format === "pcm" ? "audio/L16" : `audio/${format}`);
      const rate = answer.sample_rate || 24000;
      audio.src = URL.createObjectURL(format === "pcm" ? wavFromPcm16(await file.arrayBuffer(), rate) : file);
      showWords(answer.captions, audio);
      audio.play().catch(() => {});
    } else {
      audio.dataset.mode = "whole";
      file = await response.blob();
      const rate = Number(response.headers.get("X-Sample-Rate")) || 24000;
      audio.src = URL.createObjectURL(format === "pcm" ? wavFromPcm16(await file.arrayBuffer(), rate) : file);
      audio.play().catch(() => {});
    }
    if (previous.startsWith("blob:")) URL.revokeObjectURL(previous);
    const link = $("tts-download");
    if (link.href) URL.revokeObjectURL(link.href);
    link.href = URL.createObjectURL(file);
    link.download = `speech.${EXTENSIONS[format] || format}`;
    link.textContent = `Download ${format.toUpperCase()} (${(file.size / 1024).toFixed(0)} KB)`;
    const spoke = response.headers.get("X-Voice"), asked = response.headers.get("X-Voice-Requested");
    $("tts-voice-used").textContent = `Voice: ${spoke || "?"}${asked && asked !== spoke ? ` (asked for ${asked})` : ""}`;
    setStatus("tts-status", "Done.");
  } catch (error) {
    setStatus("tts-status", "");
    showError("tts-error", error);
  } finally {
    button.disabled = false;
  }
}

// --- Analyse --------------------------------------------------------------------------------------
let recorded = null;  // a WAV Blob from the microphone, or null
let recorder = null;

async function toggleRecording() {
  const button = $("record");
  if (recorder) { recorder.stop(); return; }
  clearError("analysis-error");
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    const chunks = [];
    recorder = new MediaRecorder(stream);
    recorder.addEventListener("dataavailable", (e) => {
      chunks.push(e.data);
      button.dataset.chunks = String(chunks.length);
    });
    recorder.addEventListener("stop", async () => {
      stream.getTracks().forEach((t) => t.stop());
      recorder = null;
      button.textContent = "Record from microphone";
      button.setAttribute("aria-pressed", "false");
      try {  // the browser records WebM/Opus; the API reads WAV, so decode here and send WAV
        const context = new AudioContext();
        const decoded = await context.decodeAudioData(await new Blob(chunks).arrayBuffer());
        recorded = wavFromFloat(decoded.getChannelData(0), decoded.sampleRate);
        context.close();
        $("analysis-file").value = "";
        setStatus("record-status", `Recorded ${decoded.duration.toFixed(1)} s: press Analyse to send it.`);
      } catch (error) {
        showError("analysis-error", error);
      }
    });
    recorder.start(RECORD_SLICE_MS);
    button.textContent = "Stop recording";
    button.setAttribute("aria-pressed", "true");
    setStatus("record-status", "Recording…");
  } catch (error) {
    showError("analysis-error", new ApiError("The microphone could not be opened: " + sentence(error.message)));
  }
}

async function postAudio(path, audio) {
  const form = new FormData();
  form.append("file", audio, audio.name || "recording.wav");
  return (await api(path, { method: "POST", body: form })).json();
}

async function analyse(event) {
  event.preventDefault();
  for (const id of ["analysis-error", "language-error", "ai-voice-error"]) clearError(id);
  const audio = $("analysis-file").files[0] || recorded;
  if (!audio) {
    showError("analysis-error", new ApiError("Choose an audio file or record from the microphone first."));
    return;
  }
  const button = $("analysis-submit");
  button.disabled = true;
  // One after the other: each model is admitted against the budget on its own.
  try {
    setStatus("analysis-status", "Detecting the language…");
    try {
      showLanguage(await postAudio("/api/detect-language?yMaxk=5", audio));
    } catch (error) {
      $("language-figure").hidden = true;
      showError("language-error", error);
    }
    setStatus("analysis-status", "Scoring the voice…");
    try {
      showAiVoice(await postAudio("/api/detect-ai-voice", audio));
    } catch (error) {
      $("ai-voice-figure").hidden = true;
      showError("ai-voice-error", error);
    }
    setStatus("analysis-status", "Done.");
  } finally {
    button.disabled = false;
  }
}

function showLanguage(result) {
  $("language-figure").hidden = false;
  drawBars($("language-chart"), result.languages);
  $("language-summary").textContent = `Most likely ${languageName(result.language)} ` +
    `(${(100 * result.probability).toFixed(1)}%), from ${result.seconds_analysed.toFixed(1)} s of audio.`;
}

function showAiVoice(result) {
  $("ai-voice-figure").hidden = false;
  drawGauge($("ai-voice-gauge"), result.score, result.threshold);
  $("ai-voice-summary").textContent = `Score ${result.score.toFixed(3)} is ${result.is_ai_generated ? "at or above" : "below"} ` +
    `the threshold ${result.threshold.toFixed(2)}: ${result.is_ai_generated ? "likely AI-generated" : "likely a human voice"} ` +
    `(${result.windows} window${result.windows === 1 ? "" : "s"} of ${result.window_s.toFixed(1)} s).`;
  const chart = $("window-chart");
  chart.toggleAttribute("hidden", result.windows < 2);  // an SVG element: no .hidden property
  if (result.windows >= 2) {
    drawLine(chart, result.window_scores, { max: 1, lines: [{ value: result.threshold, cls: "threshold", label: "threshold" }] });
  }
}

// --- Animate (shown only when the server has /api/animate) -----------------------------------------
// Shown when the server has /api/animate and its animation model is not disabled by configuration.
const animation = { endpoint: false, disabled: false };
function showAnimation() {
  const shown = animation.endpoint && !animation.disabled;
  $("animate").hidden = $("animate-link").hidden = !shown;
}

async function detectAnimation() {
  const doc = await openApi();
  animation.endpoint = Boolean(doc && doc.paths && doc.paths["/api/animate"]);
  $("openapi-link").hidden = !doc;
  showAnimation();
}

async function animate(event) {
  event.preventDefault();
  clearError("animate-error");
  const image = $("animate-image").files[0], audio = $("animate-audio").files[0], text = $("animate-text").value.trim();
  if (!image || (!audio && !text)) {
    showError("animate-error", new ApiError("Choose a portrait and either type text or choose audio."));
    return;
  }
  const form = new FormData();
  form.append("image", image);
  if (audio) form.append("audio", audio); else form.append("text", text);
  if (!audio) {
    if ($("tts-voice").value) form.append("voice", $("tts-voice").value);
    form.append("speed", $("tts-speed").value);
  }
  form.append("size", $("animate-size").value);
  form.append("still", $("animate-still").checked ? "true" : "false");
  const button = $("animate-submit"), progress = $("animate-progress");
  button.disabled = true;
  try {
    const job = await (await api("/api/animate", { method: "POST", body: form })).json();
    progress.hidden = $("animate-progress-label").hidden = false;
    progress.value = 0;
    const video = await followJob(job, progress);
    const player = $("animate-video");
    player.src = URL.createObjectURL(video);
    player.hidden = false;
    setStatus("animate-status", "Done.");
  } catch (error) {
    setStatus("animate-status", "");
    showError("animate-error", error);
  } finally {
    button.disabled = false;
  }
}

async function followJob(job, progress) {
  for (;;) {
    const status = await (await api(job.status_url)).json();
    const p = status.progress || {};
    progress.value = p.percent || 0;
    const eta = p.eta_s ? `, about ${Math.ceil(p.eta_s)} s left` : "";
    setStatus("animate-status", `${status.state}${p.stage ? ": " + p.stage : ""} ${p.done ?? ""}/${p.total ?? ""}${eta}`);
    if (status.state === "done") {
      progress.value = 100;
      return (await api(job.result_url)).blob();
    }
    if (status.state === "failed" || status.state === "cancelled") {
      const error = status.error && (status.error.message || status.error);
      throw new ApiError(sentence(error || `the job was ${status.state}`));
    }
    await new Promise((resolve) => setTimeout(resolve, JOB_POLL_MS));
  }
}

// --- Operator -------------------------------------------------------------------------------------
const memorySamples = [];
const modelRows = new Map();  // name -> {row, cells}; updated in place so keyboard focus survives a refresh

function describeEvent(e) {
  const mb = (v) => (v === undefined || v === null ? "" : `${v} MB`);
  switch (e.event) {
    case "load": return `loaded ${e.model}: ${mb(e.mb)} in ${e.seconds} s`;
    case "unload": return `unloaded ${e.model} (${e.reason}), freed ${mb(e.mb)}`;
    case "evict": return `evicted ${e.model} to make room, freed ${mb(e.mb)}`;
    case "refuse": return `refused ${e.model}: it needs about ${mb(e.mb)} and the budget has no room`;
    case "unavailable": return `${e.model} is not available (files or runtime missing)`;
    case "recycle": return `worker recycled to give back ${mb(e.retained_mb)} for ${e.model}`;
    default: return `${e.event} ${e.model}`;
  }
}

function modelAction(name, load) {
  return async () => {
    clearError("operator-error");
    const path = load ? `/api/models/${encodeURIComponent(name)}/load` : `/api/models/${encodeURIComponent(name)}`;
    const { cells } = modelRows.get(name);
    cells.load.disabled = cells.unload.disabled = true;
    cells.state.textContent = load ? "loading…" : "unloading…";
    try {
      await api(path, { method: load ? "POST" : "DELETE", admin: true });
    } catch (error) {
      showError("operator-error", error);
    } finally {
      await refreshOperator();
    }
  };
}

function modelRow(name) {
  if (modelRows.has(name)) return modelRows.get(name).cells;
  const row = document.createElement("tr");
  row.dataset.testid = "model-row";
  row.dataset.model = name;
  const cells = {};
  for (const key of ["name", "state", "measured", "cost", "uses", "actions"]) {
    cells[key] = document.createElement(key === "name" ? "th" : "td");
    row.append(cells[key]);
  }
  cells.name.scope = "row";
  cells.name.textContent = name;
  cells.load = Object.assign(document.createElement("button"), { type: "button", textContent: "Load" });
  cells.unload = Object.assign(document.createElement("button"), { type: "button", textContent: "Unload" });
  cells.load.setAttribute("aria-label", `Load ${name}`);
  cells.unload.setAttribute("aria-label", `Unload ${name}`);
  cells.load.dataset.testid = "model-load";
  cells.unload.dataset.testid = "model-unload";
  cells.load.addEventListener("click", modelAction(name, true));
  cells.unload.addEventListener("click", modelAction(name, false));
  cells.actions.append(cells.load, cells.unload);
  $("model-rows").append(row);
  modelRows.set(name, { row, cells });
  return cells;
}

function showModels(models) {
  const row = models.find((m) => m.name === "animation");
  animation.disabled = Boolean(row && row.state === "disabled");
  showAnimation();
  for (const m of models) {
    const cells = modelRow(m.name);
    modelRows.get(m.name).row.dataset.state = m.state;
    const p = m.provisioning;
    cells.state.textContent = p ? `provisioning: ${p.stage} ${p.percent}%`
      : m.servable || m.state === "disabled" ? m.state : `${m.state}: not servable`;
    cells.state.title = p ? "Provisioned beside the server; servable when done, without a restart."
      : m.servable ? "" : "GET /ready says why, and the fix.";
    cells.measured.textContent = m.measured_mb === null ? "–" : m.measured_mb.toFixed(1);
    cells.cost.textContent = m.cost_mb.toFixed(0);
    cells.cost.title = m.cost_source;
    cells.uses.textContent = String(m.use_count);
    cells.load.disabled = m.state !== "not loaded" || !m.servable;
    cells.unload.disabled = m.state !== "loaded" || m.pinned;
  }
}

function showMemory(memory, pid) {
  memorySamples.push(memory.used_mb);
  if (memorySamples.length > MEMORY_SAMPLES) memorySamples.shift();
  $("memory-used").textContent = `${memory.used_mb} MB`;
  $("memory-of").textContent = `of ${memory.budget_mb} MB (${memory.used_percent}%); admission line ` +
    `${memory.admission_limit_mb} MB` + (memory.reserved_by_other_workers_mb ? `, ${memory.reserved_by_other_workers_mb} MB ` +
    "reserved by other workers" : "");
  drawLine($("memory-chart"), memorySamples, {
    max: memory.budget_mb, unit: " MB", h: 160,
    lines: [{ value: memory.budget_mb, cls: "budget", label: memory.budget_mb },
      { value: memory.admission_limit_mb, cls: "admission", label: memory.admission_limit_mb }],
  });
  $("operator-worker").textContent = `(models and events of worker ${pid})`;
}

function showEvents(events) {
  const list = $("events");
  list.replaceChildren(...events.slice().reverse().map((e) => {
    const item = document.createElement("li");
    item.className = `event ${e.event}`;
    const time = document.createElement("time");
    time.dateTime = new Date(e.at * 1000).toISOString();
    time.textContent = new Date(e.at * 1000).toLocaleTimeString();
    item.append(time, " ", describeEvent(e));
    return item;
  }));
  if (!events.length) list.append(Object.assign(document.createElement("li"), { textContent: "No events yet." }));
}

let pollTimer = null;
async function refreshOperator() {
  clearTimeout(pollTimer);
  try {
    const data = await (await api("/api/operator", { admin: true })).json();
    showMemory(data.memory, data.pid);
    showModels(data.models);
    showEvents(data.events);
  } catch (error) {
    showError("operator-error", error);
  }
  if (!document.hidden) pollTimer = setTimeout(refreshOperator, POLL_MS);
}

// --- wiring ---------------------------------------------------------------------------------------
function keepInSession(id, key) {
  const input = $(id);
  input.value = sessionStorage.getItem(key) || "";
  input.addEventListener("input", () => sessionStorage.setItem(key, input.value));
}

document.addEventListener("DOMContentLoaded", () => {
  keepInSession("api-key", STORE.apiKey);
  keepInSession("admin-key", STORE.adminKey);
  $("api-key").addEventListener("change", loadVoices);  // a key typed after a 401 lists the voices now
  $("tts-speed").addEventListener("input", () => { $("tts-speed-value").textContent = Number($("tts-speed").value).toFixed(1); });
  $("tts-form").addEventListener("submit", speak);
  $("analysis-form").addEventListener("submit", analyse);
  $("analysis-file").addEventListener("change", () => { recorded = null; setStatus("record-status", ""); });
  $("animate-form").addEventListener("submit", animate);
  if (window.MediaRecorder && navigator.mediaDevices) {
    $("record").addEventListener("click", toggleRecording);
  } else {
    $("record").disabled = true;
    setStatus("record-status", "Recording needs a browser with MediaRecorder, over HTTPS or on localhost.");
  }
  document.addEventListener("visibilitychange", () => { if (!document.hidden) refreshOperator(); });
  loadVoices();
  loadSpeechOptions();
  $("tts-audio").addEventListener("error", () => {  // 3: cannot decode, 4: format not supported (not aborts)
    const code = $("tts-audio").error && $("tts-audio").error.code;
    if (code >= 3) showError("tts-error", new ApiError("This browser cannot play this audio; the download link has the file."));
  });
  detectAnimation();
  refreshOperator();
});
