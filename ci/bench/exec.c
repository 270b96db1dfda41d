/*
 * exec: a statically linked program that only execs its arguments, in
 * front of the setuid floor, so that the helper's floor pays for two
 * execs, as distrorun's helper path does (distrorun, then the helper).
 *
 *     exec PROGRAM [ARG...]
 */
#include <stdio.h>
#include <string.h>
#include <errno.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc < 2) {
		fputs("usage: exec PROGRAM [ARG...]\n", stderr);
		return 125;
	}
	execv(argv[1], argv + 1);
	fprintf(stderr, "exec %s: %s\n", argv[1], strerror(errno));
	return 126;
}
