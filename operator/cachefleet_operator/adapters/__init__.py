"""The operator's I/O edge: the Kubernetes API, the cache nodes' API, metrics, logs, probes."""
