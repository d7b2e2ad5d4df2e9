"""launch/recognize.launch.py and config/recognize.yaml against the node's declared parameters.

`launch` / `launch_ros` are not installable from PyPI, so the launch file is checked without them: parsed with `ast`
(every DeclareLaunchArgument, every Node / LifecycleNode action and the parameter keys it passes), and executed once
against small stand-ins of the launch API to check the argument -> parameter override logic. Nothing is started.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
import types
from pathlib import Path

import pytest
import yaml

from repflow_ros import node_parameters as recognizer_node  # the node's parameter table, importable without rclpy
from repflow_ros.node_parameters import PARAMETER_SPECS, validate_value

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_FILE = ROOT / "launch" / "recognize.launch.py"
CONFIG_FILE = ROOT / "config" / "recognize.yaml"
EXPECTED_ARGUMENTS = {"params_file", "model_path", "device", "image_topic", "namespace", "camera", "log_level"}


# ---------------------------------------------------------------------------------------------------------------------
# ast helpers


def _call_name(call: ast.Call) -> str:
    func = call.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""


def _literal(node):
    """The literal value of an expression, or the marker string '<expr>' when it is not a literal."""
    try:
        return ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError):
        return "<expr>"


def _is_launch_configuration(node, name: str) -> bool:
    return (isinstance(node, ast.Call) and _call_name(node) == "LaunchConfiguration" and node.args
            and _literal(node.args[0]) == name)


@pytest.fixture(scope="module")
def tree():
    return ast.parse(LAUNCH_FILE.read_text(), filename=str(LAUNCH_FILE))


@pytest.fixture(scope="module")
def arguments(tree):
    """name -> {default, description, choices} of every DeclareLaunchArgument."""
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _call_name(node) == "DeclareLaunchArgument":
            name = _literal(node.args[0]) if node.args else _literal(
                next(k.value for k in node.keywords if k.arg == "name"))
            kwargs = {k.arg: _literal(k.value) for k in node.keywords}
            assert name not in found, f"launch argument {name} declared twice"
            found[name] = {"default": kwargs.get("default_value"), "description": kwargs.get("description"),
                           "choices": kwargs.get("choices")}
    return found


def _module_constant(tree, name: str):
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return _literal(node.value)
    raise AssertionError(f"{name} is not a module-level constant of the launch file")


def _value(tree, node):
    """Like _literal, but a name bound to a module-level constant (PACKAGE = "repflow_ros") is resolved."""
    if isinstance(node, ast.Name):
        try:
            return _module_constant(tree, node.id)
        except AssertionError:
            return "<expr>"
    return _literal(node)


def _dict_keys_of_name(tree, func: ast.AST, var: str) -> set:
    """Keys put into dict variable ``var`` inside ``func``: literal dict keys and ``var[k] = ...`` where k is a
    constant or the loop variable of ``for k in <module constant>``."""
    keys = set()
    loops = {}
    for node in ast.walk(func):
        if isinstance(node, ast.For) and isinstance(node.target, ast.Name):
            if isinstance(node.iter, ast.Name):
                loops[node.target.id] = _module_constant(tree, node.iter.id)
            else:
                loops[node.target.id] = _literal(node.iter)
    for node in ast.walk(func):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id == var and isinstance(node.value, ast.Dict):
                    keys |= {_literal(k) for k in node.value.keys}
                if (isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name)
                        and target.value.id == var):
                    sub = target.slice
                    if isinstance(sub, ast.Name) and sub.id in loops:
                        keys |= set(loops[sub.id])
                    else:
                        keys.add(_literal(sub))
    return keys


@pytest.fixture(scope="module")
def node_actions(tree):
    """executable -> {kwargs (literal or '<expr>'), raw (ast keyword values), parameter_keys}."""
    actions = {}
    for func in [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]:
        for node in ast.walk(func):
            if isinstance(node, ast.Call) and _call_name(node) in ("Node", "LifecycleNode"):
                raw = {k.arg: k.value for k in node.keywords}
                keys = set()
                params = raw.get("parameters")
                if params is not None:
                    assert isinstance(params, ast.List), "parameters must be a list literal"
                    for item in params.elts:
                        if isinstance(item, ast.Dict):
                            keys |= {_literal(k) for k in item.keys}
                        elif isinstance(item, ast.Name):
                            keys |= _dict_keys_of_name(tree, func, item.id)
                        # anything else (LaunchConfiguration('params_file')) is a parameter file
                executable = _value(tree, raw["executable"])
                actions[executable] = {"kind": _call_name(node), "raw": raw, "parameter_keys": keys,
                                       "kwargs": {k: _value(tree, v) for k, v in raw.items()}}
    return actions


# ---------------------------------------------------------------------------------------------------------------------
# launch arguments


def test_declares_the_documented_arguments(arguments):
    assert set(arguments) == EXPECTED_ARGUMENTS


def test_every_argument_has_a_description(arguments):
    for name, arg in arguments.items():
        assert isinstance(arg["description"], str) and len(arg["description"].strip()) > 10, name


def test_argument_defaults_and_choices(arguments):
    assert arguments["image_topic"]["default"] == "/camera/image_raw"
    assert arguments["camera"]["default"] == "none" and set(arguments["camera"]["choices"]) == {"none", "sim"}
    assert arguments["log_level"]["default"] in arguments["log_level"]["choices"]
    assert arguments["namespace"]["default"] == ""
    for name, arg in arguments.items():
        if arg["choices"] not in (None, "<expr>"):
            assert arg["default"] in arg["choices"], name


def test_recognizer_action(node_actions):
    action = node_actions["recognizer_node"]
    kw = action["kwargs"]
    assert action["kind"] in ("Node", "LifecycleNode")
    assert kw["package"] == "repflow_ros" and kw["name"] == recognizer_node.NODE_NAME
    remaps = action["raw"]["remappings"]
    assert any(isinstance(p, ast.Tuple) and _literal(p.elts[0]) == "image"
               and _is_launch_configuration(p.elts[1], "image_topic") for p in remaps.elts), "image not remapped"
    args = action["raw"]["arguments"].elts
    assert [_literal(a) for a in args[:2]] == ["--ros-args", "--log-level"]
    assert _is_launch_configuration(args[2], "log_level")
    assert _is_launch_configuration(action["raw"]["namespace"], "namespace")
    files = [e for e in action["raw"]["parameters"].elts if _is_launch_configuration(e, "params_file")]
    assert files, "the params file is not passed to the recognizer"


def test_parameter_arguments_exist_on_the_node(node_actions, arguments):
    keys = node_actions["recognizer_node"]["parameter_keys"]
    assert keys == {"model_path", "device"}, keys
    for key in keys:
        assert key in PARAMETER_SPECS, f"launch passes {key}, which the node does not declare"
        assert key in arguments, f"parameter {key} has no launch argument of the same name"
        spec = PARAMETER_SPECS[key]
        assert spec.type is str  # passed as ParameterValue(..., value_type=str)
        default = arguments[key]["default"]
        # "" means "keep the params file's value"; any other default must be a valid value of the parameter.
        assert default == "" or validate_value(key, default) is None, (key, default)


def test_camera_sim_action(node_actions):
    action = node_actions["camera_sim"]
    assert action["kwargs"]["package"] == "repflow_ros" and action["kwargs"]["name"] == "camera_sim"
    remaps = action["raw"]["remappings"].elts
    assert any(_literal(p.elts[0]) == "image" and _is_launch_configuration(p.elts[1], "image_topic")
               for p in remaps)
    assert "condition" in action["raw"], "camera_sim must only start with camera:=sim"


def test_executables_are_console_scripts(node_actions):
    setup = (ROOT / "setup.py").read_text()
    for executable in node_actions:
        assert re.search(rf"\b{executable}\s*=\s*repflow_ros\.\w+:main", setup), executable
    assert "launch/*.launch.py" in setup and "config/*.yaml" in setup


# ---------------------------------------------------------------------------------------------------------------------
# config/recognize.yaml


def test_config_yaml_matches_parameter_specs():
    data = yaml.safe_load(CONFIG_FILE.read_text())
    assert list(data) == ["/**"], "use the /** key so the file applies under any namespace"
    params = data["/**"]["ros__parameters"]
    assert set(params) == set(PARAMETER_SPECS), set(params) ^ set(PARAMETER_SPECS)
    for name, value in params.items():
        spec = PARAMETER_SPECS[name]
        # ROS reads YAML types strictly: 1 is an integer, 1.0 a double.
        assert type(value) is spec.type, f"{name}: {value!r} is {type(value).__name__}, node wants {spec.type}"
        assert validate_value(name, value) is None, name
        assert value == spec.default, f"{name}: file has {value!r}, node default is {spec.default!r}"


def test_config_yaml_documents_every_parameter():
    lines = CONFIG_FILE.read_text().splitlines()
    for i, line in enumerate(lines):
        match = re.match(r"^\s{4}(\w+):", line)
        if match:
            assert lines[i - 1].strip().startswith("#"), f"no comment above {match.group(1)}"


def test_parameter_specs_are_consistent():
    for name, spec in PARAMETER_SPECS.items():
        assert isinstance(spec.default, spec.type), name
        assert spec.description.strip(), name
        assert validate_value(name, spec.default) is None, name
        if spec.range is not None:
            assert spec.type in (int, float) and spec.range[0] <= spec.default <= spec.range[1], name
    assert set(recognizer_node.RUNTIME_PARAMETERS) == {"hop", "smoothing", "score_threshold", "top_k"}


# ---------------------------------------------------------------------------------------------------------------------
# executing the launch file against stand-ins of the launch API


class _Recorded:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class _LaunchConfiguration(_Recorded):
    def perform(self, context):
        return context.launch_configurations[self.args[0]]


def _stub_modules():
    def mod(name, **attrs):
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        return module

    def cls(name, base=_Recorded):
        return type(name, (base,), {})

    return {
        "launch": mod("launch", LaunchDescription=cls("LaunchDescription")),
        "launch.actions": mod("launch.actions", DeclareLaunchArgument=cls("DeclareLaunchArgument"),
                              OpaqueFunction=cls("OpaqueFunction"), RegisterEventHandler=cls("RegisterEventHandler"),
                              EmitEvent=cls("EmitEvent"), LogInfo=cls("LogInfo")),
        "launch.event_handlers": mod("launch.event_handlers", OnProcessExit=cls("OnProcessExit")),
        "launch.events": mod("launch.events", Shutdown=cls("Shutdown")),
        "launch.conditions": mod("launch.conditions", IfCondition=cls("IfCondition"),
                                 LaunchConfigurationEquals=cls("LaunchConfigurationEquals")),
        "launch.substitutions": mod("launch.substitutions", LaunchConfiguration=_LaunchConfiguration,
                                    EqualsSubstitution=cls("EqualsSubstitution")),
        "launch_ros": mod("launch_ros"),
        "launch_ros.actions": mod("launch_ros.actions", Node=cls("Node"), LifecycleNode=cls("LifecycleNode")),
        "launch_ros.parameter_descriptions": mod("launch_ros.parameter_descriptions",
                                                 ParameterValue=cls("ParameterValue")),
    }


def _load_launch_module(monkeypatch):
    for name, module in _stub_modules().items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.delenv("AMENT_PREFIX_PATH", raising=False)  # not installed here: the source tree's file is used
    spec = importlib.util.spec_from_file_location("recognize_launch_under_test", LAUNCH_FILE)
    launch_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(launch_module)
    return launch_module


def _recognizer_entities(launch_module, **given):
    """What the OpaqueFunction returns for the launch arguments' defaults updated with ``given``."""
    entities = launch_module.generate_launch_description().args[0]
    declared = {e.args[0]: e.kwargs for e in entities if type(e).__name__ == "DeclareLaunchArgument"}
    (opaque,) = [e for e in entities if type(e).__name__ == "OpaqueFunction"]
    values = {name: kw.get("default_value", "") for name, kw in declared.items()}
    values.update(given)
    return opaque.kwargs["function"](types.SimpleNamespace(launch_configurations=values))


def test_launch_file_runs_against_stand_ins(monkeypatch, arguments):
    launch_module = _load_launch_module(monkeypatch)

    description = launch_module.generate_launch_description()
    entities = description.args[0]
    declared = {e.args[0]: e.kwargs for e in entities if type(e).__name__ == "DeclareLaunchArgument"}
    assert set(declared) == EXPECTED_ARGUMENTS
    params_file = Path(declared["params_file"]["default_value"])
    assert params_file.is_file() and params_file.resolve() == CONFIG_FILE.resolve()
    opaque = [e for e in entities if type(e).__name__ == "OpaqueFunction"]
    assert len(opaque) == 1

    def recognizer_for(**given):
        values = {name: kw.get("default_value", "") for name, kw in declared.items()}
        values.update(given)
        context = types.SimpleNamespace(launch_configurations=values)
        nodes = [e for e in opaque[0].kwargs["function"](context) if type(e).__name__ in ("Node", "LifecycleNode")]
        (node,) = nodes
        return node

    node = recognizer_for()
    assert type(node).__name__ in ("Node", "LifecycleNode")
    file_arg, overrides = node.kwargs["parameters"]
    assert file_arg.args == ("params_file",)
    assert overrides == {}, "empty launch arguments must not override the params file"

    node = recognizer_for(model_path="/models/best.pt", device="cuda:1")
    overrides = node.kwargs["parameters"][1]
    assert {k: (v.args[0], v.kwargs.get("value_type")) for k, v in overrides.items()} == {
        "model_path": ("/models/best.pt", str), "device": ("cuda:1", str)}
    for key, value in overrides.items():
        assert validate_value(key, value.args[0]) is None


def test_recognizer_exit_ends_the_launch(monkeypatch):
    """An OnProcessExit handler on the recognizer: a failed recognizer (exit 1) makes the launch shut down with a
    non-zero status (an exception in an event handler does that in ros2 launch); a normal exit shuts it down."""
    launch_module = _load_launch_module(monkeypatch)
    entities = _recognizer_entities(launch_module)
    (node,) = [e for e in entities if type(e).__name__ in ("Node", "LifecycleNode")]
    (register,) = [e for e in entities if type(e).__name__ == "RegisterEventHandler"]
    (handler,) = register.args
    assert type(handler).__name__ == "OnProcessExit" and handler.kwargs["target_action"] is node
    on_exit = handler.kwargs["on_exit"]
    running = types.SimpleNamespace(is_shutdown=False)
    event = types.SimpleNamespace(returncode=1, action=types.SimpleNamespace(name="repflow_recognizer"))
    with pytest.raises(RuntimeError, match="exited with status 1"):
        on_exit(event, running)
    actions = on_exit(types.SimpleNamespace(returncode=0, action=event.action), running)
    assert any(type(a).__name__ == "EmitEvent" and type(a.kwargs["event"]).__name__ == "Shutdown" for a in actions)
    # While the launch is already shutting down (Ctrl-C) the handler stays out of the way.
    assert on_exit(event, types.SimpleNamespace(is_shutdown=True)) is None


def test_missing_params_file_stops_the_launch(monkeypatch, tmp_path):
    launch_module = _load_launch_module(monkeypatch)
    missing = tmp_path / "typo.yaml"
    with pytest.raises(RuntimeError, match="params_file .*typo.yaml.* does not exist"):
        _recognizer_entities(launch_module, params_file=str(missing))


def test_emulate_tty_only_on_a_terminal(tree, node_actions):
    """emulate_tty=True writes colour codes and carriage returns into logs sent to files or pipes."""
    for executable, action in node_actions.items():
        value = action["raw"].get("emulate_tty")
        assert value is not None and _literal(value) != True, executable  # noqa: E712
    assert "isatty()" in LAUNCH_FILE.read_text()


def test_readme_gives_the_topic_type():
    """`ros2 topic echo /action_label` right after the launch cannot determine the type yet: give it."""
    readme = (ROOT / "README.md").read_text()
    assert "ros2 topic echo /action_label std_msgs/msg/String" in readme
    assert not re.search(r"ros2 topic echo /action_label\s*$", readme, re.M)
