/*
 * dropto: the test harness's way to run a program as an unprivileged user
 * with its environment, file descriptors and working directory untouched.
 * su and runuser reset parts of the environment; the tests need it exact.
 *
 *   dropto [--deny-userns=EPERM|ENOSPC] [--kernel=4.18|current] USER -- PROGRAM [ARG...]
 *
 * Run as root. --deny-userns installs a seccomp filter that makes creating a
 * user namespace fail with the given errno (clone3 fails with ENOSYS so that
 * callers fall back to clone, where the flags can be inspected). The filter is
 * installed without no_new_privs, which root may do: the setuid helper must
 * still gain root under it, as it does under a container runtime's profile.
 *
 * --kernel=4.18 installs a filter that answers ENOSYS for every system call
 * that Linux 4.18 (RHEL 8) does not have, as that kernel would: the programs
 * then take the paths they take there. --kernel=current installs a filter
 * of the same size that changes nothing, for timing one against the other.
 *
 * Exit status 125 means the harness itself failed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <sched.h>
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define HARNESS_FAILED 125

static void fail(const char *what)
{
	fprintf(stderr, "dropto: %s: %s\n", what, strerror(errno));
	exit(HARNESS_FAILED);
}

static void usage(const char *why)
{
	fprintf(stderr, "dropto: %s\nusage: dropto [--deny-userns=EPERM|ENOSPC] [--kernel=4.18|current] USER -- PROGRAM [ARG...]\n", why);
	exit(HARNESS_FAILED);
}

static void deny_userns(int err)
{
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
	int rc;

	if (!ctx) {
		fprintf(stderr, "dropto: seccomp_init failed\n");
		exit(HARNESS_FAILED);
	}
	rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0);
	if (rc == 0)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(err), SCMP_SYS(unshare), 1,
				      SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_NEWUSER, CLONE_NEWUSER));
	if (rc == 0)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(err), SCMP_SYS(clone), 1,
				      SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_NEWUSER, CLONE_NEWUSER));
	if (rc == 0)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
	if (rc == 0)
		rc = seccomp_load(ctx);
	if (rc != 0) {
		errno = -rc;
		fail("installing the seccomp filter (needs root)");
	}
	seccomp_release(ctx);
}

/* The calls added after Linux 4.18, as <asm/unistd_64.h> numbers them, so
 * that an older libseccomp that does not know the names still filters them. */
static const struct {
	const char *name;
	int nr;
} newer_than_4_18[] = {
	{ "pidfd_send_signal", 424 }, { "io_uring_setup", 425 }, { "io_uring_enter", 426 },
	{ "io_uring_register", 427 }, { "open_tree", 428 }, { "move_mount", 429 },
	{ "fsopen", 430 }, { "fsconfig", 431 }, { "fsmount", 432 }, { "fspick", 433 },
	{ "pidfd_open", 434 }, { "clone3", 435 }, { "close_range", 436 }, { "openat2", 437 },
	{ "pidfd_getfd", 438 }, { "faccessat2", 439 }, { "process_madvise", 440 },
	{ "epoll_pwait2", 441 }, { "mount_setattr", 442 }, { "quotactl_fd", 443 },
	{ "landlock_create_ruleset", 444 }, { "landlock_add_rule", 445 },
	{ "landlock_restrict_self", 446 }, { "memfd_secret", 447 },
	{ "process_mrelease", 448 }, { "futex_waitv", 449 },
	{ "set_mempolicy_home_node", 450 }, { "cachestat", 451 }, { "fchmodat2", 452 },
	{ "map_shadow_stack", 453 }, { "futex_wake", 454 }, { "futex_wait", 455 },
	{ "futex_requeue", 456 }, { "statmount", 457 }, { "listmount", 458 },
	{ "lsm_get_self_attr", 459 }, { "lsm_set_self_attr", 460 }, { "lsm_list_modules", 461 },
	{ "mseal", 462 }, { "setxattrat", 463 }, { "getxattrat", 464 }, { "listxattrat", 465 },
	{ "removexattrat", 466 }, { "open_tree_attr", 467 },
};

/* With shift 0, the calls newer than 4.18 fail with ENOSYS; with a shift
 * past every system call, the same filter, just as large and as costly to
 * build and to run, changes nothing: the fair baseline for timing. */
static void old_kernel(int shift)
{
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
	size_t i;
	int rc;

	if (!ctx) {
		fprintf(stderr, "dropto: seccomp_init failed\n");
		exit(HARNESS_FAILED);
	}
	rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0);
	for (i = 0; rc == 0 && i < sizeof(newer_than_4_18) / sizeof(newer_than_4_18[0]); i++)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), newer_than_4_18[i].nr + shift, 0);
	if (rc == 0)
		rc = seccomp_load(ctx);
	if (rc != 0) {
		errno = -rc;
		fail("installing the old-kernel seccomp filter (needs root)");
	}
	seccomp_release(ctx);
}

int main(int argc, char **argv)
{
	int deny_errno = 0;
	int as_old_kernel = 0;
	int i = 1;
	struct passwd *pw;
	uid_t ruid, euid, suid;
	gid_t rgid, egid, sgid;

	if (i < argc && strncmp(argv[i], "--deny-userns=", 14) == 0) {
		const char *name = argv[i] + 14;

		if (strcmp(name, "EPERM") == 0)
			deny_errno = EPERM;
		else if (strcmp(name, "ENOSPC") == 0)
			deny_errno = ENOSPC;
		else
			usage("--deny-userns takes EPERM or ENOSPC");
		i++;
	}
	if (i < argc && strcmp(argv[i], "--kernel=4.18") == 0) {
		as_old_kernel = 1;
		i++;
	} else if (i < argc && strcmp(argv[i], "--kernel=current") == 0) {
		as_old_kernel = 2;
		i++;
	} else if (i < argc && strncmp(argv[i], "--kernel=", 9) == 0) {
		usage("--kernel takes 4.18 or current");
	}
	if (argc - i < 3 || strcmp(argv[i + 1], "--") != 0)
		usage("expected USER -- PROGRAM [ARG...]");
	if (geteuid() != 0)
		usage("must run as root");

	errno = 0;
	pw = getpwnam(argv[i]);
	if (!pw) {
		if (errno == 0)
			fprintf(stderr, "dropto: no such user: %s\n", argv[i]);
		else
			fprintf(stderr, "dropto: looking up user %s: %s\n", argv[i], strerror(errno));
		return HARNESS_FAILED;
	}

	if (as_old_kernel)
		old_kernel(as_old_kernel == 2 ? 1000 : 0);
	if (deny_errno)
		deny_userns(deny_errno);

	if (initgroups(pw->pw_name, pw->pw_gid) != 0)
		fail("initgroups");
	if (setresgid(pw->pw_gid, pw->pw_gid, pw->pw_gid) != 0)
		fail("setresgid");
	if (setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid) != 0)
		fail("setresuid");

	if (getresuid(&ruid, &euid, &suid) != 0 || getresgid(&rgid, &egid, &sgid) != 0)
		fail("reading back the ids");
	if (ruid != pw->pw_uid || euid != pw->pw_uid || suid != pw->pw_uid ||
	    rgid != pw->pw_gid || egid != pw->pw_gid || sgid != pw->pw_gid) {
		fprintf(stderr, "dropto: ids did not change to %s\n", pw->pw_name);
		return HARNESS_FAILED;
	}
	if (pw->pw_uid != 0 && setuid(0) == 0) {
		fprintf(stderr, "dropto: could regain root after dropping to %s\n", pw->pw_name);
		return HARNESS_FAILED;
	}

	execvp(argv[i + 2], argv + i + 2);
	fprintf(stderr, "dropto: cannot execute %s: %s\n", argv[i + 2], strerror(errno));
	return HARNESS_FAILED;
}
