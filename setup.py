from setuptools import find_packages, setup

# The regular TensorFlow wheel runs on the CPU everywhere; the gpu extra adds the
# CUDA libraries it needs on Linux (TensorFlow's own "and-cuda" extra).  (The
# smaller tensorflow-cpu wheel would collide with it: both install `tensorflow`.)
# Capped to the versions the test suite ran on: fruitkeras/distribute.py patches Keras internals for
# multi-worker training (it checks the version at run time too).
TENSORFLOW = ["tensorflow>=2.21,<2.22"]
KERAS = "keras>=3.15,<3.16"

setup(
    name="fruitkeras",
    version="0.1.0",
    description="Train a CNN on Fruits-360 photos and explain its decisions.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    # The credited sample photos travel inside the package as fruitkeras.samples, so that an install without
    # the repository has them too (page_service.SAMPLES_DIR).
    packages=find_packages(include=["fruitkeras", "fruitkeras.*"]) + ["fruitkeras.samples"],
    package_dir={"fruitkeras.samples": "samples"},
    package_data={"fruitkeras": ["benchmark_classes.txt"], "fruitkeras.samples": ["*.jpg", "*.png", "README.md"]},
    install_requires=TENSORFLOW
    + [
        KERAS,
        "numpy",
        "click>=8",
        "matplotlib",
        "pillow",
        "pandas",
        "gradio>=5",  # fruitkeras serve
        "opencv-python-headless>=4.8",  # GrabCut: the fruit cut out of an unfamiliar photo (fruitkeras.foreground)
    ],
    # selenium drives Debian's chromium and chromium-driver (.ci/run installs them) in the page's browser test.
    extras_require={
        # pytest-xdist: the suite runs on two workers, files in the order tests/conftest.py gives
        # (setup.cfg; --no-loadscope-reorder is new in 3.8).
        "test": ["pytest", "pytest-xdist>=3.8", "selenium>=4.10", "gradio_client"],
        "gpu": ["tensorflow[and-cuda]>=2.21,<2.22; sys_platform == 'linux'"],  # README: Scaling out
    },
    entry_points={"console_scripts": ["fruitkeras=fruitkeras.cli:main"]},
)
