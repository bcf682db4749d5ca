"""States and the rules that made them (pf_kstate.rule_r/anchor_r/nat_r): states_cur follows
every state removal at once (DIOCKILLSTATES, DIOCCLRSTATES, purge), across commits of other
rulesets, and a rule's own timeouts decide its states' expiry."""
import os
import socket

import pytest

from filter_net import AF_INET, PF_IN, PF_PASS, UDP, module_net, reset, rule
from pfkern.client import DIOCCLRSTATES, pfioc_state_kill
from pfkern.client.constants import PF_NAT, PFTM_UDP_SINGLE   # a request and its reply leave a
                                                                # UDP state in udp.single
from rules_util import make_rule, pool_addr

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/dev/net/tun"),
                                reason="needs root and /dev/net/tun")

UDP_PORT = 5351


@pytest.fixture(scope="module")
def net():
    yield from module_net("r", 91, lambda t: t.fspawn(t.b, "udp_echo", UDP_PORT, 0), v6=False)


@pytest.fixture
def f(net):
    yield net
    reset(net)


def exchange(f, sport=0):
    assert f.fprobe(f.a, "udp_send", f.b.ip4, UDP_PORT, 1, 1.0, sport)["ok"] == 1


def test_states_cur_drops_when_states_are_killed(f):
    f.load([rule(PF_PASS, af=AF_INET, proto=UDP, direction=PF_IN, ifname=f.a.tap, quick=1, no_flags=1),
            rule(PF_PASS, keep_state=0, no_flags=1)])
    exchange(f, 40001)
    exchange(f, 40002)
    assert f.rules()[0].u_states_cur == 2 and f.rules()[0].u_states_tot == 2
    k = pfioc_state_kill()
    k.psk_af = AF_INET
    k.psk_proto = UDP
    k.psk_src.port_op = 2                            # PF_OP_EQ: one of the two
    k.psk_src.port[0] = socket.htons(40001)
    from pfkern.client import DIOCKILLSTATES
    f.dev.ioctl(DIOCKILLSTATES, k)
    assert k.psk_killed == 1
    assert f.rules()[0].u_states_cur == 1                # no purge needed to see it
    f.dev.ioctl(DIOCCLRSTATES, pfioc_state_kill())
    assert f.rules()[0].u_states_cur == 0 and f.rules()[0].u_states_tot == 2


def test_states_keep_their_rule_across_other_commits(f):
    """A commit of the nat ruleset compiles a new generation; the filter rule's states, made
    under the old one, still count on the rule and leave it when they go."""
    f.load([rule(PF_PASS, af=AF_INET, proto=UDP, no_flags=1)])
    exchange(f, 40003)
    n = f.rules()[0].u_states_cur
    assert n >= 1
    nat = make_rule(action=PF_NAT, af=AF_INET, ifname=f.b.tap, src="10.200.0.0/16")
    nat.rpool.proxy_port[0], nat.rpool.proxy_port[1] = 50001, 65535
    from rules_util import xbegin, xcommit, add_rule, ticket_of
    el = xbegin(f.dev, [(2, "")])                    # PF_RULESET_NAT only
    add_rule(f.dev, nat, ticket_of(el, 2, ""), "", [pool_addr(f.b.gw4)])
    xcommit(f.dev, el)
    exchange(f, 40004)
    assert f.rules()[0].u_states_cur == n + (n if n > 1 else 1)
    f.dev.ioctl(DIOCCLRSTATES, pfioc_state_kill())
    assert f.rules()[0].u_states_cur == 0


def test_rule_timeout_sets_the_state_expiry(f):
    r = rule(PF_PASS, af=AF_INET, proto=UDP, direction=PF_IN, ifname=f.a.tap, quick=1, no_flags=1)
    r.timeout[PFTM_UDP_SINGLE] = 7
    f.load([r, rule(PF_PASS, keep_state=0, no_flags=1)])
    exchange(f, 40005)
    (st,) = [s for s in f.states() if s.proto == UDP]
    assert 0 < socket.ntohl(st.expire) <= 7                # the default udp.single is 30
    f.load([rule(PF_PASS, af=AF_INET, proto=UDP, direction=PF_IN, ifname=f.a.tap, quick=1, no_flags=1),
            rule(PF_PASS, keep_state=0, no_flags=1)])
    exchange(f, 40006)
    st = [s for s in f.states() if s.proto == UDP and socket.ntohs(s.key[0].port[0]) == 40006]
    assert len(st) == 1 and socket.ntohl(st[0].expire) > 20
