/*
 * exchange_loop A B: swaps the two paths with renameat2(RENAME_EXCHANGE)
 * as fast as it can until killed, the way an attacker races a check made
 * on a path against its use.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <errno.h>

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: exchange_loop A B\n");
		return 2;
	}
	for (;;) {
		if (renameat2(AT_FDCWD, argv[1], AT_FDCWD, argv[2], RENAME_EXCHANGE) != 0) {
			fprintf(stderr, "exchange_loop: %s\n", strerror(errno));
			return 1;
		}
	}
}
