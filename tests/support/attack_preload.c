/*
 * attack_preload: a library that, once loaded, leaves a file named after the
 * pid and effective uid of the process that loaded it in MARKER_DIR (given
 * with -D at compile time). tests/helper_attacks/environment.rs offers it
 * through LD_PRELOAD to the setuid helper, which must never load it.
 */
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#ifndef MARKER_DIR
#error "compile with -DMARKER_DIR=\"/some/dir\""
#endif

__attribute__((constructor)) static void leave_marker(void)
{
	char path[4096];
	int fd;

	snprintf(path, sizeof path, "%s/loaded-pid%d-euid%d", MARKER_DIR, (int)getpid(), (int)geteuid());
	fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
	if (fd >= 0)
		close(fd);
}
