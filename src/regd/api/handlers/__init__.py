"""One module per noun of the API; each handler is named after its method."""
