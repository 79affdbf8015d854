"""Route modules: thin handlers that parse a request, call a service and shape the response."""
