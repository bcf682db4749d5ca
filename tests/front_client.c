/* A C client for the device-front tests (the commands of tests/front_dispatcher.py).
 *
 *   front_client echo   DEV         one _IOWR round trip, checked
 *   front_client hammer DEV N       N checked round trips on one fd
 *   front_client start  DEV         the BSD-encoded _IO number 0x20004401
 *   front_client slow   DEV MS      a command that keeps the daemon busy MS milliseconds
 *   front_client hold   DEV         open, print "open", wait to be killed
 *
 * Exit status 0 on success; otherwise the failing step and errno are printed.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define ECHO_SIZE 416
struct echo { unsigned char bytes[ECHO_SIZE]; };
struct slow { uint32_t ms, count; };

#define T_ECHO _IOWR('T', 1, struct echo)
#define T_SLOW _IOWR('T', 4, struct slow)
#define BSD_START 0x20004401UL

static int fail(const char *what)
{
	fprintf(stderr, "front_client: %s: %s (errno %d)\n", what, strerror(errno), errno);
	return 1;
}

static int echo_once(int fd, unsigned seed)
{
	struct echo e;
	for (int i = 0; i < ECHO_SIZE; i++)
		e.bytes[i] = (unsigned char)(seed + i);
	if (ioctl(fd, T_ECHO, &e) != 0)
		return fail("ioctl ECHO");
	for (int i = 0; i < ECHO_SIZE; i++)
		if (e.bytes[i] != (unsigned char)~(seed + i)) {
			fprintf(stderr, "front_client: ECHO byte %d wrong\n", i);
			return 1;
		}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: front_client echo|hammer|start|slow|hold DEV [N]\n");
		return 2;
	}
	const char *op = argv[1];
	int fd = open(argv[2], O_RDWR);
	if (fd < 0)
		return fail("open");

	if (!strcmp(op, "echo"))
		return echo_once(fd, 7);
	if (!strcmp(op, "hammer")) {
		long n = argc > 3 ? atol(argv[3]) : 1000;
		for (long i = 0; i < n; i++)
			if (echo_once(fd, (unsigned)(i + getpid())))
				return 1;
		return 0;
	}
	if (!strcmp(op, "start"))
		return ioctl(fd, BSD_START) == 0 ? 0 : fail("ioctl BSD _IO");
	if (!strcmp(op, "slow")) {
		struct slow s = { .ms = argc > 3 ? (uint32_t)atol(argv[3]) : 1000, .count = 41 };
		printf("calling\n");
		fflush(stdout);
		if (ioctl(fd, T_SLOW, &s) != 0)
			return fail("ioctl SLOW");
		return s.count == 42 ? 0 : 1;
	}
	if (!strcmp(op, "hold")) {
		printf("open\n");
		fflush(stdout);
		for (;;)
			pause();
	}
	fprintf(stderr, "front_client: unknown op %s\n", op);
	return 2;
}
