/* uring_kick: see uring_kick.h. */
#include "fuse/uring_kick.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

struct kick_arg {
	unsigned cpu;
	char path[];
};

/* The lookup is made by a child process (stat(1), on this thread's CPU,
 * which it inherits), never by a thread of the daemon: a request to its
 * own mount that is taken up waits for its answer uninterruptibly, so a
 * daemon killed meanwhile (kill -9, a crash point) kept that thread, never
 * released /dev/fuse, and the mount hung for good. The child holds none of
 * the daemon's descriptors (all close-on-exec): once the daemon is gone,
 * its lookup fails and it exits. */
static void kick_lookup(const char *path)
{
	char *argv[] = {"stat", "--", (char *)path, NULL};
	char *env[] = {"LC_ALL=C", NULL};
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	sigset_t none;
	pid_t pid;

	if (posix_spawn_file_actions_init(&fa) != 0)
		return;
	if (posix_spawnattr_init(&at) != 0) {
		posix_spawn_file_actions_destroy(&fa);
		return;
	}
	sigemptyset(&none);
	posix_spawnattr_setsigmask(&at, &none);
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	/* By its full name, with an environment of its own: the daemon (root,
	 * often) never runs what its caller's PATH would find. */
	if (posix_spawn(&pid, "/usr/bin/stat", &fa, &at, argv, env) == 0 ||
	    posix_spawn(&pid, "/bin/stat", &fa, &at, argv, env) == 0)
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
	posix_spawnattr_destroy(&at);
	posix_spawn_file_actions_destroy(&fa);
}

static void *kick_main(void *arg)
{
	struct kick_arg *k = arg;
	cpu_set_t set;
	sigset_t all;

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	CPU_ZERO(&set);
	CPU_SET(k->cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set) == 0)
		kick_lookup(k->path);
	free(k);
	return NULL;
}

void pfs_uring_kick_start(unsigned cpu, const char *mountpoint, const char *name)
{
	size_t len = strlen(mountpoint) + 1 + strlen(name) + 1;
	struct kick_arg *k = malloc(sizeof(*k) + len);
	pthread_attr_t at;
	pthread_t t;

	if (!k)
		return;
	k->cpu = cpu;
	snprintf(k->path, len, "%s/%s", mountpoint, name);
	if (pthread_attr_init(&at) != 0) {
		free(k);
		return;
	}
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&at, 64 * 1024);
	if (pthread_create(&t, &at, kick_main, k) != 0)
		free(k);
	pthread_attr_destroy(&at);
}
