"""Fitted screens: `ScreenFit`, contrasts, expected counts, diagnostics, MAGeCK files."""
