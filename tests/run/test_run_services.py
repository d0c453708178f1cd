"""space_services starts only the services that do not answer, and stops only what it started;
a stale socket file of a killed service does not count as running."""

from __future__ import annotations

import socket
from dataclasses import replace

import pytest

from workbench.provenance.service import start_collector
from workbench.release.airlock import airlock_socket
from workbench.sandbox.launcher import launcher_socket
from workbench.services import KERNEL_LAUNCHER, SERVICES, socket_answers, space_services

pytestmark = pytest.mark.slow


def test_starts_what_is_missing_and_stops_only_that(public_space):
    space, policy = public_space["space"], public_space["policy"]
    collector = start_collector(space)
    try:
        lines = []
        with space_services(space, policy, echo=lines.append) as started:
            assert started == ["data gateway", "key holder", "aggregator", "airlock"]
            assert "  provenance collector: already running" in lines
            for path in (space.collector_socket, space.gateway_socket("cml-tki"),
                         space.gateway_socket("lung-validation"), space.keyholder_socket,
                         space.aggregator_socket, airlock_socket(space)):
                assert socket_answers(path), path
        assert socket_answers(space.collector_socket)  # not ours: left running
        for path in (space.gateway_socket("cml-tki"), space.keyholder_socket,
                     space.aggregator_socket, airlock_socket(space)):
            assert not socket_answers(path), path
    finally:
        collector.stop()


def test_a_socket_file_nobody_answers_on_is_not_a_running_service(public_space):
    space, policy = public_space["space"], public_space["policy"]
    space.run.mkdir(parents=True, exist_ok=True)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(space.collector_socket))  # what a killed collector leaves behind
    stale.close()
    assert space.collector_socket.exists() and not socket_answers(space.collector_socket)
    with space_services(space, policy, echo=lambda _line: None) as started:
        assert "provenance collector" in started
        assert socket_answers(space.collector_socket)
    assert not socket_answers(space.collector_socket)


def test_services_started_before_a_failure_are_stopped(public_space):
    space, policy = public_space["space"], public_space["policy"]

    def broken(_space):
        raise RuntimeError("key holder cannot start")

    services = tuple(replace(s, start=broken) if s.label == "key holder" else s
                     for s in SERVICES)
    with pytest.raises(RuntimeError), space_services(space, policy, echo=lambda _l: None,
                                                     services=services):
        pass
    assert not socket_answers(space.collector_socket)
    assert not socket_answers(space.gateway_socket("cml-tki"))


def test_the_kernel_launcher_can_be_supervised_too(public_space):
    space, policy = public_space["space"], public_space["policy"]
    with space_services(space, policy, echo=lambda _l: None,
                        services=SERVICES[:1] + (KERNEL_LAUNCHER,)) as started:
        assert started == ["provenance collector", "kernel launcher"]
        assert socket_answers(launcher_socket(space))
    assert not socket_answers(launcher_socket(space))
