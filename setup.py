from setuptools import find_packages, setup

setup(
    name="videotag",
    version="0.2.0",
    description="Tag videos with Baidu's VideoTag models (TSN + AttentionLSTM) on PaddlePaddle",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["video_tag", "video_tag.*"]) + ["video_tag.configs"],
    # The shipped configs, found from any folder (video_tag.config.find_config): configs/ is installed as
    # video_tag/configs (an editable install reads them in place).
    package_dir={"video_tag.configs": "configs"},
    package_data={"video_tag.configs": ["*.yaml"],
                  "video_tag": ["timeline.schema.json"],  # the timeline files' JSON Schema
                  "video_tag.service": ["static/*"]},  # the service's web page
    # Paddle 3 has wheels for Python 3.9-3.13; the suite has run on 3.11 (README, "Versions tested").
    python_requires=">=3.9",
    # Paddle is not required here: GPU users install paddlepaddle-gpu, CPU users paddlepaddle
    # (or the extras below), and pip must not replace one with the other.
    install_requires=["numpy", "opencv-python-headless", "Pillow", "pyyaml", "tqdm"],
    extras_require={
        # Pinned to the Paddle releases the suite has run on: the code uses Paddle internals that change
        # between minor releases without notice (the fused fluid LSTM kernel through paddle._C_ops.lstm and
        # its LoD, the RNG state a checkpoint saves for an exact resume, oneDNN flags of Paddle Inference).
        # Widen the range only after the suite has passed on the new release.
        "cpu": ["paddlepaddle>=3.3,<3.4"],
        # No "gpu" extra: Paddle 3's GPU builds are not on PyPI (its newest paddlepaddle-gpu is 2.6.2), so an
        # extra naming them cannot install; they come from Paddle's own index, one per CUDA version
        # (README, "Install": pip install paddlepaddle-gpu -i https://www.paddlepaddle.org.cn/packages/stable/cu126/).
        # matplotlib: the curves.png tests run instead of skipping. paddle2onnx + onnxruntime: the ONNX
        # export tests (skipped without them); paddle2onnx has no wheel for Python 3.13 yet (its onnx pin
        # neither): there those tests skip instead of building it.
        # scikit-learn: the reference for eval.py --per_class's exact AP. av (PyAV, FFmpeg in its wheel): the
        # tests write variable-frame-rate and B-frame videos with known timestamps, which cv2.VideoWriter cannot.
        # scenedetect-headless: PySceneDetect's cuts, compared with the shot detector's (the plain scenedetect
        # wheel declares opencv-python, which would install beside opencv-python-headless).
        "test": ["pytest", "pytest-xdist>=3.2", "matplotlib", "scikit-learn", "av", "scenedetect-headless==0.7.2", "paddle2onnx>=2.1; python_version < '3.13'", "onnxruntime",
                 "selenium",  # the report page and the service's page, tested in headless Chromium
                 "fastapi", "uvicorn", "python-multipart", "httpx",  # the service's tests (a real server)
                 "jsonschema",  # the timeline files checked against their schema
                 "setuptools>=70.1"],  # a wheel of videotag built and installed: older ones need the wheel package
        "serve": ["fastapi", "uvicorn", "python-multipart"],  # serve.py
        "plot": ["matplotlib"],  # training curves (curves.png); without it, no PNG and a one-line note
        "visualdl": ["visualdl"],  # train.py --visualdl
        "onnx": ["paddle2onnx>=2.1; python_version < '3.13'", "onnxruntime"],  # export_model.py's ONNX model
    },
    # The scripts of the project root, from any folder (video_tag/commands).
    entry_points={"console_scripts": [
        "videotag = video_tag.commands.tag:run",
        "videotag-extract = video_tag.commands.extract:run",
        "videotag-train = video_tag.commands.train:run",
        "videotag-eval = video_tag.commands.evaluate:run",
        "videotag-predict = video_tag.commands.predict:run",
        "videotag-export = video_tag.commands.export:run",
        "videotag-frames = video_tag.commands.frames:run",
        "videotag-make-lists = video_tag.commands.make_lists:run",
        "videotag-serve = video_tag.commands.serve:run",
    ]},
)
