"""TSN feature files (one per video, [T, 2048] float32, float16 or uint8: ``feature_files``) for the AttentionLSTM.

The list format (``TRAIN/VALID/TEST/INFER.filelist``) is described in ``lists.py``; a path may name a
member of a feature shard (``shards.py``)::

    data/tsn_features/cooking video.npy 3 17 204
    data/tsn_features/shard-000012.tar/cooking video_1f3a9c2e.npy 3 17 204

Videos may have different T: a batch is padded to its longest video and carries the lengths.
"""
import logging

import numpy as np

from .. import feature_files, shards
from ..config import DEFAULTS
from .lists import read_list

log = logging.getLogger(__name__)


class FeatureReader:
    """The samples of one list. ``load(i)`` returns a sample dict or raises ``ValueError`` with the reason.

    mode: "train" / "valid" / "test" need label ids on every line; "infer" ignores them.
    cfg: the config (``MODEL.num_classes``, ``MODEL.feature_dims``, ``MODEL.max_frames``: a file of more
    frames is refused, before it is read).
    check_files: missing files are an error up front (training); eval/predict report them per file.
    """

    # load() depends on nothing but the index and its file: iterate_batches may run it in worker processes
    # (load and collate then take an ``empty`` allocator)
    in_processes = True

    def __init__(self, list_path, mode, cfg, check_files=True):
        self.num_classes = int(cfg["MODEL"]["num_classes"])
        self.feature_dim = int(sum(cfg["MODEL"]["feature_dims"]))
        self.max_frames = int(cfg["MODEL"].get("max_frames", DEFAULTS["MODEL"]["max_frames"]))
        self.entries = read_list(list_path, self.num_classes, need_labels=mode != "infer",
                                 check_files=check_files, exists=shards.exists)

    def __len__(self):
        return len(self.entries)

    def prefetch(self, indices):
        """Ask the OS to start reading the files of ``indices`` (``posix_fadvise(WILLNEED)``), so that a
        batch's files come from disk in parallel rather than one after the other (bench/README.md)."""
        for index in indices:
            shards.advise(self.entries[index].path)  # load() will say what is wrong with a file

    def load(self, index, empty=np.empty):
        """Sample ``index`` as stored: {"features": [T, F] float32, float16 or uint8, "scale" and "offset":
        [F] float32 for uint8 (else None; ``features_of`` gives float32), "labels": [C] float32 multi-hot,
        "index": int}. Other float widths become float32. ``empty(shape, dtype)`` allocates the arrays read
        (a worker process passes one that reuses its memory from batch to batch)."""
        entry = self.entries[index]
        # The file is untrusted: its declared shape is checked before anything is allocated or decompressed.
        data, scale, offset = feature_files.read(entry.path, empty, self.max_frames, self.feature_dim)
        if data.ndim != 2 or data.shape[0] < 1 or data.shape[1] != self.feature_dim:
            raise ValueError(f"features of shape {list(data.shape)}, expected [T, {self.feature_dim}]")
        if data.dtype not in (np.float32, np.float16, np.uint8):
            data = data.astype(np.float32)
        labels = np.zeros(self.num_classes, np.float32)
        labels[entry.labels] = 1.0
        return {"features": data, "scale": scale, "offset": offset, "labels": labels, "index": index}

    def collate(self, samples, empty=np.empty):
        """Pad samples into {"inputs": [features [B, T_max, F], lengths [B] int64], "labels": [B, C],
        "index": [B]}; padding is zeros.

        features are float32, unless every sample is stored as float16 (then float16) or as uint8 (then
        uint8, and the batch carries "scale" and "offset" [B, F] float32: row b is ``q * scale[b] +
        offset[b]`` over its first lengths[b] steps). The compact forms cross processes and reach the
        device in a half or a quarter of the bytes; ``readers.to_tensors`` makes float32 of them there.
        empty: allocates the features array (a worker process passes one in shared memory).
        """
        lengths = np.array([len(s["features"]) for s in samples], np.int64)
        stored = {s["features"].dtype for s in samples}
        compact = len(stored) == 1 and stored <= {np.dtype(np.float16), np.dtype(np.uint8)}
        dtype = stored.pop() if compact else np.dtype(np.float32)
        features = empty((len(samples), int(lengths.max()), self.feature_dim), dtype)
        for row, s in enumerate(samples):
            if dtype == np.float32 and s["scale"] is not None:
                feature_files.dequantize(s["features"], s["scale"], s["offset"], out=features[row, :lengths[row]])
            else:
                features[row, :lengths[row]] = s["features"]
            features[row, lengths[row]:] = 0
        batch = {"inputs": [features, lengths], "labels": np.stack([s["labels"] for s in samples]),
                 "index": np.array([s["index"] for s in samples], np.int64)}
        if dtype == np.uint8:
            batch["scale"] = np.stack([s["scale"] for s in samples])
            batch["offset"] = np.stack([s["offset"] for s in samples])
        return batch


def features_of(sample):
    """A sample's (``FeatureReader.load``) features as float32 [T, F], dequantised if stored as uint8."""
    if sample["scale"] is not None:
        return feature_files.dequantize(sample["features"], sample["scale"], sample["offset"])
    return sample["features"].astype(np.float32)
