/*
 * suid_sandbox: what Chrome's setuid sandbox (chrome-sandbox) does, for the
 * tests of setuid sandboxes on kernels without user namespaces. Installed
 * setuid root inside a test tree, it puts the command into new PID, network,
 * IPC and mount namespaces, which needs root, then drops back to the caller
 * for good and runs the command as the PID namespace's first process.
 *
 *   suid_sandbox COMMAND [ARG...]
 *
 * Exit status 1, with a message, when it cannot sandbox; otherwise the
 * command's status.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void fail(const char *what)
{
	fprintf(stderr, "suid_sandbox: %s: %s\n", what, strerror(errno));
	exit(1);
}

int main(int argc, char **argv)
{
	uid_t uid = getuid();
	gid_t gid = getgid();
	pid_t child;
	int status;

	if (argc < 2) {
		fprintf(stderr, "usage: suid_sandbox COMMAND [ARG...]\n");
		return 1;
	}
	if (unshare(CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWNS) != 0)
		fail("unshare");
	if (setresgid(gid, gid, gid) != 0 || setresuid(uid, uid, uid) != 0)
		fail("drop privileges");
	if (setuid(0) == 0) {
		fprintf(stderr, "suid_sandbox: the privilege drop did not hold\n");
		return 1;
	}
	child = fork();
	if (child < 0)
		fail("fork");
	if (child == 0) {
		if (getpid() != 1) {
			fprintf(stderr, "suid_sandbox: not in a new PID namespace\n");
			_exit(1);
		}
		execvp(argv[1], argv + 1);
		fail("exec");
	}
	if (waitpid(child, &status, 0) < 0)
		fail("waitpid");
	return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
