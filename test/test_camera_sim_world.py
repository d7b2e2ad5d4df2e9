"""camera_sim's synthetic world parameters: generation (1|2), size, camera motion; validated with clear errors."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from repflow_core.data.synthetic import SynthConfig, render_clip
from repflow_ros import camera_sim_node
from repflow_ros.camera_sim_node import SourceError, SyntheticSource

REPO = Path(__file__).resolve().parents[1]


def first_clip(**kwargs):
    args = dict(actions=["wave"], clip_frames=5, width=64, height=48, seed=3, loop=False)
    args.update(kwargs)
    src = SyntheticSource(**args)
    try:
        return src.next_clip(timeout=120.0)
    finally:
        src.close()


def test_default_world_is_declared_from_one_line_of_constants():
    assert camera_sim_node.DEFAULT_GENERATION in camera_sim_node.GENERATIONS
    names = {p.name: p.default for p in camera_sim_node.PARAMS}
    assert names["generation"] == camera_sim_node.DEFAULT_GENERATION and names["camera_motion"] is True
    assert names["width"] == camera_sim_node.DEFAULT_WIDTH and names["height"] == camera_sim_node.DEFAULT_HEIGHT


@pytest.mark.parametrize("generation,motion", [(1, True), (2, True), (2, False)])
def test_clips_are_the_generators_clips_at_the_requested_size(generation, motion):
    clip = first_clip(generation=generation, camera_motion=motion)
    seed = (3 * 1_000_003 + 0) % (2**31 - 1)
    config = None if generation == 1 or motion else SynthConfig.from_dict({"camera": {"motion": False}})
    expected = render_clip("wave", 5, (48, 64), seed, generation=generation, config=config)
    assert clip.frames.shape == (5, 48, 64, 3) and np.array_equal(clip.frames, expected)


@pytest.mark.parametrize("kwargs,message", [
    ({"generation": 3}, "generation must be one of (1, 2), got 3"),
    ({"generation": 1, "camera_motion": False}, "camera_motion false needs generation 2"),
    ({"width": 8}, "at least 16 px"),
    ({"height": 0}, "positive width and height"),
])
def test_bad_world_parameters_are_refused(kwargs, message):
    with pytest.raises(SourceError) as exc:
        first_clip(**kwargs)
    assert message in str(exc.value)


def test_node_refuses_an_out_of_range_generation_with_status_1():
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "repflow_ros.camera_sim_node", "--ros-args", "-p", "generation:=3"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "camera_sim: error:" in proc.stderr and "generation" in proc.stderr and "Traceback" not in proc.stderr
