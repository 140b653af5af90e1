from setuptools import find_packages, setup

# tensorflow-cpu is the same TensorFlow without the CUDA libraries: a quarter of
# the download on the CPU-only Linux machines this project trains on.  Other
# platforms get the regular wheel.
TENSORFLOW = [
    "tensorflow-cpu>=2.16; sys_platform == 'linux' and platform_machine == 'x86_64'",
    "tensorflow>=2.16; sys_platform != 'linux' or platform_machine != 'x86_64'",
]

setup(
    name="fruitkeras",
    version="0.1.0",
    description="Train a CNN on Fruits-360 photos and explain its decisions.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["fruitkeras", "fruitkeras.*"]),
    install_requires=TENSORFLOW
    + [
        "keras>=3.3",
        "numpy",
        "click>=8",
        "matplotlib",
        "pillow",
        "pandas",
        "gradio>=5",  # fruitkeras serve
    ],
    # selenium drives Debian's chromium and chromium-driver (.ci/run installs them) in the page's browser test.
    extras_require={"test": ["pytest", "selenium>=4.10", "gradio_client"]},
    entry_points={"console_scripts": ["fruitkeras=fruitkeras.cli:main"]},
)
