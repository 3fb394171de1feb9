"""Publishing the lake's pairs: exports for trainers, the dataset card and the report."""
