"""A TCP relay the tests control: silent partitions, delay and loss in userspace.

It stands between a client and PostgreSQL. ``blackhole()`` stops forwarding without
closing or resetting anything, as a real partition behaves; ``delay`` and ``loss`` hold
each chunk back (a lost packet costs TCP a retransmission, at least 200 ms on Linux).
"""

from __future__ import annotations

import contextlib
import random
import socket
import threading
import time

RETRANSMISSION = 0.2  # seconds: Linux's smallest retransmission timeout


class Relay:
    """Forwards TCP connections to ``target``; ``blackhole()`` silently stops the flow.

    While blackholed nothing is read, so nothing is forwarded or answered; bytes wait in
    the sockets' buffers, and ``resume()`` lets them through in order.

    Args:
        target: Where connections are forwarded.
        listen: The address to listen on (a free port is picked).
        delay: Seconds each chunk is held back, each way.
        loss: Fraction of chunks "lost": held back a retransmission timeout more.

    """

    def __init__(
        self,
        target: tuple[str, int],
        listen: str = "127.0.0.1",
        delay: float = 0.0,
        loss: float = 0.0,
    ) -> None:
        self.target = target
        self.delay = delay
        self.loss = loss
        self.server = socket.create_server((listen, 0))
        self.port = self.server.getsockname()[1]
        self.flowing = threading.Event()
        self.flowing.set()
        self.sockets: list[socket.socket] = []
        self._random = random.Random(14)
        self._cut_lock = threading.Lock()
        self._chunks_before_cut: int | None = None
        threading.Thread(target=self._accept, daemon=True).start()

    def blackhole(self) -> None:
        self.flowing.clear()

    def resume(self) -> None:
        self.flowing.set()

    def blackhole_after(self, chunks: int) -> None:
        """Forward ``chunks`` more client-to-server chunks, then blackhole.

        A chunk is what one ``recv`` returned: on the loopback, what the client sent in
        one write. Counting them cuts a conversation at each point in turn.
        """
        with self._cut_lock:
            self._chunks_before_cut = chunks

    def _count_chunk(self) -> None:
        with self._cut_lock:
            if self._chunks_before_cut is None:
                return
            self._chunks_before_cut -= 1
            if self._chunks_before_cut <= 0:
                self._chunks_before_cut = None
                self.blackhole()

    def close(self) -> None:
        self.flowing.set()
        for sock in [self.server, *self.sockets]:
            sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            self.flowing.wait()
            try:
                upstream = socket.create_connection(self.target)
            except OSError:  # the server is down: the client sees its connection closed
                client.close()
                continue
            self.sockets += [client, upstream]
            for source, sink, to_server in ((client, upstream, True), (upstream, client, False)):
                pipe = threading.Thread(target=self._pipe, args=(source, sink, to_server))
                pipe.daemon = True
                pipe.start()

    def _hold_back(self) -> None:
        pause = self.delay
        if self.loss and self._random.random() < self.loss:
            pause += RETRANSMISSION
        if pause:
            time.sleep(pause)

    def _pipe(self, source: socket.socket, sink: socket.socket, to_server: bool) -> None:
        try:
            while True:
                self.flowing.wait()
                data = source.recv(65536)
                self.flowing.wait()
                if not data:
                    break
                self._hold_back()
                sink.sendall(data)
                if to_server:
                    self._count_chunk()
        except OSError:
            pass
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
