"""Model specification without PyMC: formula parsing, terms, families, priors and `ModelSpec`."""
