"""The Prometheus HTTP endpoint both services serve (`--metrics HOST:PORT`).

prometheus-client is imported only when an endpoint is made, so a service without
metrics never loads it (the agent's memory budget).
"""

from __future__ import annotations

from typing import Any


class MetricsEndpoint:
    """One collector on its own registry, served over HTTP; `port` is the bound one (0
    asks for a free port)."""

    def __init__(self, collector: Any, host: str, port: int) -> None:
        from prometheus_client import start_http_server
        from prometheus_client.registry import CollectorRegistry

        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(collector)
        self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        self.host = host
        self.port = self._server.server_address[1]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5.0)
