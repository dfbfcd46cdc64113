"""Labeled data: the star-to-label rule, reading labeled files, and the reproducible train/validation/test split."""
