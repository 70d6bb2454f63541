"""The entry points of ``pip install``'s console scripts (setup.py): each module's ``run()`` is one script.

    videotag            -> commands/tag.py        (videotag.py: its main lives here)
    videotag-extract    -> commands/extract.py    (tsn_extractor.py)
    videotag-train      -> commands/train.py      (train.py)
    videotag-eval       -> commands/evaluate.py   (eval.py)
    videotag-predict    -> commands/predict.py    (predict.py)
    videotag-export     -> commands/export.py     (export_model.py)
    videotag-frames     -> commands/frames.py     (tools/video2frames.py)
    videotag-make-lists -> commands/make_lists.py (tools/make_lists.py)

The scripts of the project root stay the commands of the README; they call the ``main`` here, so both
forms are one code path, and an installed wheel needs no file of the project root (the configs are
package data: video_tag.config.find_config). ``python -m video_tag.commands.extract ...`` works too.
"""
