"""Tracing, the IR, validation and naming: everything between user code and a target."""
