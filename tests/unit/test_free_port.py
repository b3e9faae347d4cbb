"""Ports chosen for servers started a moment later lie outside the kernel's ephemeral range, where
outgoing connections would take them first on a busy machine."""

from __future__ import annotations

import socket

from wealthalloc.runtime import launcher


def test_a_chosen_port_is_below_the_ephemeral_range_above_ray_s_worker_ports_and_free() -> None:
    ephemeral = launcher._ephemeral_start()

    ports = {launcher.free_port() for _ in range(50)}

    assert all(20000 <= port < ephemeral for port in ports)
    assert len(ports) > 1  # chosen at random, not one port for every server
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", ports.pop()))


def test_a_port_someone_listens_on_is_never_chosen() -> None:
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", launcher.free_port()))
        busy.listen()
        taken = busy.getsockname()[1]

        assert not launcher._bindable(taken)
        assert taken not in {launcher.free_port() for _ in range(200)}


def test_one_process_is_never_handed_the_same_port_twice() -> None:
    """The ports a start chooses are bound only later: two of them must not be the same."""
    ports = [launcher.free_port() for _ in range(500)]

    assert len(set(ports)) == len(ports)
