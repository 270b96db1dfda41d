/*
 * attack_exec: starts a program the way a hostile caller could, which a shell
 * cannot: with no argv at all, or with an unusual descriptor at a given number.
 * Compiled by tests/helper_attacks into a scratch directory.
 *
 *   attack_exec noargv PROGRAM               execve(PROGRAM, {NULL}, environ)
 *   attack_exec opath  FILE FD PROGRAM ARG...  FD = open(FILE, O_PATH)
 *   attack_exec wronly FILE FD PROGRAM ARG...  FD = open(FILE, O_WRONLY)
 *   attack_exec memfd  FILE FD PROGRAM ARG...  FD = a memfd holding FILE's bytes,
 *                                           sealed as distrorun seals it
 *   attack_exec fds    FD                   writes "N TARGET" for each open
 *                                           descriptor to FD, standard ones
 *                                           as "closed" when closed
 *
 * Exits 99 when its own set-up fails, so that a test never mistakes that for
 * the program's answer.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/mman.h>
#include <unistd.h>

extern char **environ;

static void die(const char *what)
{
	fprintf(stderr, "attack_exec: %s: %s\n", what, strerror(errno));
	exit(99);
}

static int memfd_copy(const char *file)
{
	char buf[65536];
	ssize_t n;
	int in = open(file, O_RDONLY | O_CLOEXEC);
	int fd = memfd_create("env", MFD_CLOEXEC | MFD_ALLOW_SEALING);

	if (in < 0)
		die("open");
	if (fd < 0)
		die("memfd_create");
	while ((n = read(in, buf, sizeof buf)) > 0)
		if (write(fd, buf, (size_t)n) != n)
			die("write");
	if (n < 0)
		die("read");
	close(in);
	if (fcntl(fd, F_ADD_SEALS, F_SEAL_SEAL | F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK) < 0)
		die("sealing the memfd");
	if (lseek(fd, 0, SEEK_SET) != 0)
		die("lseek");
	return fd;
}

static int report_fds(int out)
{
	char path[64], target[4096];
	struct dirent *e;
	DIR *d;
	ssize_t n;
	int fd;

	for (fd = 0; fd < 3; fd++) {
		snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
		n = readlink(path, target, sizeof target - 1);
		target[n < 0 ? 0 : n] = 0;
		dprintf(out, "%d %s\n", fd, n < 0 ? "closed" : target);
	}
	d = opendir("/proc/self/fd");
	if (!d)
		die("opendir");
	while ((e = readdir(d))) {
		fd = atoi(e->d_name);
		if (e->d_name[0] == '.' || fd < 3 || fd == dirfd(d))
			continue;
		snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
		n = readlink(path, target, sizeof target - 1);
		target[n < 0 ? 0 : n] = 0;
		dprintf(out, "%d %s\n", fd, target);
	}
	closedir(d);
	return 0;
}

int main(int argc, char **argv)
{
	int fd, want;

	if (argc >= 3 && strcmp(argv[1], "fds") == 0)
		return report_fds(atoi(argv[2]));

	if (argc >= 3 && strcmp(argv[1], "noargv") == 0) {
		char *none[] = { NULL };
		execve(argv[2], none, environ);
		die("execve");
	}
	if (argc < 5) {
		fprintf(stderr, "usage: attack_exec noargv|opath|wronly|memfd ...\n");
		return 99;
	}
	want = atoi(argv[3]);
	if (strcmp(argv[1], "opath") == 0)
		fd = open(argv[2], O_PATH | O_CLOEXEC);
	else if (strcmp(argv[1], "wronly") == 0)
		fd = open(argv[2], O_WRONLY | O_CLOEXEC);
	else if (strcmp(argv[1], "memfd") == 0)
		fd = memfd_copy(argv[2]);
	else {
		fprintf(stderr, "attack_exec: unknown mode %s\n", argv[1]);
		return 99;
	}
	if (fd < 0)
		die("open");
	if (fd == want) {
		if (fcntl(fd, F_SETFD, 0) < 0)
			die("fcntl");
	} else if (dup2(fd, want) < 0) {
		die("dup2");
	}
	execv(argv[4], argv + 4);
	die("execv");
	return 99;
}
