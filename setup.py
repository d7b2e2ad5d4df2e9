"""ament_python package repflow_ros: installs repflow_core and repflow_ros, launch/config/model files under
share/repflow_ros, and the nodes' console scripts under lib/repflow_ros (see setup.cfg) for ros2 run/launch."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "repflow_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=["repflow_core", "repflow_core.*", "repflow_ros", "repflow_ros.*"]),
    package_data={"repflow_core": ["weights/*.pt"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
        (f"share/{PACKAGE}/models", glob("repflow_core/weights/*.pt")),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="repflow_ros maintainers",
    maintainer_email="maintainers@repflow.invalid",
    description="Action recognition for robots with representation flow (ROS 2 node + PyTorch core).",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "recognizer_node = repflow_ros.recognizer_node:main",
            "camera_sim = repflow_ros.camera_sim_node:main",
        ],
    },
)
