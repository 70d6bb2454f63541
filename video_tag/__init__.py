"""videotag: tag videos with Baidu's VideoTag models (TSN features + AttentionLSTM) on PaddlePaddle."""

__version__ = "0.1.0"
