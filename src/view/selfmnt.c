#include "view/selfmnt.h"
#include "view/view.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
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
	ret = pfs_st_openat(fs->store, AT_FDCWD, real, O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
	if (ret < 0)
		goto out;
	fs->cover_fd = ret;
	ret = pfs_st_openat(fs->store, AT_FDCWD, dirname(a), O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
	if (ret < 0)
		goto out;
	pfd = ret;
	ret = fstat(pfd, &st) < 0 ? -errno : 0;
	if (ret < 0)
		goto out;
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

/* The store's answer as open(2) and fstatat(2) give it: -1 and errno. */
static int as_errno(int ret)
{
	if (ret >= 0)
		return ret;
	errno = -ret;
	return -1;
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
		return as_errno(pfs_st_openat(fs->store, dirfd, name, flags, 0));
	if (flags & O_PATH)
		return fcntl(fs->cover_fd, F_DUPFD_CLOEXEC, 0);
	/* "." stays on the covered directory: it never crosses a mount. */
	return as_errno(pfs_st_openat(fs->store, fs->cover_fd, ".",
				      flags & ~(O_NOFOLLOW | O_CREAT | O_EXCL), 0));
}

int pfs_selfmnt_fstatat(struct pfs_fs *fs, int dirfd, const char *name, struct stat *st,
			int flags)
{
	if (!pfs_selfmnt_is(fs, dirfd, name))
		return as_errno(pfs_st_stat(fs->store, dirfd, name, st, flags));
	return fstat(fs->cover_fd, st);
}

/* The walk below keeps the directories it went through, so that ".." is
 * the one it came from (as the kernel's, unless renamed meanwhile) and
 * beneath a start it can tell when it would climb above it. */
struct walk {
	int *fd;
	size_t n, cap;
	bool beneath; /* fd[0] is a floor: no "..", no absolute symlink */
	bool covered; /* the mount point is always what it covers */
};

static int dup_fd(int fd)
{
	int r = fcntl(fd, F_DUPFD_CLOEXEC, 0);

	return r < 0 ? -errno : r;
}

/* fd: a descriptor, or -errno. */
static int walk_push(struct walk *w, int fd)
{
	if (fd < 0)
		return fd;
	if (w->n == w->cap) {
		size_t nc = w->cap ? w->cap * 2 : 16;
		int *nf = realloc(w->fd, nc * sizeof(*nf));

		if (!nf) {
			close(fd);
			return -ENOMEM;
		}
		w->fd = nf;
		w->cap = nc;
	}
	w->fd[w->n++] = fd;
	return 0;
}

static void walk_drop(struct walk *w, size_t keep)
{
	while (w->n > keep)
		close(w->fd[--w->n]);
}

/* Start again from dirfd (copied), as a floor or not. */
static int walk_reset(struct walk *w, int dirfd, bool beneath)
{
	walk_drop(w, 0);
	w->beneath = beneath;
	return walk_push(w, dup_fd(dirfd));
}

static long openat2_res(struct pfs_fs *fs, int dirfd, const char *path, uint64_t resolve)
{
	struct open_how how = {.flags = O_PATH | O_DIRECTORY | O_CLOEXEC, .resolve = resolve};

	return pfs_st_open(fs->store, dirfd, path, &how);
}

static int open_slash(struct pfs_fs *fs)
{
	return pfs_st_openat(fs->store, AT_FDCWD, "/", O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
}

/* One name (not "." or "..") of the walk: a directory entered, or a
 * symlink whose text *link (owned) is to be walked in its place. */
static int walk_step(struct pfs_fs *fs, struct walk *w, const char *name, char **link)
{
	int cur = w->fd[w->n - 1];
	long fd = openat2_res(fs, cur, name, RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV);
	char *buf;
	ssize_t len;

	if (fd >= 0)
		return walk_push(w, (int)fd);
	if (fd == -EXDEV && pfs_selfmnt_is(fs, cur, name)) {
		/* An absolute path that reaches the mount point means the
		 * source there, as one spelled under it (target_split): the
		 * rest is taken beneath SOURCE. A walk already beneath (or
		 * of a path given on the command line) gets what the mount
		 * covers, as the name shows in the view. */
		if (!w->beneath && !w->covered)
			return walk_reset(w, fs->root_fd, true);
		return walk_push(w, dup_fd(fs->cover_fd));
	}
	if (fd == -EXDEV) { /* another filesystem mounted there */
		fd = openat2_res(fs, cur, name, RESOLVE_NO_SYMLINKS);
		return fd < 0 ? (int)fd : walk_push(w, (int)fd);
	}
	if (fd != -ELOOP)
		return (int)fd;
	/* Read as text and walked here, a symlink never takes the walk
	 * anywhere it could not go by names; a magic link's text is a path
	 * (or "type:[n]", no name) too, never a jump. */
	buf = malloc(PATH_MAX);
	if (!buf)
		return -ENOMEM;
	len = pfs_st_readlink(fs->store, cur, name, buf, PATH_MAX - 1);
	if (len < 0) {
		free(buf);
		return len == -EINVAL ? -ELOOP : (int)len;
	}
	buf[len] = '\0';
	*link = buf;
	return 0;
}

static int opendir_walk(struct pfs_fs *fs, int dirfd, const char *path, bool covered)
{
	const uint64_t beneath = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
	bool abs = path[0] == '/';
	long fd = openat2_res(fs, abs ? AT_FDCWD : dirfd, path,
			      RESOLVE_NO_XDEV | (abs ? 0 : beneath));
	struct walk w = {.covered = covered};
	int links = 0, ret;
	char *rest, *p;

	/* The common case: no mount on the way, so certainly not this one. */
	if (fd != -EXDEV)
		return (int)fd;
	rest = strdup(path);
	if (!rest)
		return -ENOMEM;
	ret = abs ? walk_push(&w, open_slash(fs))
		  : walk_reset(&w, dirfd, true);
	for (p = rest; ret == 0;) {
		char *name, *link = NULL, *joined = NULL;

		while (*p == '/')
			p++;
		if (!*p)
			break;
		name = p;
		p += strcspn(p, "/");
		if (*p)
			*p++ = '\0';
		if (strcmp(name, ".") == 0)
			continue;
		if (strcmp(name, "..") == 0) {
			if (w.n > 1)
				walk_drop(&w, w.n - 1);
			else if (w.beneath)
				ret = -EXDEV; /* above the floor: out of SOURCE */
			continue;             /* else "/.." is "/" */
		}
		ret = walk_step(fs, &w, name, &link);
		if (ret < 0 || !link)
			continue;
		if (++links > 40) { /* the kernel's limit */
			ret = -ELOOP;
		} else if (link[0] == '/' && w.beneath) {
			ret = -EXDEV; /* as RESOLVE_BENEATH */
		} else if (link[0] == '/') {
			walk_drop(&w, 0);
			ret = walk_push(&w, open_slash(fs));
		}
		if (ret == 0 && asprintf(&joined, "%s/%s", link, p) < 0)
			ret = -ENOMEM;
		free(link);
		if (ret < 0)
			break;
		free(rest);
		rest = p = joined;
	}
	fd = ret;
	if (ret == 0) {
		fd = fcntl(w.fd[w.n - 1], F_DUPFD_CLOEXEC, 0);
		if (fd < 0)
			fd = -errno;
	}
	walk_drop(&w, 0);
	free(w.fd);
	free(rest);
	return (int)fd;
}

int pfs_selfmnt_opendir(struct pfs_fs *fs, int dirfd, const char *path)
{
	return opendir_walk(fs, dirfd, path, false);
}

int pfs_selfmnt_opendir_covered(struct pfs_fs *fs, const char *path)
{
	return opendir_walk(fs, AT_FDCWD, path, true);
}
