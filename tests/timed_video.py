"""Videos with known timestamps for the window tests (PyAV): frame i shows its own number, so a window
sampled one frame late, or from a truncated plan, is seen in the frames it delivers."""
import fractions

import numpy as np

SIZE = 64  # pixels, square: each half a whole number of 16-pixel macroblocks


def frame_image(i):
    """RGB uint8 [SIZE, SIZE, 3]: the top half grey 16 * (i % 16) + 8, the bottom half 16 * (i // 16 % 16) + 8
    (numbers repeat after 256)."""
    image = np.empty((SIZE, SIZE, 3), np.uint8)
    image[:SIZE // 2] = 16 * (i % 16) + 8
    image[SIZE // 2:] = 16 * (i // 16 % 16) + 8
    return image


def frame_number(frame):
    """The number ``frame_image`` drew on a decoded RGB frame of any size (a few grey levels of codec
    error are tolerated)."""
    h, w = frame.shape[:2]
    top, bottom = int(frame[h // 4, w // 2].mean()), int(frame[3 * h // 4, w // 2].mean())
    return round((top - 8) / 16) + 16 * round((bottom - 8) / 16)


def write_timed_video(path, stamps_ms, codec="libx264", rate=25, time_base=fractions.Fraction(1, 1000),
                      options=None, max_b_frames=None, container_format=None):
    """Encode ``frame_image(i)`` at ``stamps_ms[i]`` (ms, increasing; any spacing: variable frame rate)
    with PyAV. ``rate``: the nominal frame rate the stream declares; ``options``: encoder options (e.g.
    libx264 ``{"bframes": "2"}``); ``max_b_frames``: for encoders without such an option (mpeg4).
    Returns ``str(path)``."""
    import av
    container = av.open(str(path), "w", format=container_format)
    stream = container.add_stream(codec, rate=rate)
    stream.width = stream.height = SIZE
    stream.pix_fmt = "yuv420p"
    stream.codec_context.bit_rate = 2000000  # mpeg4's default blurs the grey levels apart
    stream.time_base = stream.codec_context.time_base = time_base
    if options:
        stream.options = options
    if max_b_frames is not None:
        stream.codec_context.max_b_frames = max_b_frames
    for i, ms in enumerate(stamps_ms):
        frame = av.VideoFrame.from_ndarray(frame_image(i), format="rgb24")
        frame.pts, frame.time_base = int(round(ms / 1000 / time_base)), time_base
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return str(path)
