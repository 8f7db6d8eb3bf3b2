"""Test-only fault injection for training subprocesses (put this folder on PYTHONPATH).

With `CFT_TEST_KILL_ON_OPEN=checkpoint-8/tokenizer_config.json`, the process that opens a
file ending with that path for writing is SIGKILLed on the spot, like a node that dies
mid-save: the checkpoint has its weights but no optimizer state or trainer_state.json.
With `CFT_TEST_KILL_GROUP=1` its whole process group goes (the `cft` command, the
launcher, every worker). An audit hook sees the open before any byte is written, and
costs nothing when the variable is unset.
"""

import os
import signal
import sys

_TARGET = os.environ.get("CFT_TEST_KILL_ON_OPEN")
_WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND


def _writes(mode, flags) -> bool:
    if isinstance(mode, str):
        return any(c in mode for c in "wax+")
    return isinstance(flags, int) and bool(flags & _WRITE)


def _kill_on_open(event, args):
    if event != "open" or not args or not isinstance(args[0], (str, bytes, os.PathLike)):
        return
    path = os.fsdecode(args[0])
    if path.endswith(_TARGET) and _writes(args[1] if len(args) > 1 else None, args[2] if len(args) > 2 else None):
        if os.environ.get("CFT_TEST_KILL_GROUP"):
            os.killpg(os.getpgid(0), signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)


if _TARGET:
    sys.addaudithook(_kill_on_open)
