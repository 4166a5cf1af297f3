"""modelroll's inference server: serves one scikit-learn model over the Open Inference
Protocol (V2) and KServe V1, with adaptive batching and Prometheus metrics."""

__version__ = "0.1.0"
