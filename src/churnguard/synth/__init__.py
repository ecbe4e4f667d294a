"""A simulated service business, with its ground truth kept for evaluation."""
