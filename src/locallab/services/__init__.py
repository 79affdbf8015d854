"""Services: what LocalLab does.

The model registry, generation (chat → prompt, limits, usage) and system information.
"""
