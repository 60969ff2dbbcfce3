"""HTML views of runs: list, run timeline, span panel, causal graph, metrics (see traces/urls.py)."""
