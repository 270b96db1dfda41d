/*
 * attack_nsmax: runs PROGRAM with the kernel's user.max_user_namespaces
 * limit at 0, for a root that may not lower the global sysctl (a container
 * without CAP_SYS_RESOURCE). It makes a child user namespace that maps uids
 * and gids 0-65535 to themselves (so setuid-root binaries and the test
 * users work as outside), writes 0 to that namespace's own
 * /proc/sys/user/max_user_namespaces, and execs PROGRAM there. Creating a
 * user namespace then fails with ENOSPC from the real limit check, not from
 * a filter.
 *
 * Where /proc/sys is mounted read-only (Docker, podman and systemd-nspawn
 * do so), even a child namespace's own limit cannot be written through it.
 * Then it first makes a mount namespace of its own, where it remounts
 * /proc/sys read-write, which the rest of the machine never sees; that
 * needs CAP_SYS_ADMIN over a mount the runtime has not locked, and where
 * it is refused attack_nsmax says so and exits 99.
 *
 *   attack_nsmax PROGRAM [ARG...]
 *
 * Exits 99 when its own set-up fails.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

static void die(const char *what)
{
	fprintf(stderr, "attack_nsmax: %s: %s\n", what, strerror(errno));
	exit(99);
}

static void write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);

	if (fd < 0)
		die(path);
	if (write(fd, text, strlen(text)) != (ssize_t)strlen(text))
		die(path);
	close(fd);
}

static void writable_proc_sys(void)
{
	struct statvfs st;
	unsigned long keep = 0;

	if (statvfs("/proc/sys", &st) < 0)
		die("statvfs /proc/sys");
	if (!(st.f_flag & ST_RDONLY))
		return;
	/* A bind remount must keep the flags the runtime set, or it is refused
	 * where they are locked. */
	if (st.f_flag & ST_NOSUID)
		keep |= MS_NOSUID;
	if (st.f_flag & ST_NODEV)
		keep |= MS_NODEV;
	if (st.f_flag & ST_NOEXEC)
		keep |= MS_NOEXEC;
	if (unshare(CLONE_NEWNS) < 0)
		die("/proc/sys is read-only here, and a mount namespace to remount it in cannot be made "
		    "(it needs CAP_SYS_ADMIN: run the tests on a machine, a VM, a systemd-nspawn or a privileged container)");
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		die("make the mounts of its own mount namespace private");
	if (mount(NULL, "/proc/sys", NULL, MS_REMOUNT | MS_BIND | keep, NULL) < 0)
		die("/proc/sys is read-only here, and the container's runtime does not let it be remounted read-write "
		    "(run the tests on a machine, a VM, a systemd-nspawn or a privileged container)");
}

int main(int argc, char **argv)
{
	int go[2], status;
	char path[64], c;
	pid_t child;

	if (argc < 2) {
		fprintf(stderr, "usage: attack_nsmax PROGRAM [ARG...]\n");
		return 99;
	}
	writable_proc_sys();
	if (pipe2(go, O_CLOEXEC) < 0)
		die("pipe");
	child = fork();
	if (child < 0)
		die("fork");
	if (child == 0) {
		close(go[1]);
		if (unshare(CLONE_NEWUSER) < 0)
			die("unshare");
		/* Wait for the parent to write the maps. */
		if (read(go[0], &c, 1) != 1)
			die("waiting for the id maps");
		write_file("/proc/sys/user/max_user_namespaces", "0\n");
		execvp(argv[1], argv + 1);
		die("exec");
	}
	close(go[0]);
	/* The child's unshare must have happened before its maps are written. */
	for (;;) {
		char own[64], its[64];
		ssize_t a, b;

		snprintf(path, sizeof path, "/proc/%d/ns/user", (int)child);
		a = readlink("/proc/self/ns/user", own, sizeof own - 1);
		b = readlink(path, its, sizeof its - 1);
		if (a < 0 || b < 0)
			die("readlink ns/user");
		own[a] = its[b] = 0;
		if (strcmp(own, its) != 0)
			break;
		usleep(1000);
	}
	snprintf(path, sizeof path, "/proc/%d/uid_map", (int)child);
	write_file(path, "0 0 65536\n");
	snprintf(path, sizeof path, "/proc/%d/gid_map", (int)child);
	write_file(path, "0 0 65536\n");
	if (write(go[1], "g", 1) != 1)
		die("signalling the child");
	close(go[1]);
	if (waitpid(child, &status, 0) < 0)
		die("waitpid");
	if (WIFSIGNALED(status))
		raise(WTERMSIG(status));
	return WIFEXITED(status) ? WEXITSTATUS(status) : 99;
}
