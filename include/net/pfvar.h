/*
 * net/pfvar.h -- the FreeBSD pf /dev/pf ioctl ABI, for Linux.
 *
 * Part of "pf for Linux": a userspace daemon serving FreeBSD pf's /dev/pf
 * on Linux.  This header describes the argument structures and command
 * values of the FreeBSD 12.1 legacy ioctl interface, laid out byte for byte
 * as on FreeBSD 12.1 amd64, so that programs written for pf compile and run
 * unchanged against the daemon.  It also carries the older OpenBSD 3.x /
 * NetBSD generations that old programs still send (end of file).
 *
 * Written for this project from the layouts documented in
 * ../shared/reference/pf-abi.md; names and values are FreeBSD's so that
 * existing sources compile.  Every ABI struct is checked by a compile-time
 * size assertion below and, field by field, by tests/test_abi.py.
 *
 * Target: Linux LP64 (x86_64).  ILP32 callers have different layouts and
 * command values and are not described here.
 *
 * Two traps that make a naive port of the BSD header wrong:
 *   - anchor paths are char[1024] (BSD MAXPATHLEN), never Linux's 4096:
 *     see PF_MAXPATHLEN;
 *   - BSD sa_family_t is one byte, Linux's is two: every field that is
 *     sa_family_t on FreeBSD is declared uint8_t here.
 * Address family *values* inside the structs are the host's (AF_INET6 is
 * 10 on Linux); the daemon also accepts FreeBSD's 28.
 *
 * Do not install this header into /usr/include: its mere presence makes
 * some configure scripts enable pf support.  Use a private include path.
 */

#ifndef _NET_PFVAR_H_
#define _NET_PFVAR_H_

#include <sys/types.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>		/* memcmp/memcpy in the helper macros */
#include <netinet/in.h>
#include <net/if.h>

/* ------------------------------------------------------------------------
 * Portability helpers (private to this header)
 * ------------------------------------------------------------------------ */

#if defined(__cplusplus) && __cplusplus >= 201103L
#define PF_STATIC_ASSERT(cond, msg)	static_assert(cond, msg)
#elif !defined(__cplusplus) && defined(__STDC_VERSION__) && \
    __STDC_VERSION__ >= 201112L
#define PF_STATIC_ASSERT(cond, msg)	_Static_assert(cond, msg)
#else
/* Pre-C11 / pre-C++11: no checks, the ABI test still covers the layout. */
#define PF_STATIC_ASSERT(cond, msg)	struct pf_static_assert_unused
#endif

#define PF_SIZE_CHECK(type, size) \
	PF_STATIC_ASSERT(sizeof(type) == (size), "pf ABI: sizeof(" #type ")")
#define PF_OFFSET_CHECK(type, field, off) \
	PF_STATIC_ASSERT(offsetof(type, field) == (off), \
	    "pf ABI: offsetof(" #type ", " #field ")")

/* pfsync export structures are byte-packed on FreeBSD too. */
#define PF_PACKED	__attribute__((__packed__))

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------
 * Sizes
 * ------------------------------------------------------------------------ */

/*
 * Anchor paths are char[MAXPATHLEN] on FreeBSD, where MAXPATHLEN is 1024.
 * glibc's MAXPATHLEN/PATH_MAX is 4096, which would make pfioc_rule 9184
 * bytes instead of 3040 (and unencodable as a BSD ioctl), so the pf ABI
 * gets its own constant.  Never use MAXPATHLEN for pf structures.
 */
#define PF_MAXPATHLEN		1024

/* Interface names: IFNAMSIZ (16) on every system pf runs on. */
#define PF_IFNAMSIZ		16

#define PF_MD5_DIGEST_LENGTH	16
#define PF_TABLE_NAME_SIZE	32
#define PF_QNAME_SIZE		64
#define PF_RULE_LABEL_SIZE	64
#define PF_TAG_NAME_SIZE	64
#define PF_ANCHOR_NAME_SIZE	64
#define PF_OSFP_LEN		32
#define PF_SKIP_COUNT		8

/* ------------------------------------------------------------------------
 * Enumerations shared by rules, states and ioctls (netpfil/pf/pf.h)
 * ------------------------------------------------------------------------ */

/* Packet direction (pf_rule.direction, pfioc_natlook.direction, ...). */
enum { PF_INOUT, PF_IN, PF_OUT };

/* Rule actions (pf_rule.action). */
enum { PF_PASS, PF_DROP, PF_SCRUB, PF_NOSCRUB, PF_NAT, PF_NONAT,
	PF_BINAT, PF_NOBINAT, PF_RDR, PF_NORDR, PF_SYNPROXY_DROP, PF_DEFER };

/* Rulesets of an anchor; ALTQ and TABLE only appear in transactions. */
enum { PF_RULESET_SCRUB, PF_RULESET_FILTER, PF_RULESET_NAT,
	PF_RULESET_BINAT, PF_RULESET_RDR, PF_RULESET_MAX };
#define PF_RULESET_ALTQ		(PF_RULESET_MAX)
#define PF_RULESET_TABLE	(PF_RULESET_MAX + 1)

/* Port/uid/gid comparison operators (pf_rule_addr.port_op, ...). */
enum { PF_OP_NONE, PF_OP_IRG, PF_OP_EQ, PF_OP_NE, PF_OP_LT,
	PF_OP_LE, PF_OP_GT, PF_OP_GE, PF_OP_XRG, PF_OP_RRG };

/* DIOCSETDEBUG levels. */
enum { PF_DEBUG_NONE, PF_DEBUG_URGENT, PF_DEBUG_MISC, PF_DEBUG_NOISY };

/* DIOCCHANGERULE / DIOCCHANGEADDR actions. */
enum { PF_CHANGE_NONE, PF_CHANGE_ADD_HEAD, PF_CHANGE_ADD_TAIL,
	PF_CHANGE_ADD_BEFORE, PF_CHANGE_ADD_AFTER,
	PF_CHANGE_REMOVE, PF_CHANGE_GET_TICKET };

/* DIOCGETRULE action: clear the rule's counters while reading it. */
enum { PF_GET_NONE, PF_GET_CLR_CNTR };

/* Index into pfsync_state.key[]: the wire side and the stack side. */
enum { PF_SK_WIRE, PF_SK_STACK, PF_SK_BOTH };

/*
 * Timeout indices (pfioc_tm.timeout, pf_rule.timeout[]).  Values below
 * PFTM_MAX are real slots; PURGE and UNLINKED are kernel-internal.
 */
enum { PFTM_TCP_FIRST_PACKET, PFTM_TCP_OPENING, PFTM_TCP_ESTABLISHED,
	PFTM_TCP_CLOSING, PFTM_TCP_FIN_WAIT, PFTM_TCP_CLOSED,
	PFTM_UDP_FIRST_PACKET, PFTM_UDP_SINGLE, PFTM_UDP_MULTIPLE,
	PFTM_ICMP_FIRST_PACKET, PFTM_ICMP_ERROR_REPLY,
	PFTM_OTHER_FIRST_PACKET, PFTM_OTHER_SINGLE,
	PFTM_OTHER_MULTIPLE, PFTM_FRAG, PFTM_INTERVAL,
	PFTM_ADAPTIVE_START, PFTM_ADAPTIVE_END, PFTM_SRC_NODE,
	PFTM_TS_DIFF, PFTM_MAX, PFTM_PURGE, PFTM_UNLINKED };

/* Default timeouts, in seconds. */
#define PFTM_TCP_FIRST_PACKET_VAL	120
#define PFTM_TCP_OPENING_VAL		30
#define PFTM_TCP_ESTABLISHED_VAL	86400	/* one day */
#define PFTM_TCP_CLOSING_VAL		900
#define PFTM_TCP_FIN_WAIT_VAL		45
#define PFTM_TCP_CLOSED_VAL		90
#define PFTM_UDP_FIRST_PACKET_VAL	60
#define PFTM_UDP_SINGLE_VAL		30
#define PFTM_UDP_MULTIPLE_VAL		60
#define PFTM_ICMP_FIRST_PACKET_VAL	20
#define PFTM_ICMP_ERROR_REPLY_VAL	10
#define PFTM_OTHER_FIRST_PACKET_VAL	60
#define PFTM_OTHER_SINGLE_VAL		30
#define PFTM_OTHER_MULTIPLE_VAL		60
#define PFTM_FRAG_VAL			30
#define PFTM_INTERVAL_VAL		10
#define PFTM_SRC_NODE_VAL		0
#define PFTM_TS_DIFF_VAL		30

/* Route options (pf_rule.rt). */
enum { PF_NOPFROUTE, PF_FASTROUTE, PF_ROUTETO, PF_DUPTO, PF_REPLYTO };

/* Memory pools (pfioc_limit.index) and their default hard limits. */
enum { PF_LIMIT_STATES, PF_LIMIT_SRC_NODES, PF_LIMIT_FRAGS,
	PF_LIMIT_TABLE_ENTRIES, PF_LIMIT_MAX };
#define PFSTATE_HIWAT		100000	/* states */
#define PFSTATE_ADAPT_START	60000	/* adaptive timeouts: start scaling */
#define PFSTATE_ADAPT_END	120000	/* adaptive timeouts: reach zero */
#define PFSNODE_HIWAT		10000	/* source nodes */
#define PFFRAG_FRENT_HIWAT	5000	/* fragment entries */
#define PFR_KENTRY_HIWAT	200000	/* table entries */

/* Address pools (pf_pool.opts). */
#define PF_POOL_IDMASK		0x0f
enum { PF_POOL_NONE, PF_POOL_BITMASK, PF_POOL_RANDOM,
	PF_POOL_SRCHASH, PF_POOL_ROUNDROBIN };
#define PF_POOL_TYPEMASK	0x0f
#define PF_POOL_STICKYADDR	0x20

/* Address kinds (pf_addr_wrap.type). */
enum { PF_ADDR_ADDRMASK, PF_ADDR_NOROUTE, PF_ADDR_DYNIFTL,
	PF_ADDR_TABLE, PF_ADDR_URPFFAILED, PF_ADDR_RANGE };

/* Window scale in pfsync_state_peer.wscale. */
#define PF_WSCALE_FLAG		0x80
#define PF_WSCALE_MASK		0x0f

/* pf_rule.log */
#define PF_LOG			0x01
#define PF_LOG_ALL		0x02
#define PF_LOG_SOCKET_LOOKUP	0x04

/*
 * State levels of the SYN proxy, stored in pfsync_state_peer.state after
 * the TCP states.  FreeBSD's TCP_NSTATES is 11; Linux has no such constant,
 * and the values travel in exported states, so they are spelled out.
 */
#define PF_TCPS_PROXY_SRC	11
#define PF_TCPS_PROXY_DST	12

/* UDP and "other protocol" pseudo state levels. */
#define PFUDPS_NO_TRAFFIC	0
#define PFUDPS_SINGLE		1
#define PFUDPS_MULTIPLE		2
#define PFUDPS_NSTATES		3
#define PFUDPS_NAMES { "NO_TRAFFIC", "SINGLE", "MULTIPLE", NULL }

#define PFOTHERS_NO_TRAFFIC	0
#define PFOTHERS_SINGLE		1
#define PFOTHERS_MULTIPLE	2
#define PFOTHERS_NSTATES	3
#define PFOTHERS_NAMES { "NO_TRAFFIC", "SINGLE", "MULTIPLE", NULL }

/* ------------------------------------------------------------------------
 * Status counters (pf_status)
 * ------------------------------------------------------------------------ */

/* Why a packet was passed or dropped: pf_status.counters[]. */
#define PFRES_MATCH	0	/* a rule matched */
#define PFRES_BADOFF	1	/* header offset out of range */
#define PFRES_FRAG	2	/* non-first fragment */
#define PFRES_SHORT	3	/* truncated packet */
#define PFRES_NORM	4	/* dropped by the normaliser */
#define PFRES_MEMORY	5	/* out of memory */
#define PFRES_TS	6	/* bad TCP timestamp */
#define PFRES_CONGEST	7	/* congestion */
#define PFRES_IPOPTIONS	8	/* IP options present */
#define PFRES_PROTCKSUM	9	/* bad protocol checksum */
#define PFRES_BADSTATE	10	/* state did not match */
#define PFRES_STATEINS	11	/* state insertion failed */
#define PFRES_MAXSTATES	12	/* state limit reached */
#define PFRES_SRCLIMIT	13	/* source node or connection limit */
#define PFRES_SYNPROXY	14	/* handled by the SYN proxy */
#define PFRES_MAPFAILED	15	/* translation address unavailable */
#define PFRES_MAX	16

/* The strings pfctl -s info prints for those reasons, in index order. */
#define PFRES_NAMES { "match", "bad-offset", "fragment", "short", \
	"normalize", "memory", "bad-timestamp", "congestion", "ip-option", \
	"proto-cksum", "state-mismatch", "state-insert", "state-limit", \
	"src-limit", "synproxy", "map-failed", NULL }

/* Limit counters: pf_status.lcounters[]. */
#define LCNT_STATES		0
#define LCNT_SRCSTATES		1
#define LCNT_SRCNODES		2
#define LCNT_SRCCONN		3
#define LCNT_SRCCONNRATE	4
#define LCNT_OVERLOAD_TABLE	5
#define LCNT_OVERLOAD_FLUSH	6
#define LCNT_MAX		7

#define LCNT_NAMES { "max states per rule", "max-src-states", \
	"max-src-nodes", "max-src-conn", "max-src-conn-rate", \
	"overload table insertion", "overload flush states", NULL }

/* State table operations: pf_status.fcounters[]. */
#define FCNT_STATE_SEARCH	0
#define FCNT_STATE_INSERT	1
#define FCNT_STATE_REMOVALS	2
#define FCNT_MAX		3

/*
 * pfctl's pfctl_parser.h defines FCNT_NAMES too; the replacement list here
 * is token-for-token the same, so both definitions may coexist.
 */
#define FCNT_NAMES { "searches", "inserts", "removals", NULL }

/* Source node operations: pf_status.scounters[]. */
#define SCNT_SRC_NODE_SEARCH	0
#define SCNT_SRC_NODE_INSERT	1
#define SCNT_SRC_NODE_REMOVALS	2
#define SCNT_MAX		3

/* DIOCGETSTATUS argument. */
struct pf_status {
	uint64_t	counters[PFRES_MAX];
	uint64_t	lcounters[LCNT_MAX];
	uint64_t	fcounters[FCNT_MAX];
	uint64_t	scounters[SCNT_MAX];
	uint64_t	pcounters[2][2][3];	/* [af][dir][pass,drop,-] */
	uint64_t	bcounters[2][2];	/* [af][dir] */
	uint32_t	running;
	uint32_t	states;
	uint32_t	src_nodes;
	uint32_t	since;			/* wall clock, seconds */
	uint32_t	debug;
	uint32_t	hostid;			/* network byte order */
	char		ifname[PF_IFNAMSIZ];	/* loginterface */
	uint8_t		pf_chksum[PF_MD5_DIGEST_LENGTH];
};

/* ------------------------------------------------------------------------
 * Addresses
 * ------------------------------------------------------------------------ */

/* An IPv4 or IPv6 address; IPv4 lives in the first four bytes. */
union pf_addr_pfa {
	struct in_addr		v4;
	struct in6_addr		v6;
	uint8_t			addr8[16];
	uint16_t		addr16[8];
	uint32_t		addr32[4];
};

struct pf_addr {
	union pf_addr_pfa	pfa;
#define v4	pfa.v4
#define v6	pfa.v6
#define addr8	pfa.addr8
#define addr16	pfa.addr16
#define addr32	pfa.addr32
};

/* Modifiers of a dynamic interface address (pf_addr_wrap.iflags). */
#define PFI_AFLAG_NETWORK	0x01
#define PFI_AFLAG_BROADCAST	0x02
#define PFI_AFLAG_PEER		0x04
#define PFI_AFLAG_MODEMASK	0x07
#define PFI_AFLAG_NOALIAS	0x08

struct pfi_dynaddr;		/* kernel objects, only pointed to */
struct pfr_ktable;
struct pfi_kif;
struct pf_rule;
struct pf_anchor;
struct ifnet;
struct ifg_group;

/* Address and mask (or first and last address of a PF_ADDR_RANGE). */
struct pf_addr_wrap_a {
	struct pf_addr		addr;
	struct pf_addr		mask;
};

union pf_addr_wrap_v {
	struct pf_addr_wrap_a	a;
	char			ifname[PF_IFNAMSIZ];
	char			tblname[PF_TABLE_NAME_SIZE];
};

/*
 * Kernel pointer on input.  On output (DIOCGETRULE, DIOCGETADDR) the kernel
 * stores the table entry count (-1: no table) or the dynamic address count
 * in the int members instead.
 */
union pf_addr_wrap_p {
	struct pfi_dynaddr	*dyn;
	struct pfr_ktable	*tbl;
	int			dyncnt;
	int			tblcnt;
};

struct pf_addr_wrap {
	union pf_addr_wrap_v	v;
	union pf_addr_wrap_p	p;
	uint8_t			type;		/* PF_ADDR_* */
	uint8_t			iflags;		/* PFI_AFLAG_* */
};

/* Address, ports and negation of one side of a rule. */
struct pf_rule_addr {
	struct pf_addr_wrap	addr;
	uint16_t		port[2];	/* network byte order */
	uint8_t			neg;
	uint8_t			port_op;	/* PF_OP_* */
};

/* Userland equality/zero tests for pf_addr, af is AF_INET or AF_INET6. */
#define PF_AEQ(a, b, af) \
	(((af) == AF_INET && (a)->addr32[0] == (b)->addr32[0]) || \
	((af) == AF_INET6 && \
	(a)->addr32[0] == (b)->addr32[0] && \
	(a)->addr32[1] == (b)->addr32[1] && \
	(a)->addr32[2] == (b)->addr32[2] && \
	(a)->addr32[3] == (b)->addr32[3]))

#define PF_ANEQ(a, b, af) \
	(((af) == AF_INET && (a)->addr32[0] != (b)->addr32[0]) || \
	((af) == AF_INET6 && \
	((a)->addr32[0] != (b)->addr32[0] || \
	(a)->addr32[1] != (b)->addr32[1] || \
	(a)->addr32[2] != (b)->addr32[2] || \
	(a)->addr32[3] != (b)->addr32[3])))

#define PF_AZERO(a, af) \
	(((af) == AF_INET && !(a)->addr32[0]) || \
	((af) == AF_INET6 && !(a)->addr32[0] && !(a)->addr32[1] && \
	!(a)->addr32[2] && !(a)->addr32[3]))

/* Copy an address of family af (4 bytes for AF_INET, else all 16). */
#define PF_ACPY(a, b, af) \
	((void)memcpy((a), (b), (af) == AF_INET ? 4 : sizeof(struct pf_addr)))

/* ------------------------------------------------------------------------
 * Address pools (translation and route-to targets)
 * ------------------------------------------------------------------------ */

/*
 * Kernel list links are described with plain pointer structs rather than
 * <sys/queue.h> macros, so the layout does not depend on which queue.h is
 * in use; member names match the TAILQ macros so pfctl's list code works.
 */
struct pf_pooladdr {
	struct pf_addr_wrap	addr;
	struct {					/* kernel link */
		struct pf_pooladdr	*tqe_next;
		struct pf_pooladdr	**tqe_prev;
	}			entries;
	char			ifname[PF_IFNAMSIZ];
	struct pfi_kif		*kif;			/* kernel pointer */
};

/* List head of pool addresses (TAILQ_HEAD-compatible). */
struct pf_palist {
	struct pf_pooladdr	*tqh_first;
	struct pf_pooladdr	**tqh_last;
};

union pf_poolhashkey_pfk {
	uint8_t			key8[16];
	uint16_t		key16[8];
	uint32_t		key32[4];
};

struct pf_poolhashkey {
	union pf_poolhashkey_pfk pfk;
#define key8	pfk.key8
#define key16	pfk.key16
#define key32	pfk.key32
};

struct pf_pool {
	struct pf_palist	list;			/* kernel list */
	struct pf_pooladdr	*cur;			/* kernel pointer */
	struct pf_poolhashkey	key;
	struct pf_addr		counter;
	int			tblidx;
	uint16_t		proxy_port[2];
	uint8_t			opts;			/* PF_POOL_* */
};

/* ------------------------------------------------------------------------
 * Passive OS fingerprints
 * ------------------------------------------------------------------------ */

/* Class, version and subtype packed 10/10/10 bits. */
typedef uint32_t pf_osfp_t;
#define PF_OSFP_ANY		((pf_osfp_t)0)
#define PF_OSFP_UNKNOWN		((pf_osfp_t)-1)
#define PF_OSFP_NOMATCH		((pf_osfp_t)-2)

/* pf_osfp_entry.fp_enflags */
#define PF_OSFP_EXPANDED	0x001
#define PF_OSFP_GENERIC		0x002
#define PF_OSFP_NODETAIL	0x004

struct pf_osfp_entry {
	struct {					/* kernel link */
		struct pf_osfp_entry	*sle_next;
	}			fp_entry;
	pf_osfp_t		fp_os;
	int			fp_enflags;
	char			fp_class_nm[PF_OSFP_LEN];
	char			fp_version_nm[PF_OSFP_LEN];
	char			fp_subtype_nm[PF_OSFP_LEN];
};

#define PF_OSFP_ENTRY_EQ(a, b) \
	((a)->fp_os == (b)->fp_os && \
	memcmp((a)->fp_class_nm, (b)->fp_class_nm, PF_OSFP_LEN) == 0 && \
	memcmp((a)->fp_version_nm, (b)->fp_version_nm, PF_OSFP_LEN) == 0 && \
	memcmp((a)->fp_subtype_nm, (b)->fp_subtype_nm, PF_OSFP_LEN) == 0)

/* Bit budget of a pf_osfp_t: 1 reserved, 1 unused, then three fields. */
#define _FP_RESERVED_BIT	1
#define _FP_UNUSED_BITS		1
#define _FP_CLASS_BITS		10
#define _FP_VERSION_BITS	10
#define _FP_SUBTYPE_BITS	10

#define PF_OSFP_FIELD_MASK(bits)	((1 << (bits)) - 1)

#define PF_OSFP_UNPACK(fp, cls, ver, sub) do { \
	(cls) = ((fp) >> (_FP_VERSION_BITS + _FP_SUBTYPE_BITS)) & \
	    PF_OSFP_FIELD_MASK(_FP_CLASS_BITS); \
	(ver) = ((fp) >> _FP_SUBTYPE_BITS) & \
	    PF_OSFP_FIELD_MASK(_FP_VERSION_BITS); \
	(sub) = (fp) & PF_OSFP_FIELD_MASK(_FP_SUBTYPE_BITS); \
} while (0)

#define PF_OSFP_PACK(fp, cls, ver, sub) do { \
	(fp) = (((cls) & PF_OSFP_FIELD_MASK(_FP_CLASS_BITS)) << \
	    (_FP_VERSION_BITS + _FP_SUBTYPE_BITS)) | \
	    (((ver) & PF_OSFP_FIELD_MASK(_FP_VERSION_BITS)) << \
	    _FP_SUBTYPE_BITS) | \
	    ((sub) & PF_OSFP_FIELD_MASK(_FP_SUBTYPE_BITS)); \
} while (0)

/* Packed TCP options of a SYN, PF_OSFP_TCPOPT_BITS bits per option. */
typedef uint64_t pf_tcpopts_t;

/* fp_flags */
#define PF_OSFP_WSIZE_MOD	0x0001
#define PF_OSFP_WSIZE_DC	0x0002
#define PF_OSFP_WSIZE_MSS	0x0004
#define PF_OSFP_WSIZE_MTU	0x0008
#define PF_OSFP_PSIZE_MOD	0x0010
#define PF_OSFP_PSIZE_DC	0x0020
#define PF_OSFP_WSCALE		0x0040
#define PF_OSFP_WSCALE_MOD	0x0080
#define PF_OSFP_WSCALE_DC	0x0100
#define PF_OSFP_MSS		0x0200
#define PF_OSFP_MSS_MOD		0x0400
#define PF_OSFP_MSS_DC		0x0800
#define PF_OSFP_DF		0x1000
#define PF_OSFP_TS0		0x2000
#define PF_OSFP_INET6		0x4000

#define PF_OSFP_MAXTTL_OFFSET	40

#define PF_OSFP_TCPOPT_NOP	0x0
#define PF_OSFP_TCPOPT_WSCALE	0x1
#define PF_OSFP_TCPOPT_MSS	0x2
#define PF_OSFP_TCPOPT_SACK	0x3
#define PF_OSFP_TCPOPT_TS	0x4
#define PF_OSFP_TCPOPT_BITS	3
#define PF_OSFP_MAX_OPTS \
	((sizeof(pf_tcpopts_t) * 8) / PF_OSFP_TCPOPT_BITS)

/* List of entries sharing one fingerprint (SLIST_HEAD-compatible). */
struct pf_osfp_enlist {
	struct pf_osfp_entry	*slh_first;
};

/* One SYN signature; used by pf_osfp.c when linked into userland. */
struct pf_os_fingerprint {
	struct pf_osfp_enlist	fp_oses;
	pf_tcpopts_t		fp_tcpopts;
	uint16_t		fp_wsize;
	uint16_t		fp_psize;
	uint16_t		fp_mss;
	uint16_t		fp_flags;
	uint8_t			fp_optcnt;
	uint8_t			fp_wscale;
	uint8_t			fp_ttl;
	struct {
		struct pf_os_fingerprint *sle_next;
	}			fp_next;
};

/* DIOCOSFPADD / DIOCOSFPGET argument. */
struct pf_osfp_ioctl {
	struct pf_osfp_entry	fp_os;
	pf_tcpopts_t		fp_tcpopts;
	uint16_t		fp_wsize;
	uint16_t		fp_psize;
	uint16_t		fp_mss;
	uint16_t		fp_flags;
	uint8_t			fp_optcnt;
	uint8_t			fp_wscale;
	uint8_t			fp_ttl;
	int			fp_getnum;	/* DIOCOSFPGET: entry number */
};

/* ------------------------------------------------------------------------
 * Rules
 * ------------------------------------------------------------------------ */

/* Kernel pointer in the kernel; rule number when exported. */
union pf_rule_ptr {
	struct pf_rule		*ptr;
	uint32_t		nr;
};

struct pf_rule_uid {
	uid_t			uid[2];
	uint8_t			op;
};

struct pf_rule_gid {
	uid_t			gid[2];		/* uid_t, as on FreeBSD */
	uint8_t			op;
};

/* Skip step slots (pf_rule.skip[]), FreeBSD 12 order. */
#define PF_SKIP_IFP		0
#define PF_SKIP_DIR		1
#define PF_SKIP_AF		2
#define PF_SKIP_PROTO		3
#define PF_SKIP_SRC_ADDR	4
#define PF_SKIP_SRC_PORT	5
#define PF_SKIP_DST_ADDR	6
#define PF_SKIP_DST_PORT	7

/* pf_rule.keep_state */
#define PF_STATE_NORMAL		0x1
#define PF_STATE_MODULATE	0x2
#define PF_STATE_SYNPROXY	0x3

/* pf_rule.flush */
#define PF_FLUSH		0x01
#define PF_FLUSH_GLOBAL		0x02

/* pf_rule.prio / set_prio */
#define PF_PRIO_ZERO		0xff	/* matches "prio 0" */
#define PF_PRIO_MAX		7

struct pf_rule_max_src_conn_rate {
	uint32_t		limit;
	uint32_t		seconds;
};

struct pf_rule_divert {
	struct pf_addr		addr;
	uint16_t		port;
};

struct pf_rule {
	struct pf_rule_addr	src;
	struct pf_rule_addr	dst;
	union pf_rule_ptr	skip[PF_SKIP_COUNT];	/* out: rule numbers */
	char			label[PF_RULE_LABEL_SIZE];
	char			ifname[PF_IFNAMSIZ];
	char			qname[PF_QNAME_SIZE];
	char			pqname[PF_QNAME_SIZE];
	char			tagname[PF_TAG_NAME_SIZE];
	char			match_tagname[PF_TAG_NAME_SIZE];
	char			overload_tblname[PF_TABLE_NAME_SIZE];

	struct {					/* kernel link */
		struct pf_rule		*tqe_next;
		struct pf_rule		**tqe_prev;
	}			entries;
	struct pf_pool		rpool;

	uint64_t		evaluations;
	uint64_t		packets[2];		/* [in, out] */
	uint64_t		bytes[2];

	struct pfi_kif		*kif;			/* kernel pointer */
	struct pf_anchor	*anchor;		/* kernel pointer */
	struct pfr_ktable	*overload_tbl;		/* kernel pointer */

	pf_osfp_t		os_fingerprint;

	int			rtableid;
	uint32_t		timeout[PFTM_MAX];
	uint32_t		max_states;
	uint32_t		max_src_nodes;
	uint32_t		max_src_states;
	uint32_t		max_src_conn;
	struct pf_rule_max_src_conn_rate max_src_conn_rate;
	uint32_t		qid;
	uint32_t		pqid;
	uint32_t		rt_listid;
	uint32_t		nr;
	uint32_t		prob;
	uid_t			cuid;
	pid_t			cpid;

	/* FreeBSD counter_u64_t: kernel pointers, see u_* below. */
	uint64_t		*states_cur;
	uint64_t		*states_tot;
	uint64_t		*src_nodes;

	uint16_t		return_icmp;		/* (type << 8) | code */
	uint16_t		return_icmp6;
	uint16_t		max_mss;
	uint16_t		tag;
	uint16_t		match_tag;
	uint16_t		scrub_flags;

	struct pf_rule_uid	uid;
	struct pf_rule_gid	gid;

	uint32_t		rule_flag;		/* PFRULE_* */
	uint8_t			action;			/* PF_PASS ... */
	uint8_t			direction;
	uint8_t			log;
	uint8_t			logif;
	uint8_t			quick;
	uint8_t			ifnot;
	uint8_t			match_tag_not;
	uint8_t			natpass;

	uint8_t			keep_state;		/* PF_STATE_* */
	uint8_t			af;			/* BSD sa_family_t: 1 byte */
	uint8_t			proto;
	uint8_t			type;			/* ICMP type + 1 */
	uint8_t			code;			/* ICMP code + 1 */
	uint8_t			flags;
	uint8_t			flagset;
	uint8_t			min_ttl;
	uint8_t			allow_opts;
	uint8_t			rt;			/* PF_ROUTETO ... */
	uint8_t			return_ttl;
	uint8_t			tos;
	uint8_t			set_tos;
	uint8_t			anchor_relative;
	uint8_t			anchor_wildcard;

	uint8_t			flush;			/* PF_FLUSH* */
	uint8_t			prio;
	uint8_t			set_prio[2];

	struct pf_rule_divert	divert;

	/* Counter values, filled in by DIOCGETRULE. */
	uint64_t		u_states_cur;
	uint64_t		u_states_tot;
	uint64_t		u_src_nodes;
};

/* pf_rule.rule_flag */
#define PFRULE_DROP		0x0000
#define PFRULE_RETURNRST	0x0001
#define PFRULE_FRAGMENT		0x0002
#define PFRULE_RETURNICMP	0x0004
#define PFRULE_RETURN		0x0008
#define PFRULE_NOSYNC		0x0010
#define PFRULE_SRCTRACK		0x0020	/* source tracking, global */
#define PFRULE_RULESRCTRACK	0x0040	/* source tracking, per rule */
#define PFRULE_REFS		0x0080	/* kernel: rule is referenced */
/* scrub options share rule_flag */
#define PFRULE_NODF		0x0100
#define PFRULE_RANDOMID		0x0800
#define PFRULE_REASSEMBLE_TCP	0x1000
#define PFRULE_SET_TOS		0x2000
#define PFRULE_IFBOUND		0x00010000	/* states bound to interface */
#define PFRULE_STATESLOPPY	0x00020000	/* sloppy state tracking */

/* pfsync_state.state_flags (and PFSTATE_SETPRIO in pf_rule.scrub_flags) */
#define PFSTATE_ALLOWOPTS	0x01
#define PFSTATE_SLOPPY		0x02
#define PFSTATE_NOSYNC		0x08
#define PFSTATE_ACK		0x10
#define PFSTATE_SETPRIO		0x0200
#define PFSTATE_SETMASK		(PFSTATE_SETPRIO)

/* Translation port ranges (pf_pool proxy ports). */
#define PF_DPORT_RANGE		0x01
#define PF_RPORT_RANGE		0x02

/* Scrub state flags (pfsync_state_scrub.pfss_flags). */
#define PFSS_TIMESTAMP		0x0001
#define PFSS_PAWS		0x0010
#define PFSS_PAWS_IDLED		0x0020
#define PFSS_DATA_TS		0x0040
#define PFSS_DATA_NOTS		0x0080

/* ------------------------------------------------------------------------
 * Source nodes (DIOCGETSRCNODES elements)
 * ------------------------------------------------------------------------ */

struct pf_threshold {
	uint32_t		limit;
	uint32_t		seconds;
	uint32_t		count;
	uint32_t		last;
};
#define PF_THRESHOLD_MULT	1000
#define PF_THRESHOLD_MAX	(0xffffffffU / PF_THRESHOLD_MULT)

struct pf_src_node {
	struct {					/* kernel link */
		struct pf_src_node	*le_next;
		struct pf_src_node	**le_prev;
	}			entry;
	struct pf_addr		addr;
	struct pf_addr		raddr;
	union pf_rule_ptr	rule;			/* out: rule number */
	struct pfi_kif		*kif;			/* kernel pointer */
	uint64_t		bytes[2];
	uint64_t		packets[2];
	uint32_t		states;
	uint32_t		conn;
	struct pf_threshold	conn_rate;
	uint32_t		creation;		/* out: age, seconds */
	uint32_t		expire;			/* out: seconds left */
	uint8_t			af;			/* BSD sa_family_t */
	uint8_t			ruletype;
};

/* ------------------------------------------------------------------------
 * States as exported by DIOCGETSTATE(S) / imported by DIOCADDSTATE
 * (pfsync format: byte-packed, most fields in network byte order)
 * ------------------------------------------------------------------------ */

/* Identity of a state: id (as exported) and creator host id. */
struct pf_state_cmp {
	uint64_t		id;
	uint32_t		creatorid;
	uint8_t			direction;
	uint8_t			pad[3];
};

/* Endpoint of a state in the older exported formats. */
struct pf_state_host {
	struct pf_addr		addr;
	uint16_t		port;
	uint16_t		pad;
};

#define PFSYNC_SCRUB_FLAG_VALID	0x01

struct pfsync_state_scrub {
	uint16_t		pfss_flags;
	uint8_t			pfss_ttl;
	uint8_t			scrub_flag;	/* PFSYNC_SCRUB_FLAG_VALID */
	uint32_t		pfss_ts_mod;
} PF_PACKED;

struct pfsync_state_peer {
	struct pfsync_state_scrub scrub;
	uint32_t		seqlo;
	uint32_t		seqhi;
	uint32_t		seqdiff;
	uint16_t		max_win;
	uint16_t		mss;
	uint8_t			state;		/* TCPS_* or PF*S_* level */
	uint8_t			wscale;
	uint8_t			pad[6];
} PF_PACKED;

/* Addresses and ports of one side (wire or stack) of a state. */
struct pfsync_state_key {
	struct pf_addr		addr[2];
	uint16_t		port[2];
};

struct pfsync_state {
	uint64_t		id;		/* kernel's htobe64() value */
	char			ifname[PF_IFNAMSIZ];
	struct pfsync_state_key	key[2];		/* [PF_SK_WIRE], [PF_SK_STACK] */
	struct pfsync_state_peer src;
	struct pfsync_state_peer dst;
	struct pf_addr		rt_addr;
	uint32_t		rule;		/* rule numbers, -1 for none */
	uint32_t		anchor;
	uint32_t		nat_rule;
	uint32_t		creation;	/* age, seconds */
	uint32_t		expire;		/* seconds left */
	uint32_t		packets[2][2];	/* [dir] = {high, low} */
	uint32_t		bytes[2][2];
	uint32_t		creatorid;
	uint8_t			af;		/* BSD sa_family_t: 1 byte */
	uint8_t			proto;
	uint8_t			direction;
	uint8_t			__spare[2];
	uint8_t			log;
	uint8_t			state_flags;	/* PFSTATE_* */
	uint8_t			timeout;	/* PFTM_* */
	uint8_t			sync_flags;	/* PFSYNC_FLAG_* */
	uint8_t			updates;
} PF_PACKED;

#define PFSYNC_FLAG_SRCNODE	0x04
#define PFSYNC_FLAG_NATSRCNODE	0x08

/* Rebuild a 64-bit counter from its exported {high, low} pair. */
#define pf_state_counter_from_pfsync(s) \
	(((uint64_t)((s)[0]) << 32) | (uint64_t)((s)[1]))

/* ------------------------------------------------------------------------
 * Rulesets and anchors (userland view, as pfctl and pf_ruleset.c use it;
 * never passed through an ioctl)
 * ------------------------------------------------------------------------ */

#define PF_RESERVED_ANCHOR	"_pf"

/* Queue of rules (TAILQ_HEAD-compatible). */
struct pf_rulequeue {
	struct pf_rule		*tqh_first;
	struct pf_rule		**tqh_last;
};

struct pf_ruleset {
	struct {
		struct pf_rulequeue	queues[2];
		struct {
			struct pf_rulequeue	*ptr;
			struct pf_rule		**ptr_array;
			uint32_t		rcount;
			uint32_t		ticket;
			int			open;
		}			active, inactive;
	}			rules[PF_RULESET_MAX];
	struct pf_anchor	*anchor;
	uint32_t		tticket;
	int			tables;
	int			topen;
};

/* Red-black tree heads and links (RB_HEAD/RB_ENTRY-compatible). */
struct pf_anchor_global {
	struct pf_anchor	*rbh_root;
};

struct pf_anchor_node {
	struct pf_anchor	*rbh_root;
};

struct pf_anchor {
	struct {
		struct pf_anchor	*rbe_left;
		struct pf_anchor	*rbe_right;
		struct pf_anchor	*rbe_parent;
		int			rbe_color;
	}			entry_global;
	struct {
		struct pf_anchor	*rbe_left;
		struct pf_anchor	*rbe_right;
		struct pf_anchor	*rbe_parent;
		int			rbe_color;
	}			entry_node;
	struct pf_anchor	*parent;
	struct pf_anchor_node	children;
	char			name[PF_ANCHOR_NAME_SIZE];
	char			path[PF_MAXPATHLEN];
	struct pf_ruleset	ruleset;
	int			refcnt;		/* anchor rules referring to it */
	int			match;		/* scratch for pfctl */
};

struct pf_anchor_stackframe;
struct pfioc_rule;

/* Functions pf_ruleset.c / pf_osfp.c provide when built into userland. */
int			 pf_get_ruleset_number(uint8_t);
void			 pf_init_ruleset(struct pf_ruleset *);
int			 pf_anchor_setup(struct pf_rule *,
			    const struct pf_ruleset *, const char *);
int			 pf_anchor_copyout(const struct pf_ruleset *,
			    const struct pf_rule *, struct pfioc_rule *);
void			 pf_anchor_remove(struct pf_rule *);
void			 pf_remove_if_empty_ruleset(struct pf_ruleset *);
struct pf_ruleset	*pf_find_ruleset(const char *);
struct pf_ruleset	*pf_find_or_create_ruleset(const char *);
void			 pf_rs_initialize(void);

struct pf_osfp_ioctl;
int	pf_osfp_add(struct pf_osfp_ioctl *);
void	pf_osfp_flush(void);
int	pf_osfp_get(struct pf_osfp_ioctl *);
int	pf_osfp_match(struct pf_osfp_enlist *, pf_osfp_t);

/* ------------------------------------------------------------------------
 * Tables
 * ------------------------------------------------------------------------ */

/* pfr_table.pfrt_flags */
#define PFR_TFLAG_PERSIST	0x00000001
#define PFR_TFLAG_CONST		0x00000002
#define PFR_TFLAG_ACTIVE	0x00000004
#define PFR_TFLAG_INACTIVE	0x00000008
#define PFR_TFLAG_REFERENCED	0x00000010
#define PFR_TFLAG_REFDANCHOR	0x00000020
#define PFR_TFLAG_COUNTERS	0x00000040
#define PFR_TFLAG_USRMASK	(PFR_TFLAG_PERSIST | PFR_TFLAG_CONST | \
				 PFR_TFLAG_COUNTERS)
#define PFR_TFLAG_SETMASK	(PFR_TFLAG_ACTIVE | PFR_TFLAG_INACTIVE | \
				 PFR_TFLAG_REFERENCED | PFR_TFLAG_REFDANCHOR)
#define PFR_TFLAG_ALLMASK	(PFR_TFLAG_USRMASK | PFR_TFLAG_SETMASK)

/*
 * Name and anchor must be NUL-padded to their full length: the kernel
 * rejects garbage after the terminating NUL.
 */
struct pfr_table {
	char			pfrt_anchor[PF_MAXPATHLEN];
	char			pfrt_name[PF_TABLE_NAME_SIZE];
	uint32_t		pfrt_flags;		/* PFR_TFLAG_* */
	uint8_t			pfrt_fback;
};

/* Per-entry feedback (pfr_addr.pfra_fback, pfr_table.pfrt_fback). */
enum { PFR_FB_NONE, PFR_FB_MATCH, PFR_FB_ADDED, PFR_FB_DELETED,
	PFR_FB_CHANGED, PFR_FB_CLEARED, PFR_FB_DUPLICATE,
	PFR_FB_NOTMATCH, PFR_FB_CONFLICT, PFR_FB_NOCOUNT, PFR_FB_MAX };

union pfr_addr_u {
	struct in_addr		_pfra_ip4addr;
	struct in6_addr		_pfra_ip6addr;
};

struct pfr_addr {
	union pfr_addr_u	pfra_u;
	uint8_t			pfra_af;	/* already 1 byte on BSD */
	uint8_t			pfra_net;	/* prefix length */
	uint8_t			pfra_not;
	uint8_t			pfra_fback;	/* PFR_FB_* */
};
#define pfra_ip4addr	pfra_u._pfra_ip4addr
#define pfra_ip6addr	pfra_u._pfra_ip6addr

enum { PFR_DIR_IN, PFR_DIR_OUT, PFR_DIR_MAX };
enum { PFR_OP_BLOCK, PFR_OP_PASS, PFR_OP_ADDR_MAX, PFR_OP_TABLE_MAX };
#define PFR_OP_XPASS	PFR_OP_ADDR_MAX
enum { PFR_REFCNT_RULE, PFR_REFCNT_ANCHOR, PFR_REFCNT_MAX };

struct pfr_astats {
	struct pfr_addr		pfras_a;
	uint64_t		pfras_packets[PFR_DIR_MAX][PFR_OP_ADDR_MAX];
	uint64_t		pfras_bytes[PFR_DIR_MAX][PFR_OP_ADDR_MAX];
	long			pfras_tzero;
};

struct pfr_tstats {
	struct pfr_table	pfrts_t;
	uint64_t		pfrts_packets[PFR_DIR_MAX][PFR_OP_TABLE_MAX];
	uint64_t		pfrts_bytes[PFR_DIR_MAX][PFR_OP_TABLE_MAX];
	uint64_t		pfrts_match;
	uint64_t		pfrts_nomatch;
	long			pfrts_tzero;
	int			pfrts_cnt;
	int			pfrts_refcnt[PFR_REFCNT_MAX];
};
#define pfrts_name	pfrts_t.pfrt_name
#define pfrts_flags	pfrts_t.pfrt_flags

/* pfioc_table.pfrio_flags */
#define PFR_FLAG_ATOMIC		0x00000001	/* unused */
#define PFR_FLAG_DUMMY		0x00000002
#define PFR_FLAG_FEEDBACK	0x00000004
#define PFR_FLAG_CLSTATS	0x00000008
#define PFR_FLAG_ADDRSTOO	0x00000010
#define PFR_FLAG_REPLACE	0x00000020
#define PFR_FLAG_ALLRSETS	0x00000040
#define PFR_FLAG_ALLMASK	0x0000007f

/* Argument of every DIOCR* command. */
struct pfioc_table {
	struct pfr_table	pfrio_table;
	void			*pfrio_buffer;	/* user buffer */
	int			pfrio_esize;	/* element size */
	int			pfrio_size;	/* element count */
	int			pfrio_size2;
	int			pfrio_nadd;
	int			pfrio_ndel;
	int			pfrio_nchange;
	int			pfrio_flags;	/* PFR_FLAG_* */
	uint32_t		pfrio_ticket;
};
/* Other names the ioctls give to the same two slots. */
#define pfrio_exists	pfrio_nadd
#define pfrio_nzero	pfrio_nadd
#define pfrio_nmatch	pfrio_nadd
#define pfrio_naddr	pfrio_size2
#define pfrio_setflag	pfrio_size2
#define pfrio_clrflag	pfrio_nadd

#ifndef _SOCKADDR_UNION_DEFINED
#define _SOCKADDR_UNION_DEFINED
union sockaddr_union {
	struct sockaddr		sa;
	struct sockaddr_in	sin;
	struct sockaddr_in6	sin6;
};
#endif

/* ------------------------------------------------------------------------
 * Interfaces
 * ------------------------------------------------------------------------ */

union pfi_kif_glue {
	struct {					/* RB_ENTRY: 32 bytes */
		struct pfi_kif	*rbe_left;
		struct pfi_kif	*rbe_right;
		struct pfi_kif	*rbe_parent;
		int		rbe_color;
	}			_pfik_tree;
	struct {
		struct pfi_kif	*le_next;
		struct pfi_kif	**le_prev;
	}			_pfik_list;
};

/* DIOCIGETIFACES element, FreeBSD 12 (pfiio_esize 224). */
struct pfi_kif {
	char			pfik_name[PF_IFNAMSIZ];
	union pfi_kif_glue	_pfik_glue;		/* kernel links */
#define pfik_tree	_pfik_glue._pfik_tree
#define pfik_list	_pfik_glue._pfik_list
	uint64_t		pfik_packets[2][2][2];	/* [inet6][out][block] */
	uint64_t		pfik_bytes[2][2][2];
	uint32_t		pfik_tzero;		/* wall clock, seconds */
	unsigned int		pfik_flags;		/* PFI_IFLAG_* */
	struct ifnet		*pfik_ifp;		/* non-NULL: real interface */
	struct ifg_group	*pfik_group;		/* non-NULL: a group */
	unsigned int		pfik_rulerefs;
	struct {					/* kernel list */
		struct pfi_dynaddr	*tqh_first;
		struct pfi_dynaddr	**tqh_last;
	}			pfik_dynaddrs;
};

/* pfi_kif.pfik_flags */
#define PFI_IFLAG_REFS		0x0001	/* kernel: has state references */
#define PFI_IFLAG_SKIP		0x0100	/* "set skip on": user-settable */

/* DIOCIGETIFACES / DIOCSETIFFLAG / DIOCCLRIFFLAG argument. */
struct pfioc_iface {
	char			pfiio_name[PF_IFNAMSIZ];
	void			*pfiio_buffer;	/* user buffer */
	int			pfiio_esize;	/* element size: selects format */
	int			pfiio_size;
	int			pfiio_nzero;
	int			pfiio_flags;
};

/* ------------------------------------------------------------------------
 * ALTQ (netpfil/pf/pf_altq.h).  The V0/V1 pairs are selected by the
 * argument size of the ioctl; see PFIOC_USE_LATEST below.
 * ------------------------------------------------------------------------ */

struct cbq_opts {
	unsigned int		minburst;
	unsigned int		maxburst;
	unsigned int		pktsize;
	unsigned int		maxpktsize;
	unsigned int		ns_per_byte;
	unsigned int		maxidle;
	int			minidle;
	unsigned int		offtime;
	int			flags;
};

struct codel_opts {
	unsigned int		target;
	unsigned int		interval;
	int			ecn;
};

struct priq_opts {
	int			flags;
};

/* Service curves: m1/m2 slopes in bit/s, d in milliseconds. */
struct hfsc_opts_v0 {
	unsigned int		rtsc_m1;
	unsigned int		rtsc_d;
	unsigned int		rtsc_m2;
	unsigned int		lssc_m1;
	unsigned int		lssc_d;
	unsigned int		lssc_m2;
	unsigned int		ulsc_m1;
	unsigned int		ulsc_d;
	unsigned int		ulsc_m2;
	int			flags;
};

struct hfsc_opts_v1 {
	uint64_t		rtsc_m1;
	unsigned int		rtsc_d;
	uint64_t		rtsc_m2;
	uint64_t		lssc_m1;
	unsigned int		lssc_d;
	uint64_t		lssc_m2;
	uint64_t		ulsc_m1;
	unsigned int		ulsc_d;
	uint64_t		ulsc_m2;
	int			flags;
};

struct fairq_opts {
	unsigned int		nbuckets;
	unsigned int		hogs_m1;
	int			flags;
	unsigned int		lssc_m1;
	unsigned int		lssc_d;
	unsigned int		lssc_m2;
};

union pf_altq_v0_pq_u {
	struct cbq_opts		cbq_opts;
	struct codel_opts	codel_opts;
	struct priq_opts	priq_opts;
	struct hfsc_opts_v0	hfsc_opts;
	struct fairq_opts	fairq_opts;
};

union pf_altq_v1_pq_u {
	struct cbq_opts		cbq_opts;
	struct codel_opts	codel_opts;
	struct priq_opts	priq_opts;
	struct hfsc_opts_v1	hfsc_opts;
	struct fairq_opts	fairq_opts;
};

#define PFALTQ_FLAG_IF_REMOVED	0x01	/* pf_altq.local_flags */

struct pf_altq_v0 {
	char			ifname[PF_IFNAMSIZ];
	void			*unused1;	/* keeps the old layout */
	struct {					/* kernel link */
		struct pf_altq_v0	*tqe_next;
		struct pf_altq_v0	**tqe_prev;
	}			entries;
	uint8_t			scheduler;	/* ALTQT_* */
	uint16_t		tbrsize;
	uint32_t		ifbandwidth;
	char			qname[PF_QNAME_SIZE];
	char			parent[PF_QNAME_SIZE];
	uint32_t		parent_qid;
	uint32_t		bandwidth;
	uint8_t			priority;
	uint8_t			local_flags;
	uint16_t		qlimit;
	uint16_t		flags;
	union pf_altq_v0_pq_u	pq_u;
	uint32_t		qid;		/* out */
};

/* V1 widens bandwidths to 64 bits. */
struct pf_altq_v1 {
	char			ifname[PF_IFNAMSIZ];
	struct {					/* kernel link */
		struct pf_altq_v1	*tqe_next;
		struct pf_altq_v1	**tqe_prev;
	}			entries;
	uint8_t			scheduler;
	uint32_t		tbrsize;
	uint64_t		ifbandwidth;
	char			qname[PF_QNAME_SIZE];
	char			parent[PF_QNAME_SIZE];
	uint32_t		parent_qid;
	uint64_t		bandwidth;
	uint8_t			priority;
	uint8_t			local_flags;
	uint16_t		qlimit;
	uint16_t		flags;
	union pf_altq_v1_pq_u	pq_u;
	uint32_t		qid;
};

#define PF_ALTQ_VERSION		1

struct pfioc_altq_v0 {
	uint32_t		action;
	uint32_t		ticket;
	uint32_t		nr;
	struct pf_altq_v0	altq;
};

struct pfioc_altq_v1 {
	uint32_t		action;
	uint32_t		ticket;
	uint32_t		nr;
	uint32_t		version;	/* of altq, must be <= 1 */
	struct pf_altq_v1	altq;
};

#define PFIOC_ALTQ_VERSION	PF_ALTQ_VERSION

struct pfioc_qstats_v0 {
	uint32_t		ticket;
	uint32_t		nr;
	void			*buf;		/* user buffer */
	int			nbytes;
	uint8_t			scheduler;
};

struct pfioc_qstats_v1 {
	uint32_t		ticket;
	uint32_t		nr;
	void			*buf;
	int			nbytes;
	uint8_t			scheduler;
	uint32_t		version;	/* of the stats struct wanted */
};

#define PFIOC_QSTATS_VERSION	1

/* DIOCGIFSPEED: interface baud rate (usable without ALTQ). */
struct pf_ifspeed_v0 {
	char			ifname[PF_IFNAMSIZ];
	uint32_t		baudrate;
};

struct pf_ifspeed_v1 {
	char			ifname[PF_IFNAMSIZ];
	uint32_t		baudrate32;	/* clamped copy */
	uint64_t		baudrate;
};

#define PF_IFSPEED_VERSION	1

/* ------------------------------------------------------------------------
 * Other ioctl argument structures
 * ------------------------------------------------------------------------ */

/* DIOCBEGINADDRS, DIOCADDADDR, DIOCGETADDR(S), DIOCCHANGEADDR */
struct pfioc_pooladdr {
	uint32_t		action;		/* PF_CHANGE_* */
	uint32_t		ticket;
	uint32_t		nr;
	uint32_t		r_num;
	uint8_t			r_action;
	uint8_t			r_last;
	uint8_t			af;		/* already 1 byte on BSD */
	char			anchor[PF_MAXPATHLEN];
	struct pf_pooladdr	addr;
};

/* DIOCADDRULE, DIOCGETRULE(S), DIOCCHANGERULE */
struct pfioc_rule {
	uint32_t		action;
	uint32_t		ticket;
	uint32_t		pool_ticket;
	uint32_t		nr;
	char			anchor[PF_MAXPATHLEN];
	char			anchor_call[PF_MAXPATHLEN];
	struct pf_rule		rule;
};

/* DIOCNATLOOK: addresses and ports in network byte order. */
struct pfioc_natlook {
	struct pf_addr		saddr;
	struct pf_addr		daddr;
	struct pf_addr		rsaddr;
	struct pf_addr		rdaddr;
	uint16_t		sport;
	uint16_t		dport;
	uint16_t		rsport;
	uint16_t		rdport;
	uint8_t			af;		/* BSD sa_family_t: 1 byte */
	uint8_t			proto;
	uint8_t			direction;	/* PF_IN / PF_OUT */
};

/* DIOCGETSTATE, DIOCADDSTATE */
struct pfioc_state {
	struct pfsync_state	state;
};

/* DIOCKILLSRCNODES */
struct pfioc_src_node_kill {
	uint8_t			psnk_af;	/* BSD sa_family_t */
	struct pf_rule_addr	psnk_src;
	struct pf_rule_addr	psnk_dst;
	unsigned int		psnk_killed;
};

/* DIOCCLRSTATES, DIOCKILLSTATES */
struct pfioc_state_kill {
	struct pf_state_cmp	psk_pfcmp;
	uint8_t			psk_af;		/* BSD sa_family_t */
	int			psk_proto;
	struct pf_rule_addr	psk_src;
	struct pf_rule_addr	psk_dst;
	char			psk_ifname[PF_IFNAMSIZ];
	char			psk_label[PF_RULE_LABEL_SIZE];
	unsigned int		psk_killed;
};

/* DIOCGETSTATES: ps_len bytes of pfsync_state at ps_buf. */
union pfioc_states_ps_u {
	char			*psu_buf;	/* caddr_t */
	struct pfsync_state	*psu_states;
};

struct pfioc_states {
	int			ps_len;
	union pfioc_states_ps_u	ps_u;
#define ps_buf		ps_u.psu_buf
#define ps_states	ps_u.psu_states
};

/* DIOCGETSRCNODES: psn_len bytes of pf_src_node at psn_buf. */
union pfioc_src_nodes_psn_u {
	char			*psu_buf;	/* caddr_t */
	struct pf_src_node	*psu_src_nodes;
};

struct pfioc_src_nodes {
	int			psn_len;
	union pfioc_src_nodes_psn_u psn_u;
#define psn_buf		psn_u.psu_buf
#define psn_src_nodes	psn_u.psu_src_nodes
};

/* DIOCSETSTATUSIF */
struct pfioc_if {
	char			ifname[PF_IFNAMSIZ];
};

/* DIOCSETTIMEOUT, DIOCGETTIMEOUT */
struct pfioc_tm {
	int			timeout;	/* PFTM_* */
	int			seconds;
};

/* DIOCSETLIMIT, DIOCGETLIMIT */
struct pfioc_limit {
	int			index;		/* PF_LIMIT_* */
	unsigned int		limit;		/* UINT_MAX: unlimited */
};

/* DIOCGETRULESETS, DIOCGETRULESET */
struct pfioc_ruleset {
	uint32_t		nr;
	char			path[PF_MAXPATHLEN];
	char			name[PF_ANCHOR_NAME_SIZE];
};

/*
 * DIOCXBEGIN, DIOCXCOMMIT, DIOCXROLLBACK.  FreeBSD declares the element
 * struct inside pfioc_trans; C gives the tag file scope anyway, and
 * declaring it first keeps the same name visible from C++ and Cython.
 */
struct pfioc_trans_e {
	int			rs_num;		/* PF_RULESET_* */
	char			anchor[PF_MAXPATHLEN];
	uint32_t		ticket;
};

struct pfioc_trans {
	int			size;		/* number of elements */
	int			esize;		/* sizeof(struct pfioc_trans_e) */
	struct pfioc_trans_e	*array;
};

/* ------------------------------------------------------------------------
 * ioctl commands
 *
 * Built with Linux's <sys/ioctl.h> macros.  For every command that carries
 * data the Linux _IOWR value equals the FreeBSD one (argument sizes stay
 * below 8192).  The eight argument-less commands differ: BSD sets bit 29
 * (IOC_VOID), Linux does not, so their BSD values are given as *_BSD too;
 * the daemon accepts both.
 * ------------------------------------------------------------------------ */

#define PF_BSD_IOC_VOID		0x20000000UL
#define PF_BSD_IOC_INOUT	0xc0000000UL
#define PF_BSD_IOCPARM_MASK	0x1fffUL
/* FreeBSD's _IO() and _IOWR() encodings. */
#define PF_BSD_IO(g, n) \
	(PF_BSD_IOC_VOID | ((unsigned long)(g) << 8) | (unsigned long)(n))
#define PF_BSD_IOWR(g, n, t) \
	(PF_BSD_IOC_INOUT | \
	((unsigned long)(sizeof(t) & PF_BSD_IOCPARM_MASK) << 16) | \
	((unsigned long)(g) << 8) | (unsigned long)(n))

#define DIOCSTART		_IO  ('D',  1)
#define DIOCSTOP		_IO  ('D',  2)
#define DIOCADDRULE		_IOWR('D',  4, struct pfioc_rule)
#define DIOCGETRULES		_IOWR('D',  6, struct pfioc_rule)
#define DIOCGETRULE		_IOWR('D',  7, struct pfioc_rule)
#define DIOCCLRSTATES		_IOWR('D', 18, struct pfioc_state_kill)
#define DIOCGETSTATE		_IOWR('D', 19, struct pfioc_state)
#define DIOCSETSTATUSIF		_IOWR('D', 20, struct pfioc_if)
#define DIOCGETSTATUS		_IOWR('D', 21, struct pf_status)
#define DIOCCLRSTATUS		_IO  ('D', 22)
#define DIOCNATLOOK		_IOWR('D', 23, struct pfioc_natlook)
#define DIOCSETDEBUG		_IOWR('D', 24, uint32_t)
#define DIOCGETSTATES		_IOWR('D', 25, struct pfioc_states)
#define DIOCCHANGERULE		_IOWR('D', 26, struct pfioc_rule)
#define DIOCSETTIMEOUT		_IOWR('D', 29, struct pfioc_tm)
#define DIOCGETTIMEOUT		_IOWR('D', 30, struct pfioc_tm)
#define DIOCADDSTATE		_IOWR('D', 37, struct pfioc_state)
#define DIOCCLRRULECTRS		_IO  ('D', 38)
#define DIOCGETLIMIT		_IOWR('D', 39, struct pfioc_limit)
#define DIOCSETLIMIT		_IOWR('D', 40, struct pfioc_limit)
#define DIOCKILLSTATES		_IOWR('D', 41, struct pfioc_state_kill)
#define DIOCSTARTALTQ		_IO  ('D', 42)
#define DIOCSTOPALTQ		_IO  ('D', 43)
#define DIOCADDALTQV0		_IOWR('D', 45, struct pfioc_altq_v0)
#define DIOCADDALTQV1		_IOWR('D', 45, struct pfioc_altq_v1)
#define DIOCGETALTQSV0		_IOWR('D', 47, struct pfioc_altq_v0)
#define DIOCGETALTQSV1		_IOWR('D', 47, struct pfioc_altq_v1)
#define DIOCGETALTQV0		_IOWR('D', 48, struct pfioc_altq_v0)
#define DIOCGETALTQV1		_IOWR('D', 48, struct pfioc_altq_v1)
#define DIOCCHANGEALTQV0	_IOWR('D', 49, struct pfioc_altq_v0)
#define DIOCCHANGEALTQV1	_IOWR('D', 49, struct pfioc_altq_v1)
#define DIOCGETQSTATSV0		_IOWR('D', 50, struct pfioc_qstats_v0)
#define DIOCGETQSTATSV1		_IOWR('D', 50, struct pfioc_qstats_v1)
#define DIOCBEGINADDRS		_IOWR('D', 51, struct pfioc_pooladdr)
#define DIOCADDADDR		_IOWR('D', 52, struct pfioc_pooladdr)
#define DIOCGETADDRS		_IOWR('D', 53, struct pfioc_pooladdr)
#define DIOCGETADDR		_IOWR('D', 54, struct pfioc_pooladdr)
#define DIOCCHANGEADDR		_IOWR('D', 55, struct pfioc_pooladdr)
#define DIOCGETRULESETS		_IOWR('D', 58, struct pfioc_ruleset)
#define DIOCGETRULESET		_IOWR('D', 59, struct pfioc_ruleset)
#define DIOCRCLRTABLES		_IOWR('D', 60, struct pfioc_table)
#define DIOCRADDTABLES		_IOWR('D', 61, struct pfioc_table)
#define DIOCRDELTABLES		_IOWR('D', 62, struct pfioc_table)
#define DIOCRGETTABLES		_IOWR('D', 63, struct pfioc_table)
#define DIOCRGETTSTATS		_IOWR('D', 64, struct pfioc_table)
#define DIOCRCLRTSTATS		_IOWR('D', 65, struct pfioc_table)
#define DIOCRCLRADDRS		_IOWR('D', 66, struct pfioc_table)
#define DIOCRADDADDRS		_IOWR('D', 67, struct pfioc_table)
#define DIOCRDELADDRS		_IOWR('D', 68, struct pfioc_table)
#define DIOCRSETADDRS		_IOWR('D', 69, struct pfioc_table)
#define DIOCRGETADDRS		_IOWR('D', 70, struct pfioc_table)
#define DIOCRGETASTATS		_IOWR('D', 71, struct pfioc_table)
#define DIOCRCLRASTATS		_IOWR('D', 72, struct pfioc_table)
#define DIOCRTSTADDRS		_IOWR('D', 73, struct pfioc_table)
#define DIOCRSETTFLAGS		_IOWR('D', 74, struct pfioc_table)
#define DIOCRINADEFINE		_IOWR('D', 77, struct pfioc_table)
#define DIOCOSFPFLUSH		_IO  ('D', 78)
#define DIOCOSFPADD		_IOWR('D', 79, struct pf_osfp_ioctl)
#define DIOCOSFPGET		_IOWR('D', 80, struct pf_osfp_ioctl)
#define DIOCXBEGIN		_IOWR('D', 81, struct pfioc_trans)
#define DIOCXCOMMIT		_IOWR('D', 82, struct pfioc_trans)
#define DIOCXROLLBACK		_IOWR('D', 83, struct pfioc_trans)
#define DIOCGETSRCNODES		_IOWR('D', 84, struct pfioc_src_nodes)
#define DIOCCLRSRCNODES		_IO  ('D', 85)
#define DIOCSETHOSTID		_IOWR('D', 86, uint32_t)
#define DIOCIGETIFACES		_IOWR('D', 87, struct pfioc_iface)
#define DIOCSETIFFLAG		_IOWR('D', 89, struct pfioc_iface)
#define DIOCCLRIFFLAG		_IOWR('D', 90, struct pfioc_iface)
#define DIOCKILLSRCNODES	_IOWR('D', 91, struct pfioc_src_node_kill)
#define DIOCGIFSPEEDV0		_IOWR('D', 92, struct pf_ifspeed_v0)
#define DIOCGIFSPEEDV1		_IOWR('D', 92, struct pf_ifspeed_v1)

/* The argument-less commands as a FreeBSD binary sends them. */
#define DIOCSTART_BSD		PF_BSD_IO('D',  1)
#define DIOCSTOP_BSD		PF_BSD_IO('D',  2)
#define DIOCCLRSTATUS_BSD	PF_BSD_IO('D', 22)
#define DIOCCLRRULECTRS_BSD	PF_BSD_IO('D', 38)
#define DIOCSTARTALTQ_BSD	PF_BSD_IO('D', 42)
#define DIOCSTOPALTQ_BSD	PF_BSD_IO('D', 43)
#define DIOCOSFPFLUSH_BSD	PF_BSD_IO('D', 78)
#define DIOCCLRSRCNODES_BSD	PF_BSD_IO('D', 85)

/*
 * Unversioned ALTQ/ifspeed names.  pfctl defines PFIOC_USE_LATEST and gets
 * the V1 forms; other programs (ports) get V0, as on FreeBSD 12.
 */
#ifdef PFIOC_USE_LATEST
#define pfioc_altq		pfioc_altq_v1
#define pfioc_qstats		pfioc_qstats_v1
#define pf_ifspeed		pf_ifspeed_v1
#define pf_altq			pf_altq_v1
#define DIOCADDALTQ		DIOCADDALTQV1
#define DIOCGETALTQS		DIOCGETALTQSV1
#define DIOCGETALTQ		DIOCGETALTQV1
#define DIOCCHANGEALTQ		DIOCCHANGEALTQV1
#define DIOCGETQSTATS		DIOCGETQSTATSV1
#define DIOCGIFSPEED		DIOCGIFSPEEDV1
#else
#define pfioc_altq		pfioc_altq_v0
#define pfioc_qstats		pfioc_qstats_v0
#define pf_ifspeed		pf_ifspeed_v0
#define pf_altq			pf_altq_v0
#define DIOCADDALTQ		DIOCADDALTQV0
#define DIOCGETALTQS		DIOCGETALTQSV0
#define DIOCGETALTQ		DIOCGETALTQV0
#define DIOCCHANGEALTQ		DIOCCHANGEALTQV0
#define DIOCGETQSTATS		DIOCGETQSTATSV0
#define DIOCGIFSPEED		DIOCGIFSPEEDV0
#endif

/* ========================================================================
 * Older generations
 *
 * Programs written for OpenBSD 3.x pf (as shipped in FreeBSD 5.3-6.x) and
 * for NetBSD's pf send structures of other sizes.  Where the size differs,
 * the command value differs too, so the daemon can serve each generation
 * side by side; DIOCIGETIFACES is told apart by pfiio_esize.  Names carry
 * a generation suffix except where old programs need the original name
 * (struct pfi_if, PFI_FLAG_*, PFI_IFLAG_* of that era, DIOCICLRISTATS).
 * ======================================================================== */

/* ---- OpenBSD 3.7 / FreeBSD 6 (pfvar.h 1.213) --------------------------- */

/* DIOCIGETIFACES element, pfiio_esize 184. */
struct pfi_if {
	char			pfif_name[PF_IFNAMSIZ];
	uint64_t		pfif_packets[2][2][2];	/* [inet6][out][block] */
	uint64_t		pfif_bytes[2][2][2];
	uint64_t		pfif_addcnt;
	uint64_t		pfif_delcnt;
	long			pfif_tzero;
	int			pfif_states;
	int			pfif_rules;
	int			pfif_flags;		/* PFI_IFLAG_* below */
};

/* pfioc_iface.pfiio_flags: which kind of entries to return. */
#define PFI_FLAG_GROUP		0x0001	/* groups ("fxp") */
#define PFI_FLAG_INSTANCE	0x0002	/* interfaces ("fxp0") */
#define PFI_FLAG_ALLMASK	0x0003

/*
 * pfi_if.pfif_flags.  GROUP shares its value with FreeBSD 12's
 * PFI_IFLAG_REFS; the two belong to different element formats.
 */
#define PFI_IFLAG_GROUP		0x0001
#define PFI_IFLAG_INSTANCE	0x0002
#define PFI_IFLAG_CLONABLE	0x0010
#define PFI_IFLAG_DYNAMIC	0x0020
#define PFI_IFLAG_ATTACHED	0x0040
#define PFI_IFLAG_REFERENCED	0x0080	/* OpenBSD 3.6 */
#define PFI_IFLAG_SETABLE_MASK	0x0100
#define PFI_IFLAG_PLACEHOLDER	0x8000

#define PFRES_MAX_OBSD37	15	/* no PFRES_MAPFAILED yet */

/* DIOCGETSTATUS argument: no pf_chksum, a stateid instead. */
struct pf_status_obsd37 {
	uint64_t		counters[PFRES_MAX_OBSD37];
	uint64_t		lcounters[LCNT_MAX];
	uint64_t		fcounters[FCNT_MAX];
	uint64_t		scounters[SCNT_MAX];
	uint64_t		pcounters[2][2][3];
	uint64_t		bcounters[2][2];
	uint64_t		stateid;
	uint32_t		running;
	uint32_t		states;
	uint32_t		src_nodes;
	uint32_t		since;
	uint32_t		debug;
	uint32_t		hostid;
	char			ifname[PF_IFNAMSIZ];
};

struct pf_state_peer_obsd37 {
	uint32_t		seqlo;
	uint32_t		seqhi;
	uint32_t		seqdiff;
	uint16_t		max_win;
	uint8_t			state;
	uint8_t			wscale;
	uint16_t		mss;
	void			*scrub;			/* kernel pointer */
};

/* Kernel links of an old state, overlaid with its interface name. */
struct pf_state_obsd37_s {
	struct { void *rbe_left, *rbe_right, *rbe_parent; int rbe_color; }
				entry_lan_ext, entry_ext_gwy, entry_id;
	struct { void *tqe_next, **tqe_prev; } entry_updates;
	struct pfi_kif		*kif;
};

union pf_state_obsd37_u {
	struct pf_state_obsd37_s s;
	char			ifname[PF_IFNAMSIZ];
};

/* The raw kernel state that DIOCGETSTATE(S) copied out in OpenBSD 3.7. */
struct pf_state_obsd37 {
	uint64_t		id;
	union pf_state_obsd37_u	u;
	struct pf_state_host	lan;
	struct pf_state_host	gwy;
	struct pf_state_host	ext;
	struct pf_state_peer_obsd37 src;
	struct pf_state_peer_obsd37 dst;
	union pf_rule_ptr	rule;
	union pf_rule_ptr	anchor;
	union pf_rule_ptr	nat_rule;
	struct pf_addr		rt_addr;
	struct pfi_kif		*rt_kif;		/* kernel pointers */
	struct pf_src_node	*src_node;
	struct pf_src_node	*nat_src_node;
	uint32_t		creation;
	uint32_t		expire;
	uint32_t		pfsync_time;
	uint32_t		packets[2];
	uint32_t		bytes[2];
	uint32_t		creatorid;
	uint16_t		tag;
	uint8_t			af;
	uint8_t			proto;
	uint8_t			direction;
	uint8_t			log;
	uint8_t			allow_opts;
	uint8_t			timeout;
	uint8_t			sync_flags;
	uint8_t			pad;		/* FreeBSD 6: local_flags */
};

/* DIOCGETSTATE (by index nr) / DIOCADDSTATE. */
struct pfioc_state_obsd37 {
	uint32_t		nr;
	struct pf_state_obsd37	state;
};

/* DIOCKILLSTATES / DIOCCLRSTATES; the kill count comes back in psk_af. */
struct pfioc_state_kill_obsd37 {
	uint8_t			psk_af;
	int			psk_proto;
	struct pf_rule_addr	psk_src;
	struct pf_rule_addr	psk_dst;
	char			psk_ifname[PF_IFNAMSIZ];
};

#define DIOCCLRSTATES_OBSD37	_IOWR('D', 18, struct pfioc_state_kill_obsd37)
#define DIOCGETSTATE_OBSD37	_IOWR('D', 19, struct pfioc_state_obsd37)
#define DIOCGETSTATUS_OBSD37	_IOWR('D', 21, struct pf_status_obsd37)
#define DIOCADDSTATE_OBSD37	_IOWR('D', 37, struct pfioc_state_obsd37)
#define DIOCKILLSTATES_OBSD37	_IOWR('D', 41, struct pfioc_state_kill_obsd37)
#define DIOCICLRISTATS		_IOWR('D', 88, struct pfioc_iface)
/* FreeBSD 6 placed DIOCGIFSPEED at 91 (later DIOCKILLSRCNODES). */
#define DIOCGIFSPEED_FBSD6	_IOWR('D', 91, struct pf_ifspeed_v0)

/* ---- NetBSD (sys/dist/pf, OpenBSD 4.2 base) ---------------------------- */

/* DIOCIGETIFACES element, pfiio_esize 232. */
struct pfi_kif_nbsd {
	char			pfik_name[PF_IFNAMSIZ];
	union pfi_kif_glue	_pfik_glue;		/* pfik_tree: kernel link */
	uint64_t		pfik_packets[2][2][2];
	uint64_t		pfik_bytes[2][2][2];
	uint32_t		pfik_tzero;
	int			pfik_flags;
	void			*pfik_ah_cookie;	/* kernel pointers */
	struct ifnet		*pfik_ifp;
	struct ifg_group	*pfik_group;
	int			pfik_states;
	int			pfik_rules;
	struct { void *tqh_first, **tqh_last; } pfik_dynaddrs;
};

/* DIOCGETSTATUS argument: both stateid and pf_chksum. */
struct pf_status_nbsd {
	uint64_t		counters[PFRES_MAX];
	uint64_t		lcounters[LCNT_MAX];
	uint64_t		fcounters[FCNT_MAX];
	uint64_t		scounters[SCNT_MAX];
	uint64_t		pcounters[2][2][3];
	uint64_t		bcounters[2][2];
	uint64_t		stateid;
	uint32_t		running;
	uint32_t		states;
	uint32_t		src_nodes;
	uint32_t		since;
	uint32_t		debug;
	uint32_t		hostid;
	char			ifname[PF_IFNAMSIZ];
	uint8_t			pf_chksum[PF_MD5_DIGEST_LENGTH];
};

struct pfsync_state_host_nbsd {
	struct pf_addr		addr;
	uint16_t		port;
	uint16_t		pad[3];
};

/* Exported state, 240 bytes, packed. */
struct pfsync_state_nbsd {
	uint32_t		id[2];
	char			ifname[PF_IFNAMSIZ];
	struct pfsync_state_host_nbsd lan;
	struct pfsync_state_host_nbsd gwy;
	struct pfsync_state_host_nbsd ext;
	struct pfsync_state_peer src;
	struct pfsync_state_peer dst;
	struct pf_addr		rt_addr;
	uint32_t		rule;
	uint32_t		anchor;
	uint32_t		nat_rule;
	uint32_t		creation;
	uint32_t		expire;
	uint32_t		packets[2][2];
	uint32_t		bytes[2][2];
	uint32_t		creatorid;
	uint8_t			af;
	uint8_t			proto;
	uint8_t			direction;
	uint8_t			log;
	uint8_t			allow_opts;
	uint8_t			timeout;
	uint8_t			sync_flags;
	uint8_t			updates;
} PF_PACKED;

/* DIOCGETSTATE / DIOCADDSTATE: the state travels through a pointer. */
struct pfioc_state_nbsd {
	uint32_t		nr;
	struct pfsync_state_nbsd *state;
};

/* DIOCKILLSRCNODES without psnk_killed. */
struct pfioc_src_node_kill_nbsd {
	uint8_t			psnk_af;
	struct pf_rule_addr	psnk_src;
	struct pf_rule_addr	psnk_dst;
};

#define DIOCSETLCK_NBSD		_IOWR('D',  8, uint32_t)
#define DIOCCLRSTATES_NBSD	DIOCCLRSTATES_OBSD37
#define DIOCGETSTATE_NBSD	_IOWR('D', 19, struct pfioc_state_nbsd)
#define DIOCGETSTATUS_NBSD	_IOWR('D', 21, struct pf_status_nbsd)
#define DIOCADDSTATE_NBSD	_IOWR('D', 37, struct pfioc_state_nbsd)
#define DIOCKILLSTATES_NBSD	DIOCKILLSTATES_OBSD37
#define DIOCADDSTATES_NBSD	_IOWR('D', 56, struct pfioc_states)
#define DIOCKILLSRCNODES_NBSD	_IOWR('D', 91, struct pfioc_src_node_kill_nbsd)

/* ========================================================================
 * Compile-time layout checks (FreeBSD 12.1 amd64 sizes, pf-abi.md §2.17)
 * ======================================================================== */

#if defined(__x86_64__) || defined(__aarch64__) || \
    (defined(__SIZEOF_POINTER__) && __SIZEOF_POINTER__ == 8)
PF_STATIC_ASSERT(IF_NAMESIZE == PF_IFNAMSIZ, "pf ABI: IFNAMSIZ is not 16");

PF_SIZE_CHECK(struct pf_addr, 16);
PF_SIZE_CHECK(struct pf_addr_wrap, 48);
PF_SIZE_CHECK(struct pf_rule_addr, 56);
PF_SIZE_CHECK(struct pf_rule_uid, 12);
PF_SIZE_CHECK(struct pf_rule_gid, 12);
PF_SIZE_CHECK(struct pf_pooladdr, 88);
PF_SIZE_CHECK(struct pf_poolhashkey, 16);
PF_SIZE_CHECK(struct pf_pool, 72);
PF_SIZE_CHECK(struct pf_rule, 976);
PF_SIZE_CHECK(struct pfioc_rule, 3040);
PF_SIZE_CHECK(struct pfioc_pooladdr, 1136);
PF_SIZE_CHECK(struct pfioc_natlook, 76);
PF_SIZE_CHECK(struct pfsync_state_scrub, 8);
PF_SIZE_CHECK(struct pfsync_state_peer, 32);
PF_SIZE_CHECK(struct pfsync_state_key, 36);
PF_SIZE_CHECK(struct pfsync_state, 242);
PF_SIZE_CHECK(struct pfioc_state, 242);
PF_SIZE_CHECK(struct pf_state_cmp, 16);
PF_SIZE_CHECK(struct pfioc_state_kill, 224);
PF_SIZE_CHECK(struct pfioc_src_node_kill, 128);
PF_SIZE_CHECK(struct pfioc_states, 16);
PF_SIZE_CHECK(struct pfioc_src_nodes, 16);
PF_SIZE_CHECK(struct pf_threshold, 16);
PF_SIZE_CHECK(struct pf_src_node, 136);
PF_SIZE_CHECK(struct pfi_kif, 224);
PF_SIZE_CHECK(struct pfioc_iface, 40);
PF_SIZE_CHECK(struct pfr_table, 1064);
PF_SIZE_CHECK(struct pfr_addr, 20);
PF_SIZE_CHECK(struct pfr_astats, 96);
PF_SIZE_CHECK(struct pfr_tstats, 1200);
PF_SIZE_CHECK(struct pfioc_table, 1104);
PF_SIZE_CHECK(struct pfioc_trans, 16);
PF_SIZE_CHECK(struct pfioc_trans_e, 1032);
PF_SIZE_CHECK(struct pf_status, 416);
PF_SIZE_CHECK(struct pfioc_tm, 8);
PF_SIZE_CHECK(struct pfioc_limit, 8);
PF_SIZE_CHECK(struct pfioc_if, 16);
PF_SIZE_CHECK(struct pfioc_ruleset, 1092);
PF_SIZE_CHECK(struct pf_osfp_entry, 112);
PF_SIZE_CHECK(struct pf_osfp_ioctl, 136);
PF_SIZE_CHECK(struct pf_altq_v0, 240);
PF_SIZE_CHECK(struct pf_altq_v1, 288);
PF_SIZE_CHECK(struct pfioc_altq_v0, 256);
PF_SIZE_CHECK(struct pfioc_altq_v1, 304);
PF_SIZE_CHECK(struct pfioc_qstats_v0, 24);
PF_SIZE_CHECK(struct pfioc_qstats_v1, 32);
PF_SIZE_CHECK(struct pf_ifspeed_v0, 20);
PF_SIZE_CHECK(struct pf_ifspeed_v1, 32);

/* The fields the two traps would move. */
PF_OFFSET_CHECK(struct pfioc_rule, rule, 2064);
PF_OFFSET_CHECK(struct pf_rule, af, 913);
PF_OFFSET_CHECK(struct pf_rule, proto, 914);
PF_OFFSET_CHECK(struct pf_rule, divert, 932);
PF_OFFSET_CHECK(struct pfioc_natlook, proto, 73);
PF_OFFSET_CHECK(struct pfioc_natlook, direction, 74);
PF_OFFSET_CHECK(struct pfsync_state, af, 232);
PF_OFFSET_CHECK(struct pfsync_state, updates, 241);
PF_OFFSET_CHECK(struct pfioc_table, pfrio_buffer, 1064);
PF_OFFSET_CHECK(struct pfi_kif, pfik_ifp, 184);

/* Older generations (pf-abi.md §3.2, §3.3). */
PF_SIZE_CHECK(struct pfi_if, 184);
PF_SIZE_CHECK(struct pf_status_obsd37, 400);
PF_SIZE_CHECK(struct pf_state_peer_obsd37, 32);
PF_SIZE_CHECK(struct pf_state_obsd37, 368);
PF_SIZE_CHECK(struct pfioc_state_obsd37, 376);
PF_SIZE_CHECK(struct pfioc_state_kill_obsd37, 136);
PF_SIZE_CHECK(struct pfi_kif_nbsd, 232);
PF_SIZE_CHECK(struct pf_status_nbsd, 424);
PF_SIZE_CHECK(struct pfsync_state_nbsd, 240);
PF_SIZE_CHECK(struct pfioc_state_nbsd, 16);
PF_SIZE_CHECK(struct pfioc_src_node_kill_nbsd, 120);

/* Every data-carrying command has the same value in both encodings. */
#define PF_SAME_ENCODING(cmd, n, t) \
	PF_STATIC_ASSERT((unsigned long)(cmd) == PF_BSD_IOWR('D', n, t), \
	    "pf ABI: " #cmd " differs from its FreeBSD value")
PF_SAME_ENCODING(DIOCADDRULE, 4, struct pfioc_rule);
PF_SAME_ENCODING(DIOCGETSTATUS, 21, struct pf_status);
PF_SAME_ENCODING(DIOCBEGINADDRS, 51, struct pfioc_pooladdr);
PF_SAME_ENCODING(DIOCRADDTABLES, 61, struct pfioc_table);
PF_SAME_ENCODING(DIOCGETRULESETS, 58, struct pfioc_ruleset);
PF_SAME_ENCODING(DIOCXBEGIN, 81, struct pfioc_trans);
PF_SAME_ENCODING(DIOCGETSTATE, 19, struct pfioc_state);
#undef PF_SAME_ENCODING
#endif /* LP64 */

#undef PF_SIZE_CHECK
#undef PF_OFFSET_CHECK
#undef PF_STATIC_ASSERT
#undef PF_PACKED

#ifdef __cplusplus
}
#endif

/*
 * With a BSD <sys/tree.h> available (libbsd's overlay), declare the
 * red-black tree functions pfctl's userland pf_ruleset.c generates.
 * The macro already ends each declaration with a semicolon.
 */
#if defined(__has_include)
#if __has_include(<sys/tree.h>)
#include <sys/tree.h>
#if defined(RB_PROTOTYPE)
#ifdef __cplusplus
extern "C" {
#endif
RB_PROTOTYPE(pf_anchor_global, pf_anchor, entry_global, pf_anchor_compare)
RB_PROTOTYPE(pf_anchor_node, pf_anchor, entry_node, pf_anchor_compare)
#ifdef __cplusplus
}
#endif
#endif /* RB_PROTOTYPE */
#endif /* __has_include(<sys/tree.h>) */
#endif /* __has_include */

#endif /* _NET_PFVAR_H_ */
