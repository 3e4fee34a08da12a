import os
import sys

from pipeline.cli import main

try:
    status = main()
    sys.stdout.flush()
except BrokenPipeError:  # the reader went away (``inspect ... | head``): stop quietly, as Unix tools do
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit's own flush would fail again
    status = 141  # 128 + SIGPIPE, what a shell reports for a tool the closed pipe stopped
sys.exit(status)
