from setuptools import find_packages, setup

setup(
    name="videotag",
    version="0.2.0",
    description="Tag videos with Baidu's VideoTag models (TSN + AttentionLSTM) on PaddlePaddle",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["video_tag", "video_tag.*"]),
    python_requires=">=3.8",
    # Paddle is not required here: GPU users install paddlepaddle-gpu, CPU users paddlepaddle
    # (or the extras below), and pip must not replace one with the other.
    install_requires=["numpy", "opencv-python-headless", "Pillow", "pyyaml", "tqdm"],
    extras_require={
        "cpu": ["paddlepaddle>=3.0"],
        "gpu": ["paddlepaddle-gpu>=3.0"],
        # matplotlib: the curves.png tests run instead of skipping. paddle2onnx + onnxruntime: the ONNX
        # export tests (skipped without them); paddle2onnx has no wheel for Python 3.13 yet (its onnx pin
        # neither): there those tests skip instead of building it.
        "test": ["pytest", "matplotlib", "paddle2onnx>=2.1; python_version < '3.13'", "onnxruntime"],
        "plot": ["matplotlib"],  # training curves (curves.png); without it, no PNG and a one-line note
        "visualdl": ["visualdl"],  # train.py --visualdl
        "onnx": ["paddle2onnx>=2.1; python_version < '3.13'", "onnxruntime"],  # export_model.py's ONNX model
    },
)
