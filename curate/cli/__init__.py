"""The `curate` command line, its query output and the README's generated option tables."""
