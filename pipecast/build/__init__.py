"""Shipping the code: build an image holding the code, its requirements and pipecast itself, push it by digest.

:func:`pipecast.build.images.build_images` is the entry point (``pipecast build``, and ``submit`` for container
targets); the parts are small modules: the Dockerfile, the build context, the tag, the builders, the registry.
"""
