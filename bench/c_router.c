/* The datapath benchmark's baseline (reference/measured.md): a minimal C TAP router, blocking
 * read()/write(), one thread per direction, IPv4 only, static neighbours (no ARP): frames from
 * one TAP get the peer's MAC, TTL - 1 with an incremental checksum, and go out of the other.
 * With `vnet` the TAPs carry a struct virtio_net_hdr (IFF_VNET_HDR, 10 bytes) and offer the kernel
 * checksum offload and TSO: super-frames and partial checksums pass through untouched, header
 * included (both sides are vnet, so nothing needs completing).
 * Also the traffic tools of the benchmark, so one small binary does it all:
 *   c_router route TAPA TAPB ROUTER_MAC_A ROUTER_MAC_B PEER_MAC_A PEER_MAC_B [vnet]
 *   c_router flood DST_IP PORT SECONDS SIZE      (UDP, as fast as send() goes; prints count)
 *   c_router sink PORT SECONDS                   (prints datagrams received) */
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct dir { int in, out; uint8_t src[6], dst[6]; int hl; };

static int tap_open(const char *name, int vnet)
{
	struct ifreq ifr;
	int fd = open("/dev/net/tun", O_RDWR), s, hsz = 10;
	if (fd < 0) { perror("/dev/net/tun"); exit(1); }
	memset(&ifr, 0, sizeof ifr);
	snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | (vnet ? IFF_VNET_HDR : 0);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) { perror("TUNSETIFF"); exit(1); }
	if (vnet && (ioctl(fd, TUNSETVNETHDRSZ, &hsz) < 0 ||
		     ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN) < 0)) {
		perror("offloads"); exit(1);
	}
	s = socket(AF_INET, SOCK_DGRAM, 0);
	if (ioctl(s, SIOCGIFFLAGS, &ifr) == 0) { ifr.ifr_flags |= IFF_UP; ioctl(s, SIOCSIFFLAGS, &ifr); }
	close(s);
	return fd;
}

static void mac(const char *t, uint8_t *m)
{
	unsigned v[6];
	if (sscanf(t, "%x:%x:%x:%x:%x:%x", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) != 6) { fprintf(stderr, "bad mac %s\n", t); exit(2); }
	for (int i = 0; i < 6; i++) m[i] = v[i];
}

static void *forward(void *arg)
{
	struct dir *d = arg;
	static __thread uint8_t rbuf[10 + 65536 + 14];
	for (;;) {
		ssize_t n = read(d->in, rbuf, sizeof rbuf);
		uint8_t *buf = rbuf + d->hl;      /* the frame, after the virtio_net_hdr if any */
		if (n < d->hl + 34 || buf[12] != 0x08 || buf[13] != 0x00)
			continue;
		uint8_t *ip = buf + 14;
		if (ip[8] <= 1)
			continue;
		/* TTL - 1: the 16-bit word ttl<<8|proto drops by 0x100 (RFC 1624) */
		uint32_t sum = ((ip[10] << 8) | ip[11]) + 0x100;
		sum = (sum & 0xffff) + (sum >> 16);
		ip[8]--;
		ip[10] = sum >> 8; ip[11] = sum & 0xff;
		memcpy(buf, d->dst, 6);
		memcpy(buf + 6, d->src, 6);
		if (write(d->out, rbuf, n) < 0) { /* counted by nobody: the baseline is minimal */ }
	}
	return NULL;
}

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }

int main(int argc, char **argv)
{
	if ((argc == 8 || (argc == 9 && !strcmp(argv[8], "vnet"))) && !strcmp(argv[1], "route")) {
		int vnet = argc == 9;
		int a = tap_open(argv[2], vnet), b = tap_open(argv[3], vnet);
		struct dir ab = { a, b }, ba = { b, a };
		ab.hl = ba.hl = vnet ? 10 : 0;
		mac(argv[5], ab.src); mac(argv[7], ab.dst);   /* A -> B: from our B MAC to B's host */
		mac(argv[4], ba.src); mac(argv[6], ba.dst);
		pthread_t t1, t2;
		pthread_create(&t1, NULL, forward, &ab);
		pthread_create(&t2, NULL, forward, &ba);
		fprintf(stderr, "serving datapath\n");
		pthread_join(t1, NULL);
		return 0;
	}
	if (argc == 6 && !strcmp(argv[1], "flood")) {
		struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[3])) };
		inet_pton(AF_INET, argv[2], &sa.sin_addr);
		int s = socket(AF_INET, SOCK_DGRAM, 0), size = atoi(argv[5]);
		char payload[2048] = { 0 };
		connect(s, (struct sockaddr *)&sa, sizeof sa);
		double end = now() + atof(argv[4]);
		long sent = 0;
		while (now() < end)
			for (int i = 0; i < 64; i++)
				if (send(s, payload, size, 0) > 0) sent++;
		printf("%ld\n", sent);
		return 0;
	}
	if (argc == 4 && !strcmp(argv[1], "sink")) {
		struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[2])) };
		int s = socket(AF_INET, SOCK_DGRAM, 0), big = 4 << 20;
		setsockopt(s, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
		bind(s, (struct sockaddr *)&sa, sizeof sa);
		struct timeval tv = { 0, 200000 };
		setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
		char buf[2048];
		long got = 0;
		double end = now() + atof(argv[3]);
		fprintf(stdout, "listening\n"); fflush(stdout);
		while (now() < end)
			if (recv(s, buf, sizeof buf, 0) > 0) got++;
		printf("%ld\n", got);
		return 0;
	}
	fprintf(stderr, "usage: see the comment at the top of c_router.c\n");
	return 2;
}
