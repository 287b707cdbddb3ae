"""Upstream channels to drivers: one long-lived HTTP/2 channel per driver address.

Multicallables are cached per (address, method) so the hot path does no allocation beyond the
call itself. Messages are raw bytes (no serializers). Limits match the gateway's listener so a
256 MiB message passes both legs; no keepalive pings are configured because Spark Connect servers
(grpc-java, ``permitKeepAliveTime`` = 5 min) answer frequent pings with GOAWAY ``too_many_pings``.
"""

from __future__ import annotations

from typing import Any

import grpc.aio

SERVICE_PATH = "/spark.connect.SparkConnectService/"


def channel_options(max_message_bytes: int) -> list[tuple[str, Any]]:
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        # Let HTTP/2 flow control grow windows for bulk Arrow transfers.
        ("grpc.http2.bdp_probe", 1),
        ("grpc.enable_retries", 0),
    ]


class ChannelPool:
    def __init__(self, max_message_bytes: int) -> None:
        self._options = channel_options(max_message_bytes)
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._unary: dict[tuple[str, str], Any] = {}
        self._stream: dict[tuple[str, str], Any] = {}
        self._client_stream: dict[tuple[str, str], Any] = {}

    def channel(self, address: str) -> grpc.aio.Channel:
        ch = self._channels.get(address)
        if ch is None:
            ch = grpc.aio.insecure_channel(address, options=self._options)
            self._channels[address] = ch
        return ch

    def unary(self, address: str, method: str) -> Any:
        key = (address, method)
        mc = self._unary.get(key)
        if mc is None:
            mc = self.channel(address).unary_unary(SERVICE_PATH + method)
            self._unary[key] = mc
        return mc

    def stream(self, address: str, method: str) -> Any:
        key = (address, method)
        mc = self._stream.get(key)
        if mc is None:
            mc = self.channel(address).unary_stream(SERVICE_PATH + method)
            self._stream[key] = mc
        return mc

    def client_stream(self, address: str, method: str) -> Any:
        key = (address, method)
        mc = self._client_stream.get(key)
        if mc is None:
            mc = self.channel(address).stream_unary(SERVICE_PATH + method)
            self._client_stream[key] = mc
        return mc

    async def forget(self, address: str) -> None:
        ch = self._channels.pop(address, None)
        for cache in (self._unary, self._stream, self._client_stream):
            for key in [k for k in cache if k[0] == address]:
                del cache[key]
        if ch is not None:
            await ch.close()

    async def close(self) -> None:
        for address in list(self._channels):
            await self.forget(address)
