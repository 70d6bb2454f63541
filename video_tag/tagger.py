"""``videotag.py``: videos in, tags out, in one pass: TSN features stay in memory and go straight to the
AttentionLSTM.

Writes to ``save_dir``::

    predictions.jsonl  one line per readable video, in input order, as predict.py writes them:
                       {"video": "<path>", "tags": [{"class_id", "class_name", "probability"}, ...]}
    segments.jsonl     with ``segment_seconds``: one line per window, in input and time order:
                       {"video": "<path>", "start": 0.0, "end": 30.0, "tags": [...]}
    shots.jsonl        with ``timeline.shots``: one line per shot, in input and time order:
                       {"video": "<path>", "shot": 0, "start": 0.0, "end": 4.2, "start_frame": 0,
                        "end_frame": 105, "tags": [...]}   (seconds and decoded frame numbers, end exclusive)
    timelines/<name>.json  with shots, windows or a report: every level of one video and its tag ranges
                       (``timeline.py``; ``<name>``: ``lists.output_stem``), written atomically when the
                       video is done, before its lines
    thumbs/<name>/shot_NNNN.jpg, report.html   with ``timeline.report``
    failed.list        path<TAB>reason for every video that could not be read

Paths are written as ``names.shown`` gives them (a name that is not UTF-8 has its undecodable bytes as
``\\xNN``); in failed.list as ``names.text_path`` (also TAB, CR and newline as ``\\t``, ``\\r``, ``\\n``), as every
list of the toolkit writes them.

The JSONL files are streamed (``streaming.PartialJsonl``) and a killed run resumes after the videos it
finished, except those changed since (each line records the size and mtime its video had before it was
decoded; a video that changes while it is decoded fails, see ``CHANGED``). Videos are decoded in worker
processes, one video at a time each, which send each window's and shot's frames (and last the whole
video's) as soon as they are decoded: memory does not depend on the video's length. A frame in several
samples goes through TSN once (``FeatureCache``). Under ``paddle.distributed.launch`` each process takes every world_size-th video.
"""
import collections
import logging
import os

import numpy as np
import paddle
from tqdm import tqdm

from . import __version__
from . import distributed as dist
from . import extractor, files, timeline as tl, weights
from .cpu import reuse_freed_memory
from .decode_pool import DecodePool
from .errors import UserError
from .evaluate import write_failed_list
from .feature_store import FeatureStore, video_provenance
from .models import MODELS, build_model
from .names import shown
from .models.tsn import FEATURE_DIM
from .predict import format_tags
from .readers.lists import output_stem, read_label_file, read_lines
from .readers.video_reader import crop_normalize
from .readers.windows import stream_levels
from .streaming import PartialJsonl, file_identity, list_digest

log = logging.getLogger(__name__)

CHANGED = "the file changed while it was read (replaced or rewritten): run again to tag it as it is now"
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".flv", ".m4v", ".mpg", ".mpeg", ".wmv",
                    ".3gp", ".ts", ".mts", ".m2ts", ".ogv", ".vob", ".rm", ".rmvb", ".asf")


def find_videos(source):
    """The videos named by ``source``: a video file, a directory (its videos with a known extension,
    recursively, sorted by path) or a list file (one path per line, as the extractor's)."""
    if os.path.isdir(source):
        found = []
        for root, _, names in os.walk(source):
            found += [os.path.join(root, n) for n in names if n.lower().endswith(VIDEO_EXTENSIONS)]
        if not found:
            raise UserError(f"no video files ({', '.join(VIDEO_EXTENSIONS[:4])}, ...) under {source}")
        return sorted(found)
    if not os.path.isfile(source):
        raise UserError(f"not found: {source} (give a video, a folder of videos or a list file)")
    if _is_text(source) and not source.lower().endswith(VIDEO_EXTENSIONS):
        videos = list(dict.fromkeys(text for _, text in read_lines(source)))
        if not videos:
            raise UserError(f"list file {source} has no entries")
        return videos
    return [source]


def _is_text(path):
    """A list file is UTF-8 text; a video container holds NUL bytes in its first kilobytes."""
    with open(path, "rb") as f:
        head = f.read(4096)
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(head) - 3:  # not just a character cut at the end of the block
            return False
    return b"\0" not in head


def tag(source, save_dir, tsn_cfg, lstm_cfg, tsn_weights, lstm_weights, label_file, topk=None, threshold=0.0,
        save_features=None, segment_seconds=None, segment_stride=None, window_seg_num=None, precision="fp32",
        use_gpu=False, frame_batch=8, num_workers=2, overwrite=False, timeline=None):
    """Tag every video of ``source``. Returns the exit code (1 if any video failed). ``timeline``: a
    ``timeline.TimelineOptions`` (shots, tag ranges, class filter, report)."""
    timeline = timeline or tl.TimelineOptions()
    tl.check_options(timeline, save_dir)
    use_gpu = dist.init(use_gpu)
    reuse_freed_memory()
    world, rank = dist.world_size(), dist.rank()
    videos = find_videos(source)
    num_classes = int(lstm_cfg["MODEL"]["num_classes"])
    names = read_label_file(label_file, num_classes)
    topk = int(topk or lstm_cfg["MODEL"]["topk"])
    allowed = tl.allowed_classes(names, timeline.include, timeline.exclude)
    levels = Levels(names, topk, threshold, allowed, timeline.min_confidence,
                    timeline.shot_frames if timeline.shots else None)
    seg_num = int(tsn_cfg["INFER"]["seg_num"])
    short_size, target = int(tsn_cfg["INFER"]["short_size"]), int(tsn_cfg["INFER"]["target_size"])
    if segment_stride and not segment_seconds:
        raise UserError("--segment_stride_seconds needs --segment_seconds")
    extractor.refuse_unsupported(precision, use_gpu, frame_batch)  # before anything is written
    settings = extractor.run_settings(tsn_cfg, tsn_weights, precision)
    model = build_model("AttentionLSTM", lstm_cfg)
    weights.load_weights(model, lstm_weights)
    model.eval()
    os.makedirs(save_dir, exist_ok=True)
    inputs = {"videos_sha256": list_digest(videos), "tsn": settings,
              "lstm_sha256": files.sha256(weights.resolve(lstm_weights)),
              "labels_sha256": files.sha256(label_file),
              "topk": topk, "threshold": threshold, "model": lstm_cfg["MODEL"], "segment_seconds": segment_seconds,
              "segment_stride": segment_stride, "window_seg_num": window_seg_num, "videotag": __version__,
              "shots": timeline.shots, "min_confidence": timeline.min_confidence, "report": timeline.report,
              "classes": None if allowed is None else allowed.tolist()}
    if timeline.shot_frames != "own":  # absent for own: the resume key of runs made before the flag holds
        inputs["shot_frames"] = timeline.shot_frames
    predictions = PartialJsonl(save_dir, "predictions.jsonl", inputs)
    segments = PartialJsonl(save_dir, "segments.jsonl", inputs) if segment_seconds else None
    shots = PartialJsonl(save_dir, "shots.jsonl", inputs) if timeline.shots else None
    outputs = [o for o in (predictions, segments, shots) if o is not None]
    lines = _Lines(save_dir, predictions, segments, shots, bool(timeline.shots or segment_seconds or timeline.report))
    if overwrite and dist.is_main():
        for output in outputs:
            output.remove_partials()
    identity = {}  # list index -> file_identity of the video, taken once per run (before decoding it)

    def valid(key, record):
        """A line of an earlier run counts for the video at its index only if that video has not changed
        (each process checks its own videos; rank 0, which writes the outputs, checks all)."""
        i = key[0]
        if i >= len(videos) or record["video"] != shown(videos[i]) or not (dist.is_main() or i % world == rank):
            return False
        if i not in identity:
            identity[i] = file_identity(videos[i])
        return identity[i] is not None and record["source"] == identity[i]

    for output in outputs:
        output.resume(None if overwrite else valid)
    done = {k[0] for k in predictions.previous}
    store, clashes, spelling_of, stored = None, {}, {}, set()
    if save_features:
        store = FeatureStore(save_features, settings["feature_dtype"], extractor.shard_size(tsn_cfg))
        if dist.is_main():
            store.remove_orphans()
        # As the extractor: one spelling per real path stores the features (the others are tagged, their
        # features are the first's); a name held by another video, in the list or in the folder, fails loudly.
        unique, clashes, spelling_of = store.assign(videos)
        plan = store.plan(unique, settings, seg_num, FEATURE_DIM)
        clashes.update(plan.failed)
        stored = plan.done | {v for v, first in spelling_of.items() if first in plan.done}
        # tagged before, but the features lost (a shard unfinished when the run was killed): tag again
        done = {i for i in done if videos[i] in stored}
    dist.barrier()  # every rank has looked at the old partial files (and shards) before any new one appears
    mine = list(range(len(videos)))[rank::world]
    todo = [i for i in mine if i not in done]
    log.info("%d video(s) in %s%s: %d to tag, %d done before", len(videos), source,
             f" ({len(mine)} for this process of {world})" if world > 1 else "", len(todo), len(mine) - len(todo))
    # What each output line (and saved feature) is recorded as made from is taken before decoding: a video
    # replaced while it is decoded is found changed by the next run, never recorded under its new state.
    failed, provenance = [], {}
    for i in todo:
        identity[i] = file_identity(videos[i])
        if identity[i] is None:
            failed.append((i, videos[i], "file not found"))
        elif store is not None and videos[i] in clashes:
            failed.append((i, videos[i], clashes[videos[i]]))
        elif store is not None:
            provenance[i] = video_provenance(videos[i], settings)
            if provenance[i] is None:  # gone since it was looked at
                del provenance[i]
                failed.append((i, videos[i], "file not found"))
    todo = [i for i in todo if identity[i] is not None and (store is None or i in provenance)]
    if todo:
        decode = (seg_num, short_size, target, segment_seconds, segment_stride, window_seg_num, timeline.shots,
                  timeline.report, timeline.shot_frames == "shared")
        with _Streams([(i, videos[i]) for i in todo], decode, num_workers) as stream:
            engine = extractor.build_engine(tsn_cfg, tsn_weights, precision, use_gpu, frame_batch,
                                            paddle.distributed.ParallelEnv().device_id if use_gpu else 0,
                                            settings["weights_sha256"])
            for output in outputs:
                output.open(rank)
            try:
                with tqdm(total=len(todo), desc="videotag", unit="video", dynamic_ncols=True,
                          disable=not dist.is_main()) as progress:
                    for index, path, messages in stream:
                        result = tag_messages(engine, model, target, messages, timeline.shot_frames == "shared")
                        if not isinstance(result, str) and file_identity(path) != identity[index]:
                            result = CHANGED
                        if isinstance(result, str):
                            log.warning("cannot read %s: %s", shown(path), result)
                            failed.append((index, path, result))
                        else:
                            # the features first: a video whose features cannot be stored fails as a whole
                            # (no lines), so that the next run does it again
                            reason = (None if store is None or path in spelling_of  # stored as its first spelling
                                      else store.save(path, result.features, provenance[index]))
                            if reason is not None:  # its own write error: this video fails, not the run
                                log.warning("cannot store the features of %s: %s", shown(path), reason)
                                failed.append((index, path, reason))
                                progress.update(1)
                                continue
                            record = levels.record(path, result, timeline.report)
                            lines.write(index, identity[index], record, result.thumbnails)
                            if dist.is_main():
                                progress.write(format_tags(shown(path), record["tags"]), end="")
                        progress.update(1)
                if store is not None:
                    store.close()
            except BaseException:
                if store is not None:
                    store.close(interrupted=True)
                raise
            finally:
                for output in outputs:
                    output.__exit__()

    dist.barrier()
    gathered = dist.gather_to_main(failed)  # rank 0 alone writes failed.list: the others keep their own
    failed = sorted(sum(gathered, [])) if gathered is not None else failed
    if dist.is_main():
        for output in outputs:
            count = output.assemble(output.final(lambda key: key[0] in done))
            log.info("wrote %s: %d line(s)", output.path, count)
        write_failed_list(save_dir, failed)
        if timeline.report:
            _write_report(save_dir, videos, {i for i, _, _ in failed})
        if store is not None:  # as the extractor: what was done at the start, and a look at the rest only
            fresh = [v for v in videos if v not in stored]
            store.write_lists(videos, {p: r for _, p, r in failed},
                              stored | store.done(fresh, settings, seg_num, FEATURE_DIM))
    dist.barrier()  # the other ranks end after rank 0 has written everything; rank 0 carries the exit code
    return 1 if failed and dist.is_main() else 0


class Tagged:
    """One video's model outputs: ``probabilities`` [C] of the whole video, its ``features`` [seg_num, 2048],
    ``windows`` ``[(k, start, end, probabilities)]``, ``shots`` ``[(k, start_frame, end_frame, start, end,
    probabilities)]``, ``thumbnails`` ``{k: JPEG bytes}``, ``metadata`` (``windows._FirstPass.metadata``)."""

    def __init__(self, probabilities, features, windows, shots, thumbnails, metadata):
        self.probabilities, self.features, self.windows = probabilities, features, windows
        self.shots, self.thumbnails, self.metadata = shots, thumbnails, metadata


def tag_messages(engine, model, target, messages, shared_frames=False):
    """Consume one video's messages (``windows.stream_levels``): a ``Tagged``, or the reason (a string)
    it could not be read. ``engine``: the TSN engine (``extractor.build_engine``); ``model``: the
    AttentionLSTM in eval mode; ``target``: the crop size; ``shared_frames``: shots of shared frames
    (``SharedShots``). The service's workers tag with it too."""
    windows, shot_probabilities, thumbnails, bounds = [], {}, {}, []
    cache = FeatureCache()
    shared = SharedShots(engine, model, target, cache, shot_probabilities) if shared_frames else None
    for message in messages:
        kind = message[0]
        if kind == "failed":
            return message[1]
        if kind == "window":
            _, k, start, end, frames, numbers = message
            features = (shared.features(frames, numbers) if shared is not None
                        else _features(engine, frames, target, numbers, cache))
            windows.append((k, start, end, _probabilities(model, features)))
        elif kind == "shot":
            _, k, frames, numbers = message
            shot_probabilities[k] = _probabilities(model, _features(engine, frames, target, numbers, cache))
        elif kind == "shared_shot":
            shared.add(*message[1:])
        elif kind == "thumbnail":
            thumbnails[message[1]] = message[2]
        elif kind == "shots":
            bounds = message[1]
            if shared is not None:
                shared.finish()
        elif kind == "video":
            features = _features(engine, message[1], target, message[4], cache)
            if sorted(shot_probabilities) != list(range(len(bounds))):  # a bug, not a bad video
                raise RuntimeError(f"{len(bounds)} shots, {len(shot_probabilities)} sampled")
            shots = [(k, *bound, shot_probabilities[k]) for k, bound in enumerate(bounds)]
            return Tagged(_probabilities(model, features), features, sorted(windows, key=lambda w: w[0]), shots,
                          thumbnails, message[3])
    return "the decoder stopped before the end of this video"


class SharedShots:
    """The shots of ``--shot_frames shared`` as the tagger consumes them (``readers.shot_clips``: "shared_shot"
    messages name their frames by index, which is their number on the first pass; a shot that needs frames
    of the second pass comes as a "shot"). Every window's features go through ``features``, which holds
    those from the first frame of the first shot not tagged yet on (a shot names them, its frames sent as
    None); a shot's own frames (the video's sample's, a first frame) wait in ``pending`` and go through TSN
    with the next window's frames (one set of batches), or once a batch is full, or once every shot is
    sent. A shot is tagged (``probabilities[k]``) once its features are in hand: the AttentionLSTM over its
    frames, as many as it has. Memory: features [2048] of the windows' sampled frames from the first shot
    not tagged on, and fewer than ``engine.batch_size`` frames pending."""

    def __init__(self, engine, model, target, cache, probabilities):
        self.engine, self.model, self.target, self.cache = engine, model, target, cache
        self.probabilities = probabilities
        self.held = {}      # frame index -> features [2048]
        self.pending = {}   # frame index -> transformed frame, not through TSN yet
        self.waiting = collections.deque()  # (k, end_frame, [frame indices]) not tagged yet, in k order
        self.floor = 0      # the first frame of the first shot not tagged yet
        self.done = False   # every shot tagged: hold nothing more

    def add(self, k, start, end, frames, indices):
        for frame, i in zip(frames, indices):
            if frame is not None and i not in self.held:
                self.pending[i] = frame
        self.waiting.append((k, end, indices))
        if len(self.pending) >= self.engine.batch_size:
            self.features([], [])

    def features(self, frames, numbers):
        """TSN features [len(frames), 2048] of a window's frames (``_features``), computed together with
        the pending frames; held for the shots waiting and to come, who are then tagged."""
        ahead = list(self.pending.items())
        self.pending = {}
        if not frames and not ahead:
            return np.zeros((0, FEATURE_DIM), np.float32)
        numbers = list(numbers) + [i for i, _ in ahead]
        out = _features(self.engine, list(frames) + [f for _, f in ahead], self.target, numbers, self.cache)
        if not self.done:
            for i, row in zip(numbers, out):
                if i >= self.floor:
                    self.held[i] = row.copy()  # not a view: it would hold the whole array
            self._tag()
        return out[:len(frames)]

    def _tag(self):
        while self.waiting and all(i in self.held for i in self.waiting[0][2]):
            k, end, indices = self.waiting.popleft()
            self.probabilities[k] = _probabilities(self.model, np.stack([self.held[i] for i in indices]))
            self.floor = end
            for i in [i for i in self.held if i < end]:
                del self.held[i]

    def finish(self):
        """Every shot has been sent: tag those still waiting."""
        self.features([], [])
        if self.waiting:  # a bug, not a bad video
            raise RuntimeError(f"shot {self.waiting[0][0]}: frames {self.waiting[0][2]} not sent")
        self.done, self.held = True, {}


class FeatureCache:
    """The TSN features of the last ``size`` frames computed for one video, by frame number
    (``windows.Numbered``): a frame in a window's sample and in a shot's goes through the network once.
    Samples come in time order (a shot's as its cut is found, a window's at its end), so the frames they
    share are recent. ``size`` frames of 2048 floats: 16 MiB at 2048."""

    def __init__(self, size=2048):
        self.size, self.features = size, collections.OrderedDict()

    def get(self, number):
        found = self.features.get(number)
        if found is not None:
            self.features.move_to_end(number)
        return found

    def put(self, number, features):
        self.features[number] = features
        if len(self.features) > self.size:
            self.features.popitem(last=False)


def _features(engine, frames, target, numbers=None, cache=None):
    """TSN features [len(frames), 2048] of cropped uint8 frames, in batches of the engine's size. A frame
    sampled more than once (a window or shot shorter than its sample: one number, or without numbers one
    object, which stays one through the pipe) goes through the network once, and one in ``cache`` (by
    its number) not at all."""
    keys = numbers if numbers is not None else [id(f) for f in frames]
    known = {k: cache.get(k) for k in dict.fromkeys(keys)} if cache is not None and numbers is not None else {}
    position, unique = {}, []
    for key, frame in zip(keys, frames):
        if key not in position and known.get(key) is None:
            position[key] = len(unique)
            unique.append(frame)
    computed = _run_network(engine, unique, target) if unique else None
    if not known and len(unique) == len(frames):
        features = computed
    else:
        features = np.stack([known[k] if known.get(k) is not None else computed[position[k]] for k in keys])
    if cache is not None and numbers is not None:
        for key, at in position.items():
            cache.put(key, computed[at].copy())  # not a view: it would hold the whole batch
    return features


def _run_network(engine, frames, target):
    """TSN features of ``frames`` in batches of exactly the engine's size, the last one filled up with
    copies of its last frame (their outputs dropped): Paddle Inference keeps buffers for each input shape
    it meets (about 180 MB each for ResNet101 at 224 px, measured), and the samples' sizes, once frames
    are shared between them, would bring every size from 1 to the batch size."""
    out, size = [], engine.batch_size
    for i in range(0, len(frames), size):
        batch = frames[i:i + size]
        out.append(engine.run(crop_normalize(batch + [batch[-1]] * (size - len(batch)), "infer", target))[:len(batch)])
    return np.concatenate(out)


def _probabilities(model, features):
    """The AttentionLSTM's class probabilities [C] for one video's (window's, shot's) features."""
    with paddle.no_grad():
        logits = model(paddle.to_tensor(features[None]), paddle.to_tensor(np.array([len(features)], np.int64)))
        return MODELS["AttentionLSTM"].probabilities(logits).numpy()[0]


class Levels:
    """Turns a ``Tagged`` into the video's record (the timeline dict, ``timeline.py``): its top tags at
    every level (``topk`` of the ``allowed`` classes with probability >= ``threshold``) and the tag ranges
    of its shots and windows (``min_confidence``). ``shot_frames``: what the shots were tagged from
    (``--shot_frames``), recorded with them; None without shots."""

    def __init__(self, names, topk, threshold, allowed, min_confidence, shot_frames=None):
        self.names, self.topk, self.threshold = names, topk, threshold
        self.allowed, self.min_confidence, self.shot_frames = allowed, min_confidence, shot_frames

    def tags(self, probabilities):
        return tl.top_tags(probabilities, self.names, self.topk, self.threshold, self.allowed)

    def record(self, path, tagged, thumbnails=False):
        name = output_stem(path)
        shots = []
        for k, start_frame, end_frame, start, end, probabilities in tagged.shots:
            row = {"shot": k, "start": start, "end": end, "start_frame": start_frame, "end_frame": end_frame,
                   "tags": self.tags(probabilities)}
            if thumbnails and k in tagged.thumbnails:
                row["thumbnail"] = thumbnail_path(name, k)
            shots.append(row)
        segments = [{"segment": k, "start": start, "end": end, "tags": self.tags(p)}
                    for k, start, end, p in tagged.windows]
        ranges = (tl.tag_ranges([s[3:] for s in tagged.shots], self.names, self.min_confidence, "shot", self.allowed)
                  + tl.tag_ranges([w[1:] for w in tagged.windows], self.names, self.min_confidence, "segment",
                                  self.allowed))
        record = {"video": shown(path), "name": name, "metadata": tagged.metadata,
                  "tags": self.tags(tagged.probabilities), "shots": shots, "segments": segments,
                  "ranges": tl.sort_ranges(ranges)}
        if self.shot_frames is not None:
            record["shot_frames"] = self.shot_frames
        return record


def thumbnail_path(name, k):
    """Shot k's thumbnail, relative to save_dir."""
    return f"thumbs/{name}/shot_{k:04d}.jpg"


class _Lines:
    """Where a tagged video's record goes: its thumbnails and timeline (``timelines``), then its lines in
    the JSONL outputs (``segments`` and ``shots`` may be None)."""

    def __init__(self, save_dir, predictions, segments, shots, timelines):
        self.save_dir, self.timelines = save_dir, timelines
        self.predictions, self.segments, self.shots = predictions, segments, shots

    def write(self, index, source, record, thumbnails):
        """Video ``index`` (``source``: its ``file_identity``). The timeline first, each file atomically: a
        video with lines has its timeline, and a killed run leaves none half-written."""
        if self.timelines:
            for row in record["shots"]:
                if "thumbnail" in row:
                    data = thumbnails[row["shot"]]
                    files.atomic_write(os.path.join(self.save_dir, row["thumbnail"]), lambda f: f.write(data))
            tl.write_timeline(os.path.join(self.save_dir, "timelines", record["name"] + ".json"), record)
        head = {"source": source, "video": record["video"]}
        for row in record["segments"]:
            self.segments.append([index, row["segment"]], {**head, "start": row["start"], "end": row["end"],
                                                          "tags": row["tags"]})
        for row in record["shots"]:
            self.shots.append([index, row["shot"]], {**head, **{k: v for k, v in row.items() if k != "thumbnail"}})
        self.predictions.append([index], {**head, "tags": record["tags"]})


def _write_report(save_dir, videos, failed):
    """report.html over the timelines of the videos tagged, in this run or an earlier one."""
    from .report import write_report
    timelines = []
    for i, path in enumerate(videos):
        location = os.path.join(save_dir, "timelines", output_stem(path) + ".json")
        if i not in failed and os.path.isfile(location):
            timelines.append((tl.read_timeline(location), path))
    log.info("wrote %s", write_report(save_dir, timelines))


class _Streams:
    """Videos decoded in ``num_workers`` processes (``decode_pool.DecodePool``: its crash rule, shutdown and
    bound: a worker runs at most three messages ahead), each sending its windows and then the whole video as
    they are decoded. Iterating yields ``(index, path, messages)`` in input order; ``messages`` must be
    consumed before the next video; a video that could not be decoded ends with ``("failed", reason)``."""

    def __init__(self, jobs, decode, num_workers):
        self.jobs = jobs
        self.pool = DecodePool([path for _, path in jobs], stream_levels, (decode,), num_workers, buffered=2)

    def __iter__(self):
        for (index, path), (_, messages) in zip(self.jobs, self.pool):
            yield index, path, messages

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.pool.__exit__(*exc)
