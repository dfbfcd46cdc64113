"""Nightly scoring with Ray Data: the pipeline, its failures told apart, and the output commit with its summary."""
