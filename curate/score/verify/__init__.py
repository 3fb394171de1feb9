"""Verifiers: scorers that check a response against ground truth carried by the prompt."""
