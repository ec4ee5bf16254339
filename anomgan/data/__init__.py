"""Data sources, splits and the recorded preprocessing."""

from anomgan.data.preprocess import Preprocessor, fit_preprocessor
from anomgan.data.sources import NAMED_SOURCES, Dataset, load_source, source_available
from anomgan.data.splits import Splits, make_splits

__all__ = ["Dataset", "Preprocessor", "Splits", "NAMED_SOURCES", "fit_preprocessor", "load_source", "make_splits",
           "source_available"]
