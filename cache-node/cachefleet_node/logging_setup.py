"""Structured JSON logs (structlog), with the standard library routed through the same renderer."""

from __future__ import annotations

import logging
import sys

import structlog

__all__ = ["configure_logging"]


class _DropUnimplementedRpc(logging.Filter):
    """Milvus Lite's in-process gRPC server logs pymilvus probing an RPC it does not
    implement (AllocTimestamp) as an error with a traceback; it is harmless noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Method not implemented" not in record.getMessage()


def _route_to_root() -> None:
    """Loggers that brought their own handlers (pymilvus installs plain-text ones that do not
    propagate) write through the root's JSON handler instead."""
    for logger in list(logging.root.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger) and logger.handlers:
            logger.handlers.clear()
            logger.propagate = True


def configure_logging(level: str = "info") -> None:
    """One JSON object per line on stdout, for structlog and stdlib loggers alike."""
    numeric = logging.getLevelName(level.upper())
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                structlog.processors.JSONRenderer(),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(numeric, logging.INFO) if numeric < logging.INFO else numeric)
    _route_to_root()
    for noisy in ("uvicorn.access", "httpx", "httpcore", "pymilvus", "grpc"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("grpc._server").addFilter(_DropUnimplementedRpc())
