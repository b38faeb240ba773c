"""Inference methods (NUTS, ADVI) that turn a PyMC model into a `ScreenFit`."""
