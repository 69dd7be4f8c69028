# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A client of Click's ControlSocket protocol (version 1.x) over a unix socket.

A running Click instance listens on ``/run/flowstream/<id>/click.sock`` (``click -u``). The
protocol is line based: the server greets with ``Click::ControlSocket/1.3``; ``READ h`` answers a
status line (``200 ...``) then ``DATA n`` and n bytes; ``WRITEDATA h n`` followed by n bytes
writes a handler. A status of 3 digits with ``-`` after it continues on the next line; codes of
400 and more are errors, whose lines are Click's own messages.
"""

from __future__ import annotations

import socket


class ClickControlError(Exception):
    def __init__(self, code, message):
        super().__init__("%s %s" % (code, message) if code else message)
        self.code = code
        self.message = message


class ClickControl:
    def __init__(self, path, timeout=5.0):
        self.path = path
        self.timeout = timeout
        self.sock = None
        self.buffer = b""

    def __enter__(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        try:
            self.sock.connect(self.path)
            greeting = self._line()
        except OSError as exc:
            self.sock.close()
            raise ClickControlError(None, "cannot reach Click's control socket %s: %s" % (self.path, exc)) from exc
        if not greeting.startswith("Click::ControlSocket/"):
            self.sock.close()
            raise ClickControlError(None, "%s does not speak the ControlSocket protocol (it said %r)" % (self.path, greeting))
        return self

    def __exit__(self, *exc):
        try:
            self.sock.sendall(b"QUIT\r\n")
        except OSError:
            pass
        self.sock.close()

    # -- the wire --------------------------------------------------------------------------
    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ClickControlError(None, "Click closed the control socket %s" % self.path)
        self.buffer += chunk

    def _line(self):
        while b"\n" not in self.buffer:
            self._fill()
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.rstrip(b"\r").decode("utf-8", "replace")

    def _bytes(self, count):
        while len(self.buffer) < count:
            self._fill()
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    def _status(self):
        """(code, [message lines]) of one answer."""
        lines = []
        while True:
            line = self._line()
            code, more, text = line[:3], line[3:4], line[4:]
            lines.append(text)
            if more != "-":
                break
        try:
            return int(code), lines
        except ValueError as exc:
            raise ClickControlError(None, "unexpected answer %r from %s" % (line, self.path)) from exc

    # -- handlers --------------------------------------------------------------------------
    def read(self, handler):
        self.sock.sendall(("READ %s\r\n" % handler).encode())
        code, lines = self._status()
        if code >= 300:
            raise ClickControlError(code, " ".join(lines))
        data_line = self._line()
        if not data_line.startswith("DATA "):
            raise ClickControlError(None, "no DATA after reading %s: %r" % (handler, data_line))
        return self._bytes(int(data_line[5:])).decode("utf-8", "replace")

    def write(self, handler, data=""):
        body = data.encode() if isinstance(data, str) else data
        self.sock.sendall(("WRITEDATA %s %d\r\n" % (handler, len(body))).encode() + body)
        code, lines = self._status()
        if code >= 300:
            raise ClickControlError(code, "\n".join(lines))
        return lines

    def elements(self):
        """The router's elements (the ``list`` handler: a count, then one name per line)."""
        lines = self.read("list").splitlines()
        return [line.strip() for line in lines[1:] if line.strip()]
