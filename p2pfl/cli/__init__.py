"""The ``p2pfl`` command line: one module per command, registered in :mod:`p2pfl.cli.main`."""
