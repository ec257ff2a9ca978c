"""The paho-mqtt client as the agent and the backend both set it up.

paho 2.x (callback API version 2), MQTT v5, credentials and TLS when given, the retained
`offline` presence as last will, and TCP_NODELAY on every socket it opens: Nagle's
algorithm would otherwise hold each small request or reply back 40-90 ms on loopback.
This is the only module of `protocols` that touches the network library; `mqtt` stays pure.
"""

from __future__ import annotations

import errno
import logging
import select
import socket
import ssl
import threading
import time
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from protocols import mqtt

log = logging.getLogger(__name__)


def new_client(
    client_id: str,
    *,
    status_topic: str | None,
    username: str | None = None,
    password: str | None = None,
    ca_file: str | None = None,
    reconnect: tuple[float, float] = (1.0, 5.0),
    batched: bool = False,
) -> paho.Client:
    """A client not yet connected; `status_topic` gets `offline` (retained) as last will
    (None: no will, for a client with no presence, such as the broker administrator).
    `reconnect` is paho's (min, max) delay between reconnection attempts. `batched`: a
    `BatchingClient` (a busy server's client: fewer system calls per message)."""
    kind = BatchingClient if batched and BatchingClient.usable() else paho.Client
    client = kind(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    if username:
        client.username_pw_set(username, password)
    if ca_file:
        client.tls_set(ca_certs=ca_file, tls_version=ssl.PROTOCOL_TLS_CLIENT)
    if status_topic is not None:
        client.will_set(status_topic, mqtt.encode_status(False), qos=1, retain=True)
    low, high = reconnect
    client.reconnect_delay_set(min_delay=low, max_delay=high)
    client.on_socket_open = _nodelay
    return client


def _nodelay(client: paho.Client, userdata: Any, sock: Any) -> None:
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError) as exc:  # a websocket or a unix socket has no Nagle
        log.debug("TCP_NODELAY not set: %s", exc)


def probe_broker(
    host: str,
    port: int,
    *,
    client_id: str,
    username: str | None = None,
    password: str | None = None,
    ca_file: str | None = None,
    timeout: float = 5.0,
) -> str | None:
    """None when the broker takes these credentials within `timeout` s and a backend's
    retained presence says online; otherwise the reason, for a health check.

    Not `new_client`: its last will would announce an `offline` whenever this probe's
    connection dropped uncleanly. No will, no presence, publishes nothing.
    """
    connected, seen_online, refused = threading.Event(), threading.Event(), []
    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5, client_id=client_id)
    if username is not None:
        client.username_pw_set(username, password)
    if ca_file:
        client.tls_set(ca_certs=ca_file, tls_version=ssl.PROTOCOL_TLS_CLIENT)

    def on_connect(c: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            refused.append(str(reason))
        else:
            c.subscribe(mqtt.BACKEND_STATUS_FILTER, qos=1)
        connected.set()

    def on_message(c: Any, userdata: Any, msg: Any) -> None:
        try:
            if mqtt.decode_status(msg.payload):
                seen_online.set()
        except mqtt.SchemaError:
            pass

    client.on_connect, client.on_message = on_connect, on_message
    where = f"{host}:{port}"
    try:
        client.connect(host, port, keepalive=15)
    except (OSError, ValueError) as exc:
        return f"broker {where}: cannot connect: {exc}"
    client.loop_start()
    try:
        if not connected.wait(timeout):
            return f"broker {where}: no answer in {timeout} s"
        if refused:
            return f"broker {where}: refused the connection: {refused[0]}"
        if not seen_online.wait(timeout):
            return f"backend: no backend online on broker {where}"
        return None
    finally:
        client.disconnect()
        client.loop_stop()


class BatchingClient(paho.Client):
    """paho's client with its socket I/O batched, for a server handling thousands of
    messages a second: paho itself reads a packet in three or more `recv` calls (its first
    byte, each length byte, the rest), sends every packet with a `send` of its own, and
    wakes its network thread with a write to a socket pair for every packet queued, even
    from that thread itself. Here each `recv` takes all the socket has (the packets are
    then cut from that buffer), the packets queued meanwhile leave in one `send`, and the
    network thread is woken once per burst. A QoS 1 message and a PUBACK without properties
    (nearly every packet of a busy backend) are read, and a reply is built, without paho's
    property and reason objects and its per-packet logging. The rest (QoS bookkeeping,
    keepalive, reconnection, TLS) is paho's.

    It overrides a few of paho's internal methods (`_sock_recv`, `_sock_send`,
    `_sock_close`, `_packet_queue`, `_handle_publish`, `_handle_pubackcomp`) and uses
    its message bookkeeping in `publish`; `new_client` falls back to the plain client
    when the installed paho lacks them.
    """

    _HOOKS = ("_sock_recv", "_sock_send", "_sock_close", "_packet_queue", "_out_packet",
              "_sockpairW", "_thread", "_on_socket_register_write", "_in_callback_mutex",
              "_call_socket_register_write", "_handle_pubackcomp", "_in_packet",
              "_out_message_mutex", "_out_messages", "_do_on_publish", "_handle_publish",
              "_protocol", "_manual_ack", "_handle_on_message", "_send_puback",
              "_mid_generate", "_max_inflight_messages", "_max_queued_messages",
              "_inflight_messages")  # fmt: skip

    _usable: bool | None = None

    @classmethod
    def usable(cls) -> bool:
        """Whether the installed paho has the internals this class builds on."""
        if cls._usable is None:
            probe = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
            cls._usable = all(hasattr(probe, name) for name in cls._HOOKS)
            if not cls._usable:
                log.warning("paho %s: its plain client, unbatched", paho.__name__)
        return cls._usable

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rbuf = bytearray()
        self._rpos = 0
        self._wbuf = bytearray()
        self._woken: Any = None
        self._wake_lock = threading.Lock()
        self._puback_ok = ReasonCode(PacketTypes.PUBACK)
        self._no_properties = Properties(PacketTypes.PUBACK)
        #: what a received message without properties carries (shared: read only)
        self._no_publish_properties = Properties(PacketTypes.PUBLISH)

    # reading: one recv for many packets ------------------------------------------------

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._rpos >= len(self._rbuf):
            data = super()._sock_recv(65536)  # BlockingIOError when there is nothing
            if len(data) <= bufsize:
                return data
            self._rbuf = bytearray(data)
            self._rpos = 0
        end = self._rpos + bufsize
        chunk = bytes(self._rbuf[self._rpos : end])
        self._rpos = min(end, len(self._rbuf))
        return chunk

    def loop_read(self, max_packets: int = 1) -> paho.MQTTErrorCode:
        """paho's, until the buffer is empty too (select() cannot see what it holds); then
        the acknowledgements it queued leave at once, in one send."""
        rc = super().loop_read(max_packets)
        while rc == paho.MQTT_ERR_SUCCESS and self._sock is not None and self._buffered():
            rc = super().loop_read(max_packets)
        if rc == paho.MQTT_ERR_SUCCESS and self._sock is not None and self._out_packet:
            rc = self.loop_write()
        return rc

    def _buffered(self) -> bool:
        return self._rpos < len(self._rbuf)

    # writing: the packets queued meanwhile in one send ----------------------------------

    def _sock_send(self, buf: bytes | bytearray) -> int:
        self._wbuf += buf
        return len(buf)

    def loop_write(self) -> paho.MQTTErrorCode:
        with self._wake_lock:
            self._woken = None
        rc = super().loop_write()
        if rc == paho.MQTT_ERR_SUCCESS and self._wbuf:
            rc = self._flush()
        return rc

    def want_write(self) -> bool:
        return bool(self._wbuf) or super().want_write()

    def _flush(self) -> paho.MQTTErrorCode:
        sock = self._sock
        if sock is None:
            return paho.MQTT_ERR_NO_CONN
        try:
            sent = paho.Client._sock_send(self, self._wbuf)
        except BlockingIOError:
            return paho.MQTT_ERR_SUCCESS  # want_write() keeps select() watching
        except OSError as exc:
            log.warning("failed to send to the broker: %s", exc)
            return paho.MQTT_ERR_CONN_LOST
        del self._wbuf[:sent]
        return paho.MQTT_ERR_SUCCESS

    def _sock_close(self) -> None:
        """What is buffered (a DISCONNECT, the last replies) leaves first, within a second."""
        sock = self._sock
        if sock is not None and self._wbuf:
            deadline = 1.0
            while self._wbuf and deadline > 0:
                try:
                    del self._wbuf[: paho.Client._sock_send(self, self._wbuf)]
                except BlockingIOError:
                    select.select([], [sock], [], 0.1)
                    deadline -= 0.1
                except OSError as exc:
                    if exc.errno not in (errno.EPIPE, errno.ECONNRESET):
                        log.debug("unsent at close: %s", exc)
                    break
        self._wbuf.clear()
        self._rbuf = bytearray()
        self._rpos = 0
        super()._sock_close()

    def publish(  # type: ignore[override]
        self, topic: str, payload: Any = None, qos: int = 0, retain: bool = False,
        properties: Properties | None = None,
    ) -> paho.MQTTMessageInfo:  # fmt: skip
        """A reply (QoS 1, bytes, no properties, not retained, no inflight or queue cap,
        connected) built and queued in one go; anything else through paho's own. The
        message is kept for its PUBACK (and a resend after a reconnection) as paho keeps
        it."""
        if (qos != 1 or retain or properties is not None or type(payload) is not bytes
                or self._sock is None or self._protocol != paho.MQTTv5
                or self._max_inflight_messages or self._max_queued_messages):  # fmt: skip
            return super().publish(topic, payload, qos, retain, properties)
        name = topic.encode("utf-8")
        if not name or len(name) > 65535 or b"+" in name or b"#" in name or len(payload) > 1 << 27:
            return super().publish(topic, payload, qos, retain, properties)  # paho refuses
        mid = self._mid_generate()
        message = paho.MQTTMessage(mid, name)
        message.timestamp = time.monotonic()
        message.payload = payload
        message.qos = 1
        message.state = paho.mqtt_ms_wait_for_puback
        size = 5 + len(name) + len(payload)  # topic length, topic, id, no properties
        head = bytearray(b"\x32")  # PUBLISH, QoS 1
        while True:
            size, digit = divmod(size, 128)
            head.append(digit | (0x80 if size else 0))
            if not size:
                break
        packet = b"".join((head, len(name).to_bytes(2, "big"), name, mid.to_bytes(2, "big"),
                           b"\x00", payload))  # fmt: skip
        with self._out_message_mutex:
            if mid in self._out_messages:  # 65,535 replies unacknowledged
                message.info.rc = paho.MQTT_ERR_QUEUE_SIZE
                return message.info
            self._out_messages[mid] = message
            self._inflight_messages += 1
            message.info.rc = self._packet_queue(paho.PUBLISH, packet, mid, 1, message.info)
        return message.info

    def _handle_publish(self) -> paho.MQTTErrorCode:
        """A QoS 1 message without properties (every request) cut from the packet directly:
        paho builds and clears a property set for each message, a third of its thread's
        time. Anything else goes to paho's own."""
        header, packet = self._in_packet["command"], self._in_packet["packet"]
        if self._protocol != paho.MQTTv5 or header & 0x06 != 0x02 or len(packet) < 2:
            return super()._handle_publish()
        end = 2 + (packet[0] << 8 | packet[1])  # after the topic
        if len(packet) < end + 3 or packet[end + 2] != 0:  # a property length of 0
            return super()._handle_publish()
        message = paho.MQTTMessage(mid=packet[end] << 8 | packet[end + 1],
                                   topic=bytes(packet[2:end]))  # fmt: skip
        message.dup = bool(header & 0x08)
        message.qos = 1
        message.retain = bool(header & 0x01)
        message.properties = self._no_publish_properties
        message.payload = bytes(packet[end + 3 :])
        message.timestamp = time.monotonic()
        self._handle_on_message(message)
        if self._manual_ack:
            return paho.MQTT_ERR_SUCCESS
        return self._send_puback(message.mid)

    def _handle_pubackcomp(self, cmd: Any) -> paho.MQTTErrorCode:
        """A plain PUBACK (success, no properties: two bytes, nearly every one) without
        building a reason code and a property set for it."""
        packet = self._in_packet["packet"]
        if cmd != "PUBACK" or len(packet) != 2:
            return super()._handle_pubackcomp(cmd)
        mid = packet[0] << 8 | packet[1]
        with self._out_message_mutex:
            if mid in self._out_messages:
                return self._do_on_publish(mid, self._puback_ok, self._no_properties)
        return paho.MQTT_ERR_SUCCESS

    def _packet_queue(self, command: int, packet: bytes | bytearray, mid: int, qos: int,
                      info: Any = None) -> paho.MQTTErrorCode:  # fmt: skip
        """As paho's, but the network thread is woken once per burst of packets, and never
        by itself (it writes what it queued before it next waits)."""
        self._out_packet.append(
            {"command": command, "mid": mid, "qos": qos, "pos": 0, "to_process": len(packet),
             "packet": packet, "info": info}
        )  # fmt: skip
        if self._thread is None:  # no network thread: write now, as paho does
            if self._on_socket_register_write is None and self._in_callback_mutex.acquire(False):
                self._in_callback_mutex.release()
                return self.loop_write()
        elif threading.current_thread() is not self._thread:
            with self._wake_lock:
                # the socket pair woken and not yet seen (paho makes a new one on reconnect)
                pair = self._sockpairW
                if pair is not None and self._woken is not pair:
                    self._woken = pair
                    try:
                        pair.send(b"0")
                    except OSError:  # full: the thread has a byte waiting anyway
                        pass
        self._call_socket_register_write()
        return paho.MQTT_ERR_SUCCESS
