/*
 * envfd: the least front end the setuid helper can have.  It writes its own
 * environment into a sealed memfd, as distrorun does, and execs the helper
 * with that descriptor, so that the profile can set the helper alone
 * against distrorun's whole helper path, both two execs.
 *
 *     envfd HELPER NAME COMMAND [ARG...]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

extern char **environ;

int main(int argc, char **argv)
{
	char fdarg[16];
	char *args[argc + 4];
	int fd, i, n = 0;

	if (argc < 4) {
		fputs("usage: envfd HELPER NAME COMMAND [ARG...]\n", stderr);
		return 125;
	}
	fd = memfd_create("distrorun-environ", MFD_ALLOW_SEALING);
	if (fd < 0) {
		perror("envfd: memfd_create");
		return 125;
	}
	for (i = 0; environ[i]; i++) {
		size_t len = strlen(environ[i]) + 1;

		if (write(fd, environ[i], len) != (ssize_t)len) {
			perror("envfd: write");
			return 125;
		}
	}
	if (fcntl(fd, F_ADD_SEALS, F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE) < 0) {
		perror("envfd: seal");
		return 125;
	}
	snprintf(fdarg, sizeof(fdarg), "%d", fd);
	args[n++] = argv[1];
	args[n++] = "--env-fd";
	args[n++] = fdarg;
	args[n++] = argv[2];
	args[n++] = "--";
	for (i = 3; i < argc; i++)
		args[n++] = argv[i];
	args[n] = NULL;
	execv(argv[1], args);
	fprintf(stderr, "envfd: exec %s: %s\n", argv[1], strerror(errno));
	return 126;
}
