from setuptools import find_packages, setup

setup(
    name="monai-bus",
    version="0.1.0",
    description="Benign/malignant classification of breast lesions in ultrasound images "
    "(Attention-VGG16 with CE-logcosh loss, Kalafi et al.) as a MONAI bundle.",
    long_description=open("README.md", encoding="utf8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["monai_bus", "monai_bus.*"]),
    package_data={"monai_bus": ["samples/*"]},
    # torch is pinned by the README's first install step (torch==2.13.0, CPU build); the range
    # below is satisfied by it, so pip never pulls a multi-GB CUDA build on top.
    install_requires=[
        "torch>=2.2",
        "monai==1.6.1",
        "pytorch-ignite==0.5.5",
        "numpy",
        "pillow",
        "itk",
        "nibabel",
        "fire",
        "tensorboard",
        "tqdm",
        "scipy",
        "scikit-image",  # MONAI's KeepLargestConnectedComponentd, which localiser bundles before 0.4.0 use
        "scikit-learn",
        "pydicom",
        "openpyxl",
    ],
    extras_require={
        # pytest-xdist: the README's test command runs the tests on every core (-n auto)
        "test": ["pytest", "pytest-xdist"],
        # the study harness's figures (monai-bus study)
        "study": ["matplotlib"],
        # the 3D Slicer module's tests (slicer_extension/) without the Slicer app: a real MRML scene, and a
        # real Qt event loop for the panel's Apply -> worker -> timer -> table path
        "slicer": ["slicer-core==5.13.31053.0", "PyQt5==5.15.11"],
    },
    entry_points={"console_scripts": ["monai-bus=monai_bus.cli:main"]},
)
