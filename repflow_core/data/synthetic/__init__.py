"""Synthetic action videos: the embedded default dataset (generation 2: domain randomised for robot cameras).

A person-like articulated figure (:mod:`.figure`, poses in :mod:`.actions`) acts in a scene and is filmed by a
camera; everything is drawn with OpenCV from one ``seed``, so a clip is reproducible byte for byte.

* Generation 2 (default, :mod:`.generator`): any frame size H x W rendered natively; rooms with wall, floor,
  furniture and clutter, moving distractors and furniture occluding the body (:mod:`.scene`); varied body
  proportions, clothes and hair, action speed and amplitude, partial actions at the window ends; a robot
  camera with pan/tilt/zoom and shake, motion blur, defocus, noise, exposure/colour/flicker and JPEG
  compression (:mod:`.camera`). Every factor has a documented range and a switch in :class:`SynthConfig`.
* Generation 1 (:mod:`.legacy`, ``generation=1``): the clips the packaged default model was trained on,
  byte-identical to the pre-split module for a seed.

Design: classes differ by motion, not by appearance
---------------------------------------------------
The recognition model averages per-frame predictions over time. An RGB-only model therefore behaves like a
*bag of frames*: it can only use what single frames show. The representation-flow model also sees how pixels
move. To make the dataset measure the difference, the hard classes come in **time-reversed pairs** whose frame
distributions are identical:

* ``walk_right`` / ``walk_left``: a front-facing, left-right symmetric figure swings its legs and arms while
  translating sideways; the start position is random over the span the figure will cover.
* ``sit_down`` / ``stand_up``: the same pose sequence (standing in front of a stool -> seated), forwards or
  backwards.
* ``pick_up`` / ``put_down``: the figure squats, and a box goes floor -> hand or hand -> floor.

These pairs are implemented *literally* as time reversals: ``render_clip("stand_up", T, size, s)`` is exactly
``render_clip("sit_down", T, size, s)[::-1]`` (camera motion, noise and compression included), and the same
for ``walk_left``/``walk_right`` and ``put_down``/``pick_up``. For the same seed the multiset of frames is
identical, so a bag-of-frames model cannot beat chance within a pair; only the order of frames (motion) tells
them apart. Appearance, scene and camera draws come first from the seed's generator, so for one seed every
action shares the same look; only the action-specific draws differ.

:data:`EXTRA_ACTIONS` (``point``, ``drink``, ``nod``) render by name but are in no default class list.

Command line::

    python -m repflow_core.data.synthetic --out DIR --per-class N [--frames 48] [--size 128] [--width W]
        [--fps 30] [--seed 0] [--test-fraction 0.25] [--generation 2]

writes ``DIR/<action>/<action>_<i:04d>.avi`` (Motion-JPEG; ``.mp4``/mp4v if MJPG is unavailable) through
:mod:`repflow_core.data.video_io`, plus ``trainlist.txt``/``testlist.txt`` (relative paths, stratified per
class) and a UCF101-style ``classInd.txt``.
"""

from __future__ import annotations

from .dataset import _clip_seed, _split_indices, main, write_dataset
from .generator import DEFAULT_GENERATION, GENERATIONS, SynthConfig
from .render import (
    ACTIONS,
    ALL_ACTIONS,
    EXTRA_ACTIONS,
    MIN_SIZE,
    REVERSED_OF,
    _render,
    person_motion,
    render_clip,
    window_motion,
)

__all__ = ["ACTIONS", "ALL_ACTIONS", "DEFAULT_GENERATION", "EXTRA_ACTIONS", "GENERATIONS", "MIN_SIZE",
           "REVERSED_OF", "SynthConfig", "main", "person_motion", "render_clip", "window_motion",
           "write_dataset"]
_ = (_clip_seed, _split_indices, _render)  # private names kept importable for tests and old callers
