"""Generated videos with known shot changes for the shot tests: textured scenes (smooth noise of a few
scales, shapes), moving textured objects, camera pans, sensor noise, encoded with H.264 (PyAV) and
decoded back, so the detector sees codec artefacts as it would in a real file."""

import cv2
import numpy as np

WIDTH, HEIGHT, FPS = 160, 96, 25
DISSOLVE = 15  # frames


class Scene:
    """A textured world larger than the frame (so the camera can pan over it) with moving objects.

    ``frame(t)``: RGB uint8 [HEIGHT, WIDTH, 3] at frame t of the shot; ``pan``: camera pixels per frame
    (x, y); ``objects``: how many textured discs cross the view."""

    def __init__(self, seed, pan=(0.0, 0.0), objects=2, length=200):
        rng = np.random.default_rng(seed)
        self.rng, self.pan = rng, pan
        margin_x = int(abs(pan[0]) * length) + 8
        margin_y = int(abs(pan[1]) * length) + 8
        h, w = HEIGHT + margin_y, WIDTH + margin_x
        world = np.zeros((h, w, 3), np.float32)
        for cells, weight in ((3, 1.0), (8, 0.6), (24, 0.35), (64, 0.2)):  # smooth noise, coarse to fine
            grid = rng.normal(0, 1, (max(2, cells * h // w), cells, 3)).astype(np.float32)
            world += weight * cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
        colours = rng.uniform(30, 220, (3,)), rng.uniform(15, 45, (3,))
        world = colours[0] + colours[1] * world
        for _ in range(6):  # shapes: edges as real scenes have
            colour = tuple(float(c) for c in rng.uniform(0, 255, 3))
            x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
            if rng.random() < 0.5:
                cv2.circle(world, (x, y), int(rng.integers(4, 20)), colour, -1)
            else:
                cv2.rectangle(world, (x, y), (x + int(rng.integers(6, 40)), y + int(rng.integers(6, 30))),
                              colour, -1)
        self.world = world
        self.origin = (margin_x // 2 if pan[0] < 0 else 4, margin_y // 2 if pan[1] < 0 else 4)
        self.objects = [(rng.uniform(0, WIDTH), rng.uniform(0, HEIGHT), rng.uniform(-3, 3), rng.uniform(-2, 2),
                         int(rng.integers(6, 14)), rng.uniform(0, 255, 3)) for _ in range(objects)]

    def frame(self, t, camera_t=None):
        """``camera_t``: where the camera is (the frame its pan has reached; default ``t``)."""
        camera_t = t if camera_t is None else camera_t
        x = self.origin[0] + self.pan[0] * camera_t
        y = self.origin[1] + self.pan[1] * camera_t
        shift = np.float32([[1, 0, -x], [0, 1, -y]])  # sub-pixel camera position
        image = cv2.warpAffine(self.world, shift, (WIDTH, HEIGHT), flags=cv2.INTER_LINEAR)
        for ox, oy, vx, vy, radius, colour in self.objects:
            cx, cy = (ox + vx * t) % (WIDTH + 20) - 10, (oy + vy * t) % (HEIGHT + 20) - 10
            cv2.circle(image, (int(cx), int(cy)), radius, tuple(float(c) for c in colour), -1)
            cv2.circle(image, (int(cx), int(cy)), radius // 2, tuple(float(255 - c) for c in colour), -1)
        image += 3 * self.rng.standard_normal(image.shape, dtype=np.float32)  # sensor noise
        return image


def shot_frames(shots, transitions):
    """Frames (float32 RGB) of ``shots`` ``[(Scene, length)]`` joined by ``transitions`` (one fewer):
    ``"cut"`` or ``"dissolve"`` (``DISSOLVE`` frames, frame j of it ``(1 - a) A + a B`` with ``a = (j + 1)
    / (DISSOLVE + 1)``, B's shot starting with the dissolve). Returns ``(frames, cuts)``: a hard cut's
    frame is the first of the new shot, a dissolve's its middle frame."""
    frames, cuts = [], []
    carry = None  # (scene, t) of the shot dissolving out
    for k, (scene, length) in enumerate(shots):
        kind = transitions[k - 1] if k else None
        for t in range(length):
            image = scene.frame(t)
            if kind == "dissolve" and t < DISSOLVE:
                a = (t + 1) / (DISSOLVE + 1)
                image = (1 - a) * carry[0].frame(carry[1] + t) + a * image
            frames.append(image)
        start = len(frames) - length
        if kind == "cut":
            cuts.append(start)
        elif kind == "dissolve":
            cuts.append(start + DISSOLVE // 2)
        carry = (scene, length)
    return frames, cuts


def encode_decode(frames, path):
    """Encode ``frames`` as H.264 at ``FPS`` (PyAV), decode them back: ``[(RGB uint8 frame, seconds)]``."""
    import av
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"crf": "23", "preset": "veryfast"}
        for image in frames:
            frame = av.VideoFrame.from_ndarray(np.clip(image, 0, 255).astype(np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with av.open(str(path)) as container:
        return [(f.to_ndarray(format="rgb24"), float(f.time)) for f in container.decode(video=0)]


def cut_video(seed, shots=8):
    """Hard cuts: ``shots`` shots of 30 to 60 frames, each with moving objects and a slow random pan."""
    rng = np.random.default_rng(seed)
    scenes = [(Scene(seed * 100 + k, pan=tuple(rng.uniform(-0.5, 0.5, 2)), length=60), int(rng.integers(30, 61)))
              for k in range(shots)]
    return shot_frames(scenes, ["cut"] * (shots - 1))


def dissolve_video(seed, shots=6):
    """Dissolves of ``DISSOLVE`` frames between ``shots`` shots of 45 to 70 frames."""
    rng = np.random.default_rng(seed)
    scenes = [(Scene(seed * 100 + k, pan=tuple(rng.uniform(-0.5, 0.5, 2)), length=70), int(rng.integers(45, 71)))
              for k in range(shots)]
    return shot_frames(scenes, ["dissolve"] * (shots - 1))


def static_video(seed, length=200):
    """One shot, a static camera, several fast moving objects."""
    return shot_frames([(Scene(seed, objects=5, length=length), length)], [])


def pan_video(seed, length=200, speed=(1.5, 0.4)):
    """One shot, the camera panning ``speed`` pixels per frame (a slow pan: ~10 s across the frame)."""
    return shot_frames([(Scene(seed, pan=speed, objects=2, length=length), length)], [])


def whip_video(seed, length=120, still=50, move=12, speed=6.0):
    """One shot: the camera still, then moving ``speed`` pixels per frame for ``move`` frames (a fast move
    from one view to another, as over a dissolve's length), then still again."""
    scene = Scene(seed, pan=(speed, 0.0), objects=2, length=move)
    frames = [scene.frame(t, camera_t=min(max(t - still, 0), move)) for t in range(length)]
    return frames, []


def ramp_video(seed, length=130, still=40, gains=(0.3, 1.5)):
    """One shot whose light, steady for ``still`` frames, then rises steadily to the end (auto exposure, a
    dimmer): each frame a little brighter, as in a fade in, but without end."""
    scene = Scene(seed, objects=2, length=length)
    slope = (gains[1] - gains[0]) / (length - 1 - still)
    frames = [scene.frame(t) * (gains[0] + slope * max(0, t - still)) for t in range(length)]
    return frames, []


def fade_video(seed, hold=0, fade=DISSOLVE):
    """Two shots through black: A fades out over ``fade`` frames, ``hold`` black frames, B fades in over
    ``fade`` frames. Returns ``(frames, [middle])``: the middle frame of the whole (the black between)."""
    a, b = Scene(seed * 100), Scene(seed * 100 + 1)
    frames = [a.frame(t) for t in range(50)]
    frames += [a.frame(50 + t) * (1 - (t + 1) / (fade + 1)) for t in range(fade)]
    frames += [a.frame(0) * 0 + a.rng.normal(0, 2, (HEIGHT, WIDTH, 3)) for _ in range(hold)]
    frames += [b.frame(t) * ((t + 1) / (fade + 1)) for t in range(fade)]
    frames += [b.frame(fade + t) for t in range(50)]
    return frames, [50 + (2 * fade + hold) // 2]


def matched(found, truth, tolerance):
    """How many true cuts have a found cut within ``tolerance`` (same unit; each found cut used once)."""
    unmatched, hits = list(found), 0
    for t in truth:
        near = [f for f in unmatched if abs(f - t) <= tolerance]
        if near:
            unmatched.remove(min(near, key=lambda f: abs(f - t)))
            hits += 1
    return hits
