"""Running a lifecycle node as a process: ``--help``, parameter-file check, autostart, spin, fast clean exit.

Shared shape of the node entry points: what ``ros2 launch`` and ``ros2 run`` expect of a process (exit 0 on Ctrl-C and
SIGTERM, quickly, without tracebacks; 1 when it cannot start, with the reason).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable

import rclpy
from rclpy.executors import Executor, ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import TransitionCallbackReturn

from .node_parameters import params_file_problem

__all__ = ["wants_help", "autostart", "guarded_transition", "run_lifecycle_node", "exit_now", "ShutdownWaker",
           "TerminationSignals"]

# How often the waker looks at the context: the longest a signal's shutdown can wait when rclpy's wake-up is lost.
SHUTDOWN_POLL_S = 0.2


class ShutdownWaker:
    """Wakes an executor once its context has been shut down, so that ``executor.spin()`` always returns.

    Why: rclpy's signal handling (a deferred thread, ``signal_handler.cpp``) first triggers the executors' signal guard
    conditions and only then shuts the contexts down. When the spinning thread runs in between, it wakes, still finds
    the context valid, finds nothing ready and waits again -- with no guard condition left to wake it, forever. Seen
    as a node that ignores SIGTERM about once in ten starts under CPU load (CI of issue 11's signal test; reproduced
    with gdb: main thread in ``rcl_wait``, rclpy's signal thread back in ``sem_wait``). The executor checks the
    context after every wait, so one more wake-up after the shutdown is all it takes."""

    def __init__(self, executor: Executor, context, poll_s: float = SHUTDOWN_POLL_S):
        self._executor, self._context, self._poll_s = executor, context, poll_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="shutdown_waker", daemon=True)

    def __enter__(self) -> ShutdownWaker:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self._poll_s):
            try:
                if not self._context.ok():
                    self._executor.wake()
                    return
            except Exception:  # the executor or context already torn down: nothing left to wake
                return


class TerminationSignals:
    """Notes SIGINT / SIGTERM as they arrive, for telling a shutdown from a failure.

    Installed before ``rclpy.init``, whose C handler chains to the handler it finds, so this one still runs
    (in the main thread, at the next bytecode) next to rclpy's own. Why: rclpy shuts the context down from a
    separate thread *after* the signal, while SIGINT's KeyboardInterrupt hits the main thread at once, wherever
    it is; inside a pybind11 call (``take_message`` converting its arguments) it surfaces as ``RuntimeError:
    Unable to convert call argument`` while ``rclpy.ok()`` is still true (seen in a recorder stress test).
    SIGINT keeps Python's behaviour (KeyboardInterrupt); SIGTERM only is noted, as before rclpy's handler
    ends the spin."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.received: list[int] = []
        self._previous: dict[int, object] = {}

    def _handler(self, signum, frame) -> None:
        self.received.append(signum)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt

    def __enter__(self) -> TerminationSignals:
        for sig in self.SIGNALS:
            try:
                self._previous[sig] = signal.signal(sig, self._handler)
            except ValueError:  # not the main thread (an embedding application): rclpy's handling alone
                pass
        return self

    def __exit__(self, *exc) -> None:
        for sig, previous in self._previous.items():
            try:
                signal.signal(sig, previous)
            except (ValueError, TypeError):
                pass


def guarded_transition(node, what: str, func: Callable[[], TransitionCallbackReturn]) -> TransitionCallbackReturn:
    """``func()`` for a lifecycle transition, with an exception turned into FAILURE and logged with its traceback
    (rclpy would swallow it silently); quietly FAILURE when Ctrl-C / SIGTERM shut the context down meanwhile (then it
    is not an error of the node's)."""
    try:
        return func()
    except Exception as exc:
        if not node.context.ok():
            return TransitionCallbackReturn.FAILURE
        node.get_logger().error(f"{what} failed: {exc}\n{traceback.format_exc()}")
        return TransitionCallbackReturn.FAILURE


def wants_help(argv: list[str]) -> bool:
    """``-h`` / ``--help`` among the arguments before ``--ros-args``."""
    user_args = argv[1:argv.index("--ros-args")] if "--ros-args" in argv else argv[1:]
    return any(arg in ("-h", "--help") for arg in user_args)


def autostart(node, name: str) -> int | None:
    """Configure and activate; None when active, 0 when interrupted (Ctrl-C / SIGTERM while starting), 1 on failure."""
    for step, trigger in (("configure", node.trigger_configure), ("activate", node.trigger_activate)):
        result = trigger()
        if not node.context.ok():
            return 0
        if result != TransitionCallbackReturn.SUCCESS:
            node.get_logger().fatal(f"autostart: {step} failed (see the error above); exiting with status 1")
            print(f"{name}: autostart {step} failed, exiting", file=sys.stderr, flush=True)
            return 1
    return None


def run_lifecycle_node(node_class: Callable[[], object], args: list[str] | None, name: str,
                       help_text: Callable[[], str],
                       executor_class: Callable[[], Executor] = SingleThreadedExecutor) -> int:
    """The node's life, returning the exit status: 0 on a normal shutdown (Ctrl-C, SIGTERM) and after ``--help``
    (printed without joining the graph or loading anything), 1 when autostart could not configure or activate the
    node (the reason is logged) or a ``--params-file`` is missing or unreadable, 2 on an unexpected error.

    ``node_class()`` builds the node; it has ``autostart`` (bool) and ``close()`` (stop work at once, no waiting).
    ``executor_class()`` builds the executor that spins it (see the comment below for why the default is one
    thread)."""
    argv = list(sys.argv if args is None else args)
    if wants_help(argv):
        try:
            print(help_text(), flush=True)
        except BrokenPipeError:  # `--help | head`: the reader has what it wanted
            pass
        return 0
    problem = params_file_problem(argv)
    if problem:
        print(f"{name}: {problem}; exiting with status 1", file=sys.stderr, flush=True)
        return 1
    with TerminationSignals() as signals:
        return _run_initialised(node_class, argv, name, executor_class, signals)


def _run_initialised(node_class: Callable[[], object], argv: list[str], name: str,
                     executor_class: Callable[[], Executor], signals: TerminationSignals) -> int:
    """:func:`run_lifecycle_node` from ``rclpy.init`` on, with ``signals`` noting SIGINT / SIGTERM."""
    rclpy.init(args=argv)
    node, executor, status = None, None, 0
    try:
        node = node_class()
        started = autostart(node, name) if node.autostart else None
        if started is None:
            # One executor thread, on purpose: lifecycle transitions (~/change_state) then run on the thread that
            # builds the wait sets, so cleanup / deactivate never destroy a subscription or publisher while the
            # executor is between listing it and waiting on it. With a MultiThreadedExecutor they run on a pool
            # thread, and rclpy's wait-set construction raises "InvalidHandle: cannot use Destroyable because
            # destruction was requested" (event_handler.add_to_wait_set) once in a few hundred cycles (issue 11).
            # Inference has its own thread either way, and intake callbacks are bounded (frame limits).
            executor = executor_class()
            executor.add_node(node)
            with ShutdownWaker(executor, node.context):
                executor.spin()
        else:
            status = started
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        # A signal shuts the context down from rclpy's handler while spin() may be building a wait set, which
        # then raises RCLError("... context is not valid ..."), or its KeyboardInterrupt lands inside a pybind11
        # call and comes out as a RuntimeError (see TerminationSignals): the shutdown asked for, not a failure.
        if rclpy.ok() and not signals.received:
            traceback.print_exc()
            status = 2
    finally:
        # Stop the node's own work first (never waiting for an inference in flight), then the graph. A late
        # KeyboardInterrupt (a second Ctrl-C) must not turn a clean shutdown into a traceback.
        steps = [] if node is None else [node.close]
        if executor is not None:
            steps.append(lambda: executor.shutdown(timeout_sec=0.1))
        steps += [] if node is None else [node.destroy_node]
        for step in steps + [rclpy.try_shutdown]:
            try:
                step()
            except (Exception, KeyboardInterrupt):
                pass
    return status


def exit_now(status: int) -> None:
    """Flush stdio and leave the process with ``status`` without the interpreter's teardown.

    Everything was shut down in order by then (work stopped, node destroyed, context shut down); what remains is the
    teardown of torch and the DDS libraries, measured at 0.5 s on a quiet 2-core machine and 4 s on a loaded one --
    long enough for ``ros2 launch`` to escalate a Ctrl-C into a second SIGINT and report the node as died with exit
    code -2."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(status)
