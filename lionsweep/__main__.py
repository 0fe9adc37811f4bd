"""``python -m lionsweep``: the ``lionsweep`` command line."""

from lionsweep.cli import app

app(prog_name="lionsweep")
