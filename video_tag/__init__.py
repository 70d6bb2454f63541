"""videotag: tag videos with Baidu's VideoTag models (TSN features + AttentionLSTM) on PaddlePaddle.

Importing the package or any of its modules changes nothing in the process (no environment variable,
no import of Paddle): the entry scripts set the process up first (``video_tag.cli.setup_process``).
"""

__version__ = "0.2.0"
