"""lionsweep worker agents: claim trials over HTTP, train with Lion, report back."""

#: Exit code of a command whose request the server refused (invalid spec, unknown id, …).
EXIT_REFUSED = 1
#: Exit code of a command or agent that cannot work as set up: a bad option, setting, file,
#: task module or token, or no server at the given address. A supervisor does not restart
#: an agent that exits with it.
EXIT_CONFIG = 2
#: Seconds a trial may take to end after a stop request (a signal, or the server's
#: ``stop``) before the agent's watchdog ends it (``--stop-grace``).
DEFAULT_STOP_GRACE = 10.0
#: Seconds a worker tries to reach a server it has never reached before it exits with
#: ``EXIT_CONFIG`` (``--connect-timeout``); a server it has reached is waited for however long.
DEFAULT_CONNECT_TIMEOUT = 30.0
