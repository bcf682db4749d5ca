"""The device front's choices and refusals before any request: mode selection, bad paths."""

import os

import pytest

import cuse.front
from cuse.front import Front, FrontError, NoopDispatcher, serve
from front_util import make_device_dir, remove_device_dir


@pytest.fixture
def no_cuse(monkeypatch):
    """A kernel without CUSE, whatever this one has (/dev/cuse, modprobe cuse)."""
    monkeypatch.setattr(cuse.front, "_cuse_available", lambda: False)


@pytest.fixture
def directory():
    path = make_device_dir()
    yield path
    remove_device_dir(path)


def test_auto_outside_dev_is_a_fuse_file(directory):
    assert Front(NoopDispatcher(), device=os.path.join(directory, "pf")).mode == "fuse"


def test_auto_without_cuse_is_a_fuse_file(no_cuse):
    assert Front(NoopDispatcher(), device="/dev/pf-never-served").mode == "fuse"


def test_cuse_requested_without_cuse_is_refused(no_cuse):
    with pytest.raises(FrontError, match="no CUSE"):
        Front(NoopDispatcher(), device="/dev/pf-never-served", mode="cuse")


def test_cuse_outside_dev_is_refused(directory):
    with pytest.raises(FrontError, match="under /dev"):
        Front(NoopDispatcher(), device=os.path.join(directory, "pf"), mode="cuse", cuse_fd=99)


def test_unknown_mode_and_group():
    with pytest.raises(ValueError):
        Front(NoopDispatcher(), mode="tcp")
    with pytest.raises(FrontError, match="unknown group"):
        Front(NoopDispatcher(), group="no-such-group-here")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: the front's lock lives in /run/pfd")
def test_unusable_paths_are_refused_with_a_message(directory):
    with pytest.raises(FrontError, match="cannot create"):
        serve(NoopDispatcher(), device=os.path.join(directory, "missing", "pf"), mode="fuse")
    with pytest.raises(FrontError, match="not a regular file"):
        serve(NoopDispatcher(), device=directory, mode="fuse")
