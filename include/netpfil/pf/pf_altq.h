/*
 * netpfil/pf/pf_altq.h -- for programs that include FreeBSD's pf_altq.h.
 *
 * Part of "pf for Linux".  The ALTQ ioctl structures (pf_altq_v0/v1,
 * cbq/codel/priq/hfsc/fairq options, the pf_altq alias) live in
 * net/pfvar.h, which this header includes.
 */

#ifndef _NETPFIL_PF_PF_ALTQ_H_LINUX_
#define _NETPFIL_PF_PF_ALTQ_H_LINUX_

#include "../../net/pfvar.h"

#endif /* _NETPFIL_PF_PF_ALTQ_H_LINUX_ */
