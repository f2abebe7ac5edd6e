"""The runtime: adapters, the standardized model, accessors, tiny checkpoints and conformance checks."""
