"""The ``sendlearn`` command: argument parsing, library calls and what is printed (``main.py``).

Each command module imports its layer only when it runs, so the receiver's commands work
without the GPL hosts installed.
"""
