"""``pip install .`` as a Python project: a real wheel built from a copy of the source checkout (PEP 517, the
venv's setuptools, no network), installed with ``pip install --no-deps --target`` into a temporary folder.

Checked: the runtime requirements and the extras (train, export, bags, dev) in the wheel's metadata, the
console scripts (the nodes and the training/evaluation CLIs) really run from the target's ``bin``, and the
package data (the packaged model, the native kernel's C++ source) is inside the installed packages.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
COPY_FILES = ("package.xml", "setup.py", "setup.cfg", "pyproject.toml")
COPY_DIRS = ("resource", "repflow_core", "repflow_ros", "launch", "config")
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".pytest_cache")
SCRIPTS = ("recognizer_node", "camera_sim", "recorder_node", "repflow-train", "repflow-evaluate", "repflow-export")


def _pip(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return subprocess.run([sys.executable, "-m", "pip", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("src")  # a copy: building in place would write build/ and egg-info here
    for name in COPY_FILES:
        shutil.copy2(REPO / name, src / name)
    for name in COPY_DIRS:
        shutil.copytree(REPO / name, src / name, ignore=IGNORE)
    out = tmp_path_factory.mktemp("wheel")
    # --no-build-isolation: build with this venv's setuptools instead of downloading one (tests run offline).
    result = _pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(out), ".", cwd=src)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (whl,) = out.glob("repflow_ros-*.whl")
    return whl


def _metadata(whl: Path):
    with zipfile.ZipFile(whl) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        return Parser().parsestr(zf.read(name).decode())


def test_wheel_declares_runtime_requirements_and_extras(wheel):
    meta = _metadata(wheel)
    requires = meta.get_all("Requires-Dist")
    plain = {r.split(";")[0].split(">")[0].split("=")[0].strip() for r in requires if "extra ==" not in r}
    assert plain == {"numpy", "opencv-python-headless", "pyyaml", "tqdm"}, requires
    assert {"train", "export", "bags", "dev"} <= set(meta.get_all("Provides-Extra"))
    by_extra = {}
    for r in requires:
        if "extra ==" in r:
            extra = r.split("extra ==")[1].strip().strip('"').strip("'")
            by_extra.setdefault(extra, set()).add(r.split(";")[0].split(">")[0].strip())
    assert {"tensorboard", "matplotlib"} <= by_extra["train"]
    assert {"onnx", "onnxruntime"} <= by_extra["export"] and "rosbags" in by_extra["bags"]
    assert {"pytest", "ruff", "triton"} <= by_extra["dev"]
    triton = next(r for r in requires if r.startswith("triton"))
    assert 'platform_machine == "x86_64"' in triton  # no wheel elsewhere: the marker skips it


def test_target_install_has_console_scripts_and_package_data(wheel, tmp_path):
    target = tmp_path / "target"
    result = _pip("install", "--no-deps", "--no-index", "--target", str(target), str(wheel), cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for script in SCRIPTS:
        path = target / "bin" / script
        assert path.is_file() and os.access(path, os.X_OK), f"{script} not installed: {sorted(target.iterdir())}"
    core = target / "repflow_core"
    for w in (REPO / "repflow_core" / "weights").glob("*.pt"):
        assert (core / "weights" / w.name).is_file(), w.name
    cpps = sorted((REPO / "repflow_core" / "kernels").glob("*.cpp"))
    for cpp in cpps:
        assert (core / "kernels" / cpp.name).is_file(), cpp.name
    # The CLIs start from the installed copy (not the checkout) and answer --help at once.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(target)
    for script in ("repflow-train", "repflow-evaluate", "repflow-export"):
        run = subprocess.run([sys.executable, str(target / "bin" / script), "--help"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
        assert "usage:" in run.stdout
    code = "import repflow_core, sys; print(repflow_core.__file__)"
    where = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=60)
    assert where.stdout.strip().startswith(str(target)), where.stdout + where.stderr
