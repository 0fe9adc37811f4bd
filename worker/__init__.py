"""lionsweep worker agents: claim trials over HTTP, train with Lion, report back."""
