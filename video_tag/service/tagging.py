"""One video at a time with the models loaded once: the per-video entry point of the service's workers,
built from the pieces ``tagger.tag`` (videotag.py) uses (the extractor's Paddle Inference engine, the
levels decoder ``windows.stream_levels``, ``tagger.tag_messages`` and ``tagger.Levels``), so that a
video's result is what videotag.py writes for it.

A result (JSON-ready) is the video's timeline, as videotag.py writes it to ``timelines/<name>.json``
(``timeline.py``, valid against ``timeline.schema.json``)::

    {"video": "clip.mp4", "name": "clip_<16 hex>",
     "metadata": {"duration": 12.48, "fps": 25.0, "frames": 312, "width": 640, "height": 360, "codec": "avc1"},
     "tags": [{"class_id": 7, "class_name": "...", "probability": 0.93}, ...],   # predict.py's format
     "shots": [{"shot": 0, "start": 0.0, "end": 4.2, "start_frame": 0, "end_frame": 105, "tags": [...]}, ...],
     "segments": [{"segment": 0, "start": 0.0, "end": 30.0, "tags": [...]}, ...],
     "ranges": [{"class_id": 7, "class_name": "...", "start": 0.0, "end": 8.4, "confidence": 0.91,
                 "level": "shot"}, ...]}

``shots`` is ``[]`` without the ``shots`` option, ``segments`` ``[]`` without ``segment_seconds``.
"""
from .. import extractor, weights
from ..decode_pool import DecodePool
from ..errors import UserError
from ..models import build_model
from ..readers.lists import read_label_file
from ..readers.windows import FRAMES_AT
from ..tagger import Levels, tag_messages
from ..timeline import TimelineOptions, allowed_classes
from .decoding import decode_job


class VideoError(Exception):
    """A video that could not be tagged; ``str(e)`` is the reason."""


class Tagger:
    """The TSN engine and the AttentionLSTM of one device, loaded once; ``tag`` or ``result`` per video.

    Args as ``tagger.tag``'s: the two configs (dicts), weight files, the label file, the TSN precision,
    ``use_gpu`` (the caller has set Paddle's device), ``frame_batch`` frames per TSN batch, ``device_id``.
    """

    def __init__(self, tsn_cfg, lstm_cfg, tsn_weights, lstm_weights, label_file, precision="fp32",
                 use_gpu=False, frame_batch=8, device_id=0):
        self.names = read_label_file(label_file, int(lstm_cfg["MODEL"]["num_classes"]))
        self.topk = int(lstm_cfg["MODEL"]["topk"])
        self.seg_num = int(tsn_cfg["INFER"]["seg_num"])
        self.short_size, self.target = int(tsn_cfg["INFER"]["short_size"]), int(tsn_cfg["INFER"]["target_size"])
        extractor.refuse_unsupported(precision, use_gpu, frame_batch)
        settings = extractor.run_settings(tsn_cfg, tsn_weights, precision)
        self.model = build_model("AttentionLSTM", lstm_cfg)
        weights.load_weights(self.model, lstm_weights)
        self.model.eval()
        self.engine = extractor.build_engine(tsn_cfg, tsn_weights, precision, use_gpu, frame_batch, device_id,
                                             settings["weights_sha256"])

    def decode_args(self, options):
        """What ``decoding.decode_job`` needs for a video tagged with ``options`` (``options.check_options``):
        ``windows.stream_levels``'s settings, without thumbnails; shots of their own frames (videotag.py's
        default ``--shot_frames own``)."""
        return (self.seg_num, self.short_size, self.target, options.get("segment_seconds"),
                options.get("segment_stride_seconds"), options.get("segment_seg_num"), bool(options.get("shots")),
                False, False)

    def levels(self, options):
        """``tagger.Levels`` for ``options`` (videotag.py's defaults where absent); ``VideoError`` for a class
        the label file lacks (checked when the job was submitted: only a label file changed since)."""
        try:
            allowed = allowed_classes(self.names, options.get("include", ()), options.get("exclude", ()))
        except UserError as e:
            raise VideoError(str(e)) from None
        return Levels(self.names, int(options.get("topk") or self.topk), float(options.get("threshold", 0.0)),
                      allowed, float(options.get("min_confidence", TimelineOptions.min_confidence)),
                      "own" if options.get("shots") else None)

    def result(self, path, messages, options, on_window=None, cancelled=None, video=None):
        """Consume the decoder messages of the video at ``path``: ``(its timeline, frames run through the
        TSN)``; ``VideoError`` if it could not be read. ``video``: the name the timeline shows (default
        ``names.shown(path)``). ``on_window(end_seconds)`` after each window; ``cancelled()`` is asked
        before each message (True: the rest is read and dropped, returns None)."""
        try:
            levels = self.levels(options)
        except VideoError:
            for _ in messages:
                pass
            raise
        watched = Watched(messages, on_window, cancelled)
        tagged = tag_messages(self.engine, self.model, self.target, watched)
        if watched.cancelled:
            return None
        if isinstance(tagged, str):
            raise VideoError(tagged)
        timeline = levels.record(path, tagged)
        if video is not None:
            timeline["video"] = video
        return timeline, len(watched.numbers)

    def tag(self, path, options=None):
        """Tag one video (decoded in a process of its own, as videotag.py's): its timeline."""
        options = options or {}
        with DecodePool([(path, self.decode_args(options))], decode_job, (), 1, buffered=2) as pool:
            for _, messages in pool:
                timeline, _ = self.result(path, messages, options)
        return timeline


class Watched:
    """A video's decoder messages as they pass: ``on_window(end)`` once a window has been taken (and
    tagged), ``cancelled()`` before each (True: the rest is drained, the iteration ends, ``.cancelled``);
    ``numbers``: the frames sampled (each goes through the TSN once, ``tagger.FeatureCache``)."""

    def __init__(self, messages, on_window=None, cancelled=None):
        self.messages, self.on_window, self.is_cancelled = messages, on_window, cancelled
        self.cancelled, self.numbers = False, set()

    def __iter__(self):
        for message in self.messages:
            if self.is_cancelled is not None and self.is_cancelled():
                self.cancelled = True
                for _ in self.messages:
                    pass
                return
            if message[0] in FRAMES_AT:
                self.numbers.update(message[-1])
            yield message
            if message[0] == "window" and self.on_window is not None:
                self.on_window(message[3])
