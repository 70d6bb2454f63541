// The service's page: submit a video (upload or server path), follow its job, then show the video with its
// timeline: tags, segments, shots and tag ranges; clicking one (list or timeline) seeks the video there.
// No build step.
"use strict";
const $ = (id) => document.getElementById(id);
let localVideo = null;

function headers() {
  const token = $("token").value.trim();
  localStorage.setItem("videotag-token", token);
  return token ? { Authorization: "Bearer " + token } : {};
}

async function answer(response) {
  let body = null;
  try { body = await response.json(); } catch (e) { body = { error: response.statusText }; }
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function seconds(t) { return t.toFixed(1) + " s"; }

function tagItem(tag) {
  const li = document.createElement("li");
  li.className = "tag";
  li.textContent = tag.class_name + " " + (100 * tag.probability).toFixed(1) + "%";
  const bar = document.createElement("span");
  bar.className = "bar";
  bar.style.width = Math.round(80 * tag.probability) + "px";
  li.appendChild(bar);
  return li;
}

function seek(start) {
  const player = $("player");
  player.currentTime = start;
  player.play().catch(() => {});
}

function when(item) { return seconds(item.start) + " – " + seconds(item.end); }

function names(tags, count) { return tags.slice(0, count).map((t) => t.class_name).join(", "); }

// A clickable element for a time range (a segment, a shot, a tag range): data-start/data-end, seeks on click.
function timed(tag, className, item) {
  const el = document.createElement(tag);
  el.className = className;
  el.dataset.start = item.start;
  el.dataset.end = item.end;
  el.addEventListener("click", () => seek(item.start));
  return el;
}

function listItem(className, item, text) {
  const li = timed("li", className, item);
  li.innerHTML = '<span class="when"></span> ';
  li.firstChild.textContent = when(item);
  li.append(text);
  return li;
}

function block(className, item, end, label) {
  const div = timed("div", className, item);
  div.style.left = (100 * item.start / end) + "%";
  div.style.width = (100 * (item.end - item.start) / end) + "%";
  div.textContent = label;
  div.title = when(item) + ": " + names(item.tags, item.tags.length);
  return div;
}

// The result is the video's timeline (videotag.py's timelines/<name>.json): tags, segments, shots, ranges.
function show(job) {
  const result = job.result, player = $("player");
  if (localVideo) player.src = localVideo;
  else player.src = "/v1/jobs/" + job.id + "/video" + ($("token").value ? "?token=" + encodeURIComponent($("token").value) : "");
  $("tags").replaceChildren(...result.tags.map(tagItem));
  const segments = result.segments || [], shots = result.shots || [], ranges = result.ranges || [];
  const last = segments.concat(shots).reduce((end, item) => Math.max(end, item.end), 0);
  const end = (result.metadata && result.metadata.duration) || last;
  $("segments").replaceChildren(...segments.map((s) => listItem("segment", s, names(s.tags, 3))));
  $("timeline").replaceChildren(...segments.map((s) => block("range", s, end, s.tags.length ? s.tags[0].class_name : "")));
  $("timeline").hidden = !segments.length;
  $("shots").replaceChildren(...shots.map((s) => listItem("shot", s, names(s.tags, 3))));
  $("shotline").replaceChildren(...shots.map((s) => block("shot", s, end, s.tags.length ? s.tags[0].class_name : "")));
  $("shotline").hidden = !shots.length;
  $("ranges").replaceChildren(...ranges.map((r) => listItem("tagrange", r,
    r.class_name + " (" + r.level + ", " + (100 * r.confidence).toFixed(0) + "%)")));
  $("segments-column").hidden = !segments.length;
  $("shots-column").hidden = !shots.length;
  $("ranges-column").hidden = !ranges.length;
  $("result").hidden = false;
}

function playing() {
  const t = $("player").currentTime;
  for (const el of document.querySelectorAll("#segments li, #timeline .range, #shots li, #shotline .shot, #ranges li")) {
    el.classList.toggle("playing", t >= parseFloat(el.dataset.start) && t < parseFloat(el.dataset.end));
  }
}

async function follow(id) {
  while (true) {
    const job = await answer(await fetch("/v1/jobs/" + id, { headers: headers() }));
    $("state").textContent = job.state;
    $("progress").value = job.progress;
    if (job.state === "done") { show(job); return; }
    if (job.state === "failed" || job.state === "cancelled") { $("error").textContent = job.error || job.state; return; }
    await new Promise((r) => setTimeout(r, 400));
  }
}

async function submit(event) {
  event.preventDefault();
  $("error").textContent = "";
  $("result").hidden = true;
  $("job").hidden = false;
  $("state").textContent = "sending";
  $("progress").value = 0;
  const options = { topk: $("topk").value };
  if (parseFloat($("segment_seconds").value) > 0) options.segment_seconds = $("segment_seconds").value;
  if ($("with_shots").checked) options.shots = "true";
  let request;
  const file = $("file").files[0];
  if (file) {
    const form = new FormData();
    form.append("video", file, file.name);
    for (const [k, v] of Object.entries(options)) form.append(k, v);
    if (localVideo) URL.revokeObjectURL(localVideo);
    localVideo = URL.createObjectURL(file);
    request = { method: "POST", headers: headers(), body: form };
  } else if ($("path").value.trim()) {
    localVideo = null;
    const body = { path: $("path").value.trim(), topk: Number(options.topk) };
    if (options.segment_seconds) body.segment_seconds = Number(options.segment_seconds);
    if (options.shots) body.shots = true;
    request = { method: "POST", headers: { ...headers(), "Content-Type": "application/json" }, body: JSON.stringify(body) };
  } else {
    $("state").textContent = "";
    $("error").textContent = "choose a video file or give a path";
    return;
  }
  $("submit").disabled = true;
  try {
    const job = await answer(await fetch("/v1/jobs", request));
    await follow(job.id);
  } catch (e) {
    $("state").textContent = "refused";
    $("error").textContent = e.message;
  } finally {
    $("submit").disabled = false;
  }
}

async function ready() {
  try {
    await answer(await fetch("/readyz"));
    $("ready").textContent = "ready";
  } catch (e) {
    $("ready").textContent = e.message;
  }
}

$("token").value = localStorage.getItem("videotag-token") || "";
$("form").addEventListener("submit", submit);
$("player").addEventListener("timeupdate", playing);
ready();
