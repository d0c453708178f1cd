"""An unexpected fault in the key holder's socket service: the caller gets its type only, and
the service's log gets its type and stack frames, never its message (which could quote a
decrypted value)."""

from __future__ import annotations

import logging
import threading

from workbench.errors import log_fault
from workbench.secure.keyholder import FrameClient, FrameServer

VALUE = "pooled sum 48213.77"  # stands for a decrypted value quoted by a failing line


class _Faulty:
    def handle(self, header, blobs):
        raise RuntimeError(f"could not round {VALUE}")


def test_a_key_holder_fault_reaches_neither_the_caller_nor_the_log_with_its_message(
        open_tmp, caplog):
    path = open_tmp / "faulty.sock"
    server = FrameServer(path, _Faulty())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with caplog.at_level(logging.ERROR):
            try:
                FrameClient(path, timeout=10).request({"type": "decrypt-release"})
            except Exception as exc:  # noqa: BLE001 - the client's error for the fault
                reply = str(exc)
            else:
                raise AssertionError("a faulty service returned a result")
    finally:
        server.shutdown()
        server.server_close()
    assert "RuntimeError" in reply and VALUE not in reply
    logged = caplog.text
    assert "RuntimeError" in logged and "message withheld" in logged
    assert VALUE not in logged and "handle" in logged  # where it failed, not what it held


def test_log_fault_keeps_frames_and_drops_the_message(caplog):
    logger = logging.getLogger("workbench.test")
    try:
        raise ValueError(f"row with {VALUE}")
    except ValueError as exc:
        with caplog.at_level(logging.ERROR, logger="workbench.test"):
            log_fault(logger, "test fault", exc)
    assert "test fault: ValueError (message withheld)" in caplog.text
    assert "test_log_fault_keeps_frames_and_drops_the_message" in caplog.text
    assert VALUE not in caplog.text
