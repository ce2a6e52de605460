"""Run tracking: the SQLite run store and :class:`~pipecast.runs.client.Client`."""
