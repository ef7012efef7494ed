"""Feature computation: the public Python API over the Cython kernels.

`fluxforge.features.compute(books, trades)` and the streaming `FeatureEngine` live in
`engine`; `layout` declares every output column once; `book_arrays` turns Arrow list
columns into the 2-D arrays the kernels read.
"""
from .engine import FeatureEngine, FeatureResult, compute, concat_results, resolve_options

__all__ = ["FeatureEngine", "FeatureResult", "compute", "concat_results", "resolve_options"]
