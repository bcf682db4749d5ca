"""pf_osfp: placeholder until its issue lands."""


class Fingerprints:
    def __init__(self, core):
        self.core = core
