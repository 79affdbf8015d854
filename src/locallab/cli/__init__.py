"""The `locallab` command line."""
