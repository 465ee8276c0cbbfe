"""A loopback TCP proxy for the Kafka protocol that loses some Produce responses.

It forwards whole frames both ways. It remembers the correlation ids of Produce requests (api key
0); when the broker's response to every `drop_every`-th Produce request comes back, the proxy drops
it and closes both sides of that connection, up to `max_drops` times. The broker has appended the
batch, the client never hears so and retries it: an idempotent producer retries with the same
producer id, epoch and sequence, and the broker must answer with the original offsets instead of
appending it again.

runnel must advertise the proxy's address (`--advertised-kafka-listener`) so that clients send
everything through it.
"""

from __future__ import annotations

import socket
import struct
import threading


def _recv_exact(s: socket.socket, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def _read_frame(s: socket.socket) -> bytes | None:
    head = _recv_exact(s, 4)
    if head is None:
        return None
    (size,) = struct.unpack(">i", head)
    body = _recv_exact(s, size)
    if body is None:
        return None
    return head + body


class DropProduceResponsesProxy:
    def __init__(self, drop_every: int = 7, max_drops: int = 5):
        self.drop_every = drop_every
        self.max_drops = max_drops
        self.upstream: tuple[str, int] | None = None
        self.lock = threading.Lock()
        self.produce_responses = 0
        self.dropped = 0
        self._closed = False
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            if self.upstream is None:
                client.close()
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=10)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            for s in (client, server):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                self._conns += [client, server]
            produce_ids: set[int] = set()
            threading.Thread(target=self._up, args=(client, server, produce_ids), daemon=True).start()
            threading.Thread(target=self._down, args=(client, server, produce_ids), daemon=True).start()

    @staticmethod
    def _close(*socks: socket.socket) -> None:
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass

    def _up(self, client, server, produce_ids) -> None:
        try:
            while True:
                frame = _read_frame(client)
                if frame is None:
                    break
                api_key, _ver, corr = struct.unpack(">hhi", frame[4:12])
                if api_key == 0:
                    with self.lock:
                        produce_ids.add(corr)
                server.sendall(frame)
        except OSError:
            pass
        self._close(client, server)

    def _down(self, client, server, produce_ids) -> None:
        try:
            while True:
                frame = _read_frame(server)
                if frame is None:
                    break
                (corr,) = struct.unpack(">i", frame[4:8])
                drop = False
                with self.lock:
                    if corr in produce_ids:
                        produce_ids.discard(corr)
                        self.produce_responses += 1
                        if self.dropped < self.max_drops and self.produce_responses % self.drop_every == 0:
                            self.dropped += 1
                            drop = True
                if drop:
                    break  # lose this response and the connection
                client.sendall(frame)
        except OSError:
            pass
        self._close(client, server)

    def close(self) -> None:
        self._closed = True
        self._close(self.sock)
        with self.lock:
            conns = list(self._conns)
        self._close(*conns)
