"""Serving the app: waitress (a production WSGI server, threaded) when installed, else Werkzeug's threaded server."""
from __future__ import annotations

import threading

DEFAULT_THREADS = 8


class Server:
    """A bound WSGI server: ``url``, ``serve_forever()``, and ``start()``/``stop()`` to run it in a thread."""

    def __init__(self, app, host="127.0.0.1", port=8000, threads=DEFAULT_THREADS, prefer_waitress=True):
        self.kind = None
        if prefer_waitress:
            try:
                from waitress.server import create_server
            except ImportError:
                create_server = None
            if create_server is not None:
                self._server = create_server(app, host=host, port=port, threads=threads, ident="cnnkit",
                                             asyncore_loop_timeout=0.5)
                self.kind = "waitress"
                self.host, self.port = self._server.effective_host, int(self._server.effective_port)
        if self.kind is None:
            from werkzeug.serving import make_server

            try:
                self._server = make_server(host, port, app, threaded=True)
            except SystemExit:  # Werkzeug prints the reason and exits on a taken port; callers want an OSError
                raise OSError(f"address {host}:{port} is already in use") from None
            self.kind = "werkzeug"
            self.host, self.port = host, int(self._server.server_port)
        self._thread = None

    @property
    def url(self):
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def serve_forever(self):
        """Serve until interrupted (Ctrl-C)."""
        if self.kind == "waitress":
            self._server.run()
        else:
            try:
                self._server.serve_forever()
            finally:
                self._server.server_close()

    def start(self):
        """Serve from a background thread; returns self."""
        self._thread = threading.Thread(target=self.serve_forever, name="cnnkit-web", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout=10):
        """Stop a server started with :meth:`start` and wait for its thread."""
        if self.kind == "waitress":
            from waitress import wasyncore

            # Close every socket from inside the server's own loop (its trigger runs the call there); the loop
            # ends when nothing is left open, then the worker threads are told to finish.
            self._server.trigger.pull_trigger(lambda: wasyncore.close_all(self._server._map))
            if self._thread is not None:
                self._thread.join(timeout)
            self._server.task_dispatcher.shutdown()
        else:
            self._server.shutdown()
            if self._thread is not None:
                self._thread.join(timeout)
