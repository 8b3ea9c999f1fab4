"""One module per pipeline stage, named after it; each reads and writes the project store."""
