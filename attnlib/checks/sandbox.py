"""Run a learner's code in a copy of the process, with a hard limit on its CPU time.

:func:`run_in_child` forks the running Python (a notebook's kernel), runs a task in the copy
and sends back what the task returned, what it printed and the warnings it raised. The
operating system ends a copy that uses more than its CPU seconds (``RLIMIT_CPU``), whatever
the code catches, so an endless loop, even one inside ``try: ... except: pass``, costs
seconds; and nothing the task changes (a patched module, a registered hook) outlives it.

Where ``os.fork`` is missing (Windows), or may not be safe with the libraries a notebook
loads (macOS), the task runs in the process itself, with its output captured and no CPU
limit beyond the one the checkers set themselves.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import select
import signal
import sys
import time
import warnings

#: How long a copy may take in wall-clock time, as a multiple of its CPU seconds (a copy
#: that waits on a lock it inherited uses no CPU; a loaded machine slows the rest).
WALL_FACTOR = 20


def can_fork() -> bool:
    return hasattr(os, "fork") and sys.platform.startswith("linux")


def _captured(task):
    """``{"value": task()}`` or ``{"raised": ...}``, with ``"output"`` and ``"warnings"``."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out), \
            warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            report = {"value": task()}
        except BaseException as e:  # noqa: BLE001  (whatever the learner's code raised)
            report = {"raised": type(e).__name__, "message": str(e)[:300]}
    report["output"] = out.getvalue()[-2000:]
    report["warnings"] = [f"{w.category.__name__}: {w.message}" for w in caught][:5]
    return report


def run_in_child(task, cpu_seconds: int = 1) -> dict:
    """Run ``task()`` (it returns JSON values) in a forked copy with ``cpu_seconds`` of CPU.

    Returns ``{"value": ..., "output": str, "warnings": [str]}``; or ``"raised"`` (the name of
    the exception) and ``"message"`` instead of ``"value"``; or ``{"timeout": cpu_seconds}``
    when the copy ran out of time; or ``{"ended": description}`` when it ended without an
    answer (the code exited the process, or crashed it).
    """
    if not can_fork():
        return _captured(task)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the copy: answer through the pipe, then leave at once (no cleanup of the kernel's)
        try:
            os.close(read_end)
            import resource
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)  # C-level writes go nowhere: not into the notebook
            os.dup2(devnull, 2)
            data = json.dumps(_captured(task), default=repr).encode()
            with os.fdopen(write_end, "wb") as pipe:
                pipe.write(data)
        finally:
            os._exit(0)
    os.close(write_end)
    chunks, deadline = [], time.monotonic() + WALL_FACTOR * cpu_seconds + 5
    with os.fdopen(read_end, "rb") as pipe:
        while True:
            ready, _, _ = select.select([pipe], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                os.kill(pid, signal.SIGKILL)
                break
            chunk = os.read(pipe.fileno(), 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) in (signal.SIGXCPU, signal.SIGKILL):
        return {"timeout": cpu_seconds}
    try:
        return json.loads(b"".join(chunks))
    except ValueError:
        how = f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else f"exit status {os.WEXITSTATUS(status)}"
        return {"ended": how}
