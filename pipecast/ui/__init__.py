"""``pipecast ui``: a local page over the run store (docs/ui.md). Nothing here is imported by ``import pipecast``."""
