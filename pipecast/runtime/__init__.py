"""The program that runs one step inside every engine task: ``python -m pipecast.runtime run ...``."""
