"""Constants shared by the tests of the model stages (importable: ``pythonpath = ["tests"]``).

Kept out of ``conftest.py``: ``from conftest import ...`` finds whichever conftest module
pytest imported last (``tests/io`` has its own).
"""

FORMULA = "count ~ 1 + treatment + (1 + treatment | gene) + (1 + treatment | gene:sgrna)"
