"""Start the action recognizer (and, with camera:=sim, the demo camera).

    ros2 launch repflow_ros recognize.launch.py image_topic:=/camera/image_raw
    ros2 launch repflow_ros recognize.launch.py camera:=sim device:=cpu
    ros2 launch repflow_ros recognize.launch.py params_file:=/path/to/my.yaml namespace:=robot1 log_level:=debug

`model_path` and `device` override the params file only when given (empty: the file's value is kept).
A params_file that does not exist stops the launch with an error (instead of running the node on its defaults), and
the launch shuts down -- with a non-zero status when the recognizer failed -- as soon as the recognizer exits.
Without a ROS install (PyPI wheels, no `launch`), run the same node with the same file instead:
    python -m repflow_ros.recognizer_node --ros-args --params-file config/recognize.yaml -r image:=/camera/image_raw
"""

import os
import sys

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, LogInfo, OpaqueFunction, RegisterEventHandler
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node
from launch_ros.parameter_descriptions import ParameterValue

PACKAGE = "repflow_ros"

#: Launch arguments that become recognizer parameters of the same name when they are not empty.
PARAMETER_ARGUMENTS = ("model_path", "device")

#: Colour codes and carriage returns only help a terminal: logs piped to a file stay plain.
EMULATE_TTY = sys.stdout.isatty()


def _default_params_file():
    """share/repflow_ros/config/recognize.yaml of the installed package, else the source tree's copy."""
    try:
        from ament_index_python.packages import get_package_share_directory

        return os.path.join(get_package_share_directory(PACKAGE), "config", "recognize.yaml")
    except Exception:  # not installed (or no ament_index): launched from a source checkout
        return os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "config", "recognize.yaml")


def _camera_condition():
    try:  # launch >= 1.1 (Iron and newer)
        from launch.conditions import IfCondition
        from launch.substitutions import EqualsSubstitution

        return IfCondition(EqualsSubstitution(LaunchConfiguration("camera"), "sim"))
    except ImportError:  # Humble
        from launch.conditions import LaunchConfigurationEquals

        return LaunchConfigurationEquals("camera", "sim")


def _on_recognizer_exit(event, context):
    """End the launch when the recognizer ends: with a non-zero launch status when it failed (bad model_path,
    device:=cuda without CUDA...), so scripts and supervisors see the failure and the demo camera does not keep
    running alone. Raising is how an event handler makes ``ros2 launch`` shut down and exit non-zero."""
    if getattr(context, "is_shutdown", False):  # Ctrl-C: everything is stopping anyway
        return None
    code = event.returncode
    if code != 0:
        raise RuntimeError(f"{event.action.name} exited with status {code} (see its log above): "
                           "shutting the launch down")
    return [LogInfo(msg="the recognizer exited: shutting the launch down"),
            EmitEvent(event=Shutdown(reason="the recognizer exited"))]


def _recognizer(context, *args, **kwargs):
    params_file = LaunchConfiguration("params_file").perform(context)
    if not os.path.isfile(params_file):  # rcl would only warn and the node would run on its built-in defaults
        raise RuntimeError(f"params_file {params_file!r} does not exist (launch argument params_file)")
    overrides = {}
    for name in PARAMETER_ARGUMENTS:
        value = LaunchConfiguration(name).perform(context).strip()
        if value:
            overrides[name] = ParameterValue(value, value_type=str)
    recognizer = LifecycleNode(
        package=PACKAGE,
        executable="recognizer_node",
        name="repflow_recognizer",
        namespace=LaunchConfiguration("namespace"),
        parameters=[LaunchConfiguration("params_file"), overrides],
        remappings=[("image", LaunchConfiguration("image_topic"))],
        arguments=["--ros-args", "--log-level", LaunchConfiguration("log_level")],
        output="screen",
        emulate_tty=EMULATE_TTY,
    )
    on_exit = RegisterEventHandler(OnProcessExit(target_action=recognizer, on_exit=_on_recognizer_exit))
    return [recognizer, on_exit]


def generate_launch_description():
    arguments = [
        DeclareLaunchArgument(
            "params_file", default_value=_default_params_file(),
            description="YAML file with the recognizer's parameters (key /** so it applies under any namespace)."),
        DeclareLaunchArgument(
            "model_path", default_value="",
            description="Checkpoint (.pt) to load; empty: the params file's model_path (default: the packaged model)."),
        DeclareLaunchArgument(
            "device", default_value="",
            description="auto, cpu, cuda or cuda:N; empty: the params file's device (default auto)."),
        DeclareLaunchArgument(
            "image_topic", default_value="/camera/image_raw",
            description="Camera topic (sensor_msgs/Image) remapped onto the recognizer's `image` input."),
        DeclareLaunchArgument(
            "namespace", default_value="",
            description="Namespace of the nodes (relative outputs such as action_label move into it)."),
        DeclareLaunchArgument(
            "camera", default_value="none", choices=["none", "sim"],
            description="none: use an existing camera; sim: also start camera_sim publishing on image_topic."),
        DeclareLaunchArgument(
            "log_level", default_value="info", choices=["debug", "info", "warn", "error", "fatal"],
            description="Log level of the started nodes."),
    ]
    camera = Node(
        package=PACKAGE,
        executable="camera_sim",
        name="camera_sim",
        namespace=LaunchConfiguration("namespace"),
        remappings=[
            ("image", LaunchConfiguration("image_topic")),
            ("image/compressed", [LaunchConfiguration("image_topic"), "/compressed"]),
        ],
        arguments=["--ros-args", "--log-level", LaunchConfiguration("log_level")],
        output="screen",
        emulate_tty=EMULATE_TTY,
        condition=_camera_condition(),
    )
    return LaunchDescription(arguments + [OpaqueFunction(function=_recognizer), camera])
