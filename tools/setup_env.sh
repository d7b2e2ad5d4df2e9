#!/usr/bin/env bash
# Create or update the project's virtual environment from nothing: PyTorch (CPU build pinned in
# requirements.txt), OpenCV, NumPy, PyYAML, tqdm; what the default configs use (requirements-extras.txt:
# TensorBoard, matplotlib, ONNX + onnxruntime, rosbags); test and lint tools (requirements-dev.txt: pytest, ruff,
# Triton on x86_64 Linux); and, on CPython 3.11 x86_64, the ROS 2 (Kilted) wheels from PyPI with colcon
# (requirements-ros.txt). Idempotent: pip skips what is already installed; the Makefile reruns this only when a
# requirements file or this script changes. Usage: tools/setup_env.sh PYTHON VENV_DIR
set -euo pipefail
PY="${1:-python3}"
VENV="${2:-.venv}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

py_ver="$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
machine="$(uname -m)"
echo "[setup] python $py_ver ($PY) on $machine -> $VENV"

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check -q)
"${PIP[@]}" -r requirements.txt -r requirements-extras.txt
if ! "${PIP[@]}" -r requirements-dev.txt; then
  # Triton is the one test dependency that may have no wheel for this Python: its tests skip without it.
  echo "[setup] WARNING: installing requirements-dev.txt failed; retrying without triton (its tests will skip)"
  grep -v '^triton' requirements-dev.txt > "$VENV/.requirements-dev-notriton.txt"
  "${PIP[@]}" -r "$VENV/.requirements-dev-notriton.txt"
fi

ros_ok=1
if [ "$py_ver" != "3.11" ] || [ "$machine" != "x86_64" ]; then
  ros_ok=0
  cat <<MSG
[setup] ------------------------------------------------------------------------------------------
[setup] The ROS 2 wheels on PyPI (ros-rclpy, ros-rmw-fastrtps-cpp, ...) exist only for CPython 3.11
[setup] on x86_64; this is Python $py_ver on $machine, so they were NOT installed.
[setup] Installed: the PyTorch core, its extras and the test tools (training, evaluation, export, core tests).
[setup] To run the ROS 2 node here, use a ROS 2 workspace (Humble, Jazzy or newer):
[setup]   source /opt/ros/<distro>/setup.bash && cd ~/ros2_ws/src && git clone <this repo> repflow_ros
[setup]   rosdep install --from-paths . -y --ignore-src && pip install -r repflow_ros/requirements.txt
[setup]   cd ~/ros2_ws && colcon build --packages-select repflow_ros && source install/setup.bash
[setup]   ros2 launch repflow_ros recognize.launch.py
[setup] (or run 'make setup PY=python3.11' on an x86_64 machine that has Python 3.11).
[setup] ------------------------------------------------------------------------------------------
MSG
else
  "${PIP[@]}" -r requirements-ros.txt
fi

# Make the repository importable from the venv (python -m repflow_ros.<node> from any folder) without
# an editable install, which would put console scripts where ament_python does not.
site="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "$ROOT" > "$site/repflow_ros_repo.pth"

"$VENV/bin/python" - <<'PYCHECK'
import importlib.metadata as md
import torch, cv2, numpy, yaml, tqdm
print(f"[setup] torch {torch.__version__}, opencv {cv2.__version__}, numpy {numpy.__version__}, "
      f"CUDA available: {torch.cuda.is_available()}")
def version(dist):
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "not installed"
print("[setup] " + ", ".join(f"{d} {version(d)}" for d in (
    "tensorboard", "matplotlib", "onnx", "onnxruntime", "rosbags", "pytest", "ruff", "triton")))
PYCHECK
if [ "$ros_ok" = 1 ]; then
  "$VENV/bin/python" -c 'import rclpy, sensor_msgs.msg, std_srvs.srv, diagnostic_msgs.msg, lifecycle_msgs.msg; print("[setup] rclpy", "OK (PyPI ROS 2 wheels, Fast DDS)")'
  "$VENV/bin/colcon" build --help | grep -q -- '--packages-select' \
    || { echo "[setup] colcon lacks --packages-select (colcon-package-selection)"; exit 1; }
fi
echo "[setup] done"
