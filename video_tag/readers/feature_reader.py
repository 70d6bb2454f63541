"""TSN feature files (one ``.npy`` per video, float32 [T, 2048]) for the AttentionLSTM.

The list format (``TRAIN/VALID/TEST/INFER.filelist``) is described in ``lists.py``::

    data/tsn_features/cooking video.npy 3 17 204

Videos may have different T: a batch is padded to its longest video and carries the lengths.
"""
import logging

import numpy as np

from .lists import read_list

log = logging.getLogger(__name__)


class FeatureReader:
    """The samples of one list. ``load(i)`` returns a sample dict or raises ``ValueError`` with the reason.

    mode: "train" / "valid" / "test" need label ids on every line; "infer" ignores them.
    cfg: the config (``MODEL.num_classes``, ``MODEL.feature_dims``).
    check_files: missing files are an error up front (training); eval/predict report them per file.
    """

    def __init__(self, list_path, mode, cfg, check_files=True):
        self.num_classes = int(cfg["MODEL"]["num_classes"])
        self.feature_dim = int(sum(cfg["MODEL"]["feature_dims"]))
        self.entries = read_list(list_path, self.num_classes, need_labels=mode != "infer",
                                 check_files=check_files)

    def __len__(self):
        return len(self.entries)

    def load(self, index):
        """Sample ``index``: {"features": [T, F] float32, "labels": [C] float32 multi-hot, "index": int}."""
        entry = self.entries[index]
        try:
            with open(entry.path, "rb") as f:
                magic = f.read(6)
                f.seek(0)
                # np.load would take other formats (.npz, pickle) and report them confusingly
                features = np.load(f, allow_pickle=False) if magic == b"\x93NUMPY" else None
        except FileNotFoundError:
            raise ValueError("file not found") from None
        except (OSError, ValueError, EOFError) as e:
            raise ValueError(f"not a readable .npy file ({' '.join(str(e).split()) or type(e).__name__})") from None
        if features is None:
            raise ValueError("not a .npy file (no NPY header)")
        if features.ndim != 2 or features.shape[0] < 1 or features.shape[1] != self.feature_dim:
            raise ValueError(f"features of shape {list(features.shape)}, expected [T, {self.feature_dim}]")
        if not np.issubdtype(features.dtype, np.floating):
            raise ValueError(f"features of dtype {features.dtype}, expected float")
        labels = np.zeros(self.num_classes, np.float32)
        labels[self.entries[index].labels] = 1.0
        return {"features": features.astype(np.float32, copy=False), "labels": labels, "index": index}

    def collate(self, samples):
        """Pad samples into {"inputs": [features [B, T_max, F], lengths [B] int64], "labels": [B, C], "index": [B]}."""
        lengths = np.array([len(s["features"]) for s in samples], np.int64)
        features = np.zeros((len(samples), lengths.max(), self.feature_dim), np.float32)
        for row, s in enumerate(samples):
            features[row, :lengths[row]] = s["features"]
        return {"inputs": [features, lengths],
                "labels": np.stack([s["labels"] for s in samples]),
                "index": np.array([s["index"] for s in samples], np.int64)}
