"""The idle-socket check (pure logic on a local socket pair, no server)."""

import socket

from django_mysqlpool.socket_watch import SocketWatch


def test_a_quiet_socket_is_not_signalled_and_data_or_a_close_is():
    ours, peer = socket.socketpair()
    try:
        watch = SocketWatch(ours.fileno())
        assert watch.signalled() is False
        peer.send(b"x")
        assert watch.signalled() is True
        ours.recv(1)
        assert watch.signalled() is False
        peer.close()
        assert watch.signalled() is True
    finally:
        ours.close()
