"""Review sentiment: fine-tune a BERT classifier with Ray Train, score shards with Ray Data."""

__version__ = "0.1.0"
