"""The PyMC model built from a `ModelSpec`: term variables, the mean and the NB likelihood."""
