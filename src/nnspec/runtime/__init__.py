"""The core: adapters compiled from specs, the standardized model, its accessors and ports, and
the loading, input and version checks around them."""
