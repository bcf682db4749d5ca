/*
 * netpfil/pf/pf.h -- for programs that include FreeBSD's pf.h directly.
 *
 * Part of "pf for Linux".  On FreeBSD this file holds the enumerations,
 * reason/limit counters and struct pf_status that net/pfvar.h builds on.
 * Here net/pfvar.h is self-contained (one file to install, one file for
 * Cython to read), so this header simply includes it.
 */

#ifndef _NETPFIL_PF_PF_H_LINUX_
#define _NETPFIL_PF_PF_H_LINUX_

#include "../../net/pfvar.h"

#endif /* _NETPFIL_PF_PF_H_LINUX_ */
