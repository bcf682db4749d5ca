"""pf_table: placeholder until its issue lands."""


class Tables:
    def __init__(self, core):
        self.core = core
