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
    """The pickle references something other than plain containers and numpy arrays."""


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise _Refused(f"refusing to load {module}.{name}: only numpy arrays are allowed")


def resolve(path):
    """Return the existing file for ``path``, given with or without the ``.pdparams`` suffix."""
    for candidate in (path, path + SUFFIX):
        if os.path.isfile(candidate):
            return candidate
    raise UserError(f"weight file not found: {path} (nor {path + SUFFIX})")


def read_pickle(file):
    """Unpickle ``file`` allowing only plain values, containers and numpy arrays."""
    try:
        with open(file, "rb") as f:
            return _SafeUnpickler(io.BytesIO(f.read()), encoding="latin1").load()
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
