"""pf_ruleset: placeholder until its issue lands."""


class Rulesets:
    def __init__(self, core):
        self.core = core
