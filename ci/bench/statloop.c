/*
 * statloop: path look-ups with nothing else around them, to show whether
 * resolving paths inside distrorun's mount namespace costs more than in a
 * plain chroot.  A shell loop of stat(1) would measure fork and exec instead.
 *
 *     statloop COUNT PATH...
 *
 * Stats the PATHs in turn, COUNT times in all.  Paths that do not exist are
 * fine: failed look-ups (a PATH search) are part of real workloads too.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

int main(int argc, char **argv)
{
	struct stat st;
	long count, i;
	long found = 0;
	char *end;

	if (argc < 3) {
		fprintf(stderr, "usage: statloop COUNT PATH...\n");
		return 2;
	}
	count = strtol(argv[1], &end, 10);
	if (*end != '\0' || count < 1) {
		fprintf(stderr, "statloop: bad COUNT %s\n", argv[1]);
		return 2;
	}
	for (i = 0; i < count; i++)
		found += stat(argv[2 + i % (argc - 2)], &st) == 0;
	/* A run that found nothing is looking at the wrong tree. */
	if (found == 0) {
		fprintf(stderr, "statloop: none of the paths exist\n");
		return 1;
	}
	return 0;
}
