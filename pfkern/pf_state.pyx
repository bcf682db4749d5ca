# cython: language_level=3
"""The state table (FreeBSD pf.c's state keys and states): placeholder until the state issue."""


class StateTable:
    """`find_all(key, direction)`: the states whose wire (PF_IN) or stack (PF_OUT) key matches
    key = (af, proto, (addr0, addr1), (port0, port1)), as pf_find_state_all walks them."""

    def __init__(self, core):
        self.core = core
        self._by_key = {}

    def __len__(self):
        return len(self._by_key)

    def find_all(self, key, direction):
        return list(self._by_key.get((key, direction), ()))
