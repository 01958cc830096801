"""``python -m gateway``: the same as the ``gateway`` command (used by ``gateway run`` to
start its children with the very interpreter it runs on)."""

from gateway.cli import main

main()
