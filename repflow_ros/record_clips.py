"""``python -m repflow_ros.record_clips --label wave --seconds 3 --count 10``: record clips with a person in front of
the robot, through a running :mod:`repflow_ros.recorder_node`.

For each clip: a countdown (``--countdown`` s), then ``label`` / ``seconds`` set on the recorder (its parameter check
refuses a bad label with the reason), ``~/start`` called, a progress bar while it records, and what was written
(path, frames) from the recorder's ``~/events``; then a pause (``--pause`` s) for the person to get ready again.
Exit status: 0 when every clip was written, 1 when the recorder refused or lost one (the reason is printed), 2 when
the recorder could not be reached.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import threading
import time

__all__ = ["main", "parse_args"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m repflow_ros.record_clips", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--label", required=True, help="class of the clips (a safe folder name, e.g. wave)")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each clip (default 3)")
    parser.add_argument("--count", type=int, default=1, help="number of clips (default 1)")
    parser.add_argument("--node", default="/repflow_recorder", help="the recorder node (default /repflow_recorder)")
    parser.add_argument("--countdown", type=float, default=3.0, help="seconds of countdown before each clip")
    parser.add_argument("--pause", type=float, default=2.0, help="seconds between clips (default 2)")
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="seconds to wait for the recorder to appear and to answer (default 10)")
    args, _ros = parser.parse_known_args(argv)
    if args.count < 1:
        parser.error(f"--count must be >= 1, got {args.count}")
    if not args.seconds > 0:
        parser.error(f"--seconds must be > 0, got {args.seconds}")
    return args


class _Events:
    """The recorder's ``~/events`` (JSON), collected for waiting on."""

    def __init__(self):
        self._cond = threading.Condition()
        self.items: list[dict] = []

    def __call__(self, msg) -> None:
        try:
            event = json.loads(msg.data)
        except ValueError:
            return
        with self._cond:
            self.items.append(event)
            self._cond.notify_all()

    def wait_clip(self, clip: int, timeout: float) -> dict | None:
        """The ``written`` or ``aborted`` event of ``clip`` (None on timeout)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for event in self.items:
                    if event.get("clip") == clip and event.get("event") in ("written", "aborted"):
                        return event
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(min(remaining, 0.1))


def _progress(seconds: float, done: threading.Event, out) -> None:
    start = time.monotonic()
    while not done.wait(0.1):
        frac = min((time.monotonic() - start) / seconds, 1.0)
        bar = "#" * int(frac * 30)
        out.write(f"\r  recording [{bar:<30}] {frac * seconds:4.1f}/{seconds:g} s")
        out.flush()
    out.write("\r" + " " * 60 + "\r")


def _record_one(client, set_client, events, args, out) -> tuple[bool, str]:
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter
    from std_srvs.srv import Trigger

    request = SetParameters.Request()
    request.parameters = [Parameter("label", value=args.label).to_parameter_msg(),
                          Parameter("seconds", value=float(args.seconds)).to_parameter_msg()]
    results = _call(set_client, request, args.timeout)
    if results is None:
        return False, f"{args.node} did not answer the parameter request"
    refused = [r.reason for r in results.results if not r.successful]
    if refused:
        return False, f"the recorder refused the parameters: {refused[0]}"
    reply = _call(client, Trigger.Request(), args.timeout)
    if reply is None:
        return False, f"{args.node}/start did not answer"
    if not reply.success:
        return False, f"the recorder refused to start: {reply.message}"
    match = re.search(r"recording clip (\d+)", reply.message)
    if not match:
        return False, f"unexpected reply from {args.node}/start: {reply.message!r}"
    done = threading.Event()
    bar = threading.Thread(target=_progress, args=(args.seconds, done, out), daemon=True)
    bar.start()
    event = events.wait_clip(int(match.group(1)), args.seconds + args.timeout)
    done.set()
    bar.join()
    if event is None:
        return False, f"no result for clip {match.group(1)} within {args.seconds + args.timeout:g} s"
    if event["event"] == "aborted":
        return False, f"clip discarded by the recorder: {event.get('reason', '?')}"
    span = (event["last_stamp_ns"] - event["first_stamp_ns"]) / 1e9
    return True, f"wrote {event['path']} ({event['frames']} frames, {span:.2f} s of stamps)"


def _call(client, request, timeout: float):
    done = threading.Event()
    future = client.call_async(request)
    future.add_done_callback(lambda _f: done.set())
    return future.result() if done.wait(timeout) else None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    out = sys.stdout
    import rclpy
    from rcl_interfaces.srv import SetParameters
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    from std_msgs.msg import String
    from std_srvs.srv import Trigger

    rclpy.init(args=None)
    node = rclpy.create_node("record_clips")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    status = 0
    try:
        target = args.node.rstrip("/")
        events = _Events()
        qos = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=20,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
        node.create_subscription(String, f"{target}/events", events, qos)
        start = node.create_client(Trigger, f"{target}/start")
        set_params = node.create_client(SetParameters, f"{target}/set_parameters")
        if not (start.wait_for_service(timeout_sec=args.timeout)
                and set_params.wait_for_service(timeout_sec=args.timeout)):
            print(f"record_clips: no recorder at {target} (is recorder_node running, same ROS_DOMAIN_ID?)",
                  file=sys.stderr)
            return 2
        written = []
        for i in range(1, args.count + 1):
            out.write(f"clip {i}/{args.count}: '{args.label}', {args.seconds:g} s\n")
            for left in range(int(round(args.countdown)), 0, -1):
                out.write(f"  starting in {left}...\n")
                out.flush()
                time.sleep(1.0)  # a countdown for a person, not synchronisation
            ok, message = _record_one(start, set_params, events, args, out)
            out.write(f"  {message}\n")
            out.flush()
            if not ok:
                status = 1
                break
            written.append(message)
            if i < args.count and args.pause > 0:
                time.sleep(args.pause)  # time for the person to get back into position
        out.write(f"done: {len(written)} of {args.count} clip(s) of '{args.label}' written\n")
        return status
    except KeyboardInterrupt:
        out.write("\ninterrupted (the recorder discards nothing already written; call ~/stop to end a clip)\n")
        return 1
    finally:
        for step in (lambda: executor.shutdown(timeout_sec=0.5), node.destroy_node, rclpy.try_shutdown,
                     lambda: spinner.join(timeout=2.0)):
            try:
                step()
            except Exception:
                pass


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # skip the interpreter's teardown of the DDS libraries (slow, and it can abort at exit)
