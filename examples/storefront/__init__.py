"""Python agents that the example pipelines call (see examples/quotes.flow)."""
