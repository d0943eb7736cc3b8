#include "selfmnt.h"
#include "view.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int pfs_selfmnt_prepare(struct pfs_fs *fs)
{
	char *real = realpath(fs->mountpoint, NULL), *a = NULL, *b = NULL;
	struct stat st;
	int pfd = -1, ret = 0;

	/* realpath: mount(2) follows a symlinked last component, so the name
	 * to watch for is the one it lands on. */
	if (!real || !(a = strdup(real)) || !(b = strdup(real))) {
		ret = real ? -ENOMEM : -errno;
		goto out;
	}
	if (strcmp(real, "/") == 0)
		goto out; /* no parent holds it by name */
	fs->cover_fd = open(real, O_PATH | O_DIRECTORY | O_CLOEXEC);
	pfd = open(dirname(a), O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fs->cover_fd < 0 || pfd < 0 || fstat(pfd, &st) < 0) {
		ret = -errno;
		goto out;
	}
	fs->cover_name = strdup(basename(b));
	if (!fs->cover_name) {
		ret = -ENOMEM;
		goto out;
	}
	fs->cover_pdev = st.st_dev;
	fs->cover_pino = st.st_ino;
out:
	if (pfd >= 0)
		close(pfd);
	free(real);
	free(a);
	free(b);
	return ret;
}

void pfs_selfmnt_close(struct pfs_fs *fs)
{
	if (fs->cover_fd >= 0)
		close(fs->cover_fd);
	fs->cover_fd = -1;
	free(fs->cover_name);
	fs->cover_name = NULL;
}

/* Known by its parent directory and name, never by looking at the name:
 * that would already cross into the mount. The name costs one compare on
 * every lookup; only a match costs an fstat. */
bool pfs_selfmnt_is(struct pfs_fs *fs, int dirfd, const char *name)
{
	struct stat st;

	return fs->cover_name && strcmp(name, fs->cover_name) == 0 && fstat(dirfd, &st) == 0 &&
	       st.st_dev == fs->cover_pdev && st.st_ino == fs->cover_pino;
}

int pfs_selfmnt_openat(struct pfs_fs *fs, int dirfd, const char *name, int flags)
{
	if (!pfs_selfmnt_is(fs, dirfd, name))
		return openat(dirfd, name, flags);
	if (flags & O_PATH)
		return fcntl(fs->cover_fd, F_DUPFD_CLOEXEC, 0);
	/* "." stays on the covered directory: it never crosses a mount. */
	return openat(fs->cover_fd, ".", flags & ~(O_NOFOLLOW | O_CREAT | O_EXCL));
}

int pfs_selfmnt_fstatat(struct pfs_fs *fs, int dirfd, const char *name, struct stat *st,
			int flags)
{
	if (!pfs_selfmnt_is(fs, dirfd, name))
		return fstatat(dirfd, name, st, flags);
	return fstat(fs->cover_fd, st);
}
