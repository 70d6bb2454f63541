"""The report page: ``<save_dir>/report.html``, one section per tagged video, to look at the timelines.

Each section (``section.video[data-name]``) shows the video's top tags (``.top-tags .tag``), the video
itself where the browser can play it (``<video>`` pointing at the source file), a timeline over the video's
duration (``.timeline``: a lane of its shots or segments, then one row per tag, ``.row[data-class-id]``,
holding its ranges, ``.range[data-class-id]``, placed by start and end), the shots as thumbnails with
their top tags (``.shot[data-shot]``) and the segments with theirs (``.segment[data-segment]``).
Clicking anything with a ``data-start`` (a range, a shot, a segment) seeks the video there.

The page is self-contained: inline CSS and JavaScript, no network; the thumbnails (``shots[].thumbnail``,
relative to ``save_dir``) and the videos are linked as relative URLs, so the folder can be opened from
disk (``file://``) or served as it is. Where the browser cannot play a video (its codec: Chromium plays
H.264, VP8, VP9, AV1; not MPEG-4 part 2, which ``cv2.VideoWriter``'s ``mp4v`` writes), the section says
so and the ranges show their times only. Every text (tag names, paths) is HTML-escaped.
"""
import html
import os
import pathlib
import urllib.parse

from . import files, names

SHOT_TAGS = 3  # tags shown under each shot and segment (all of them in its tooltip)
TICK_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200)  # seconds between axis ticks


def write_report(save_dir, timelines):
    """Write ``<save_dir>/report.html`` atomically; returns its path.

    ``save_dir``: str, bytes or path-like (the folder of ``thumbs/``); ``timelines``: list of
    ``(timeline, video_path)``: a timeline dict as in ``timelines/<name>.json`` (TIMELINE.md) and the path
    of its source video as tagged (str or bytes, relative to the working folder or absolute; ``None``: no
    player). Raises ``files.WriteError`` when the file cannot be written.
    """
    save_dir = os.fsdecode(save_dir)
    sections = [video_section(index, timeline, video_url(save_dir, video_path))
                for index, (timeline, video_path) in enumerate(timelines)]
    count = f"{len(sections)} video{'' if len(sections) == 1 else 's'}"
    page = PAGE.replace("<!--COUNT-->", count).replace("<!--SECTIONS-->", "\n".join(sections))
    path = os.path.join(save_dir, "report.html")
    files.atomic_write(path, lambda f: f.write(page.encode("utf-8")))
    return path


def video_url(save_dir, video_path):
    """The URL of ``video_path`` from a page in ``save_dir``: relative, every byte but letters, digits,
    ``_.-~`` and ``/`` percent-encoded (spaces, ``#``, ``?``, ``:``, non-ASCII, bytes that are not UTF-8);
    a ``file://`` URL where no relative path exists (Windows: another drive); ``None`` for no path."""
    if video_path is None:
        return None
    target = os.path.abspath(os.fsencode(video_path))
    try:
        relative = os.path.relpath(target, os.path.abspath(os.fsencode(save_dir)))
    except ValueError:
        return pathlib.Path(os.fsdecode(target)).as_uri()
    return urllib.parse.quote(relative.replace(os.fsencode(os.sep), b"/"), safe="/")


def file_url(relative_path):
    """A path relative to ``save_dir`` (a thumbnail's, str) as a relative URL, percent-encoded."""
    return urllib.parse.quote(os.fsencode(relative_path).replace(os.fsencode(os.sep), b"/"), safe="/")


def video_section(index, timeline, url):
    """The ``<section>`` of one video (HTML text); ``url``: its video's URL or ``None``."""
    meta = timeline.get("metadata") or {}
    shots, segments = timeline.get("shots") or [], timeline.get("segments") or []
    ranges = timeline.get("ranges") or []
    ends = [float(item["end"]) for item in shots + segments + ranges]
    duration = float(meta.get("duration") or 0) or max(ends, default=0.0) or 1.0
    title = esc(timeline.get("video") or timeline.get("name") or f"video {index}")
    facts = [clock(duration)]
    if meta.get("fps"):
        facts.append(f"{float(meta['fps']):g} fps")
    if meta.get("frames") is not None:
        facts.append(f"{int(meta['frames'])} frames")
    if meta.get("width") and meta.get("height"):
        facts.append(f"{int(meta['width'])}×{int(meta['height'])}")
    if meta.get("codec"):
        facts.append(esc(meta["codec"]))
    player = "" if url is None else (
        f'<video controls preload="metadata" data-src="{esc(url)}"></video>'
        f'<p class="noplay" hidden>This browser cannot play this video ({esc(meta.get("codec") or "codec unknown")}), '
        f'or it is not at <code>{esc(urllib.parse.unquote(url))}</code> from this page: the timeline shows times '
        'only. <span class="why"></span></p>')
    parts = [
        f'<section class="video" id="video-{index}" data-name="{esc(timeline.get("name", ""))}" '
        f'data-duration="{duration!r}" data-playable="{"unknown" if url else "no"}">',
        f'<h2>{title}</h2><div class="head">{player}<div class="summary">',
        f'<p class="meta">{" · ".join(facts)}</p>',
        f'<ol class="top-tags">{"".join(tag_item(tag) for tag in timeline.get("tags") or [])}</ol></div></div>',
    ]
    parts.append(timeline_chart(duration, shots, segments, ranges, timeline.get("tags") or []))
    if shots:
        parts.append(f'<h3>Shots</h3><ol class="shots">{"".join(shot_item(shot) for shot in shots)}</ol>')
    if segments:
        parts.append('<h3>Segments</h3><ol class="segments">'
                     f'{"".join(segment_item(segment) for segment in segments)}</ol>')
    parts.append("</section>")
    return "\n".join(parts)


def timeline_chart(duration, shots, segments, ranges, tags):
    """The timeline (HTML): time axis, a lane of shots and one of segments (those there are), one row per
    tag with its ranges; rows in the order of the video's tags, then of the tags' best range. With ranges
    of both levels, a row holds its shot ranges in its upper half and its segment ranges in the lower."""
    rows = {}
    for item in ranges:
        rows.setdefault(item["class_id"], []).append(item)
    rank = {tag["class_id"]: position for position, tag in enumerate(tags)}
    order = sorted(rows, key=lambda c: (rank.get(c, len(rank)), -max(float(r["confidence"]) for r in rows[c])))
    both = {r.get("level") for r in ranges} >= {"shot", "segment"}
    out = [f'<div class="timeline{" both" if both else ""}">', f'<div class="axis"><span class="label"></span><div class="track">'
           f'{"".join(axis_ticks(duration))}</div></div>']
    for lane, kind in ((shots, "shot"), (segments, "segment")):
        if not lane:
            continue
        boxes = "".join(
            f'<button type="button" class="lane-box" {place(item)} style="{box_style(item, duration)}" '
            f'title="{kind} {int(item[kind])}: '
            f'{span_text(item)}"></button>' for item in lane)
        out.append(f'<div class="lane"><span class="label">{kind}s</span><div class="track">{boxes}</div></div>')
    for class_id in order:
        name = esc(rows[class_id][0].get("class_name", class_id))
        boxes = "".join(
            f'<button type="button" class="range" data-class-id="{esc(class_id)}" data-level="{esc(item.get("level", ""))}" '
            f'{place(item)} '
            f'style="{box_style(item, duration)};opacity:{0.35 + 0.65 * float(item["confidence"]):.2f}" '
            f'title="{name}: {span_text(item)}, confidence {float(item["confidence"]):.2f}, {esc(item.get("level", ""))}s">'
            '</button>'
            for item in rows[class_id])
        out.append(f'<div class="row" data-class-id="{esc(class_id)}"><span class="label" title="{name}">{name}'
                   f'</span><div class="track">{boxes}</div></div>')
    if both:
        out.append('<p class="legend">In each row: shot ranges above, segment ranges (green) below.</p>')
    out.append("</div>")
    return "\n".join(out)


def place(item):
    """The data attributes of ``item``'s start and end (seconds): what clicking it seeks to."""
    return f'data-start="{float(item["start"])!r}" data-end="{float(item["end"])!r}"'


def box_style(item, duration):
    """CSS left and width of ``item`` on a track of ``duration`` seconds, in percent."""
    start = min(max(float(item["start"]) / duration, 0.0), 1.0)
    end = min(max(float(item["end"]) / duration, start), 1.0)
    return f"left:{100 * start:.3f}%;width:{100 * (end - start):.3f}%"


def axis_ticks(duration):
    """Tick labels every few seconds (at most ~10 over the track), as positioned spans."""
    step = next((s for s in TICK_STEPS if duration / s <= 10), TICK_STEPS[-1])
    count = int(duration // step) + 1
    return [f'<span class="tick" style="left:{100 * i * step / duration:.3f}%">{clock(i * step)}</span>'
            for i in range(count) if i * step <= duration]


def tag_item(tag):
    """One tag (``{class_id, class_name, probability}``) as a list item."""
    return (f'<li class="tag" data-class-id="{esc(tag["class_id"])}">{esc(tag.get("class_name", tag["class_id"]))}'
            f' <span class="p">{float(tag["probability"]):.2f}</span></li>')


def shot_item(shot):
    """One shot: thumbnail (a placeholder without one), times, top tags; clicking seeks to its start."""
    thumb = shot.get("thumbnail")
    image = (f'<img src="{esc(file_url(thumb))}" alt="shot {shot["shot"]}" loading="lazy">' if thumb
             else '<span class="nothumb"></span>')
    return (f'<li class="shot" data-shot="{int(shot["shot"])}" {place(shot)} tabindex="0" '
            f'title="{esc(all_tags(shot))}">{image}<span class="time">#{int(shot["shot"])} '
            f'{span_text(shot)}</span><ol class="shot-tags">{"".join(map(tag_item, shot.get("tags", [])[:SHOT_TAGS]))}'
            "</ol></li>")


def segment_item(segment):
    """One segment: times and top tags; clicking seeks to its start."""
    return (f'<li class="segment" data-segment="{int(segment["segment"])}" {place(segment)} tabindex="0" '
            f'title="{esc(all_tags(segment))}"><span class="time">{span_text(segment)}</span><ol class="shot-tags">'
            f'{"".join(map(tag_item, segment.get("tags", [])[:SHOT_TAGS]))}</ol></li>')


def all_tags(item):
    """All tags of a shot or segment as one line of text (its tooltip)."""
    return ", ".join(f'{tag.get("class_name", tag["class_id"])} {float(tag["probability"]):.2f}'
                     for tag in item.get("tags", []))


def span_text(item):
    """``m:ss.s–m:ss.s`` of an item with start and end."""
    return f'{clock(float(item["start"]))}–{clock(float(item["end"]))}'


def clock(seconds):
    """Seconds as ``m:ss.s`` (``h:mm:ss.s`` from an hour)."""
    minutes, secs = divmod(round(max(0.0, seconds), 1), 60)  # rounded first: 59.96 is 1:00.0, not 0:60.0
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours}:{minutes:02d}:{secs:04.1f}" if hours else f"{minutes}:{secs:04.1f}"


def esc(value):
    """``value`` as text safe inside HTML text and double- or single-quoted attributes; undecodable bytes
    of a name (lone surrogates) as ``\\xNN`` (``names.shown``)."""
    return html.escape(names.shown(str(value)), quote=True)


PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src 'self' file: data:; media-src 'self' file:; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<title>videotag report</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 0 auto; max-width: 1200px; padding: 1em 2em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin: 0 0 .2em; word-break: break-all; } h3 { font-size: 1em; margin: 1em 0 .4em; }
section.video { border-top: 2px solid #ddd; padding: 1em 0 1.5em; }
.meta { color: #666; margin: 0 0 .6em; }
ol { list-style: none; margin: 0; padding: 0; }
[hidden] { display: none !important; }
.top-tags .tag { display: inline-block; background: #e8eefc; border-radius: 1em; padding: .1em .7em; margin: 0 .3em .3em 0; }
.p { color: #666; font-size: .9em; }
.head { display: flex; flex-wrap: wrap; gap: .5em 1.5em; align-items: flex-start; }
.summary { flex: 1 1 20em; }
video { display: block; max-width: 480px; width: 100%; background: #000; }
.noplay { color: #a40; flex-basis: 100%; margin: 0; }
.why { color: #888; font-size: .9em; }
.timeline { margin: .8em 0; }
.timeline > div { display: flex; align-items: center; height: 22px; }
.timeline .label { flex: 0 0 14em; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; padding-right: .5em; }
.timeline .track { position: relative; flex: 1; height: 18px; background: #f3f3f3; overflow: hidden; }
.timeline .axis .track { overflow: visible; }
.timeline .axis .track::after { display: none; }
.timeline .axis .track { background: none; border-bottom: 1px solid #bbb; }
.timeline .legend { display: block; height: auto; color: #666; font-size: 12px; margin: .3em 0 0; }
.tick { position: absolute; bottom: 1px; font-size: 11px; color: #777; border-left: 1px solid #bbb; padding-left: 2px; }
.track button { position: absolute; top: 1px; bottom: 1px; min-width: 2px; padding: 0; border: 0; cursor: pointer; }
.range { background: #3367d6; }
.both .range[data-level="shot"] { bottom: 50%; }
.both .range[data-level="segment"] { top: 50%; background: #0b8043; }
.lane-box { background: #c9c9c9; border-left: 1px solid #fff !important; }
.range:hover, .lane-box:hover { outline: 2px solid #f90; }
.track::after { content: ""; position: absolute; top: 0; bottom: 0; left: var(--t, -10px); width: 2px; background: #e33; pointer-events: none; }
.shots, .segments { display: flex; flex-wrap: wrap; gap: .6em; }
.shot, .segment { width: 160px; cursor: pointer; font-size: 12px; }
.shot img, .nothumb { display: block; width: 160px; height: 90px; object-fit: cover; background: #ddd; }
.shot:hover img, .segment:hover { outline: 2px solid #f90; }
.shot-tags li { white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.time { color: #555; }
</style>
</head>
<body>
<h1>videotag report: <!--COUNT--></h1>
<!--SECTIONS-->
<script>
// Each section's <video> (where the browser plays it): clicking an element with data-start seeks it there;
// a red playhead follows it on the timeline. A video the browser cannot play is hidden, with a note.
// Videos load when their section comes near the window: a browser holds so many media players at most
// (Chromium: 1000, then "error creating media player"), and a page of many videos would open them all.
const REASONS = {2: "network error", 3: "decoding error", 4: "format not supported, or no such file"};
const near = new IntersectionObserver((entries) => {
  for (const entry of entries.filter((e) => e.isIntersecting)) {
    near.unobserve(entry.target);
    entry.target.src = entry.target.dataset.src;
  }
}, {rootMargin: "1000px"});
for (const section of document.querySelectorAll("section.video")) {
  const video = section.querySelector("video");
  if (!video) continue;
  const duration = parseFloat(section.dataset.duration);
  video.addEventListener("error", () => {
    section.dataset.playable = "no";
    video.hidden = true;
    section.querySelector(".noplay").hidden = false;
    section.querySelector(".why").textContent = video.error.message || REASONS[video.error.code] || "";
  });
  video.addEventListener("loadedmetadata", () => { section.dataset.playable = "yes"; });
  near.observe(video);
  video.addEventListener("timeupdate", () =>
    section.style.setProperty("--t", Math.min(100, 100 * video.currentTime / duration) + "%"));
  const seek = (event) => {
    const target = event.target.closest("[data-start]");
    if (target) video.currentTime = parseFloat(target.dataset.start);
  };
  section.addEventListener("click", seek);
  section.addEventListener("keydown", (event) => { if (event.key === "Enter" && event.target.matches("li[data-start]")) seek(event); });
}
</script>
</body>
</html>
"""
