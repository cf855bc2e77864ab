"""CLI subcommands; each module exposes ``register(subparsers)`` (see ``avatar3d.cli``)."""
