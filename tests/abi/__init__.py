"""ABI expectations and the C probe used by tests/test_abi.py."""
