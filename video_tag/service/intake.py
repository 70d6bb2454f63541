"""What a submission brings in, checked before a job exists: an upload streamed to disk under a size limit
(never whole in memory, never left half-written), or a path that must lie under an allowed directory.

Refusals are ``Refused(status, message)``: 400 malformed, 403 a path outside ``--allow_dir`` (after symlinks
and ``..`` are resolved), 404 no such file, 413 too large, 507 the disk is (nearly) full.
"""
import errno
import os
import re
import shutil

from python_multipart.multipart import MultipartParser, parse_options_header

FIELD_BYTES = 64 * 1024        # an option's form field
CHECK_FREE_EVERY = 8 << 20     # bytes written between two looks at the free space
NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class Refused(Exception):
    """A submission refused with HTTP ``status`` and a one-line ``message``."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status, self.message = status, message


def allowed_path(path, allow_dirs):
    """The real path of ``path`` (symlinks and ``..`` resolved) when it is a file under one of ``allow_dirs``
    (real paths); else ``Refused`` (403 outside them, 404 missing)."""
    if not isinstance(path, str) or not path or "\0" in path:
        raise Refused(422, "path must be a non-empty string")
    if not allow_dirs:
        raise Refused(403, "this service takes no paths (it was started without --allow_dir): upload the video")
    real = os.path.realpath(path)
    if not any(real == d or real.startswith(d.rstrip(os.sep) + os.sep) for d in allow_dirs):
        raise Refused(403, f"path outside the directories this service may read: {path}")
    if not os.path.isfile(real):
        raise Refused(404, f"not found: {path}")
    return real


def upload_suffix(filename):
    """The stored upload's extension: the client's when it looks like one (decoders probe the content)."""
    suffix = os.path.splitext(filename or "")[1].lower()
    return suffix if re.fullmatch(r"\.[a-z0-9]{1,5}", suffix) else ".video"


def check_space(folder, incoming, keep_free):
    """``Refused(507)`` when writing ``incoming`` more bytes into ``folder`` would leave under ``keep_free``."""
    if shutil.disk_usage(folder).free - incoming < keep_free:
        raise Refused(507, "not enough free disk space for this upload; try again later")


async def receive_form(request, folder, stem, max_bytes, keep_free):
    """Stream a multipart/form-data body: the file of field ``video`` into ``folder/stem<suffix>``, the
    other fields as text (a field given more than once: the list of its texts). Returns ``(fields {name: text},
    stored path, the client's file name)``; a refused or broken upload leaves no file behind."""
    _, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if not boundary:
        raise Refused(400, "a multipart/form-data body needs a boundary")
    length = request.headers.get("content-length")
    if length is not None and length.isdigit():
        if int(length) > max_bytes + FIELD_BYTES:
            raise Refused(413, f"upload of {int(length)} bytes is over this service's limit of {max_bytes} bytes")
        check_space(folder, int(length), keep_free)
    part = os.path.join(folder, stem + ".part")
    state = {"headers": {}, "field": b"", "name": None, "file": None, "filename": None, "written": 0,
             "since_check": 0, "fields": {}, "error": None, "video": False}
    header = {"field": b"", "value": b""}

    def on_header_field(data, start, end):
        header["field"] += data[start:end]

    def on_header_value(data, start, end):
        header["value"] += data[start:end]

    def on_header_end():
        state["headers"][header["field"].lower()] = header["value"]
        header["field"], header["value"] = b"", b""

    def on_headers_finished():
        _, disposition = parse_options_header(state["headers"].get(b"content-disposition", b""))
        state["name"] = disposition.get(b"name", b"").decode("utf-8", "replace")
        state["headers"] = {}
        if state["name"] == "video":
            if state["video"]:
                raise Refused(400, "one video per submission")
            state["video"] = True
            state["filename"] = disposition.get(b"filename", b"video").decode("utf-8", "replace")
            state["file"] = open(part, "wb")
        else:
            state["field"] = b""

    def on_part_data(data, start, end):
        if state["file"] is None:
            state["field"] += data[start:end]
            if len(state["field"]) > FIELD_BYTES:
                raise Refused(413, f"form field {state['name']!r} is over {FIELD_BYTES} bytes")
            return
        state["written"] += end - start
        state["since_check"] += end - start
        if state["written"] > max_bytes:
            raise Refused(413, f"upload is over this service's limit of {max_bytes} bytes")
        if state["since_check"] >= CHECK_FREE_EVERY:
            state["since_check"] = 0
            check_space(folder, 0, keep_free)
        state["file"].write(data[start:end])

    def on_part_end():
        if state["file"] is not None:
            state["file"].close()
            state["file"] = None
        else:
            text, fields = state["field"].decode("utf-8", "replace"), state["fields"]
            if state["name"] in fields:  # a field given again (include=a&include=b): all of its values
                previous = fields[state["name"]]
                fields[state["name"]] = (previous if isinstance(previous, list) else [previous]) + [text]
            else:
                fields[state["name"]] = text

    parser = MultipartParser(boundary, {"on_header_field": on_header_field, "on_header_value": on_header_value,
                                        "on_header_end": on_header_end, "on_headers_finished": on_headers_finished,
                                        "on_part_data": on_part_data, "on_part_end": on_part_end})
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
        if state["file"] is not None:
            raise Refused(400, "the upload ended before its last part")
        if not state["video"]:
            raise Refused(422, "no video: send the file in the multipart field 'video', or JSON {\"path\": ...}")
        path = os.path.join(folder, stem + upload_suffix(state["filename"]))
        os.replace(part, path)
        return state["fields"], path, state["filename"]
    except BaseException as e:
        if state["file"] is not None:
            state["file"].close()
        try:
            os.remove(part)
        except FileNotFoundError:
            pass
        if isinstance(e, OSError) and e.errno in NO_SPACE:
            raise Refused(507, "the disk is full: the upload was not kept; try again later") from None
        if isinstance(e, Refused) or not isinstance(e, Exception):
            raise
        if type(e).__name__ == "ClientDisconnect":
            raise Refused(400, "the client went away before the end of the upload") from None
        if type(e).__module__.startswith(("python_multipart", "multipart")):
            raise Refused(400, f"malformed multipart body ({' '.join(str(e).split())})") from None
        raise
