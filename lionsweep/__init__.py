"""lionsweep: hyperparameter sweeps for the Lion optimizer.

The public face of the project: the ``lionsweep`` command line (``lionsweep.cli``), which
composes the server's (``service``), the worker's (``worker``) and the client's commands.
"""
