"""``lookalike.cluster.ray_session``: what Ray's native code writes to standard error is kept from the
terminal on success and shown when the session fails; Python's own messages pass either way."""

import os
import sys

import pytest

from lookalike.cluster.ray_session import _native_stderr_caught


def test_native_writes_are_kept_back_on_success_and_python_messages_pass(capfd):
    with _native_stderr_caught():
        os.write(2, b"[E core_worker.cc] native noise\n")
        print("progress", file=sys.stderr)
    out, err = capfd.readouterr()
    assert "native noise" not in err and "progress" in err
    os.write(2, b"after\n")  # file descriptor 2 is back
    assert capfd.readouterr().err == "after\n"


def test_native_writes_are_shown_when_the_session_fails(capfd):
    with pytest.raises(RuntimeError, match="cluster gone"):
        with _native_stderr_caught():
            os.write(2, b"[W gcs_client.cc] Failed to connect to GCS\n")
            raise RuntimeError("cluster gone")
    assert "Failed to connect to GCS" in capfd.readouterr().err


def test_in_a_process_whose_stderr_is_descriptor_2_python_keeps_it():
    import subprocess

    code = ("import os, sys; from lookalike.cluster.ray_session import _native_stderr_caught\n"
            "with _native_stderr_caught():\n"
            "    os.write(2, b'native\\n'); print('bar', file=sys.stderr)\n"
            "print('done', file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert proc.stderr == "bar\ndone\n"
