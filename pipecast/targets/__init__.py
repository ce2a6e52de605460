"""Targets: one module per engine, found through the ``pipecast.targets`` entry-point group."""
