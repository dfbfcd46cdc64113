"""Object storage and input files: reaching s3:// or local paths, finding input shards, and checking them before any work."""
