/*
 * net/if_pflog.h -- the pflog record header (FreeBSD 12.1), for Linux.
 *
 * Part of "pf for Linux".  Every packet a rule with `log` matches is
 * written, behind one of these headers, into a pcap stream whose link type
 * is LINKTYPE_PFLOG (117); tcpdump, libpcap and Wireshark decode it as they
 * do the pflog0 interface and /var/log/pflog of a BSD system.  See
 * docs/pflog.md for where the daemon writes those records.
 *
 * Written for this project; names, sizes and the byte layout are FreeBSD
 * 12.1 amd64's (sys/net/if_pflog.h), so that programs written for BSD pflog
 * files compile and read the records unchanged.  The layout is checked
 * below at compile time and, byte for byte, by tests/test_pflog.py.
 *
 * Byte order, as on FreeBSD: rulenr and subrulenr are big-endian (network
 * order); uid, pid, rule_uid and rule_pid are in host order.  subrulenr is
 * 0xffffffff when the rule that matched is in the main ruleset.
 *
 * The one Linux trap: FreeBSD's sa_family_t is one byte, Linux's is two.
 * `af` is declared uint8_t so that the header stays 64 bytes with every
 * field at its FreeBSD offset (net/pfvar.h does the same for its af
 * fields).  Its *value* in records the daemon writes is the BSD number
 * (AF_INET 2, AF_INET6 28): that is what tcpdump's pflog printer
 * recognises on every system, Linux included.
 */

#ifndef _NET_IF_PFLOG_H_
#define _NET_IF_PFLOG_H_

#include <sys/types.h>		/* uid_t, pid_t: 4 bytes on Linux and FreeBSD */
#include <stddef.h>		/* offsetof */
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Number of pflog units a rule can name (`log (to pflogN)`, pf_rule.logif). */
#define PFLOGIFS_MAX		16

/*
 * Interface names: IFNAMSIZ (16) on FreeBSD and Linux.  glibc hides IFNAMSIZ
 * in strict ISO C modes, so the record gets its own name for it.
 */
#define PFLOG_IFNAMSIZ		16

/* Anchor names are cut to this many bytes (NUL included) in the record. */
#define PFLOG_RULESET_NAME_SIZE	16

struct pfloghdr {
	uint8_t		length;		/* PFLOG_REAL_HDRLEN */
	uint8_t		af;		/* BSD sa_family_t: 1 byte, BSD values */
	uint8_t		action;		/* PF_PASS, PF_DROP, ... of the rule */
	uint8_t		reason;		/* PFRES_* */
	char		ifname[PFLOG_IFNAMSIZ];
	char		ruleset[PFLOG_RULESET_NAME_SIZE]; /* anchor name, or "" */
	uint32_t	rulenr;		/* big-endian */
	uint32_t	subrulenr;	/* big-endian; (uint32_t)-1: no anchor */
	uid_t		uid;		/* socket owner: UID_MAX when unknown */
	pid_t		pid;		/* NO_PID (100000 on FreeBSD) */
	uid_t		rule_uid;	/* who loaded the rule */
	pid_t		rule_pid;
	uint8_t		dir;		/* PF_IN, PF_OUT */
	uint8_t		pad[3];
};

/* What follows each header in a record: the IP packet, from its first byte. */
#define PFLOG_HDRLEN		sizeof(struct pfloghdr)
/* The header up to its padding; stored in `length`, which readers check. */
#define PFLOG_REAL_HDRLEN	offsetof(struct pfloghdr, pad)

/* pcap/DLT link type of a pflog stream (bpf DLT_PFLOG, pcap LINKTYPE_PFLOG). */
#ifndef DLT_PFLOG
#define DLT_PFLOG		117
#endif

#if defined(__cplusplus) && __cplusplus >= 201103L
#define PFLOG_STATIC_ASSERT(cond, msg)	static_assert(cond, msg)
#elif !defined(__cplusplus) && defined(__STDC_VERSION__) && \
    __STDC_VERSION__ >= 201112L
#define PFLOG_STATIC_ASSERT(cond, msg)	_Static_assert(cond, msg)
#endif

#ifdef PFLOG_STATIC_ASSERT
PFLOG_STATIC_ASSERT(sizeof(struct pfloghdr) == 64,
    "pflog ABI: sizeof(struct pfloghdr)");
PFLOG_STATIC_ASSERT(offsetof(struct pfloghdr, ifname) == 4,
    "pflog ABI: offsetof(struct pfloghdr, ifname)");
PFLOG_STATIC_ASSERT(offsetof(struct pfloghdr, ruleset) == 20,
    "pflog ABI: offsetof(struct pfloghdr, ruleset)");
PFLOG_STATIC_ASSERT(offsetof(struct pfloghdr, rulenr) == 36,
    "pflog ABI: offsetof(struct pfloghdr, rulenr)");
PFLOG_STATIC_ASSERT(offsetof(struct pfloghdr, uid) == 44,
    "pflog ABI: offsetof(struct pfloghdr, uid)");
PFLOG_STATIC_ASSERT(offsetof(struct pfloghdr, rule_pid) == 56,
    "pflog ABI: offsetof(struct pfloghdr, rule_pid)");
PFLOG_STATIC_ASSERT(offsetof(struct pfloghdr, dir) == 60,
    "pflog ABI: offsetof(struct pfloghdr, dir)");
PFLOG_STATIC_ASSERT(PFLOG_REAL_HDRLEN == 61, "pflog ABI: PFLOG_REAL_HDRLEN");
#undef PFLOG_STATIC_ASSERT
#endif

#ifdef __cplusplus
}
#endif

#endif /* _NET_IF_PFLOG_H_ */
