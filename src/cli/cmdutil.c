/* cmdutil: the helpers daemon.c and client.c share (see cmdutil.h). */
#include "cli/cmdutil.h"
#include "cli/daemon.h"
#include "util/util.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

_Thread_local char pfs_said[PFS_SAID_LEN];
_Thread_local pid_t pfs_say_quiet_pid;

/* One line on stderr; also kept in pfs_said for the library, which asks
 * for silence in its own process only (a forked daemon speaks as usual). */
void say(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(pfs_said, sizeof(pfs_said), fmt, ap);
	va_end(ap);
	pfs_said[strcspn(pfs_said, "\n")] = '\0';
	if (pfs_say_quiet_pid == 0 || pfs_say_quiet_pid != getpid())
		fprintf(stderr, "prismfs: %s\n", pfs_said);
}

/* An absolute, canonical name for path without stat()ing path itself: the
 * mount point may be a dead FUSE mount that would hang or fail. */
char *canonical_noleaf(const char *path)
{
	char *a = strdup(path), *b = strdup(path), *dir = NULL, *out = NULL;
	const char *base;

	if (!a || !b)
		goto out;
	base = basename(b);
	dir = realpath(dirname(a), NULL);
	if (!dir)
		goto out;
	if (strcmp(base, "/") == 0 || strcmp(base, ".") == 0 || strcmp(base, "..") == 0) {
		out = realpath(path, NULL);
		goto out;
	}
	if (asprintf(&out, "%s/%s", strcmp(dir, "/") == 0 ? "" : dir, base) < 0)
		out = NULL;
out:
	free(a);
	free(b);
	free(dir);
	return out;
}

int find_mount(const char *path, struct pfs_mntent *e)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	int ret;

	if (!f)
		return -errno;
	ret = pfs_mountinfo_find(f, path, e);
	fclose(f);
	return ret;
}

