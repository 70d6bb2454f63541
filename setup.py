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
        "test": ["pytest", "matplotlib"],  # matplotlib: the curves.png tests run instead of skipping
        "plot": ["matplotlib"],  # training curves (curves.png); without it, no PNG and a one-line note
        "visualdl": ["visualdl"],  # train.py --visualdl
    },
)
