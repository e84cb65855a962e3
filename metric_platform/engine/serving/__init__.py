"""METRIC-domain serving: choosing a serving path, rolling up along the FD-DAG, time slices."""
