"""`migrator sim ...`: the simulated cluster from the command line."""


def register(sub) -> None:
    """Add the sim subcommands to the CLI."""
