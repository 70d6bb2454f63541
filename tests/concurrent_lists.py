"""A process of test_extractor's concurrency test, in a module of its own: a spawned child imports the
target's module by name, and test_extractor's ``from conftest import ...`` could find the repository
root's conftest.py first there (two modules named ``conftest``)."""
import os

import numpy as np


def write_lists_many_times(save_dir, tag, rounds):
    """Save ``rounds`` videos named ``<tag><i>.mp4`` into ``save_dir`` and write the lists after each."""
    from video_tag.feature_store import FeatureStore
    store = FeatureStore(save_dir, "float32", feature_dim=4)
    for i in range(rounds):
        video = f"{tag}{i}.mp4"
        record = {"video": video, "real_path": os.path.realpath(video), "size": 0, "mtime_ns": 0, "seg_num": 2}
        assert store.save(video, np.zeros((2, 4), np.float32), record) is None
        store.write_lists([video], {}, {video})
