"""What the Cachefleet operator and cache node agree on: the node's configuration models
(`config`), the names of everything the node stores (`keyspace`) and the request and answer
models of the node's admin API (`admin`). Pydantic and the standard library only; it imports
neither the node nor the operator."""

__version__ = "0.1.0"
