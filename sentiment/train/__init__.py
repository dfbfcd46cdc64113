"""Fine-tuning with Ray Train: the driver, the per-worker loop, the step, epoch statistics and metrics, resume, plots."""
