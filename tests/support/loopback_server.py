"""A TCP server on 127.0.0.1 for pretend IMAP servers in tests: it accepts connections on a
background thread and hands each to `handle` until closed."""
import socket
import threading


class LoopbackServer:
    def __init__(self):
        self._socket = socket.create_server(("127.0.0.1", 0))
        self._socket.settimeout(0.2)
        self.host, self.port = self._socket.getsockname()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._socket.accept()
            except (socket.timeout, OSError):
                continue
            self.handle(conn)

    def handle(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self._stop.set()
        self._socket.close()
        self._thread.join(timeout=3)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
