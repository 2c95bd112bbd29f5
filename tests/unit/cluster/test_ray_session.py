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


class _Ray:
    """Ray's calls that a session makes, recorded (a plain-Python stand-in: no cluster starts)."""

    def __init__(self, running: bool = False) -> None:
        self.running, self.calls = running, []
        self.context = type("Context", (), {"enable_progress_bars": True})()
        self.data = type("Data", (), {"DataContext": type("DC", (), {"get_current": staticmethod(lambda: self.context)})})

    def is_initialized(self) -> bool:
        return self.running

    def init(self, **options) -> None:
        self.calls.append(("init", options))
        self.running = True

    def shutdown(self) -> None:
        self.calls.append(("shutdown", {}))
        self.running = False


@pytest.fixture
def ray(monkeypatch):
    def make(running: bool = False) -> _Ray:
        fake = _Ray(running)
        monkeypatch.setitem(sys.modules, "ray", fake)
        monkeypatch.setitem(sys.modules, "ray.data", fake.data)
        monkeypatch.delenv("RAY_DATA_LOG_LEVEL", raising=False)
        return fake
    return make


@pytest.fixture
def loggers():
    """The "ray" and "ray.data" loggers at INFO and WARNING, restored after."""
    import logging

    found = [logging.getLogger(name) for name in ("ray", "ray.data")]
    old = [logger.level for logger in found]
    found[0].setLevel(logging.INFO)
    found[1].setLevel(logging.WARNING)
    yield found
    for logger, level in zip(found, old):
        logger.setLevel(level)


def test_a_session_started_here_is_quiet_and_ends_with_the_block(ray, loggers):
    import logging

    from lookalike.cluster.ray_session import ray_session

    fake = ray()
    with ray_session("ray://head:10001"):
        assert fake.calls == [("init", {"address": "ray://head:10001", "include_dashboard": False,
                                        "log_to_driver": False, "logging_level": logging.ERROR})]
        assert [logger.level for logger in loggers] == [logging.ERROR, logging.ERROR]
        assert fake.context.enable_progress_bars is False
        assert os.environ["RAY_DATA_LOG_LEVEL"] == "ERROR"  # read by Ray Data's workers as they start
    assert fake.calls[1:] == [("shutdown", {})]
    assert [logger.level for logger in loggers] == [logging.INFO, logging.WARNING]
    assert fake.context.enable_progress_bars is True
    assert "RAY_DATA_LOG_LEVEL" not in os.environ


def test_a_verbose_session_leaves_rays_output_as_ray_makes_it(ray, loggers):
    import logging

    from lookalike.cluster.ray_session import ray_session

    fake = ray()
    with ray_session(verbose=True):
        assert fake.calls == [("init", {"address": None, "include_dashboard": False, "log_to_driver": True,
                                        "logging_level": logging.INFO})]
        assert [logger.level for logger in loggers] == [logging.INFO, logging.WARNING]
        assert fake.context.enable_progress_bars is False  # lookalike draws its own
        assert "RAY_DATA_LOG_LEVEL" not in os.environ
    assert fake.calls[1:] == [("shutdown", {})] and fake.context.enable_progress_bars is True


def test_a_session_this_process_holds_is_used_and_left_running(ray, loggers):
    import logging

    from lookalike.cluster.ray_session import ray_session

    fake = ray(running=True)
    for verbose in (False, True):
        with ray_session(verbose=verbose):
            pass
    assert fake.calls == [] and fake.running
    assert [logger.level for logger in loggers] == [logging.INFO, logging.WARNING]


def test_a_failing_session_still_ends_and_restores_everything(ray, loggers, monkeypatch):
    import logging

    from lookalike.cluster.ray_session import ray_session

    fake = ray()
    monkeypatch.setenv("RAY_DATA_LOG_LEVEL", "DEBUG")  # a user's own setting is kept
    with pytest.raises(RuntimeError, match="task failed"):
        with ray_session():
            assert os.environ["RAY_DATA_LOG_LEVEL"] == "DEBUG"
            raise RuntimeError("task failed")
    assert fake.calls[-1] == ("shutdown", {}) and not fake.running
    assert [logger.level for logger in loggers] == [logging.INFO, logging.WARNING]
    assert os.environ["RAY_DATA_LOG_LEVEL"] == "DEBUG" and fake.context.enable_progress_bars is True
    fake = ray()
    with pytest.raises(RuntimeError):
        with ray_session(verbose=True):
            raise RuntimeError("task failed")
    assert fake.calls[-1] == ("shutdown", {})


def test_a_stream_without_a_file_descriptor_has_none():
    import io

    from lookalike.cluster.ray_session import _fileno

    closed = open(os.devnull, "w")
    closed.close()
    assert (_fileno(io.StringIO()), _fileno(object()), _fileno(closed)) == (None, None, None)
    with open(os.devnull, "w") as f:
        assert _fileno(f) == f.fileno()
