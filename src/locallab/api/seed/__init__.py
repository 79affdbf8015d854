"""LocalLab's own API: /generate, /chat (generate.py), /models/* (models.py), /system/info, /health
and /metrics (system.py); its bodies in request_schemas.py and response_schemas.py."""
