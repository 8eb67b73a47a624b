# The benchmarks need the development requirements: without them, one line says so (mvae/requires.py).
import mvae.requires  # noqa: F401
