"""Batch scoring and the training backfill on Spark: the same feature engine and scorer in
each partition of clients."""
