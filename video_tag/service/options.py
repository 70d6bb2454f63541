"""A job's options, named as videotag.py's flags, checked where they arrive (the HTTP layer, no Paddle).

    {"topk": 5, "threshold": 0.1, "segment_seconds": 30, "shots": true, "min_confidence": 0.6,
     "include": ["猫", "12"], "exclude": "3,4"}          # JSON keys, or the same names as form fields

Form fields arrive as text: each value is converted to its flag's type, so ``"5"`` and ``5`` are one option,
``"true"`` and ``true`` another. ``include`` / ``exclude`` are class names or ids, as videotag.py's
``--include`` / ``--exclude``: a string (a comma list), a list of them (JSON), or a form field given more
than once; they are checked against the label file when the labels are given.
"""
import math

from ..errors import UserError
from ..timeline import allowed_classes

# name -> (type, smallest value, whether the smallest value is allowed, largest value or None)
NUMBERS = {
    "topk": (int, 1, True, None),
    "threshold": (float, 0.0, True, 1.0),
    "segment_seconds": (float, 0.0, False, None),
    "segment_stride_seconds": (float, 0.0, False, None),
    "segment_seg_num": (int, 1, True, None),
    "min_confidence": (float, 0.0, True, 1.0),
}
SWITCHES = ("shots",)
CLASSES = ("include", "exclude")
KNOWN = (*NUMBERS, *SWITCHES, *CLASSES)
WORDS = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False, "off": False}


def check_options(raw, labels=None):
    """``raw`` {name: value} -> the options with values of their types (``include`` / ``exclude`` as lists
    of strings); ``ValueError`` (one line naming the option) for an unknown name, a value of the wrong type
    or out of range, or (with ``labels``, the class names) a class the label file does not have."""
    if not isinstance(raw, dict):
        raise ValueError("options must be an object of videotag.py flag names")
    options = {}
    for name, value in raw.items():
        if name not in KNOWN:
            raise ValueError(f"unknown option {name!r} (known: {', '.join(KNOWN)})")
        if value is None:
            continue
        if name in SWITCHES:
            options[name] = switch(name, value)
        elif name in CLASSES:
            options[name] = classes(name, value)
        else:
            options[name] = number(name, value)
    if "segment_stride_seconds" in options and "segment_seconds" not in options:
        raise ValueError("option segment_stride_seconds needs segment_seconds")
    for name in CLASSES:
        if not options.get(name, True):  # [] is videotag.py's default: no filter
            del options[name]
    if labels is not None:
        try:
            allowed_classes(labels, options.get("include", ()), options.get("exclude", ()))
        except UserError as e:  # "--include: no class named ...": the flag's name as the option's
            raise ValueError("option " + str(e).lstrip("-")) from None
    return options


def number(name, value):
    kind, low, inclusive, high = NUMBERS[name]
    what = "an integer" if kind is int else "a finite number"
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"option {name} must be {what}, got {value!r}")
    try:
        result = kind(value) if not (kind is int and isinstance(value, float)) else None
    except ValueError:
        result = None
    if result is None or (kind is float and not math.isfinite(result)):
        raise ValueError(f"option {name} must be {what}, got {value!r}")
    if result < low or (result == low and not inclusive):
        raise ValueError(f"option {name} must be {'at least' if inclusive else 'greater than'} {low}, got {value!r}")
    if high is not None and result > high:
        raise ValueError(f"option {name} must be at most {high:g}, got {value!r}")
    return result


def switch(name, value):
    """A flag such as ``--shots``: JSON true/false, or a form field's text (true/false, 1/0, yes/no, on/off)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in WORDS:
        return WORDS[value.strip().lower()]
    raise ValueError(f"option {name} must be true or false, got {value!r}")


def classes(name, value):
    """``--include`` / ``--exclude`` values: a string (a comma list of names or ids), an id, or a list of
    them -> a list of strings (split later, by ``timeline.allowed_classes``: a name may hold a comma)."""
    values = value if isinstance(value, list) else [value]
    for item in values:
        if isinstance(item, bool) or not isinstance(item, (str, int)):
            raise ValueError(f"option {name} must be class names or ids (a string, or a list of them), got {value!r}")
    return [str(item) for item in values if str(item).strip()]
