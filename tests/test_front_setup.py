"""The device front's choices and refusals before any request: mode selection, bad paths."""

import os

import pytest

from cuse.front import Front, FrontError, NoopDispatcher, serve
from front_util import make_device_dir, remove_device_dir

HAS_CUSE = os.path.exists("/dev/cuse")


@pytest.fixture
def directory():
    path = make_device_dir()
    yield path
    remove_device_dir(path)


def test_auto_outside_dev_is_a_fuse_file(directory):
    assert Front(NoopDispatcher(), device=os.path.join(directory, "pf")).mode == "fuse"


@pytest.mark.skipif(HAS_CUSE, reason="this kernel has CUSE")
def test_auto_without_cuse_is_a_fuse_file():
    assert Front(NoopDispatcher(), device="/dev/pf-never-served").mode == "fuse"


@pytest.mark.skipif(HAS_CUSE, reason="this kernel has CUSE")
def test_cuse_requested_without_cuse_is_refused():
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
