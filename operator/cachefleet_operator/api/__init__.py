"""The operator's Kubernetes API: versioned pydantic models and the CRD generator."""
