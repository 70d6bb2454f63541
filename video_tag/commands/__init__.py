"""The entry points of ``pip install``'s console scripts (setup.py): each module's ``run()`` is one script.

    videotag-extract  -> commands/extract.py   (tsn_extractor.py: its main lives here)
    videotag-export   -> commands/export.py    (export_model.py)
    videotag-frames   -> commands/frames.py    (tools/video2frames.py)
    videotag, videotag-train, videotag-eval, videotag-predict -> commands/scripts.py: run videotag.py,
                         train.py, eval.py, predict.py of the project root as ``python <script>`` does

The scripts of the project root stay the commands of the README; for the first three they call the
``main`` here, so both forms are one code path. ``python -m video_tag.commands.extract ...`` works too.
"""
