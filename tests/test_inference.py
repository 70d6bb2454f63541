"""InferenceEngine: Paddle Inference output matches the dygraph layer in eval mode, any batch size."""
import os
import tempfile
import threading

import numpy as np
import paddle
import pytest

from video_tag.inference import InferenceEngine, cpu_supports_bf16

SIZE = 64  # small frames keep each predictor build and run well under a second


class PooledResNet(paddle.nn.Layer):
    """resnet18 trunk + global pool: x [N, 3, H, W] -> features [N, 512]."""

    def __init__(self):
        super().__init__()
        paddle.seed(0)
        self.net = paddle.vision.models.resnet18(pretrained=False, num_classes=-1)
        # Non-trivial running statistics, so a graph traced in train mode would give other numbers.
        rng = np.random.default_rng(0)
        for layer in self.net.sublayers():
            if isinstance(layer, paddle.nn.BatchNorm2D):
                n = layer._mean.shape[0]
                layer._mean.set_value(rng.normal(0, 0.1, n).astype(np.float32))
                layer._variance.set_value(rng.uniform(0.5, 2.0, n).astype(np.float32))

    def forward(self, x):
        return paddle.flatten(self.net(x), 1)


def frames(n, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 3, SIZE, SIZE)).astype(np.float32)


def reference(layer, x):
    layer.eval()
    with paddle.no_grad():
        return layer(paddle.to_tensor(x)).numpy()


def rel_err(y, ref):
    return float(np.abs(y - ref).max() / np.abs(ref).max())


@pytest.fixture(scope="module")
def layer():
    return PooledResNet()


@pytest.fixture(scope="module")
def engine(layer):
    layer.train()  # the engine must export the eval graph regardless
    eng = InferenceEngine(layer, input_shape=(None, 3, SIZE, SIZE), cpu_threads=2, batch_size=4)
    assert layer.training, "the layer's mode must be restored after export"
    return eng


@pytest.mark.parametrize("n", [1, 3, 4, 9])  # below, at and above batch_size (run splits into chunks)
def test_fp32_matches_dygraph_eval(layer, engine, n):
    x = frames(n, seed=n)
    y = engine.run(x)
    assert y.dtype == np.float32 and y.shape == (n, 512)
    assert rel_err(y, reference(layer, x)) <= 1e-4


def test_shapes_alternate_and_results_are_fresh(layer, engine):
    a, b = frames(4, 1), frames(2, 2)
    ya = engine.run(a)
    yb = engine.run(b)
    ya2 = engine.run(a)
    np.testing.assert_array_equal(ya, ya2)  # the earlier result was not overwritten by later runs
    assert rel_err(yb, reference(layer, b)) <= 1e-4


def test_runs_from_another_thread(layer, engine):
    x, out = frames(3, 5), {}
    t = threading.Thread(target=lambda: out.setdefault("y", engine.run(x)))
    t.start()
    t.join()
    assert rel_err(out["y"], reference(layer, x)) <= 1e-4


def test_bad_input_shape(engine):
    with pytest.raises(ValueError, match="expected input"):
        engine.run(np.zeros((2, 3, SIZE + 1, SIZE), np.float32))
    with pytest.raises(ValueError, match="expected input"):
        engine.run(np.zeros((3, SIZE, SIZE), np.float32))


def test_temporary_export_removed_and_cache_dir_kept(layer, tmp_path, monkeypatch):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    InferenceEngine(layer, input_shape=(None, 3, SIZE, SIZE), cpu_threads=1)
    assert os.listdir(scratch) == []
    InferenceEngine(layer, input_shape=(None, 3, SIZE, SIZE), cpu_threads=1, cache_dir=str(tmp_path / "c"))
    assert sorted(os.listdir(tmp_path / "c")) == ["backbone.json", "backbone.pdiparams"]


def test_unsupported_settings():
    layer = paddle.nn.Flatten()
    with pytest.raises(ValueError, match="precision"):
        InferenceEngine(layer, precision="int8")
    with pytest.raises(ValueError, match="GPU only"):
        InferenceEngine(layer, precision="fp16")
    if not paddle.device.is_compiled_with_cuda():
        with pytest.raises(RuntimeError, match="CUDA build"):
            InferenceEngine(layer, use_gpu=True)


@pytest.mark.skipif(not cpu_supports_bf16(), reason="CPU without native bf16")
def test_bf16_close_to_fp32(layer, engine):
    x = frames(8, 7)
    fp32 = engine.run(x)
    bf16 = InferenceEngine(layer, input_shape=(None, 3, SIZE, SIZE), precision="bf16", cpu_threads=2).run(x)
    assert bf16.dtype == np.float32 and bf16.shape == fp32.shape
    cos = (bf16 * fp32).sum(1) / (np.linalg.norm(bf16, axis=1) * np.linalg.norm(fp32, axis=1))
    print(f"bf16 vs fp32 per-row cosine: min {cos.min():.5f}, mean {cos.mean():.5f}")
    assert cos.min() > 0.99


class TrainingBranch(paddle.nn.Layer):
    """x [N, 2] -> 2x in train mode, 3x in eval mode."""

    def forward(self, x):
        if self.training:
            return x * 2
        return x * 3


@pytest.mark.filterwarnings("ignore:no variable in your model")
def test_exports_the_eval_branch():
    layer = TrainingBranch()
    layer.train()
    y = InferenceEngine(layer, input_shape=(None, 2), cpu_threads=1).run(np.ones((2, 2), np.float32))
    np.testing.assert_array_equal(y, np.full((2, 2), 3, np.float32))
    assert layer.training
