"""Subcommands of `fluxforge`: one module each, exposing `register(subparsers)`."""
