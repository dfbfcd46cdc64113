"""The classifier: building, loading and saving it, the batch predictor, and the per-backbone recipes."""
