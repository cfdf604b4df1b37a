"""Pictures: plots (DataFrame → Figure) and the notebook widgets."""
