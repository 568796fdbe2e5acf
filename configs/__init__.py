"""Training recipes (layered: base, model, dataset, command line)."""
