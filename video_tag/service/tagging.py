"""One video at a time with the models loaded once: the per-video entry point of the service's workers,
built from the pieces ``tagger.tag`` (videotag.py) uses (the extractor's Paddle Inference engine, the
windows decoder, the AttentionLSTM and ``predict.top_tags``), so that a video's result holds the same
tags as videotag.py's lines for it.

A result (JSON-ready)::

    {"video": "clip.mp4",
     "tags": [{"class_id": 7, "class_name": "...", "probability": 0.93}, ...],   # predict.py's format
     "segments": [{"segment": 0, "start": 0.0, "end": 30.0, "tags": [...]}, ...]}  # with segment_seconds

``segments`` is ``[]`` without ``segment_seconds`` (as in a timeline file, TIMELINE.md).
"""
import numpy as np
import paddle

from .. import extractor, weights
from ..decode_pool import DecodePool
from ..models import MODELS, build_model
from ..names import shown
from ..predict import top_tags
from ..readers.lists import read_label_file
from ..readers.video_reader import crop_normalize
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
        """What ``decoding.decode_job`` needs for a video tagged with ``options`` (``options.check_options``)."""
        return (self.seg_num, self.short_size, self.target, options.get("segment_seconds"),
                options.get("segment_stride_seconds"), options.get("segment_seg_num"))

    def result(self, messages, options, on_window=None, cancelled=None):
        """Consume one video's decoder messages: ``(result without "video", frames run through the TSN)``;
        ``VideoError`` if it could not be read. ``on_window(end_seconds)`` after each window;
        ``cancelled()`` is asked before each message (True: the rest is read and dropped, returns None)."""
        topk, threshold = int(options.get("topk") or self.topk), float(options.get("threshold", 0.0))
        segments, frames = [], 0
        for message in messages:
            if cancelled is not None and cancelled():
                for _ in messages:
                    pass
                return None
            if message[0] == "failed":
                raise VideoError(message[1])
            if message[0] == "window":
                _, k, start, end, window = message
                segments.append({"segment": k, "start": start, "end": end,
                                 "tags": self.top(self.features(window), topk, threshold)})
                frames += len(window)
                if on_window is not None:
                    on_window(end)
            elif message[0] == "video":
                frames += len(message[1])
                return {"tags": self.top(self.features(message[1]), topk, threshold), "segments": segments}, frames
        raise VideoError("the decoder stopped before the end of this video")

    def tag(self, path, options=None):
        """Tag one video (decoded in a process of its own, as videotag.py's): its result dict."""
        options = options or {}
        with DecodePool([(path, self.decode_args(options))], decode_job, (), 1, buffered=2) as pool:
            for _, messages in pool:
                result, _ = self.result(messages, options)
        return {"video": shown(path), **result}

    def features(self, frames):
        """TSN features [len(frames), 2048] of cropped uint8 frames [N, target, target, 3]."""
        out = []
        for i in range(0, len(frames), self.engine.batch_size):
            out.append(self.engine.run(crop_normalize(frames[i:i + self.engine.batch_size], "infer", self.target)))
        return np.concatenate(out)

    def top(self, features, topk, threshold):
        """The AttentionLSTM's top-``topk`` tags (probability >= ``threshold``) for one video's features [T, 2048]."""
        with paddle.no_grad():
            logits = self.model(paddle.to_tensor(features[None]),
                                paddle.to_tensor(np.array([len(features)], np.int64)))
            probabilities = MODELS["AttentionLSTM"].probabilities(logits).numpy()[0]
        return [t for t in top_tags(probabilities, self.names, topk) if t["probability"] >= threshold]
