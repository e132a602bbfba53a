"""The strongSwan driver: talks to charon over VICI, one short-lived session per call.

Every call opens the socket with a timeout, consumes whatever it streams, and closes it in `finally`;
errors from the `vici` package become DaemonUnavailable (nobody answered) or CommandFailed (charon
answered and refused). Messages are built and answers parsed in `vici_messages`, which is pure.
"""
from __future__ import annotations

import contextlib
import logging
import socket
import struct
from pathlib import Path

import vici
import vici.exception
import vici.protocol

from webui.drivers import CommandFailed, DaemonUnavailable

log = logging.getLogger(__name__)

DEFAULT_SOCKET = "/var/run/charon.vici"
DEFAULT_TIMEOUT = 5.0


class _TimedTransport(vici.protocol.Transport):
    """The vici transport, but the socket timeout holds for every read.

    The package drops the timeout after the first byte of a read, so a daemon that stalls in the
    middle of an answer would hang a web server thread forever.
    """

    def _recvall(self, count, timeout=vici.protocol.RECV_TIMEOUT_DEFAULT):
        data = b""
        while len(data) < count:
            chunk = self.socket.recv(count - len(data))
            if not chunk:
                raise ConnectionResetError("charon closed the VICI connection")
            data += chunk
        return data


def not_running(path: str | Path) -> DaemonUnavailable:
    return DaemonUnavailable(f"strongSwan is not running (no VICI socket at {path}).")


@contextlib.contextmanager
def session(path: str | Path, timeout: float = DEFAULT_TIMEOUT):
    """A vici.Session on a fresh socket, translating transport failures; closed on exit."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError):
            raise not_running(path) from None
        except socket.timeout:
            raise DaemonUnavailable(f"strongSwan did not accept a VICI connection within "
                                    f"{timeout:g} s ({path}).") from None
        vici_session = vici.Session(sock)
        vici_session.transport = _TimedTransport(sock)
        try:
            yield vici_session
        except socket.timeout:
            raise DaemonUnavailable(f"strongSwan did not answer within {timeout:g} s "
                                    f"(VICI socket {path}).") from None
        except (ConnectionError, BrokenPipeError, struct.error,
                vici.exception.DeserializationException, vici.exception.SessionException) as err:
            raise DaemonUnavailable(f"The connection to strongSwan broke ({path}): {err}") from None
        except OSError as err:
            if err.errno is None:  # the package's own socket.error('Connection closed')
                raise DaemonUnavailable(f"strongSwan closed the VICI connection ({path}).") \
                    from None
            raise
    finally:
        sock.close()


def command_error(err: vici.exception.CommandException) -> str:
    """charon's refusal without the package's "Command failed: " prefix."""
    text = str(err)
    return text.split(": ", 1)[1] if text.startswith("Command failed: ") else text


def request(vs, command: str, message: dict | None = None, field: str | None = None) -> dict:
    """One non-streamed command on an open session; charon's refusal -> CommandFailed."""
    try:
        return vs.request(command, message)
    except vici.exception.CommandException as err:
        raise CommandFailed(f"strongSwan refused {command}: {command_error(err)}",
                            field=field) from None


def streamed(vs, command: str, event: str, message: dict | None = None) -> list[dict]:
    """One streamed command on an open session, its events collected (the generator consumed)."""
    try:
        return list(vs.streamed_request(command, event, message))
    except vici.exception.CommandException as err:
        raise CommandFailed(f"strongSwan refused {command}: {command_error(err)}") from None


def call(path, command: str, message: dict | None = None, timeout: float = DEFAULT_TIMEOUT,
         field: str | None = None) -> dict:
    """One non-streamed command on its own session."""
    with session(path, timeout) as vs:
        return request(vs, command, message, field)


def stream(path, command: str, event: str, message: dict | None = None,
           timeout: float = DEFAULT_TIMEOUT) -> list[dict]:
    """One streamed command on its own session."""
    with session(path, timeout) as vs:
        return streamed(vs, command, event, message)
