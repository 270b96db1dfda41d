/*
 * mntns_hoarder: fills root's quota of mount namespaces, as a hostile user
 * could through a helper that charges its namespaces to root, and holds it
 * until its stdin is closed.
 *
 * Children each create mount namespaces and keep a descriptor to each, until
 * the kernel refuses with ENOSPC (the quota is full) or the descriptor limit
 * is reached (then the next child takes over). "exhausted N" on stdout means
 * the quota of the running uid is full, holding N namespaces.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#define MAX_CHILDREN 64

static void hoard(int report)
{
	struct rlimit lim;
	long held = 0;
	char outcome;

	if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
		_exit(1);
	if (getrlimit(RLIMIT_NOFILE, &lim) == 0) {
		lim.rlim_cur = lim.rlim_max;
		setrlimit(RLIMIT_NOFILE, &lim);
	}
	for (;;) {
		if (unshare(CLONE_NEWNS) != 0) {
			outcome = errno == ENOSPC ? 'S' : 'F';
			break;
		}
		if (open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC) < 0) {
			outcome = errno == EMFILE ? 'M' : 'F';
			break;
		}
		held++;
	}
	if (write(report, &outcome, 1) != 1 || write(report, &held, sizeof held) != sizeof held)
		_exit(1);
	pause();
	_exit(0);
}

int main(void)
{
	pid_t children[MAX_CHILDREN];
	long total = 0;
	int n;

	for (n = 0; n < MAX_CHILDREN; n++) {
		int p[2];
		char outcome;
		long held;

		if (pipe(p) != 0)
			return 2;
		children[n] = fork();
		if (children[n] < 0)
			return 2;
		if (children[n] == 0) {
			close(p[0]);
			hoard(p[1]);
		}
		close(p[1]);
		if (read(p[0], &outcome, 1) != 1 || read(p[0], &held, sizeof held) != sizeof held) {
			fprintf(stderr, "mntns_hoarder: a hoarder died\n");
			return 2;
		}
		close(p[0]);
		total += held;
		if (outcome == 'S') {
			printf("exhausted %ld\n", total);
			fflush(stdout);
			break;
		}
		if (outcome != 'M') {
			fprintf(stderr, "mntns_hoarder: unshare or open failed: %s\n", strerror(errno));
			return 2;
		}
	}
	if (n == MAX_CHILDREN) {
		fprintf(stderr, "mntns_hoarder: not exhausted after %ld namespaces\n", total);
		return 2;
	}
	/* Hold until told to let go. */
	while (getchar() != EOF)
		;
	for (int i = 0; i <= n; i++)
		kill(children[i], SIGKILL);
	return 0;
}
