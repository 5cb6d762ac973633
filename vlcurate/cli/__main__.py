"""`python -m vlcurate.cli ARGS` is the `vlcurate` command (the same fast exit)."""

from vlcurate.cli import entry

entry()
