"""Migration commands (preflight, plan, run, status, resume, pause, abort, finalize, demo)."""


def register(sub) -> None:
    """Add the migration subcommands to the CLI."""
