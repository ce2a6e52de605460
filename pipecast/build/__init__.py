"""Shipping the code: images built for a pipeline, and code packages (see ``docs/shipping.md``)."""
