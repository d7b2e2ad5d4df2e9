"""ament_python package repflow_ros, also an ordinary pip-installable Python project.

colcon (ament_python) installs repflow_core and repflow_ros, launch/config/model files under share/repflow_ros,
and the console scripts under lib/repflow_ros (see setup.cfg) for ros2 run/launch. ``pip install .`` installs
the same packages with their runtime dependencies, the extras below and the same console scripts on PATH.
PyTorch is not listed: its build depends on the machine (CPU, CUDA version), so install it first (README).
"""

import sys
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "repflow_ros"

# Runtime dependencies of repflow_core (the ROS ones come from package.xml / rosdep, or PyPI's ROS wheels).
RUNTIME = ["numpy>=1.26", "opencv-python-headless>=4.8", "pyyaml>=6.0", "tqdm>=4.66"]
EXTRAS = {
    "train": ["tensorboard>=2.14", "matplotlib>=3.7"],  # matplotlib >= 3.7: legends placed "outside" the axes
    "export": ["onnx>=1.15", "onnxruntime>=1.17"],
    "bags": ["rosbags>=0.9.20"],
    # triton: the CUDA kernel, tested on the CPU with TRITON_INTERPRET=1; wheels exist for x86_64 Linux only.
    "dev": ["pytest>=8", "ruff>=0.5", 'triton>=3.0; platform_system == "Linux" and platform_machine == "x86_64"'],
}
EXTRAS["all"] = sorted({req for reqs in EXTRAS.values() for req in reqs})

# Only a PEP 517 build (pip install ., python -m build) declares RUNTIME. colcon runs setup.py directly, and on
# older setuptools (Humble's) the scripts it writes check every install_requires entry through pkg_resources at
# start: cv2 from rosdep's python3-opencv carries no "opencv-python-headless" metadata, so the node would refuse
# to start. In a ROS workspace rosdep (package.xml) provides these dependencies instead.
PEP517_BUILD = "setuptools.build_meta" in sys.modules

CONSOLE_SCRIPTS = [
    "recognizer_node = repflow_ros.recognizer_node:main",
    "camera_sim = repflow_ros.camera_sim_node:main",
    "recorder_node = repflow_ros.recorder_node:main",
    "repflow-train = repflow_core.train:main",
    "repflow-evaluate = repflow_core.evaluate:main",
    "repflow-export = repflow_core.export:main",
]

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=["repflow_core", "repflow_core.*", "repflow_ros", "repflow_ros.*"]),
    package_data={"repflow_core": ["weights/*.pt"], "repflow_core.kernels": ["*.cpp"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
        (f"share/{PACKAGE}/models", glob("repflow_core/weights/*.pt")),
    ],
    install_requires=RUNTIME if PEP517_BUILD else ["setuptools"],
    extras_require=EXTRAS,
    python_requires=">=3.10",
    zip_safe=False,
    maintainer="repflow_ros maintainers",
    maintainer_email="maintainers@repflow.invalid",
    description="Action recognition for robots with representation flow (ROS 2 node + PyTorch core).",
    license="Apache-2.0",
    entry_points={"console_scripts": CONSOLE_SCRIPTS},
)
