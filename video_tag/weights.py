"""Weight files in the release format: a pickle of ``{fluid_parameter_name: numpy.ndarray}``.

The public VideoTag weights were written by Paddle 1.8's ``fluid.save`` (pickle protocol 2, possibly by
Python 2). Our own checkpoints use the same format and names, so a fine-tuned model loads wherever the
release weights do. Pickles can run arbitrary code when loaded, and weight files come from the internet,
so they are read by an unpickler that only rebuilds plain containers and numpy arrays.
"""
import io
import logging
import os
import pickle

import numpy as np

from . import release
from .errors import UserError
from .files import atomic_write

log = logging.getLogger(__name__)

SUFFIX = ".pdparams"

# (module, name) pairs a weight pickle may reference: numpy's array reconstructors (numpy 1 and 2
# spell the module differently), dtype, and the helpers Python uses to pickle bytes and dicts.
_ALLOWED = {
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("_codecs", "encode"), ("collections", "OrderedDict"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),  # protocol 5
}


class _Refused(pickle.UnpicklingError):
    """The pickle references something other than plain containers and numpy arrays, or declares more
    than its file can hold."""


# Legitimate weight files nest a handful of levels (dict -> array state -> shape tuple); a crafted one
# can nest tuples a million deep, and hashing such a tuple (a dict key) recurses in C without a limit:
# the interpreter crashes. Anything deeper than this is refused.
MAX_DEPTH = 100


class _SafeUnpickler(pickle._Unpickler):
    """Rebuilds plain containers and numpy arrays only, and refuses a pickle that

    - references any other global (``find_class``): a pickle can call any function it names;
    - declares an array larger than the whole file (``size`` bytes), before numpy allocates it: a crafted
      header can ask for terabytes, and numpy crashes on an object array too large to allocate;
    - nests tuples deeper than ``MAX_DEPTH`` (checked as each tuple is built, before it can be hashed).

    The pure-Python unpickler, because its opcode table can be extended with these checks; the arrays'
    data are single opcodes, so it reads release weights about as fast as the C one.
    """
    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file, size):
        super().__init__(file, encoding="latin1")
        self.size = size
        self.depths = {}  # id -> (tuple or frozenset, its nesting depth), for depths above 1

    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise _Refused(f"refusing to load {module}.{name}: only numpy arrays are allowed")

    def _check_call(self, func, args):
        """Refuse calls that would allocate what the file does not hold (REDUCE, NEWOBJ, OBJ, INST)."""
        name = getattr(func, "__name__", "")
        if func is np.ndarray:  # numpy pickles arrays through _reconstruct, never ndarray(shape, ...)
            raise _Refused("refusing to call numpy.ndarray directly: not how numpy pickles arrays")
        if func is np.dtype:
            if not args or not isinstance(args[0], (str, bytes)):
                raise _Refused("refusing a numpy dtype that is not a plain type code")
        elif name == "_reconstruct" and len(args) == 3:
            if args[0] is not np.ndarray:
                raise _Refused("refusing to rebuild an array of a type other than numpy.ndarray")
            self._check_size(args[1], args[2])
        elif name == "_frombuffer" and len(args) == 4:
            self._check_size(args[2], args[1])
        elif name == "scalar" and args:
            self._check_size((), args[0])

    def _check_size(self, shape, dtype, data=None):
        shape = (shape,) if isinstance(shape, int) else shape
        if not isinstance(shape, tuple) or not all(type(n) is int and n >= 0 for n in shape):
            raise _Refused(f"refusing an array of shape {_short(shape)}")
        if not isinstance(dtype, np.dtype):
            if not isinstance(dtype, (str, bytes)):
                raise _Refused(f"refusing an array of dtype {_short(dtype)}")
            dtype = np.dtype(dtype)
        count = 1
        for n in shape:
            count *= n
        # an element of an object array costs at least one byte of the file
        nbytes = count if dtype.hasobject else count * dtype.itemsize
        if nbytes > self.size:
            raise _Refused(f"refusing an array of shape {list(shape)} and dtype {dtype} ({nbytes} bytes): "
                           f"more than the whole file holds ({self.size} bytes)")
        if dtype.hasobject and data is not None and not (isinstance(data, list) and len(data) == count):
            raise _Refused(f"refusing an object array of shape {list(shape)} whose data do not match it")

    def _check_build(self):
        inst, state = self.stack[-2], self.stack[-1]
        if isinstance(inst, np.ndarray) and isinstance(state, tuple) and len(state) in (4, 5):
            shape, dtype, _, data = state[-4:]
            self._check_size(shape, dtype, data)
        elif isinstance(inst, np.dtype):
            # (version, byte order, subarray, names, fields, ...): plain dtypes only, no structures
            if not isinstance(state, tuple) or len(state) < 5 or any(x is not None for x in state[2:5]):
                raise _Refused("refusing a structured numpy dtype: weight arrays hold plain numbers")

    def _check_depth(self):
        obj = self.stack[-1]
        depth = 1
        for item in obj:
            known = self.depths.get(id(item))
            depth = max(depth, 1 + (known[1] if known else int(isinstance(item, (tuple, frozenset)))))
        if depth > MAX_DEPTH:
            raise _Refused(f"refusing containers nested more than {MAX_DEPTH} deep")
        if depth > 1:
            self.depths[id(obj)] = (obj, depth)  # kept alive: its id stays its own

    def _instantiate(self, klass, args):
        self._check_call(klass, args)
        super()._instantiate(klass, args)

    def load_reduce(self):
        self._check_call(self.stack[-2], self.stack[-1])
        super().load_reduce()

    def load_newobj(self):
        self._check_call(self.stack[-2], self.stack[-1])
        super().load_newobj()

    def load_newobj_ex(self):
        self._check_call(self.stack[-3], self.stack[-2])
        super().load_newobj_ex()

    def load_build(self):
        self._check_build()
        super().load_build()

    def load_tuple(self):
        super().load_tuple()
        self._check_depth()

    def load_tuple1(self):
        super().load_tuple1()
        self._check_depth()

    def load_tuple2(self):
        super().load_tuple2()
        self._check_depth()

    def load_tuple3(self):
        super().load_tuple3()
        self._check_depth()

    def load_frozenset(self):
        super().load_frozenset()
        self._check_depth()


_SafeUnpickler.dispatch.update({
    pickle.REDUCE[0]: _SafeUnpickler.load_reduce, pickle.NEWOBJ[0]: _SafeUnpickler.load_newobj,
    pickle.NEWOBJ_EX[0]: _SafeUnpickler.load_newobj_ex, pickle.BUILD[0]: _SafeUnpickler.load_build,
    pickle.TUPLE[0]: _SafeUnpickler.load_tuple, pickle.TUPLE1[0]: _SafeUnpickler.load_tuple1,
    pickle.TUPLE2[0]: _SafeUnpickler.load_tuple2, pickle.TUPLE3[0]: _SafeUnpickler.load_tuple3,
    pickle.FROZENSET[0]: _SafeUnpickler.load_frozenset,
})


def _short(value):
    text = repr(value) if isinstance(value, (int, str, bytes, tuple)) else type(value).__name__
    return text if len(text) <= 60 else text[:57] + "..."


def _check_nesting(obj):
    """Refuse a result nesting containers deeper than ``MAX_DEPTH``, or cyclic (lists can be filled after
    being nested, so the per-tuple check misses them): code that walks it recursively would overflow.
    Iterative, every path walked: shared sub-containers are walked once per path, within a budget."""
    stack, budget = [(obj, 1)], 1_000_000
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = list(item.keys()) + list(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            children = item
        else:
            continue
        budget -= 1
        if depth > MAX_DEPTH or budget < 0:
            raise _Refused(f"refusing containers nested more than {MAX_DEPTH} deep (or cyclic)")
        stack.extend((child, depth + 1) for child in children)


RELEASE_HINT = "the release weights come with ./run fetch (or python tools/fetch_release.py), into ./weights"


def resolve(path):
    """Return the existing file for ``path``, given with or without the ``.pdparams`` suffix; a release
    weight path (``./weights/tsn.pdparams``) missing here is looked up as ``release.find`` says."""
    found = release.find(path)
    for candidate in (found, found + SUFFIX):
        if os.path.isfile(candidate):
            return candidate
    where = f", nor in {release.home()} or {release.project_root()}" if release.release_name(path) else ""
    name = os.path.basename(path)
    hint = f": {RELEASE_HINT}" if name in ("tsn", "attention_lstm", "tsn" + SUFFIX, "attention_lstm" + SUFFIX) else ""
    raise UserError(f"weight file not found: {path} (nor {path + SUFFIX}{where}){hint}")


def read_pickle(file):
    """Unpickle ``file`` allowing only plain values, containers and numpy arrays."""
    try:
        with open(file, "rb") as f:
            data = f.read()
        obj = _SafeUnpickler(io.BytesIO(data), len(data)).load()
        _check_nesting(obj)
        return obj
    except _Refused as e:
        raise UserError(f"{file} was refused: {e}") from None
    except OSError as e:
        raise UserError(f"cannot read {file}: {e.strerror}") from None
    except Exception as e:  # truncated or not a pickle at all
        reason = " ".join(str(e).split())  # one line: some pickle errors span two
        raise UserError(f"{file} is not a readable pickle, truncated or not a weight file "
                        f"({type(e).__name__}: {reason})") from None


def read_state(path):
    """Read a release-format weight file. Returns ``{name: ndarray}`` (the path may omit ``.pdparams``)."""
    file = resolve(path)
    state = read_pickle(file)
    if not isinstance(state, dict):
        raise UserError(f"weight file {file} holds a {type(state).__name__}, expected a dict of arrays")
    # Paddle 2.x's paddle.save adds a dict of structured names; it is not a parameter.
    state = {str(k): v for k, v in state.items() if k != "StructuredToParameterName@@"}
    bad = [k for k, v in state.items() if not isinstance(v, np.ndarray)]
    if bad:
        raise UserError(f"weight file {file}: entry {bad[0]} is not an array")
    bad = [k for k, v in state.items() if v.dtype.kind not in "biuf"]
    if bad:
        raise UserError(f"weight file {file}: entry {bad[0]} is an array of {state[bad[0]].dtype}, not numbers")
    return state


def write_state(state, path):
    """Write ``{name: array}`` as a protocol-2 pickle, atomically (temporary file + rename)."""
    arrays = {k: np.ascontiguousarray(v) for k, v in state.items()}
    atomic_write(path, lambda f: pickle.dump(arrays, f, protocol=2))


def fluid_params(model):
    """``{fluid_name: parameter}`` for a model whose ``fluid_names()`` maps state-dict keys to fluid names."""
    params = model.state_dict()
    return {fluid: params[key] for key, fluid in model.fluid_names().items()}


def model_state(model):
    """The model's parameters as ``{fluid_name: ndarray}``, ready for ``write_state``."""
    return {name: p.numpy() for name, p in fluid_params(model).items()}


def load_weights(model, path, skip=()):
    """Load every parameter of ``model`` from ``path``; any missing or mis-shaped one is an error.

    skip: name prefixes left out (e.g. ``("fc_0.",)``: the extractor needs no classifier).
    """
    state = read_state(path)
    file = resolve(path)
    for name, param in fluid_params(model).items():
        if name.startswith(tuple(skip)):
            continue
        if name not in state:
            raise UserError(f"weight file {file} has no parameter {name}: is it a weight file of this model?")
        if tuple(state[name].shape) != tuple(param.shape):
            raise UserError(f"weight file {file}: {name} has shape {list(state[name].shape)}, the model "
                            f"expects {list(param.shape)} (check MODEL.num_classes and the model sizes)")
        param.set_value(state[name].astype(np.float32))


def load_pretrain(model, path):
    """Load the parameters of ``path`` whose name and shape match ``model``; warn about the rest.

    Fine-tuning the 3396-class release to another ``num_classes`` skips ``output.w_0`` and ``output.b_0``.
    Returns the list of skipped names (as written in the file). Nothing matching is an error.
    """
    state = read_state(path)
    file = resolve(path)
    if hasattr(model, "translate_state"):  # e.g. TSN from a paddle.vision ImageNet checkpoint
        state = model.translate_state(state)
    params = fluid_params(model)
    loaded, skipped = [], []
    for name, array in state.items():
        param = params.get(name)
        if param is not None and tuple(array.shape) == tuple(param.shape):
            param.set_value(array.astype(np.float32))
            loaded.append(name)
        else:
            skipped.append(name)
    if not loaded:
        raise UserError(f"pretrain file {file} has no parameter matching this model by name and shape")
    missing = sorted(set(params) - set(loaded))
    if skipped or missing:
        log.warning("pretrain %s: loaded %d parameters; skipped %s (name or shape differs); "
                    "left at initial values: %s", file, len(loaded), ", ".join(skipped) or "none",
                    ", ".join(missing) or "none")
    else:
        log.info("pretrain %s: loaded all %d parameters", file, len(loaded))
    return skipped
