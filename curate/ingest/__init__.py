"""Reading inputs: file readers, imported completions and ratings, built-in sources, row validation."""
