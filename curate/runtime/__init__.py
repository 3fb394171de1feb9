"""What a run runs on: engines (models behind backends), shards, model files, process environment."""
