"""What the benchmark scripts share: timing methods, hardware limits, samples, memory sampling."""
