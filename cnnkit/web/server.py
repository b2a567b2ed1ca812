"""Serving the app: waitress (a production WSGI server, threaded) when installed, else Werkzeug's threaded server."""
from __future__ import annotations

import select
import threading

from .app import MAX_BODY_BYTES

DEFAULT_THREADS = 8
# Connection limits, chosen so that idle or slow clients cannot lock others out. waitress reads requests in
# one event loop and hands only complete ones to the worker threads, so an idle connection costs a socket,
# never a thread; its own defaults (100 connections, 120 s idle timeout) let about 100 idle sockets block
# every new client for two minutes.
CONNECTION_LIMIT = 1000        # open connections at once; past it new ones wait in the listen backlog
IDLE_TIMEOUT_S = 10            # a connection that sends nothing for this long is closed
CLEANUP_INTERVAL_S = 2         # how often idle connections are looked for
MAX_HEADER_BYTES = 64 * 1024   # request line and headers
# Bodies up to this size reach the app, which answers 413 in JSON past MAX_BODY_BYTES; larger ones are cut off
# by waitress itself, before it spools them to a temporary file.
MAX_SPOOLED_BODY_BYTES = 4 * MAX_BODY_BYTES


def _connection_limit():
    """CONNECTION_LIMIT, kept under the process's open-file limit so that accepting never fails."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):
        return CONNECTION_LIMIT
    if soft == resource.RLIM_INFINITY:
        return CONNECTION_LIMIT
    return max(16, min(CONNECTION_LIMIT, soft - 64))


class Server:
    """A bound WSGI server: ``url``, ``serve_forever()``, and ``start()``/``stop()`` to run it in a thread.

    ``idle_timeout``: seconds (an int) after which a connection that sends nothing is closed.
    """

    def __init__(self, app, host="127.0.0.1", port=8000, threads=DEFAULT_THREADS, prefer_waitress=True,
                 idle_timeout=IDLE_TIMEOUT_S):
        self.kind = None
        self.idle_timeout = idle_timeout
        if prefer_waitress:
            try:
                from waitress.server import create_server
            except ImportError:
                create_server = None
            if create_server is not None:
                # poll() where there is one: select() cannot watch file descriptors past 1024
                self._server = create_server(app, host=host, port=port, threads=threads, ident="cnnkit",
                                             asyncore_loop_timeout=0.5, asyncore_use_poll=hasattr(select, "poll"),
                                             connection_limit=_connection_limit(),
                                             channel_timeout=idle_timeout,
                                             cleanup_interval=min(CLEANUP_INTERVAL_S, idle_timeout),
                                             max_request_header_size=MAX_HEADER_BYTES,
                                             max_request_body_size=MAX_SPOOLED_BODY_BYTES)
                self.kind = "waitress"
                self.host, self.port = self._server.effective_host, int(self._server.effective_port)
        if self.kind is None:
            from werkzeug.serving import WSGIRequestHandler, make_server

            class IdleTimeoutHandler(WSGIRequestHandler):
                timeout = idle_timeout  # each connection has its own thread; an idle one gives it up

            try:
                self._server = make_server(host, port, app, threaded=True, request_handler=IdleTimeoutHandler)
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
