/* commit_util: what every part of a commit uses — error lines, test
 * crash points, finding a redirect's lower object,
 * emptying the upper and work. Calls nothing else of commit/. */
#include "commit/commit_int.h"
#include "layers/ovlfmt.h"
#include "store/rmtree.h"
#include "util/util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void seterr(char *err, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void seterr(char *err, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
}

int pfs_cfail(struct pfs_cctx *c, int err, const char *fmt, ...)
{
	char msg[PATH_MAX + 512], name[16];
	va_list ap;

	/* The first failure is the one to report; the rest is unwinding. */
	if (c->err[0])
		return err;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(c->err, c->errlen, "%s: %s (%s)", msg, strerror(-err),
		 pfs_errname(-err, name, sizeof(name)));
	return err;
}

int pfs_crefuse(struct pfs_cctx *c, int err, const char *fmt, ...)
{
	va_list ap;

	if (c->err[0])
		return err;
	va_start(ap, fmt);
	vsnprintf(c->err, c->errlen, fmt, ap);
	va_end(ap);
	return err;
}

int pfs_cfail_at(struct pfs_cctx *c, int err, const char *op, const char *root, const char *name)
{
	return pfs_cfail(c, err, "%s %s%s%s%s%s", op, root, c->path.len ? "/" : "",
			 c->path.len ? c->path.s : "", name ? "/" : "", name ? name : "");
}

void pfs_commit_crashpoint(const char *step)
{
	pfs_crashpoint(step);
}

/* --------------------------------------------------------------------
 * redirects */

/* Lookups that fail like this mean "nothing there to use". */
static bool unreachable(int err)
{
	return err == -ENOENT || err == -ENOTDIR || err == -ELOOP || err == -EXDEV;
}

static bool bad_component(const char *s)
{
	return !*s || strcmp(s, ".") == 0 || strcmp(s, "..") == 0;
}

int pfs_commit_redirect(struct pfs_cctx *c, int parent_lfd, const char *redir, int *dfd,
			const char **leaf)
{
	char *copy, *p, *slash;
	int fd, nfd, ret;

	*dfd = -1;
	if (redir[0] != '/') {
		if (strchr(redir, '/') || bad_component(redir))
			return -EINVAL;
		if (parent_lfd < 0)
			return -ENOENT;
		fd = pfs_st_openat(c->st, parent_lfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
		if (fd < 0)
			return fd;
		*dfd = fd;
		*leaf = redir;
		return 0;
	}
	/* Absolute: from the lower root, one component at a time, never
	 * through a symlink or into another mount. */
	copy = strdup(redir + 1);
	if (!copy)
		return -ENOMEM;
	fd = pfs_st_openat(c->st, c->lroot, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
	if (fd < 0) {
		ret = fd;
		goto out;
	}
	for (p = copy; (slash = strchr(p, '/')); p = slash + 1) {
		*slash = '\0';
		if (bad_component(p)) {
			ret = -EINVAL;
			goto out;
		}
		ret = pfs_open_subdir(c->st, fd, p, &nfd);
		if (ret < 0) {
			if (unreachable(ret))
				ret = -ENOENT;
			goto out;
		}
		close(fd);
		fd = nfd;
	}
	if (bad_component(p)) {
		ret = -EINVAL;
		goto out;
	}
	*dfd = fd;
	fd = -1;
	*leaf = redir + 1 + (p - copy);
	ret = 0;
out:
	if (fd >= 0)
		close(fd);
	free(copy);
	return ret;
}

/* --------------------------------------------------------------------
 * emptying the upper and work */

static void crash_tick(void *step)
{
	pfs_commit_crashpoint(step);
}

/* The marks of an upper's root that an empty upper must not carry: it
 * holds no path of a mapping table's view, nor anything hidden from the
 * lowers it was mounted over. */
static const char *const upper_marks[] = {
	"trusted.overlay." PFS_OVL_MAPPED, "user.overlay." PFS_OVL_MAPPED,
	"trusted.overlay." PFS_OVL_LOWERS, "user.overlay." PFS_OVL_LOWERS,
};

/* Empty the directory path; unmark: and drop the upper's marks (best
 * effort: an upper that cannot carry them has none). */
static int empty_dir(struct pfs_store *st, const char *what, const char *path, bool unmark,
		     const char *step, char *err, size_t errlen)
{
	char where[PATH_MAX];
	int fd, ret;

	fd = pfs_st_openat(st, AT_FDCWD, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
	if (fd < 0) {
		if (fd == -ENOENT)
			return 0; /* already gone */
		seterr(err, errlen, "cannot open the %s %s: %s", what, path, strerror(-fd));
		return fd;
	}
	ret = pfs_rmtree_contents_each(st, fd, where, sizeof(where), step ? crash_tick : NULL,
				       (void *)step);
	if (ret == -EXDEV)
		seterr(err, errlen, "not removing %s/%s: another filesystem is mounted there", path,
		       where);
	else if (ret < 0)
		seterr(err, errlen, "cannot remove %s/%s: %s", path, where, strerror(-ret));
	else
		ret = pfs_st_sync(st, fd, false);
	for (size_t i = 0; ret == 0 && unmark && i < sizeof(upper_marks) / sizeof(*upper_marks); i++)
		pfs_st_removexattr(st, pfs_ref_fd(fd), upper_marks[i]);
	close(fd);
	return ret;
}

int pfs_discard_paths(struct pfs_store *st, const char *upper, const char *work, char *err,
		      size_t errlen)
{
	return pfs_empty_layers(st, upper, work, NULL, err, errlen);
}

int pfs_empty_layers(struct pfs_store *st, const char *upper, const char *work,
		     const char *step, char *err, size_t errlen)
{
	int ret = empty_dir(st, "upper", upper, true, step, err, errlen);

	if (ret == 0 && work)
		ret = empty_dir(st, "work directory", work, false, step, err, errlen);
	return ret;
}
