import logging
import os
import sys

from pipeline.cli import main


def exit_now(status: int) -> None:
    """Stop Ray (``cluster.stop_ray``), flush, and end the process without Python's teardown: after a build,
    freeing Ray Data, Arrow and the tokenizer module by module took about a second of every command, and
    nothing is left to write once Ray has stopped and the logs and streams are flushed."""
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        from pipeline.cluster import stop_ray

        stop_ray()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


try:
    status = main()
    sys.stdout.flush()
except BrokenPipeError:  # the reader went away (``inspect ... | head``): stop quietly, as Unix tools do
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit's own flush would fail again
    status = 141  # 128 + SIGPIPE, what a shell reports for a tool the closed pipe stopped
exit_now(status)
