"""Engines: how tokens are made. Each engine implements `locallab.engines.base.Engine`."""
