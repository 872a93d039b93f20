"""tlbench: declare a transfer-learning grid, get every cell trained, tracked in MLflow and compared."""

__version__ = "0.1.0"
