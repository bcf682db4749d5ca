"""tag / tagged across the passes of one packet (pf_tag_packet / pf_match_tag): a tag a rule or a
state gives a packet on its way in is what `tagged` sees on its way out."""
import os

import pytest

from pfkern.client.constants import PFRULE_IFBOUND

from filter_net import AF_INET, PF_DROP, PF_IN, PF_OUT, PF_PASS, UDP, module_net, reset, rule

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/dev/net/tun"),
                                reason="needs root and /dev/net/tun")

UDP_PORT = 5321


@pytest.fixture(scope="module")
def net():
    yield from module_net("t", 85, lambda t: t.fspawn(t.b, "udp_echo", UDP_PORT, 0), v6=False)


@pytest.fixture
def f(net):
    yield net
    reset(net)


def nost(**kw):
    return rule(keep_state=0, no_flags=1, **kw)


def echo(f, count):
    return f.fprobe(f.a, "udp_send", f.b.ip4, UDP_PORT, count, 0.5)["ok"]


def tag_rules(f, tag_in, keep_state):
    """Output is blocked unless the packet carries tag "seven"; the input rules tag (pfctl
    sends tag names; the kernel numbers them)."""
    tagger = rule(PF_PASS, af=AF_INET, proto=UDP, direction=PF_IN, ifname=f.a.tap,
                  tagname=tag_in.encode(), keep_state=keep_state, no_flags=1,
                  rule_flag=PFRULE_IFBOUND if keep_state else 0)
    return [nost(),
            nost(action=PF_DROP, af=AF_INET, proto=UDP, direction=PF_OUT),
            tagger,
            nost(af=AF_INET, proto=UDP, direction=PF_IN, ifname=f.b.tap, tagname=b"seven"),
            nost(af=AF_INET, proto=UDP, direction=PF_OUT, match_tagname=b"seven")]


@pytest.mark.parametrize("tag_in,ok", [("seven", 3), ("eight", 0)], ids=["same-tag", "other-tag"])
def test_rule_tag_reaches_the_output_pass(f, tag_in, ok):
    f.load(tag_rules(f, tag_in, keep_state=0))
    assert echo(f, 3) == ok
    tagged = f.rules()[4]
    assert tagged.packets[1] == 2 * ok          # requests and replies went out through it


def test_negated_tagged(f):
    rules = tag_rules(f, "eight", keep_state=0)
    rules[4].match_tag_not = 1          # "! tagged seven": requests (eight) pass, replies do not
    f.load(rules)
    assert echo(f, 2) == 0
    assert f.rules()[4].packets[1] == 2


def test_state_gives_its_tag_to_later_packets(f):
    """An if-bound state on the inside interface: later requests match it on the way in (and
    take its tag), find no state on the way out (bound elsewhere), and pass `tagged 7`."""
    f.load(tag_rules(f, "seven", keep_state=1))
    assert echo(f, 3) == 3
    states = f.states()
    assert len(states) == 1
    tagged = f.rules()[4]
    # requests only (replies leave through the state on a.tap): the first tagged by the rule,
    # the two others by the state
    assert tagged.packets[1] == 3
