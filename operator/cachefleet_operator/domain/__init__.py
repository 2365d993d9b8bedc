"""Pure domain logic of the operator: names, rendered children, node config, conditions.

Nothing here does I/O or imports a Kubernetes client; handlers feed in plain data.
"""
