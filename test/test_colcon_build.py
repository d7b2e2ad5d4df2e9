"""A real ``colcon build`` of the package (ament_python) into a temporary workspace, with exactly the README's
commands, and what it installs.

The package files are copied to ``<ws>/src/repflow_ros`` (only what a source checkout ships: no .venv, build
outputs or caches) and built in a bash shell with the README's workspace commands, run from ``<ws>`` with the
venv's ``colcon`` first on PATH: ``colcon build --packages-select repflow_ros && source install/setup.bash``
(``--packages-select`` needs colcon-package-selection, ``setup.bash`` colcon-bash). The install tree
(``install/repflow_ros``, colcon's default isolated layout) is checked: ament index marker, package.xml, launch
and config files, models, console scripts under lib/repflow_ros, and the two Python packages. The installed
``camera_sim`` executable is then really run (from a shell that sourced ``install/setup.bash``) on a missing
video, which must exit 1 naming it; the recognizer's entry point is loaded the way its installed script loads
it, without starting the node.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PY_DIR = f"python{sys.version_info.major}.{sys.version_info.minor}"
COPY_FILES = ("package.xml", "setup.py", "setup.cfg", "pyproject.toml")
README_BUILD = "colcon build --packages-select repflow_ros && source install/setup.bash"
COPY_DIRS = ("resource", "repflow_core", "repflow_ros", "launch", "config")
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".pytest_cache")


def _clean_env(ws: Path) -> dict:
    env = os.environ.copy()
    env["COLCON_HOME"] = str(ws / "colcon_home")  # no user-level colcon defaults/mixins
    for var in ("COLCON_PREFIX_PATH", "AMENT_PREFIX_PATH", "CMAKE_PREFIX_PATH", "PYTHONPATH"):
        env.pop(var, None)  # an unrelated sourced workspace must not leak in
    # The README's `colcon` is the one `make setup` installs into the venv.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _write_decoy_package(path: Path) -> None:
    """A second package in the workspace whose build fails: --packages-select must leave it alone."""
    path.mkdir(parents=True)
    (path / "package.xml").write_text(
        '<?xml version="1.0"?>\n<package format="3"><name>decoy_pkg</name><version>0.0.0</version>'
        "<description>must not be built</description><maintainer email=\"a@b.invalid\">x</maintainer>"
        "<license>Apache-2.0</license><export><build_type>ament_python</build_type></export></package>\n")
    (path / "setup.py").write_text(
        "import sys\nfrom setuptools import setup\n"
        "if 'install' in sys.argv or 'develop' in sys.argv:\n    sys.exit('decoy_pkg was built')\n"
        "setup(name='decoy_pkg', version='0.0.0', packages=[])\n")
    (path / "resource").mkdir()
    (path / "resource" / "decoy_pkg").write_text("")


@pytest.fixture(scope="module")
def colcon_install(tmp_path_factory):
    pytest.importorskip("ament_package")  # ament_python's build reads package.xml with it
    if not (Path(sys.executable).parent / "colcon").is_file():
        pytest.skip("colcon is not installed in this venv (make setup installs it with the ROS 2 wheels)")
    ws = tmp_path_factory.mktemp("colcon_ws")
    pkg = ws / "src" / "repflow_ros"
    pkg.mkdir(parents=True)
    for name in COPY_FILES:
        shutil.copy2(REPO / name, pkg / name)
    for name in COPY_DIRS:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, pkg / name, ignore=IGNORE)
    _write_decoy_package(ws / "src" / "decoy_pkg")
    # Exactly the README's commands, then proof that the sourced setup.bash set up the environment.
    script = f"set -e; cd {ws}; {README_BUILD}; echo \"AMENT_PREFIX_PATH=$AMENT_PREFIX_PATH\""
    result = subprocess.run(["bash", "-c", script], cwd=ws, env=_clean_env(ws), capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, f"README build failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    assert "Finished <<< repflow_ros" in result.stdout, result.stdout[-2000:]
    assert "decoy_pkg" not in result.stdout and not (ws / "install" / "decoy_pkg").exists(), "not selected"
    inst = ws / "install" / "repflow_ros"
    assert f"AMENT_PREFIX_PATH={inst}" in result.stdout, result.stdout[-2000:]
    return ws, inst


def test_install_layout(colcon_install):
    ws, inst = colcon_install
    share = inst / "share" / "repflow_ros"
    for rel in ("share/repflow_ros/package.xml", "share/ament_index/resource_index/packages/repflow_ros"):
        assert (inst / rel).is_file(), rel
    for rel in ("launch/recognize.launch.py", "config/recognize.yaml", "config/record.yaml"):
        assert (share / rel).is_file(), f"{rel} not installed (present in the source: {(REPO / rel).is_file()})"
    for script in ("recognizer_node", "camera_sim", "recorder_node", "repflow-train", "repflow-evaluate",
                   "repflow-export"):
        path = inst / "lib" / "repflow_ros" / script
        assert path.is_file() and os.access(path, os.X_OK), path
        text = path.read_text()
        assert text.startswith("#!") and "console_scripts" in text and f"'{script}'" in text
    site = inst / "lib" / PY_DIR / "site-packages"
    for module in ("repflow_core/__init__.py", "repflow_core/recognizer.py", "repflow_core/data/__init__.py",
                   "repflow_ros/__init__.py", "repflow_ros/recognizer_node.py", "repflow_ros/camera_sim_node.py",
                   "repflow_ros/demo.py"):
        assert (site / module).is_file(), module
    # A colcon build declares no pip requirements (rosdep provides them): scripts written by older setuptools
    # check install_requires at start, and rosdep's python3-opencv has no "opencv-python-headless" metadata.
    (egg_info,) = site.glob("repflow_ros-*.egg-info")
    required = (egg_info / "requires.txt").read_text().split("\n\n")[0].split()
    assert required == ["setuptools"], required
    for cpp in sorted((REPO / "repflow_core" / "kernels").glob("*.cpp")):  # the native kernel's source
        assert (site / "repflow_core" / "kernels" / cpp.name).is_file(), cpp.name
    weights = sorted((REPO / "repflow_core" / "weights").glob("*.pt"))
    for w in weights:
        assert (share / "models" / w.name).is_file(), w.name
        assert (site / "repflow_core" / "weights" / w.name).is_file(), w.name


def _sourced(inst: Path, command: str, env_extra: dict | None = None, timeout: float = 60):
    """Run ``command`` in bash after ``source install/setup.bash`` in the workspace, as the README says."""
    ws = inst.parents[1]
    env = _clean_env(ws)
    env.update(env_extra or {})
    script = f"cd {ws} && source install/setup.bash && {command}"
    return subprocess.run(["bash", "-c", script], cwd=ws, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_installed_python_and_entry_points(colcon_install):
    ws, inst = colcon_install
    code = (
        "import importlib.metadata as md, repflow_core, repflow_ros\n"
        "from ament_index_python.packages import get_package_share_directory as share\n"
        "print('core', repflow_core.__file__); print('ros', repflow_ros.__file__)\n"
        "print('share', share('repflow_ros'))\n"
        "eps = {e.name: e for e in md.distribution('repflow-ros').entry_points if e.group == 'console_scripts'}\n"
        "print('eps', sorted(eps))\n"
        "assert eps['recognizer_node'].value == 'repflow_ros.recognizer_node:main'\n"
        "assert eps['camera_sim'].value == 'repflow_ros.camera_sim_node:main'\n"
        "assert callable(eps['camera_sim'].load())\n"
        "assert callable(eps['recognizer_node'].load())\n"
        "import repflow_ros.recognizer_node as m; print('node', m.__file__)\n"
    )
    result = _sourced(inst, f"{sys.executable} -c \"$CODE\"", {"CODE": code})
    assert result.returncode == 0, result.stdout + result.stderr
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)
    site = str(inst / "lib" / PY_DIR / "site-packages")
    # the installed copies are imported, not the source checkout that the venv also has on sys.path
    assert lines["core"].startswith(site) and lines["ros"].startswith(site), result.stdout
    assert lines["share"] == str(inst / "share" / "repflow_ros")
    assert lines["node"].startswith(site), result.stdout


def test_installed_camera_sim_executable_runs(colcon_install, tmp_path):
    ws, inst = colcon_install
    missing = tmp_path / "no_such_video.avi"
    exe = inst / "lib" / "repflow_ros" / "camera_sim"
    result = _sourced(inst, f"{exe} --ros-args -p source:={missing}", timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr
    assert str(missing) in result.stderr, result.stderr
