"""A job's options, named as videotag.py's flags, checked where they arrive (the HTTP layer, no Paddle).

    {"topk": 5, "threshold": 0.1, "segment_seconds": 30}   # JSON keys, or the same names as form fields

Form fields arrive as text: each value is converted to its flag's type, so ``"5"`` and ``5`` are one option.
"""
import math

# name -> (type, smallest value, whether the smallest value is allowed)
OPTIONS = {
    "topk": (int, 1, True),
    "threshold": (float, 0.0, True),
    "segment_seconds": (float, 0.0, False),
    "segment_stride_seconds": (float, 0.0, False),
    "segment_seg_num": (int, 1, True),
}


def check_options(raw):
    """``raw`` {name: value} -> the options with values of their types; ``ValueError`` (one line naming the
    option) for an unknown name, a value of the wrong type or out of range."""
    if not isinstance(raw, dict):
        raise ValueError("options must be an object of videotag.py flag names")
    options = {}
    for name, value in raw.items():
        if name not in OPTIONS:
            raise ValueError(f"unknown option {name!r} (known: {', '.join(OPTIONS)})")
        kind, low, inclusive = OPTIONS[name]
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ValueError(f"option {name} must be {'an integer' if kind is int else 'a number'}, got {value!r}")
        try:
            number = kind(value) if not (kind is int and isinstance(value, float)) else None
        except ValueError:
            number = None
        if number is None or (kind is float and not math.isfinite(number)):
            raise ValueError(f"option {name} must be {'an integer' if kind is int else 'a finite number'}, "
                             f"got {value!r}")
        if number < low or (number == low and not inclusive):
            raise ValueError(f"option {name} must be {'at least' if inclusive else 'greater than'} {low}, got {value!r}")
        options[name] = number
    if "segment_stride_seconds" in options and "segment_seconds" not in options:
        raise ValueError("option segment_stride_seconds needs segment_seconds")
    if options.get("threshold", 0.0) > 1.0:
        raise ValueError(f"option threshold must be at most 1, got {raw['threshold']!r}")
    return options
