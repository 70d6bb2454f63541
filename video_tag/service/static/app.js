// The service's page: submit a video (upload or server path), follow its job, then show the video with its
// tags and segment tags; clicking a segment (list or timeline) seeks the video there. No build step.
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

function show(job) {
  const result = job.result, player = $("player");
  if (localVideo) player.src = localVideo;
  else player.src = "/v1/jobs/" + job.id + "/video" + ($("token").value ? "?token=" + encodeURIComponent($("token").value) : "");
  $("tags").replaceChildren(...result.tags.map(tagItem));
  const segments = result.segments || [];
  const end = segments.length ? segments[segments.length - 1].end : 0;
  $("segments").replaceChildren(...segments.map((s) => {
    const li = document.createElement("li");
    li.className = "segment";
    li.dataset.start = s.start;
    li.innerHTML = '<span class="when"></span> ';
    li.firstChild.textContent = seconds(s.start) + " – " + seconds(s.end);
    li.append(s.tags.slice(0, 3).map((t) => t.class_name).join(", "));
    li.addEventListener("click", () => seek(s.start));
    return li;
  }));
  $("timeline").replaceChildren(...segments.map((s) => {
    const div = document.createElement("div");
    div.className = "range";
    div.dataset.start = s.start;
    div.style.left = (100 * s.start / end) + "%";
    div.style.width = (100 * (s.end - s.start) / end) + "%";
    div.textContent = s.tags.length ? s.tags[0].class_name : "";
    div.title = seconds(s.start) + " – " + seconds(s.end) + ": " + s.tags.map((t) => t.class_name).join(", ");
    div.addEventListener("click", () => seek(s.start));
    return div;
  }));
  $("timeline").hidden = !segments.length;
  $("result").hidden = false;
}

function playing() {
  const t = $("player").currentTime;
  for (const el of document.querySelectorAll("#segments li, #timeline .range")) {
    const next = el.nextElementSibling;
    const start = parseFloat(el.dataset.start), stop = next ? parseFloat(next.dataset.start) : Infinity;
    el.classList.toggle("playing", t >= start && t < stop);
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
