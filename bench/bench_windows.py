"""Cost of videotag.py's windows by time against the extractor's whole-video sampling, on generated
videos (PyAV, libx264): one at a constant frame rate, one whose rate changes inside windows (25 / 12 /
50 frames/s in turn, with B-frames). Per case: decode passes (grabs / frames), frames retrieved and
wall time (median of ``--repeat``), in this process, one thread. Windows: ``--seconds`` long, every
``--stride``, ``--window_seg_num`` frames each; the video: ``--seg_num`` frames, resized and cropped to
224 as the tagger's workers do.

    python bench/bench_windows.py [--minutes 1] [--size 640x360] [--seconds 5] [--window_seg_num 8]
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

import cv2
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from video_tag.readers import video_reader as vr  # noqa: E402
from video_tag.readers.windows import decode_windows  # noqa: E402


def write_video(path, stamps_ms, width, height):
    import av
    container = av.open(path, "w")
    stream = container.add_stream("libx264", rate=25)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    stream.options = {"bframes": "2", "preset": "veryfast"}
    stream.time_base = stream.codec_context.time_base = __import__("fractions").Fraction(1, 1000)
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (height, width, 3), np.uint8)
    for i, ms in enumerate(stamps_ms):
        frame = av.VideoFrame.from_ndarray(np.roll(base, 4 * i, axis=1), format="rgb24")
        frame.pts = int(ms)
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()


class Counting:
    """cv2.VideoCapture counting grabs and retrieves."""
    grabs = retrieves = 0

    def __init__(self, *args):
        self.cap = REAL(*args)

    def grab(self):
        Counting.grabs += 1
        return self.cap.grab()

    def retrieve(self):
        Counting.retrieves += 1
        return self.cap.retrieve()

    def __getattr__(self, name):
        return getattr(self.cap, name)


REAL = cv2.VideoCapture


def measure(run, repeat):
    times = []
    for _ in range(repeat):
        Counting.grabs = Counting.retrieves = 0
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), Counting.grabs, Counting.retrieves


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=1.0)
    p.add_argument("--size", default="640x360")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--stride", type=float, default=None)
    p.add_argument("--seg_num", type=int, default=300)
    p.add_argument("--window_seg_num", type=int, default=8)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    cv2.setNumThreads(1)
    cv2.VideoCapture = Counting
    total_ms = int(args.minutes * 60000)
    cfr = list(range(0, total_ms, 40))
    vfr, t, k = [], 0, 0
    while t < total_ms:  # 25, 12 and 50 frames/s for 3.7 s each in turn: rate changes inside windows
        vfr.append(t)
        t += (40, 83, 20)[(t // 3700) % 3]
    transform = lambda f: vr.centre_crop(vr.resize_frame(f, 256), 224)  # noqa: E731
    with tempfile.TemporaryDirectory() as folder:
        for name, stamps in (("constant 25 frames/s", cfr), ("variable 12-50 frames/s", vfr)):
            path = os.path.join(folder, "v.mp4")
            write_video(path, stamps, width, height)
            n = len(stamps)
            rows = [("extractor (whole video)", lambda: vr.decode_sampled(path, args.seg_num, "infer",
                                                                          transform=transform)),
                    (f"windows {args.seconds:g} s", lambda: decode_windows(
                        path, args.seg_num, transform, lambda m: None, args.seconds, args.stride,
                        args.window_seg_num))]
            print(f"{name}: {n} frames, {args.minutes:g} min, {width}x{height}")
            for label, run in rows:
                seconds, grabs, retrieves = measure(run, args.repeat)
                print(f"  {label:26s} {seconds:6.2f} s  passes {grabs / n:4.2f}  retrieved {retrieves}")


if __name__ == "__main__":
    main()
