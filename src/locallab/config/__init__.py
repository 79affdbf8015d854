"""Configuration: the settings (environment, CLI flags) and the model catalog data."""
