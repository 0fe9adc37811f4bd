"""The ``lionsweep`` command line: one root app composing every sub-command.

- ``serve``, ``db``, ``token``, ``up``: the server's and admin commands (``lionsweep.server_cli``),
  which need the ``server`` extra (``pip install 'lionsweep[server]'``);
- ``worker``: the worker agent (``worker.cli``);
- ``submit``, ``status``, ``best``, ``rule``, ``import``, ``ladder …``, ``bench``: client
  commands (here) that talk to a server through ``worker.client.Client``, built and its errors
  mapped to one-line messages in one place (``worker.cli``).

Sub-commands of other packages are imported only when named (or listed by ``--help``), so
``lionsweep worker`` and the client commands run on a worker-only install; a server command
there prints one line saying what to install and exits 2. Exit codes: 1 for a request the
server refused, 2 for a server that cannot be reached, unusable input or a missing extra.

The package:

- :mod:`lionsweep.cli.root`: the root app, and the other packages' commands it loads when named;
- :mod:`lionsweep.cli.commands`: the client commands of the root app;
- :mod:`lionsweep.cli.ladders`: the ``ladder`` group;
- :mod:`lionsweep.cli.render`: what those commands print, from the server's JSON (no HTTP).
"""

from lionsweep.cli.commands import (
    IMPORT_ERRORS_SHOWN,
    IMPORT_MAX_BYTES,
    IMPORT_TIMEOUT,
    RULE_FLAGS,
    SPEC_MAX_BYTES,
    SweepId,
    bench,
    best,
    cancel,
    delete,
    flag_item,
    flags_named,
    follow_sweep,
    import_error_lines,
    import_runs,
    load_spec,
    pairs,
    print_arms,
    resume,
    rule,
    set_sweep_status,
    status,
    submit,
)
from lionsweep.cli.ladders import (
    LadderId,
    ladder_app,
    ladder_cancel,
    ladder_confirm,
    ladder_delete,
    ladder_resume,
    ladder_rule,
    ladder_status,
    ladder_submit,
    set_ladder_status,
)
from lionsweep.cli.render import (
    CONFIRM_VERDICT_COLOURS,
    KWARGS_DIGITS,
    LADDER_VERDICT_COLOURS,
    FoldTable,
    arms_text,
    estimate_text,
    interval_text,
    kwargs_line,
    ladder_sweeps,
    ladders_list,
    new_table,
    print_best,
    print_confirmation,
    print_ladder,
    print_ladder_rule,
    print_sweep_rule,
    print_then_link,
    reevaluation_text,
    rule_table,
    status_counts,
    sweep_table,
    sweeps_list,
    sweeps_table,
    width_text,
)
from lionsweep.cli.root import (
    SERVER_CLI,
    SERVER_EXTRA,
    SERVER_PACKAGES,
    SUBCOMMANDS,
    LionsweepGroup,
    app,
    load_subcommand,
    missing_server_package,
    needs_server,
)
from worker.cli import fmt

__all__ = [
    "CONFIRM_VERDICT_COLOURS",
    "FoldTable",
    "IMPORT_ERRORS_SHOWN",
    "IMPORT_MAX_BYTES",
    "IMPORT_TIMEOUT",
    "KWARGS_DIGITS",
    "LADDER_VERDICT_COLOURS",
    "LadderId",
    "LionsweepGroup",
    "RULE_FLAGS",
    "SERVER_CLI",
    "SERVER_EXTRA",
    "SERVER_PACKAGES",
    "SPEC_MAX_BYTES",
    "SUBCOMMANDS",
    "SweepId",
    "app",
    "arms_text",
    "bench",
    "best",
    "cancel",
    "delete",
    "estimate_text",
    "flag_item",
    "flags_named",
    "fmt",
    "follow_sweep",
    "import_error_lines",
    "import_runs",
    "interval_text",
    "kwargs_line",
    "ladder_app",
    "ladder_cancel",
    "ladder_confirm",
    "ladder_delete",
    "ladder_resume",
    "ladder_rule",
    "ladder_status",
    "ladder_submit",
    "ladder_sweeps",
    "ladders_list",
    "load_spec",
    "load_subcommand",
    "missing_server_package",
    "needs_server",
    "new_table",
    "pairs",
    "print_arms",
    "print_best",
    "print_confirmation",
    "print_ladder",
    "print_ladder_rule",
    "print_sweep_rule",
    "print_then_link",
    "reevaluation_text",
    "resume",
    "rule",
    "rule_table",
    "set_ladder_status",
    "set_sweep_status",
    "status",
    "status_counts",
    "submit",
    "sweep_table",
    "sweeps_list",
    "sweeps_table",
    "width_text",
]
