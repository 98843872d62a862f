"""A TCP proxy between the importer and the test Dovecot that can pass bytes through, stall the
server's side (nothing more arrives) or trickle it (a few bytes at a time), from a given point."""
import socket
import threading
import time


class TcpProxy:
    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.mode = "pass"  # "pass", "stall" or "trickle"
        self.after_bytes = 0  # server bytes passed through on a connection before the mode applies
        self.trickle_bytes_per_second = 200
        self._sockets: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def degrade(self, mode: str, after_bytes: int = 0, bytes_per_second: int = 200) -> None:
        self.mode, self.after_bytes, self.trickle_bytes_per_second = mode, after_bytes, bytes_per_second

    def restore(self) -> None:
        self.mode = "pass"

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            self._sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, from_server: bool) -> None:
        passed = 0
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if not from_server or self.mode == "pass" or passed < self.after_bytes:
                    dst.sendall(data)
                    passed += len(data)
                elif self.mode == "stall":
                    while self.mode == "stall" and not self._closed:
                        time.sleep(0.05)
                    dst.sendall(data)
                else:  # trickle
                    step = max(1, self.trickle_bytes_per_second // 10)
                    for start in range(0, len(data), step):
                        dst.sendall(data[start:start + step])
                        time.sleep(0.1)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self._closed = True
        self.listener.close()
        for sock in self._sockets:
            try:
                sock.close()
            except OSError:
                pass
