#include "store/meta.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <unistd.h>

/* Path-based l*xattr calls on an entry of a directory descriptor: through
 * /proc the directory is reached by its descriptor, so no path is ever
 * re-walked and a deep tree never meets PATH_MAX. */
static int proc_path(struct pfs_ref r, char *buf, size_t len)
{
	int n = snprintf(buf, len, "/proc/self/fd/%d/%s", r.dirfd, r.name);

	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

#define PROC_PATH_MAX (32 + NAME_MAX)

bool pfs_meta_private_xattr(const char *name)
{
	return strncmp(name, "trusted.overlay.", 16) == 0 ||
	       strncmp(name, "user.overlay.", 13) == 0;
}

ssize_t pfs_meta_getxattr(struct pfs_ref r, const char *name, void *buf, size_t len)
{
	char p[PROC_PATH_MAX];
	ssize_t n;
	int ret;

	if (r.fd >= 0) {
		n = fgetxattr(r.fd, name, buf, len);
	} else {
		ret = proc_path(r, p, sizeof(p));
		if (ret < 0)
			return ret;
		n = lgetxattr(p, name, buf, len);
	}
	return n < 0 ? -errno : n;
}

static ssize_t x_list(struct pfs_ref r, const char *p, char *buf, size_t len)
{
	ssize_t n = r.fd >= 0 ? flistxattr(r.fd, buf, len) : llistxattr(p, buf, len);

	return n < 0 ? -errno : n;
}

/* The NUL-separated list of r's xattr names (malloc'ed, *list NULL when
 * none). */
static int x_names(struct pfs_ref r, const char *p, char **list, size_t *len)
{
	*list = NULL;
	*len = 0;
	for (;;) {
		ssize_t n = x_list(r, p, NULL, 0);
		char *buf;

		if (n == -ENOTSUP)
			return 0;
		if (n <= 0)
			return (int)n;
		buf = malloc((size_t)n);
		if (!buf)
			return -ENOMEM;
		n = x_list(r, p, buf, (size_t)n);
		if (n == -ERANGE) { /* grew meanwhile */
			free(buf);
			continue;
		}
		if (n < 0) {
			free(buf);
			return (int)n;
		}
		*list = buf;
		*len = (size_t)n;
		return 0;
	}
}

static ssize_t x_get(struct pfs_ref r, const char *p, const char *name, void **val)
{
	*val = NULL;
	for (;;) {
		ssize_t n = r.fd >= 0 ? fgetxattr(r.fd, name, NULL, 0)
				      : lgetxattr(p, name, NULL, 0);
		void *buf;

		if (n < 0)
			return -errno;
		buf = malloc(n ? (size_t)n : 1);
		if (!buf)
			return -ENOMEM;
		n = r.fd >= 0 ? fgetxattr(r.fd, name, buf, (size_t)n)
			      : lgetxattr(p, name, buf, (size_t)n);
		if (n < 0 && errno == ERANGE) {
			free(buf);
			continue;
		}
		if (n < 0) {
			n = -errno;
			free(buf);
			return n;
		}
		*val = buf;
		return n;
	}
}

static bool in_list(const char *list, size_t len, const char *name)
{
	for (const char *s = list; s && s < list + len; s += strlen(s) + 1)
		if (strcmp(s, name) == 0)
			return true;
	return false;
}

static int copy_xattrs(struct pfs_ref dst, struct pfs_ref src, unsigned flags)
{
	char dp[PROC_PATH_MAX], sp[PROC_PATH_MAX];
	char *dl = NULL, *sl = NULL;
	size_t dlen, slen;
	bool private_skip = flags & PFS_META_NO_PRIVATE;
	int ret = 0;

	if ((dst.fd < 0 && (ret = proc_path(dst, dp, sizeof(dp))) < 0) ||
	    (src.fd < 0 && (ret = proc_path(src, sp, sizeof(sp))) < 0))
		return ret;
	ret = x_names(src, sp, &sl, &slen);
	if (ret < 0)
		goto out;
	ret = x_names(dst, dp, &dl, &dlen);
	if (ret < 0)
		goto out;
	for (const char *s = dl; s && s < dl + dlen; s += strlen(s) + 1) {
		if (private_skip && pfs_meta_private_xattr(s))
			continue;
		if (in_list(sl, slen, s))
			continue;
		if ((dst.fd >= 0 ? fremovexattr(dst.fd, s) : lremovexattr(dp, s)) < 0 &&
		    errno != ENODATA) {
			ret = -errno;
			goto out;
		}
	}
	for (const char *s = sl; s && s < sl + slen; s += strlen(s) + 1) {
		void *val;
		ssize_t n;

		if (private_skip && pfs_meta_private_xattr(s))
			continue;
		n = x_get(src, sp, s, &val);
		if (n == -ENODATA) /* removed meanwhile */
			continue;
		if (n < 0) {
			ret = (int)n;
			goto out;
		}
		n = dst.fd >= 0 ? fsetxattr(dst.fd, s, val, (size_t)n, 0)
				: lsetxattr(dp, s, val, (size_t)n, 0);
		free(val);
		if (n < 0) {
			ret = -errno;
			goto out;
		}
	}
	ret = 0;
out:
	free(dl);
	free(sl);
	return ret;
}

int pfs_meta_times(struct pfs_ref dst, const struct stat *st)
{
	struct timespec ts[2] = {st->st_atim, st->st_mtim};
	int r = dst.fd >= 0 ? futimens(dst.fd, ts)
			    : utimensat(dst.dirfd, dst.name, ts, AT_SYMLINK_NOFOLLOW);

	return r < 0 ? -errno : 0;
}

int pfs_meta_copy(struct pfs_ref dst, struct pfs_ref src, const struct stat *st,
		  unsigned flags, const char **op)
{
	int ret;

	*op = "setting the owner of";
	if ((dst.fd >= 0 ? fchown(dst.fd, st->st_uid, st->st_gid)
			 : fchownat(dst.dirfd, dst.name, st->st_uid, st->st_gid,
				    AT_SYMLINK_NOFOLLOW)) < 0)
		return -errno;
	*op = "copying the extended attributes of";
	ret = copy_xattrs(dst, src, flags);
	if (ret < 0)
		return ret;
	*op = "setting the mode of";
	/* A symlink's mode is fixed (0777) and cannot be changed on Linux. */
	if (!S_ISLNK(st->st_mode) &&
	    (dst.fd >= 0 ? fchmod(dst.fd, st->st_mode & 07777)
			 : fchmodat(dst.dirfd, dst.name, st->st_mode & 07777, 0)) < 0)
		return -errno;
	if (flags & PFS_META_NO_TIMES)
		return 0;
	*op = "setting the times of";
	return pfs_meta_times(dst, st);
}
