/*
 * floor: the least work any launcher of this kind can do, as a yardstick
 * for distrorun's start-up.  It makes exactly the system calls the job
 * needs and nothing else: no config, no checks, no messages on success.
 *
 *     floor DIR [VOLUME...] -- COMMAND [ARG...]
 *
 * Each VOLUME is bound recursively at the same path inside DIR; /proc and
 * /sys always are.  Built two ways:
 *   default     unprivileged: user + mount namespace, ids mapped to themselves
 *   -DSETUID    installed setuid root: mount namespace only, then the
 *               privileges are dropped back to the caller's before exec
 * and each also with -DFAIR, the floor of what distrorun's default config
 * does beyond that: the caller looked up through NSS (getpwuid, getgrgid),
 * and DIR's /etc/passwd and /etc/group with one line each added, written
 * into one ramfs of its own and bound read-only over the two files.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <limits.h>
#include <linux/openat2.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#define VOLUME_ATTRS (MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV)
#define DEV_ATTRS MOUNT_ATTR_NOSUID
#define KERNFS_ATTRS (MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC)

static void die(const char *fmt, ...)
{
	int saved = errno;
	va_list ap;

	fputs("floor: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, ": %s\n", strerror(saved));
	exit(125);
}

#ifndef SETUID
static void write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	size_t len = strlen(text);

	if (fd < 0)
		die("open %s", path);
	if (write(fd, text, len) != (ssize_t)len)
		die("write %s", path);
	close(fd);
}

static void enter_user_namespace(uid_t uid, gid_t gid)
{
	char map[64];

	if (unshare(CLONE_NEWUSER | CLONE_NEWNS) < 0)
		die("unshare(CLONE_NEWUSER|CLONE_NEWNS)");
	/* The kernel refuses an unprivileged gid_map until setgroups is denied. */
	write_file("/proc/self/setgroups", "deny");
	snprintf(map, sizeof(map), "%u %u 1", uid, uid);
	write_file("/proc/self/uid_map", map);
	snprintf(map, sizeof(map), "%u %u 1", gid, gid);
	write_file("/proc/self/gid_map", map);
}
#endif

/* Detached recursive copy of SRC with ATTRS set on every mount in it. */
static int clone_tree(const char *src, unsigned long long attrs)
{
	struct mount_attr attr = { .attr_set = attrs };
	int fd = syscall(SYS_open_tree, AT_FDCWD, src,
			 OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);

	if (fd < 0)
		die("open_tree %s", src);
	if (syscall(SYS_mount_setattr, fd, "", AT_EMPTY_PATH | AT_RECURSIVE,
		    &attr, sizeof(attr)) < 0)
		die("mount_setattr %s", src);
	return fd;
}

/* DST resolved inside the root; a symlink anywhere on the way is refused. */
static int open_target(int rootfd, const char *dst)
{
	struct open_how how = {
		.flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
		.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS |
			   RESOLVE_NO_MAGICLINKS,
	};
	int fd = syscall(SYS_openat2, rootfd, dst, &how, sizeof(how));

	if (fd < 0)
		die("openat2 %s inside the root", dst);
	return fd;
}

static void bind_volume(int rootfd, const char *path, unsigned long long attrs)
{
	int tree = clone_tree(path, attrs);
	int target = open_target(rootfd, path);

	if (syscall(SYS_move_mount, tree, "", target, "",
		    MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
		die("move_mount %s", path);
	close(target);
	close(tree);
}

/* TMPFS, when not -1, is attached on DIR after the copy, beneath it. */
static int mount_root(const char *dir, int ramfs)
{
	int tree = clone_tree(dir, VOLUME_ATTRS);
	int rootfd;

	if (ramfs >= 0 && syscall(SYS_move_mount, ramfs, "", AT_FDCWD, dir,
				  MOVE_MOUNT_F_EMPTY_PATH) < 0)
		die("move_mount the ramfs on %s", dir);
	if (syscall(SYS_move_mount, tree, "", AT_FDCWD, dir,
		    MOVE_MOUNT_F_EMPTY_PATH) < 0)
		die("move_mount %s", dir);
	close(tree);
	/* Opened after the move so that it names the new mount, not the one beneath. */
	rootfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (rootfd < 0)
		die("open %s", dir);
	return rootfd;
}

static void switch_root(int rootfd, const char *cwd)
{
	if (fchdir(rootfd) < 0)
		die("fchdir to the new root");
	if (syscall(SYS_pivot_root, ".", ".") < 0)
		die("pivot_root");
	/* The old root now sits on top of the new one; detaching it unveils the new root. */
	if (umount2(".", MNT_DETACH) < 0)
		die("umount2 the old root");
	if (chdir(cwd) < 0)
		die("chdir %s", cwd);
}

#ifdef FAIR
/* A copy of DIR's FILE plus LINE, in the ramfs TMPFS under NAME. */
static void write_merged(int ramfs, const char *dir, const char *file,
			 const char *name, const char *line)
{
	char path[PATH_MAX], buf[1 << 16];
	int in, out;
	ssize_t n;

	snprintf(path, sizeof(path), "%s%s", dir, file);
	in = open(path, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		die("open %s", path);
	out = openat(ramfs, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (out < 0)
		die("create %s in the ramfs", name);
	while ((n = read(in, buf, sizeof(buf))) > 0)
		if (write(out, buf, n) != n)
			die("write %s", name);
	if (n < 0)
		die("read %s", path);
	if (write(out, line, strlen(line)) != (ssize_t)strlen(line))
		die("write %s", name);
	close(in);
	close(out);
}

/* Binds NAME of RAMFS (read-only, as the copy is) over FILE in the new root. */
static void bind_file(int rootfd, int ramfs, const char *name, const char *file)
{
	int copy = syscall(SYS_open_tree, ramfs, name, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
	struct open_how how = {
		.flags = O_PATH | O_CLOEXEC,
		.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
	};
	int target;

	if (copy < 0)
		die("open_tree %s", name);
	target = syscall(SYS_openat2, rootfd, file, &how, sizeof(how));
	if (target < 0)
		die("openat2 %s inside the root", file);
	if (syscall(SYS_move_mount, copy, "", target, "",
		    MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
		die("move_mount %s", file);
	close(target);
	close(copy);
}

/*
 * A ramfs holding DIR's /etc/passwd and /etc/group with one line added to
 * each, made read-only once they are written, so that the binds cloned from
 * it are too.  It is attached beneath the new root (see mount_root), not left
 * detached: closing a detached mount unmounts it on its own, which waits out
 * an RCU grace period, while beneath the root it goes with the old root in
 * the one unmount that pivot_root needs anyway.  distrorun does the same.
 */
static int identity_ramfs(const char *dir, const char *pw_line, const char *gr_line)
{
	struct mount_attr attr = { .attr_set = MOUNT_ATTR_RDONLY | KERNFS_ATTRS };
	int fs = syscall(SYS_fsopen, "ramfs", FSOPEN_CLOEXEC), ramfs;

	if (fs < 0)
		die("fsopen ramfs");
	if (syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
		die("fsconfig");
	ramfs = syscall(SYS_fsmount, fs, FSMOUNT_CLOEXEC, KERNFS_ATTRS);
	if (ramfs < 0)
		die("fsmount");
	close(fs);
	write_merged(ramfs, dir, "/etc/passwd", "passwd", pw_line);
	write_merged(ramfs, dir, "/etc/group", "group", gr_line);
	if (syscall(SYS_mount_setattr, ramfs, "", AT_EMPTY_PATH, &attr, sizeof(attr)) < 0)
		die("mount_setattr the ramfs");
	return ramfs;
}

static void bind_identity(int rootfd, int ramfs)
{
	bind_file(rootfd, ramfs, "passwd", "/etc/passwd");
	bind_file(rootfd, ramfs, "group", "/etc/group");
	close(ramfs);
}
#endif

#ifdef SETUID
static void drop_privileges(uid_t uid, gid_t gid)
{
	gid_t groups[NGROUPS_MAX];
	int n = getgroups(NGROUPS_MAX, groups);

	if (n < 0)
		die("getgroups");
	if (setgroups(n, groups) < 0)
		die("setgroups");
	if (setresgid(gid, gid, gid) < 0)
		die("setresgid %u", gid);
	if (setresuid(uid, uid, uid) < 0)
		die("setresuid %u", uid);
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		die("prctl(PR_SET_NO_NEW_PRIVS)");
}
#endif

int main(int argc, char **argv)
{
	uid_t uid = getuid();
	gid_t gid = getgid();
	char cwd[4096];
	int sep, i, rootfd, ramfs = -1;
#ifdef FAIR
	char pw_line[1024], gr_line[1024];
	struct passwd *pw;
	struct group *gr;
#endif

	for (sep = 2; sep < argc && strcmp(argv[sep], "--") != 0; sep++)
		;
	if (argc < 2 || sep + 1 >= argc) {
		fprintf(stderr, "usage: floor DIR [VOLUME...] -- COMMAND [ARG...]\n");
		return 125;
	}
	if (!getcwd(cwd, sizeof(cwd)))
		die("getcwd");
#ifdef FAIR
	errno = ENOENT;
	pw = getpwuid(uid);
	if (!pw)
		die("getpwuid %u", uid);
	snprintf(pw_line, sizeof(pw_line), "%s:x:%u:%u:%s:%s:%s\n", pw->pw_name,
		 pw->pw_uid, pw->pw_gid, pw->pw_gecos, pw->pw_dir, pw->pw_shell);
	errno = ENOENT;
	gr = getgrgid(gid);
	if (!gr)
		die("getgrgid %u", gid);
	snprintf(gr_line, sizeof(gr_line), "%s:x:%u:\n", gr->gr_name, gr->gr_gid);
#endif

#ifdef SETUID
	if (unshare(CLONE_NEWNS) < 0)
		die("unshare(CLONE_NEWNS)");
#else
	enter_user_namespace(uid, gid);
#endif
	/* Host mounts still propagate in; nothing made here leaks out. */
	if (mount(NULL, "/", NULL, MS_SLAVE | MS_REC, NULL) < 0)
		die("mount --make-rslave /");

#ifdef FAIR
	ramfs = identity_ramfs(argv[1], pw_line, gr_line);
#endif
	rootfd = mount_root(argv[1], ramfs);
	for (i = 2; i < sep; i++)
		bind_volume(rootfd, argv[i],
			    strcmp(argv[i], "/dev") == 0 ? DEV_ATTRS : VOLUME_ATTRS);
	bind_volume(rootfd, "/proc", KERNFS_ATTRS);
	bind_volume(rootfd, "/sys", KERNFS_ATTRS);
#ifdef FAIR
	bind_identity(rootfd, ramfs);
#endif
	switch_root(rootfd, cwd);
	close(rootfd);

#ifdef SETUID
	drop_privileges(uid, gid);
#endif
	execvp(argv[sep + 1], argv + sep + 1);
	fprintf(stderr, "floor: exec %s: %s\n", argv[sep + 1], strerror(errno));
	return errno == ENOENT ? 127 : 126;
}
