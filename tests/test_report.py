"""video_tag/report.py: report.html from two timelines (one with shots and ranges, one with segments
only), read with html.parser (no browser needed), then opened from disk in headless Chromium
(tests/browser.py): what is drawn, escaping, thumbnails, seeking, no network."""
import html.parser
import os
import urllib.parse

import cv2
import numpy as np
import pytest

from browser import browser, requested_urls  # noqa: F401 (browser: a pytest fixture)
from video_tag import files, names, report

EVIL = "<script>window.__pwned = 1</script>"
QUOTES = "say \"hi\" & 'bye' <img src=x onerror=\"window.__pwned = 2\">"
# A name with a space, '#', '?', '%', non-ASCII and a byte that is not UTF-8 (a GBK name, say).
ODD_NAME = "clip #1 été? 50%".encode() + b"\xff.mp4"
FPS, SIZE = 25, (160, 96)
# output_stem keeps spaces, '#', '?', '%' and non-ASCII in a name: the thumbnails' folder has them too
NAMES = ["clip #1 été? 50%_00112233aabbccdd", "plain_ffeeddccbbaa9988", "both_0000000000000001"]


def tag(class_id, name, probability):
    return {"class_id": class_id, "class_name": name, "probability": probability}


def timelines_for(save_dir, video_one, video_two):
    """Three timelines as TIMELINE.md has them: 3 shots and 4 ranges of 3 tags; 2 segments and 2 ranges;
    2 shots, 2 segments and ranges of both levels (no video file)."""
    one = {
        "video": names.shown(os.fsdecode(video_one)), "name": NAMES[0],
        "metadata": {"duration": 3.0, "fps": 25.0, "frames": 75, "width": 160, "height": 96, "codec": "h264"},
        "tags": [tag(7, EVIL, 0.9), tag(3, QUOTES, 0.7), tag(12, "天空", 0.5)],
        "shots": [{"shot": k, "start": start, "end": end, "start_frame": int(start * FPS),
                   "end_frame": int(end * FPS), "tags": [tag(7, EVIL, 0.8), tag(12, "天空", 0.4)],
                   "thumbnail": f"thumbs/{NAMES[0]}/shot_{k:04d}.jpg", "unknown key": 1}
                  for k, (start, end) in enumerate([(0.0, 1.2), (1.2, 2.0), (2.0, 3.0)])],
        "segments": [],
        "ranges": [{"class_id": 7, "class_name": EVIL, "start": 0.0, "end": 1.2, "confidence": 0.8, "level": "shot"},
                   {"class_id": 12, "class_name": "天空", "start": 0.0, "end": 2.0, "confidence": 0.75, "level": "shot"},
                   {"class_id": 3, "class_name": QUOTES, "start": 1.2, "end": 3.0, "confidence": 0.7, "level": "shot"},
                   {"class_id": 7, "class_name": EVIL, "start": 2.0, "end": 3.0, "confidence": 0.95, "level": "shot"}],
    }
    two = {
        "video": os.fsdecode(video_two), "name": "plain_ffeeddccbbaa9988",
        "metadata": {"duration": 2.0, "fps": 25.0, "frames": 50, "width": 160, "height": 96, "codec": "mpeg4"},
        "tags": [tag(3, QUOTES, 0.6)], "shots": [],
        "segments": [{"segment": 0, "start": 0.0, "end": 1.0, "tags": [tag(3, QUOTES, 0.6)]},
                     {"segment": 1, "start": 1.0, "end": 2.0, "tags": [tag(5, "five", 0.55), tag(3, QUOTES, 0.5)]}],
        "ranges": [{"class_id": 3, "class_name": QUOTES, "start": 0.0, "end": 2.0, "confidence": 0.6, "level": "segment"},
                   {"class_id": 5, "class_name": "five", "start": 1.0, "end": 2.0, "confidence": 0.55,
                    "level": "segment"}],
    }
    both = {  # no video path: no player
        "video": "elsewhere/both.mp4", "name": "both_0000000000000001",
        "metadata": {"duration": 4.0, "fps": 25.0, "frames": 100, "width": 160, "height": 96, "codec": None},
        "tags": [tag(7, EVIL, 0.8), tag(3, QUOTES, 0.6)],
        "shots": [{"shot": 0, "start": 0.0, "end": 2.0, "start_frame": 0, "end_frame": 50, "tags": [tag(7, EVIL, 0.8)]},
                  {"shot": 1, "start": 2.0, "end": 4.0, "start_frame": 50, "end_frame": 100, "tags": []}],
        "segments": [{"segment": 0, "start": 0.0, "end": 3.0, "tags": [tag(7, EVIL, 0.7)]},
                     {"segment": 1, "start": 3.0, "end": 4.0, "tags": [tag(3, QUOTES, 0.6)]}],
        "ranges": [{"class_id": 7, "class_name": EVIL, "start": 0.0, "end": 2.0, "confidence": 0.8, "level": "shot"},
                   {"class_id": 7, "class_name": EVIL, "start": 0.0, "end": 3.0, "confidence": 0.7, "level": "segment"},
                   {"class_id": 3, "class_name": QUOTES, "start": 3.0, "end": 4.0, "confidence": 0.6,
                    "level": "segment"}],
    }
    return [(one, video_one), (two, video_two), (both, None)]


def frames(count, seed):
    """``count`` RGB frames [96, 160, 3]: a moving bar over a colour of ``seed``."""
    rng = np.random.default_rng(seed)
    base = rng.integers(40, 200, 3)
    out = []
    for i in range(count):
        image = np.empty((SIZE[1], SIZE[0], 3), np.uint8)
        image[:] = base
        image[:, (4 * i) % SIZE[0]:(4 * i) % SIZE[0] + 16] = 255
        out.append(image)
    return out


def write_h264(path, images):
    """An H.264 mp4 (PyAV): what Chromium plays."""
    import av
    with av.open(path, "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = SIZE[0], SIZE[1], "yuv420p"
        stream.options = {"preset": "ultrafast"}
        for image in images:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())


def write_mp4v(path, images):
    """An MPEG-4 part 2 mp4 (cv2.VideoWriter 'mp4v'): what Chromium does not play."""
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), FPS, SIZE)
    for image in images:
        writer.write(image[:, :, ::-1])
    writer.release()


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """(save_dir, report path, timelines, video one's bytes path): the report of two videos, written once.

    Video one (H.264, the odd name) beside ``out/``, in ``videos/``; video two (mp4v) inside ``out/``."""
    root = tmp_path_factory.mktemp("report")
    save_dir = root / "out"
    (root / "videos").mkdir()
    (save_dir / "thumbs" / NAMES[0]).mkdir(parents=True)
    video_one = os.fsencode(root / "videos") + b"/" + ODD_NAME
    plain = str(root / "videos" / "plain.mp4")
    try:
        write_h264(plain, frames(75, 1))
    except ImportError:  # no PyAV: the page is the same; test_report_in_chromium skips
        write_mp4v(plain, frames(75, 1))
    os.rename(plain, video_one)  # PyAV cannot open a name that is not UTF-8
    video_two = str(save_dir / "two.mp4")
    write_mp4v(video_two, frames(50, 2))
    for k, image in enumerate(frames(3, 3)):
        cv2.imwrite(str(save_dir / "thumbs" / NAMES[0] / f"shot_{k:04d}.jpg"), image)
    timelines = timelines_for(save_dir, video_one, video_two)
    path = report.write_report(str(save_dir), timelines)
    return save_dir, path, timelines, video_one


class Elements(html.parser.HTMLParser):
    """Every element of a page: ``elements`` [(tag, attrs dict, text inside it)], in document order."""
    VOID = {"meta", "img", "br", "input", "link", "source", "hr"}

    def __init__(self, text):
        super().__init__()
        self.elements, self.open = [], []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        element = [tag, dict(attrs), ""]
        self.elements.append(element)
        if tag not in self.VOID:
            self.open.append(element)

    def handle_endtag(self, tag):
        while self.open and self.open.pop()[0] != tag:
            pass

    def handle_data(self, data):
        for element in self.open:
            element[2] += data

    def select(self, tag, cls=None, inside=None):
        """Elements ``tag`` (``None``: any) with class ``cls``, after the element ``inside`` and before the
        next one of its tag (sections do not nest)."""
        elements = self.elements
        if inside is not None:
            start = next(i for i, e in enumerate(elements) if e is inside)
            end = next((i for i in range(start + 1, len(elements)) if elements[i][0] == inside[0]), len(elements))
            elements = elements[start + 1:end]
        return [e for e in elements if (tag is None or e[0] == tag)
                and (cls is None or cls in e[1].get("class", "").split())]


def test_page_structure(made):
    save_dir, path, timelines, video_one = made
    assert path == os.path.join(str(save_dir), "report.html")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    page = Elements(text)
    sections = page.select("section", "video")
    assert [s[1]["data-name"] for s in sections] == NAMES
    assert page.select("h2", None, sections[0])[0][2].endswith("/clip #1 été? 50%\\xff.mp4")
    assert [len(page.select("li", "shot", s)) for s in sections] == [3, 0, 2]
    assert [len(page.select("li", "segment", s)) for s in sections] == [0, 2, 2]
    assert [len(page.select(None, "range", s)) for s in sections] == [4, 2, 3]
    assert [[lane[2] for lane in page.select("div", "lane", s)] for s in sections] == [
        ["shots"], ["segments"], ["shots", "segments"]]
    # both levels: one row per tag, each range with its level (drawn in halves of the row)
    assert [(r[1]["data-class-id"], r[1]["data-level"]) for r in page.select(None, "range", sections[2])] == [
        ("7", "shot"), ("7", "segment"), ("3", "segment")]
    assert [len(page.select("div", "row", s)) for s in sections] == [3, 2, 2]
    assert [len(page.select("div", "both", s)) for s in sections] == [0, 0, 1]
    assert [len(page.select("video", None, s)) for s in sections] == [1, 1, 0]
    # one row per tag, in the order of the video's tags, labelled with the exact (unescaped) name
    rows = [[(r[1]["data-class-id"], page.select("span", "label", r)[0][2]) for r in page.select("div", "row", s)]
            for s in sections]
    assert rows == [[("7", EVIL), ("3", QUOTES), ("12", "天空")], [("3", QUOTES), ("5", "five")],
                    [("7", EVIL), ("3", QUOTES)]]
    assert [page.select("span", "label", r)[0][1]["title"] for r in page.select("div", "row", sections[0])] == [
        EVIL, QUOTES, "天空"]
    assert [t[2] for t in page.select("li", "tag", sections[0])][:3] == [f"{EVIL} 0.90", f"{QUOTES} 0.70", "天空 0.50"]
    # the untrusted names never become markup: one script (the page's), no img but the thumbnails
    assert len(page.select("script")) == 1 and "__pwned" not in page.select("script")[0][2]
    assert [e[1]["src"] for e in page.select("img")] == [
        f"thumbs/clip%20%231%20%C3%A9t%C3%A9%3F%2050%25_00112233aabbccdd/shot_{k:04d}.jpg" for k in range(3)]
    # ranges placed by start and end over the duration (3 s): class 3 from 1.2 s to 3.0 s
    range_3 = page.select(None, "range", sections[0])[2]
    assert (range_3[1]["data-start"], range_3[1]["data-end"]) == ("1.2", "3.0")
    assert range_3[1]["style"].startswith("left:40.000%;width:60.000%;")
    shot_2 = page.select("li", "shot", sections[0])[2]
    assert (shot_2[1]["data-shot"], shot_2[1]["data-start"]) == ("2", "2.0")
    assert EVIL in shot_2[2] and "0:02.0–0:03.0" in shot_2[2]


def test_video_urls_are_relative_and_percent_encoded(made):
    save_dir, path, timelines, video_one = made
    sources = [e[1]["data-src"] for e in Elements(open(path, encoding="utf-8").read()).select("video")]
    assert sources == ["../videos/clip%20%231%20%C3%A9t%C3%A9%3F%2050%25%FF.mp4", "two.mp4"]
    # the URL, resolved against the page's folder, is the video's exact bytes
    decoded = urllib.parse.unquote_to_bytes(sources[0])
    assert os.path.normpath(os.fsencode(save_dir) + b"/" + decoded) == video_one
    assert report.video_url(b"/a/b", "/a/c/x:y.mp4") == "../c/x%3Ay.mp4"  # no "x:" scheme
    assert report.video_url("/a/b", None) is None


def test_write_is_atomic_and_names_the_file(tmp_path):
    save_dir = tmp_path / "out"
    save_dir.mkdir()
    report.write_report(str(save_dir), [])
    assert "0 videos" in (save_dir / "report.html").read_text(encoding="utf-8")
    assert os.listdir(save_dir) == ["report.html"]  # no temporary file left
    (tmp_path / "a file").write_text("")  # a save_dir that cannot hold files (even for root)
    with pytest.raises(files.WriteError, match="report.html"):
        report.write_report(str(tmp_path / "a file"), [])


def test_video_without_frames(tmp_path):
    """A video with no decodable frame (duration 0, no shots, no ranges), and one without a path: a
    section each, nothing placed."""
    empty = {"video": "broken.mp4", "name": "broken_0000000000000000", "metadata": {"duration": 0.0, "frames": 0},
             "tags": [], "shots": [], "segments": [], "ranges": []}
    page = Elements(open(report.write_report(tmp_path, [(empty, "broken.mp4"), (empty, None)]), encoding="utf-8").read())
    sections = page.select("section", "video")
    assert [len(page.select(None, "range", s)) + len(page.select("li", "shot", s)) for s in sections] == [0, 0]
    assert [len(page.select("video", None, s)) for s in sections] == [1, 0]
    assert sections[1][1]["data-playable"] == "no"


def test_escape():
    assert report.esc("<a href='x'>\"&\udcff") == "&lt;a href=&#x27;x&#x27;&gt;&quot;&amp;\\xff"


def test_clock_and_ticks():
    assert [report.clock(s) for s in (0, 61.25, 59.96, 3725.0)] == ["0:00.0", "1:01.2", "1:00.0", "1:02:05.0"]
    assert len(report.axis_ticks(3.0)) == 4 and len(report.axis_ticks(600.0)) == 11


def wait_for(driver, script, timeout=10):
    from selenium.webdriver.support.ui import WebDriverWait  # selenium: only where a browser runs
    return WebDriverWait(driver, timeout).until(lambda d: d.execute_script(script))


def test_report_in_chromium(made, browser, tmp_path):  # noqa: F811 (the fixture)
    pytest.importorskip("av", reason="PyAV writes the H.264 video that Chromium plays")
    from selenium.webdriver.common.keys import Keys
    save_dir, path, timelines, video_one = made
    browser.get("file://" + urllib.parse.quote(path))
    js = browser.execute_script
    sections = js("return [...document.querySelectorAll('section.video')].map(s => s.dataset.name)")
    assert sections == NAMES
    counts = js("return [...document.querySelectorAll('section.video')].map(s => ["
                "s.querySelectorAll('.shot').length, s.querySelectorAll('.segment').length, "
                "s.querySelectorAll('.range[data-class-id]').length])")
    assert counts == [[3, 0, 4], [0, 2, 2], [2, 2, 3]]
    labels = js("return [...document.querySelectorAll('#video-0 .row .label')].map(e => e.textContent)")
    assert labels == [EVIL, QUOTES, "天空"]
    assert js("return typeof window.__pwned") == "undefined"
    assert js("return document.querySelectorAll('[onerror]').length") == 0
    # thumbnails loaded from their relative links
    assert js("return [...document.images].map(i => i.complete && i.naturalWidth)") == [160, 160, 160]
    # ranges are drawn where they belong: class 3 over 1.2 s to 3 s of the track
    box = js("const e = document.querySelector('#video-0 .range[data-class-id=\"3\"]'),"
             " r = e.getBoundingClientRect(), t = e.parentElement.getBoundingClientRect();"
             " return [(r.left - t.left) / t.width, r.width / t.width]")
    assert box == pytest.approx([0.4, 0.6], abs=0.01)
    # both levels: class 7's shot range in the upper half of its row, its segment range in the lower
    halves = js("const [a, b] = document.querySelectorAll('#video-2 .range[data-class-id=\"7\"]'),"
                " t = a.parentElement.getBoundingClientRect(), mid = (t.top + t.bottom) / 2;"
                " return [a.getBoundingClientRect().bottom <= mid + 1, b.getBoundingClientRect().top >= mid - 1,"
                " b.getBoundingClientRect().width / t.width]")
    assert halves == [True, True, pytest.approx(0.75, abs=0.01)]

    # video one (H.264, the odd name) plays; video two (MPEG-4 part 2) does not, and says so
    wait_for(browser, "return [...document.querySelectorAll('section.video')]"
                      ".every(s => s.dataset.playable !== 'unknown')")
    assert js("return [...document.querySelectorAll('section.video')].map(s => s.dataset.playable)") == [
        "yes", "no", "no"]  # no video file given: no player
    assert js("return ['#video-1 video', '#video-1 .noplay', '#video-0 video', '#video-0 .noplay']"
              ".map(s => document.querySelector(s).offsetHeight > 0)") == [False, True, True, False]
    assert js("return document.querySelector('#video-0 video').duration") == pytest.approx(3.0, abs=0.05)
    # clicking a range, a shot, a shot lane box seeks there
    for selector, seconds in (("#video-0 .range[data-class-id=\"3\"]", 1.2), ("#video-0 .shot[data-shot=\"2\"]", 2.0),
                              ("#video-0 .lane-box:nth-child(2)", 1.2)):
        browser.find_element("css selector", selector).click()
        wait_for(browser, f"return document.querySelector('#video-0 video').currentTime === {seconds}")
    # the playhead follows: 1.2 s of 3 s
    wait_for(browser, "return parseFloat(document.querySelector('#video-0').style.getPropertyValue('--t')) === 40")
    # a shot seeks with the keyboard too (Enter)
    browser.find_element("css selector", "#video-0 .shot[data-shot=\"0\"]").send_keys(Keys.ENTER)
    wait_for(browser, "return document.querySelector('#video-0 video').currentTime === 0")

    # no network: every URL the browser requested is a file (or inline), and no link or source is http(s)
    requested = requested_urls(browser)
    assert any(url.endswith("shot_0002.jpg") for url in requested)  # the log sees the page's requests
    assert all(url.startswith(("file:", "data:")) for url in requested), requested  # data: the video controls' icons
    assert js("return [...document.querySelectorAll('[src], [href]')]"
              ".filter(e => /^https?:/i.test(e.src || e.href)).length") == 0
    browser.save_screenshot(str(tmp_path / "report.png"))


def test_videos_load_near_the_window(made, browser, tmp_path):  # noqa: F811 (the fixture)
    """Sections far below the window have no player yet (a browser holds so many at most)."""
    save_dir, path, timelines, video_one = made
    many = report.write_report(str(tmp_path), timelines * 5)  # 15 sections, each ~700 px high
    browser.get("file://" + urllib.parse.quote(many))
    js = browser.execute_script
    wait_for(browser, "return document.querySelector('#video-0').dataset.playable === 'yes'")
    assert js("return document.querySelector('#video-13 video').getAttribute('src')") is None
    js("document.querySelector('#video-13').scrollIntoView()")
    wait_for(browser, "return document.querySelector('#video-13').dataset.playable === 'no'")
    wait_for(browser, "return document.querySelector('#video-12').dataset.playable === 'yes'")
    assert js("return document.querySelector('#video-13 .why').textContent") != ""
