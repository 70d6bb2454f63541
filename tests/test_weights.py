"""Weight files in the release format: safe unpickling, Python 2 pickles, clear errors, load/pretrain/write."""
import builtins
import os
import pickle
import struct

import numpy as np
import pytest

from video_tag import files, weights
from video_tag.errors import UserError
from video_tag.models.attention_lstm import AttentionLSTM

SIZES = dict(feature_dims=[6], embedding_size=4, lstm_size=2, fc_sizes=[5, 3])


def small_model(num_classes=4):
    return AttentionLSTM(num_classes=num_classes, **SIZES)


def state_of(num_classes=4, seed=0):
    """A release-format dict (fluid names) for ``small_model``, values differing from its initial ones."""
    rng = np.random.default_rng(seed)
    shapes = {name: p.shape for name, p in weights.fluid_params(small_model(num_classes)).items()}
    return {name: rng.standard_normal(shape).astype(np.float32) + 3.0 for name, shape in shapes.items()}


def dump(obj, path, protocol=2):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)
    return str(path)


def assert_same(a, b):
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape
        np.testing.assert_array_equal(a[k], b[k])


# --- a pickle as Python 2's cPickle (protocol 2) wrote a fluid.save dict ------------------------

def _short_str(text):
    data = text.encode("latin1")
    return b"U" + bytes([len(data)]) + data          # SHORT_BINSTRING: a Python 2 str (bytes)


def _py2_array(array):
    """The opcodes numpy under Python 2 writes for ``array``: its raw data is a py2 str (BINSTRING)."""
    array = np.ascontiguousarray(array)
    dims = b"".join(b"J" + struct.pack("<i", n) for n in array.shape)
    raw = array.tobytes()
    return (b"cnumpy.core.multiarray\n_reconstruct\n"
            b"cnumpy\nndarray\n" + b"K\x00\x85" + _short_str("b") + b"\x87R"
            + b"(K\x01(" + dims + b"t"
            + b"cnumpy\ndtype\n" + _short_str(array.dtype.str[1:]) + b"K\x00K\x01\x87R"
            + b"(K\x03" + _short_str(array.dtype.str[0]) + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
            + b"\x89" + b"T" + struct.pack("<i", len(raw)) + raw + b"tb")


def py2_pickle(state):
    body = b"".join(_short_str(k) + _py2_array(v) for k, v in state.items())
    return b"\x80\x02}(" + body + b"u."


def test_python2_pickle_loads_with_latin1(tmp_path):
    state = state_of()
    # raw float bytes above 0x7f: they only decode as latin1 (the default "ASCII" would fail)
    assert any(b > 0x7f for b in state["rgb_fc.w_0"].tobytes())
    path = tmp_path / "attention_lstm.pdparams"
    path.write_bytes(py2_pickle(state))
    with pytest.raises(UnicodeDecodeError):
        pickle.loads(path.read_bytes())  # the plain unpickler needs encoding="latin1"
    assert_same(weights.read_state(str(path)), state)
    model = small_model()
    weights.load_weights(model, str(tmp_path / "attention_lstm"))
    np.testing.assert_array_equal(model.output.weight.numpy(), state["output.w_0"])


@pytest.mark.parametrize("name", ["attention_lstm.pdparams", "attention_lstm", "dir.with.dots/w.pdparams"])
@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_protocol_2_dict_of_arrays_with_or_without_suffix(tmp_path, name, protocol):
    state = {"a.w_0": np.arange(6, dtype=np.float32).reshape(2, 3), "b.b_0": np.ones((1, 7), np.float64),
             "c": np.array([1, 2], np.int64)}
    (tmp_path / name).parent.mkdir(exist_ok=True)
    file = dump(state, tmp_path / name, protocol)
    assert_same(weights.read_state(file), state)
    if file.endswith(weights.SUFFIX):
        assert_same(weights.read_state(file[:-len(weights.SUFFIX)]), state)


def test_ordered_dict_and_paddle_save(tmp_path):
    import collections

    import paddle
    state = state_of()
    assert_same(weights.read_state(dump(collections.OrderedDict(state), tmp_path / "o.pdparams")), state)
    layer = paddle.nn.Linear(3, 2)
    paddle.save(layer.state_dict(), str(tmp_path / "p.pdparams"))   # adds StructuredToParameterName@@
    read = weights.read_state(str(tmp_path / "p"))
    assert sorted(read) == ["bias", "weight"]
    np.testing.assert_array_equal(read["weight"], layer.weight.numpy())


class _System:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


class _Eval:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (builtins.eval, (f"open({self.target!r}, 'w').close()",))


class _Exec:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (builtins.exec, (f"open({self.target!r}, 'w').close()",))


@pytest.mark.parametrize("evil", [_System, _Eval, _Exec])
@pytest.mark.parametrize("wrap", ["bare", "value", "inside_list"])
def test_malicious_pickle_is_refused_without_side_effect(tmp_path, evil, wrap):
    target = tmp_path / "pwned"
    payload = evil(str(target))
    obj = {"bare": payload, "value": {"rgb_fc.w_0": np.zeros(2, np.float32), "x": payload},
           "inside_list": {"a": [payload]}}[wrap]
    file = dump(obj, tmp_path / "evil.pdparams")
    with open(file, "rb") as f:
        pickle.load(f)  # the payload works: a plain unpickler runs it
    assert target.exists()
    target.unlink()
    with pytest.raises(UserError) as e:
        weights.read_state(file)
    assert file in str(e.value) and "refus" in str(e.value)
    assert not target.exists()


def test_malicious_pickle_crafted_by_hand(tmp_path):
    target = tmp_path / "pwned"
    # GLOBAL posix.system / builtins.eval, REDUCE: what any attacker would write
    for module in (b"posix\nsystem\n", b"os\nsystem\n", b"builtins\neval\n", b"__builtin__\neval\n",
                   b"subprocess\ncall\n", b"numpy\nload\n", b"numpy.testing._private.utils\nrunstring\n"):
        cmd = f"touch {target}" if b"eval" not in module else f"open({str(target)!r}, 'w')"
        data = b"\x80\x02c" + module + _short_str(cmd) + b"\x85R."
        path = tmp_path / "evil.pdparams"
        path.write_bytes(data)
        with pytest.raises(UserError, match="refus"):
            weights.read_state(str(path))
        assert not target.exists()


def test_refusal_also_for_load_weights_and_pretrain(tmp_path):
    target = tmp_path / "pwned"
    file = dump({"output.w_0": _System(str(target))}, tmp_path / "evil.pdparams")
    for load in (weights.load_weights, weights.load_pretrain):
        with pytest.raises(UserError, match="refus"):
            load(small_model(), file)
    assert not target.exists()


def _truncated(tmp_path):
    data = pickle.dumps(state_of(), protocol=2)
    (tmp_path / "w.pdparams").write_bytes(data[: len(data) // 2])


def _py2_truncated(tmp_path):
    data = py2_pickle(state_of())
    (tmp_path / "w.pdparams").write_bytes(data[:-20])


def _text(tmp_path):
    (tmp_path / "w.pdparams").write_text("this is not a pickle\n")


def _empty(tmp_path):
    (tmp_path / "w.pdparams").write_bytes(b"")


def _npy(tmp_path):
    with open(tmp_path / "w.pdparams", "wb") as f:
        np.save(f, np.zeros((2, 2), np.float32))


def _zip(tmp_path):
    np.savez(tmp_path / "w.npz", a=np.zeros(2))
    os.replace(tmp_path / "w.npz", tmp_path / "w.pdparams")


def _list(tmp_path):
    dump([np.zeros(2)], tmp_path / "w.pdparams")


def _array(tmp_path):
    dump(np.zeros(2), tmp_path / "w.pdparams")


def _non_array_value(tmp_path):
    dump({"rgb_fc.w_0": np.zeros(2, np.float32), "rgb_fc.b_0": [0.0, 1.0]}, tmp_path / "w.pdparams")


def _string_value(tmp_path):
    dump({"rgb_fc.w_0": "zeros"}, tmp_path / "w.pdparams")


def _object_array(tmp_path):
    dump({"rgb_fc.w_0": np.array(["a", None], dtype=object)}, tmp_path / "w.pdparams")


def _string_array(tmp_path):
    dump({"rgb_fc.w_0": np.array(["ab", "cd"])}, tmp_path / "w.pdparams")


@pytest.mark.parametrize("make, words", [
    (_truncated, []), (_py2_truncated, []), (_text, []), (_empty, []), (_npy, []), (_zip, []),
    (_list, ["list"]), (_array, ["ndarray"]), (_non_array_value, ["rgb_fc.b_0"]), (_string_value, ["rgb_fc.w_0"]),
    (_object_array, ["rgb_fc.w_0"]), (_string_array, ["rgb_fc.w_0"]),
])
def test_broken_files_are_clear_user_errors(tmp_path, make, words):
    make(tmp_path)
    file = str(tmp_path / "w.pdparams")
    for reader in (lambda: weights.read_state(str(tmp_path / "w")), lambda: weights.load_weights(small_model(), file),
                   lambda: weights.load_pretrain(small_model(), file)):
        with pytest.raises(UserError) as e:
            reader()
        message = str(e.value)
        assert file in message and "\n" not in message, message
        assert all(w in message for w in words), message
        assert "refus" not in message, message  # a damaged file is not reported as an attack


def test_missing_file_names_the_path(tmp_path):
    path = str(tmp_path / "weights" / "attention_lstm")
    for load in (weights.read_state, lambda p: weights.load_weights(small_model(), p),
                 lambda p: weights.load_pretrain(small_model(), p)):
        with pytest.raises(UserError) as e:
            load(path)
        assert path in str(e.value)


@pytest.mark.parametrize("name, hint", [("tsn", True), ("attention_lstm.pdparams", True),
                                        ("AttentionLSTM_epoch9", False)])
def test_a_missing_release_file_names_run_fetch(tmp_path, name, hint):
    """The release's weights (tsn, attention_lstm) missing: the message says where they come from."""
    with pytest.raises(UserError) as e:
        weights.resolve(str(tmp_path / "weights" / name))
    assert ("./run fetch" in str(e.value)) == hint, str(e.value)


def test_directory_is_not_a_weight_file(tmp_path):
    (tmp_path / "w.pdparams").mkdir()
    with pytest.raises(UserError, match="not found"):
        weights.read_state(str(tmp_path / "w"))


def test_write_state_round_trip_is_protocol_2_and_atomic(tmp_path):
    state = state_of()
    state["rgb_fc.w_0"] = np.asfortranarray(state["rgb_fc.w_0"])
    path = str(tmp_path / "out" / "AttentionLSTM.pdparams")
    weights.write_state(state, path)
    with open(path, "rb") as f:
        assert f.read(2) == b"\x80\x02"
    assert os.listdir(tmp_path / "out") == ["AttentionLSTM.pdparams"]   # no temporary left over
    assert_same(weights.read_state(path[:-len(weights.SUFFIX)]), state)
    with open(path, "rb") as f:   # readable by a plain unpickler, as paddle.load and fluid.load do
        assert_same(pickle.load(f), state)


def test_write_state_failure_keeps_old_file(tmp_path):
    path = str(tmp_path / "w.pdparams")
    weights.write_state({"a": np.zeros(2, np.float32)}, path)
    with pytest.raises(Exception):
        files.atomic_write(path, lambda f: (f.write(b"partial"), 1 / 0))
    assert_same(weights.read_state(path), {"a": np.zeros(2, np.float32)})
    assert os.listdir(tmp_path) == ["w.pdparams"]


def test_load_weights_sets_every_parameter(tmp_path):
    state = state_of()
    weights.write_state(state, str(tmp_path / "w.pdparams"))
    model = small_model()
    weights.load_weights(model, str(tmp_path / "w"))
    assert_same(weights.model_state(model), state)


def test_load_weights_float64_file_is_cast(tmp_path):
    state = {k: v.astype(np.float64) for k, v in state_of().items()}
    weights.write_state(state, str(tmp_path / "w.pdparams"))
    model = small_model()
    weights.load_weights(model, str(tmp_path / "w.pdparams"))
    np.testing.assert_allclose(model.fc1.weight.numpy(), state["fc1.w_0"], rtol=1e-6)
    assert model.fc1.weight.numpy().dtype == np.float32


def test_load_weights_with_other_num_classes_names_file_and_parameter(tmp_path):
    weights.write_state(state_of(num_classes=4), str(tmp_path / "w.pdparams"))
    with pytest.raises(UserError) as e:
        weights.load_weights(small_model(num_classes=9), str(tmp_path / "w"))
    message = str(e.value)
    assert str(tmp_path / "w.pdparams") in message and "output.w_0" in message and "num_classes" in message


def test_load_weights_missing_parameter(tmp_path):
    state = state_of()
    del state["fc2.b_0"]
    weights.write_state(state, str(tmp_path / "w.pdparams"))
    with pytest.raises(UserError, match="fc2.b_0"):
        weights.load_weights(small_model(), str(tmp_path / "w"))


def test_load_pretrain_skips_classifier_of_another_size(tmp_path, caplog):
    release = state_of(num_classes=9, seed=1)
    release["unrelated.w_0"] = np.zeros(3, np.float32)
    weights.write_state(release, str(tmp_path / "release.pdparams"))
    model = small_model(num_classes=4)
    before = model.output.weight.numpy().copy()
    with caplog.at_level("WARNING"):
        skipped = weights.load_pretrain(model, str(tmp_path / "release"))
    assert sorted(skipped) == ["output.b_0", "output.w_0", "unrelated.w_0"]
    np.testing.assert_array_equal(model.output.weight.numpy(), before)
    np.testing.assert_array_equal(model.fc2.weight.numpy(), release["fc2.w_0"])
    np.testing.assert_array_equal(model.rgb_lstm_backward.bias.numpy(), release["rgb_lstm_backward.b_0"])
    assert "output.w_0" in caplog.text


def test_load_pretrain_with_nothing_matching(tmp_path):
    weights.write_state({"conv1_weights": np.zeros((2, 3, 7, 7), np.float32)}, str(tmp_path / "tsn.pdparams"))
    with pytest.raises(UserError, match="no parameter matching"):
        weights.load_pretrain(small_model(), str(tmp_path / "tsn"))


# --- crafted pickles that would exhaust memory or the C stack: refused in one line, no crash ------------

def _long(n):
    data = n.to_bytes(n.bit_length() // 8 + 1, "little")
    return b"\x8a" + bytes([len(data)]) + data                      # LONG1


def _entry(value_opcodes):
    return b"\x80\x02}" + _short_str("w") + value_opcodes + b"s."  # {"w": value}


_RECONSTRUCT = b"cnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\n"
_DTYPE_O = b"cnumpy\ndtype\n" + _short_str("O8") + b"K\x00K\x01\x87R"

CRAFTED = {
    # _reconstruct(ndarray, (2**40,), "b"): numpy would allocate the terabyte before any data is read
    "reconstruct_terabyte": (_entry(_RECONSTRUCT + b"(" + _long(2 ** 40) + b"t" + _short_str("b") + b"\x87R"),
                             ["1099511627776 bytes", "more than the whole file"]),
    # ndarray((2**36,), "f4") called directly: 256 GiB
    "ndarray_call": (_entry(b"cnumpy\nndarray\n" + _long(2 ** 36) + b"\x85" + _short_str("f4") + b"\x86R"),
                     ["numpy.ndarray"]),
    # an object array of 10**9 elements set from a one-element list: numpy crashes (segfault) on it
    "object_array_state": (_entry(_RECONSTRUCT + b"K\x00\x85" + _short_str("b") + b"\x87R"
                                  + b"(K\x01" + _long(10 ** 9) + b"\x85" + _DTYPE_O + b"\x89]K\x01at" + b"b"),
                           ["more than the whole file"]),
    # a dict key nested a million tuples deep: hashing it overflows the C stack (segfault)
    "deep_tuple_key": (b"\x80\x02}K\x01" + b"\x85" * 10 ** 6 + b"K\x01s.", ["nested more than"]),
    # a value nested 100000 lists deep: anything walking it recursively fails
    "deep_list_value": (_entry(b"(" * 10 ** 5 + b"l" * 10 ** 5), ["nested more than"]),
}

_READ = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))  # a few GiB: no terabytes to be had
from video_tag import weights
from video_tag.errors import UserError
try:
    weights.read_pickle(sys.argv[1])
except UserError as e:
    print(f"error: {e}")
    sys.exit(2)
print("loaded")
"""


@pytest.mark.parametrize("name", sorted(CRAFTED))
def test_crafted_pickle_is_refused_in_one_line_without_crash(tmp_path, name):
    import subprocess
    import sys
    data, words = CRAFTED[name]
    path = tmp_path / f"{name}.pdparams"
    path.write_bytes(data)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    # a process of its own: the unguarded failures crash the interpreter
    result = subprocess.run([sys.executable, "-c", _READ, str(path)], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": root, "OPENBLAS_NUM_THREADS": "1"})
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, (result.returncode, lines[-5:])
    assert lines[0].startswith("error: ") and str(path) in lines[0] and "refus" in lines[0], lines[0]
    assert all(w in lines[0] for w in words), lines[0]


def test_nesting_of_real_weight_files_is_accepted(tmp_path):
    # the refusals above leave room for what this toolkit writes: an optimizer state nests dicts in dicts
    state = {"epoch": 3, "optimizer": {"fc1.w_0_moment": np.ones((2, 3), np.float32)},
             "lr_scheduler": {"last_epoch": 7, "last_lr": 1e-3}, "shape": (((1, 2),),)}
    file = dump(state, tmp_path / "x.pdopt")
    read = weights.read_pickle(file)
    assert read["epoch"] == 3 and read["shape"] == (((1, 2),),)
    np.testing.assert_array_equal(read["optimizer"]["fc1.w_0_moment"], np.ones((2, 3), np.float32))
