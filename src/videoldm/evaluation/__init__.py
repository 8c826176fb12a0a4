"""Evaluation: metrics for generated videos and the shapes-world analysis."""
