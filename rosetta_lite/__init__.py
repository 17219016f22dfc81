"""rosetta_lite: mine the units that a model zoo shares (Rosetta Neurons, ICCV 2023).

    from rosetta_lite.world import ShapesWorld; from rosetta_lite.capture import Trace
"""

__version__ = "0.1.0"
