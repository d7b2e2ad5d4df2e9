"""How the nodes meet the graph: the QoS profiles they share and the camera subscription (topic, transport, QoS).

One copy for the recognizer and the recorder, so both resolve ``image`` / ``image/compressed`` the same way and offer
the same ``image_qos`` choices (:data:`IMAGE_QOS`, the keys of ``PARAMETER_CHOICES["image_qos"]``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
    qos_profile_system_default,
)
from sensor_msgs.msg import CompressedImage, Image

__all__ = ["RELIABLE", "IMAGE_QOS", "latched", "image_topic", "subscribe_images"]

#: Outputs (labels, predictions, events, /diagnostics): every message counts, a slow reader gets the last 10.
RELIABLE = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=10)
#: Camera input, by the ``image_qos`` parameter: best effort (sensor_data) is what most cameras publish.
IMAGE_QOS = {"sensor_data": qos_profile_sensor_data, "system_default": qos_profile_system_default,
             "reliable": QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=5)}


def latched(depth: int) -> QoSProfile:
    """Reliable, transient local: a late subscriber still gets the last ``depth`` messages (model info, events)."""
    return QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=depth,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL)


def image_topic(node, transport: str) -> str:
    """The camera topic for ``transport`` (raw or compressed). For compressed the base name ``image`` is resolved with
    remappings first, as image_transport does (``-r image:=/cam/image_raw`` gives ``/cam/image_raw/compressed``); an
    explicit ``image/compressed`` remapping wins."""
    if transport != "compressed":
        return node.resolve_topic_name("image")
    explicit = node.resolve_topic_name("image/compressed")
    if explicit != node.resolve_topic_name("image/compressed", only_expand=True):
        return explicit  # the user remapped image/compressed itself
    return node.resolve_topic_name("image").rstrip("/") + "/compressed"


def subscribe_images(node, transport: str, qos: str, decoder, on_image: Callable[[Any, Callable], None],
                     callback_group) -> tuple[str, Any]:
    """Subscribe ``node`` to its camera; each message reaches ``on_image(msg, decode)`` with the decoder method for
    its type (``decoder``: an :class:`~repflow_ros.image_decoding.ImageDecoder`). Returns (topic, subscription)."""
    topic = image_topic(node, transport)
    if transport == "compressed":
        msg_type, decode = CompressedImage, decoder.decode_compressed
    else:
        msg_type, decode = Image, decoder.decode
    sub = node.create_subscription(msg_type, topic, lambda msg: on_image(msg, decode), IMAGE_QOS[qos],
                                   callback_group=callback_group)
    return topic, sub
