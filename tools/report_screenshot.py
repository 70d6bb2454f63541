"""A screenshot of a report page (``docs/report.png`` of the README), taken in headless Chromium.

    python tools/report_screenshot.py                          # an example: a generated video, made-up tags
    python tools/report_screenshot.py out/report.html --out report.png   # a page videotag.py --report wrote

The example is a 9.6 s video of three shots drawn as the demo's classes (``video_tag/demo.py``: red ball
rolling, green stripes panning, yellow ring pulsing), H.264 (PyAV), with a timeline whose tags and
confidences are made up to look like a tagger's. The page is clicked once (a range: the video seeks
there) and shot over its whole height; the PNG is reduced to 256 colours (Pillow) to stay small.
Needs selenium and Debian's chromium + chromium-driver (as the browser tests: tests/browser.py).
"""
import argparse
import os
import sys
import tempfile
import time
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]
from browser import missing, start_chromium  # noqa: E402 (tests/browser.py)

SHOTS = [(0, 0.0, 3.0), (2, 3.0, 6.0), (5, 6.0, 9.6)]  # (demo class, start, end seconds)
NAME = "example_0123456789abcdef"
MAX_HEIGHT = 3000  # pixels of the screenshot at most (the window's height: the page is cut below)


def tag(class_id, probability):
    from video_tag.demo import CLASSES
    return {"class_id": class_id, "class_name": CLASSES[class_id], "probability": probability}


def span(class_id, start, end, confidence):
    """A range of the timeline (TIMELINE.md)."""
    from video_tag.demo import CLASSES
    return {"class_id": class_id, "class_name": CLASSES[class_id], "start": start, "end": end,
            "confidence": confidence, "level": "shot"}


def example_report(folder):
    """Write the example video, thumbnails and report.html into ``folder``; returns the report's path."""
    import av
    import cv2
    import numpy as np
    from video_tag import report
    from video_tag.demo import FPS, SIZE, draw

    rng = np.random.default_rng(0)
    video = os.path.join(folder, "videos", "street corner.mp4")
    thumbs = os.path.join(folder, "out", "thumbs", NAME)
    os.makedirs(os.path.dirname(video))
    os.makedirs(thumbs)
    with av.open(video, "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = SIZE[0], SIZE[1], "yuv420p"
        for shot, (cls, start, end) in enumerate(SHOTS):
            params = {"background": 30, "speed": 1.0, "x": 60, "y": 60}
            count = round((end - start) * FPS)
            for k in range(count):
                image = draw(cls, k / count, rng, params)
                if k == count // 2:
                    cv2.imwrite(os.path.join(thumbs, f"shot_{shot:04d}.jpg"), image)
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image[:, :, ::-1]), format="rgb24")
                container.mux(stream.encode(frame))
        container.mux(stream.encode())
    shots = [{"shot": k, "start": start, "end": end, "start_frame": round(start * FPS), "end_frame": round(end * FPS),
              "tags": [tag(cls, 0.91 - 0.07 * k), tag(4, 0.12 + 0.05 * k)],
              "thumbnail": f"thumbs/{NAME}/shot_{k:04d}.jpg"} for k, (cls, start, end) in enumerate(SHOTS)]
    ranges = [span(cls, start, end, 0.91 - 0.07 * k) for k, (cls, start, end) in enumerate(SHOTS)]
    ranges = sorted(ranges + [span(4, 3.0, 9.6, 0.62)], key=lambda r: (r["start"], r["class_id"]))
    timeline = {"video": "videos/street corner.mp4", "name": NAME,
                "metadata": {"duration": 9.6, "fps": float(FPS), "frames": 96, "width": SIZE[0], "height": SIZE[1],
                             "codec": "h264"},
                "tags": [tag(0, 0.88), tag(2, 0.81), tag(5, 0.74), tag(4, 0.35)],
                "shots": shots, "segments": [], "ranges": ranges}
    return report.write_report(os.path.join(folder, "out"), [(timeline, video)])


def screenshot(page, out, width):
    """Open ``page`` (a report.html), click its first range, save the whole page as a 256-colour PNG."""
    from PIL import Image

    driver = start_chromium()
    try:
        driver.set_window_size(width, MAX_HEIGHT)
        driver.get("file://" + urllib.parse.quote(os.path.abspath(page)))
        ranges = driver.find_elements("css selector", ".range")
        if ranges:
            ranges[len(ranges) // 2].click()
        time.sleep(1.0)  # the seek and the frame it shows
        height = driver.execute_script("return Math.ceil(document.body.getBoundingClientRect().bottom)")
        driver.save_screenshot(out)
    finally:
        driver.quit()
    image = Image.open(out).convert("RGB")
    image.crop((0, 0, image.width, min(height + 16, image.height))).quantize(256).save(out, optimize=True)
    return os.path.getsize(out)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("report", nargs="?", help="a report.html (default: a generated example)")
    p.add_argument("--out", default=os.path.join(ROOT, "docs", "report.png"), help="the PNG written")
    p.add_argument("--width", type=int, default=1100, help="window width in pixels")
    args = p.parse_args()
    reason = missing()
    if reason is not None:
        print(f"error: no browser: {reason}", file=sys.stderr)
        return 2
    if args.report is not None and not os.path.isfile(args.report):
        print(f"error: {args.report}: no such file", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="videotag_report_") as folder:
        page = args.report or example_report(folder)
        size = screenshot(page, args.out, args.width)
    print(f"{args.out}: {size // 1024} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
