"""The package's version, in one place.

Code that compares versions across machines (the coordinator, its tasks, the worker
plugin, checkpoints) reads ``version.__version__`` at call time; the package exports it
as ``fedjax_grid.__version__``. No module of the package imports the package root.
"""
__version__ = "0.1.0"
