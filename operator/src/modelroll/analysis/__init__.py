"""Automated analysis: gate verdicts, the verdict state machine (pure) and the Prometheus client (I/O)."""
