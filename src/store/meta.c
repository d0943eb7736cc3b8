#include "store/meta.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

bool pfs_meta_private_xattr(const char *name)
{
	return strncmp(name, "trusted.overlay.", 16) == 0 ||
	       strncmp(name, "user.overlay.", 13) == 0;
}

ssize_t pfs_meta_getxattr(struct pfs_store *s, struct pfs_ref r, const char *name, void *buf,
			  size_t len)
{
	return pfs_st_getxattr(s, r, name, buf, len);
}

/* The NUL-separated list of r's xattr names (malloc'ed, *list NULL when
 * none). */
static int x_names(struct pfs_store *s, struct pfs_ref r, char **list, size_t *len)
{
	*list = NULL;
	*len = 0;
	for (;;) {
		ssize_t n = pfs_st_listxattr(s, r, NULL, 0);
		char *buf;

		if (n == -ENOTSUP)
			return 0;
		if (n <= 0)
			return (int)n;
		buf = malloc((size_t)n);
		if (!buf)
			return -ENOMEM;
		n = pfs_st_listxattr(s, r, buf, (size_t)n);
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

static ssize_t x_get(struct pfs_store *s, struct pfs_ref r, const char *name, void **val)
{
	*val = NULL;
	for (;;) {
		ssize_t n = pfs_st_getxattr(s, r, name, NULL, 0);
		void *buf;

		if (n < 0)
			return n;
		buf = malloc(n ? (size_t)n : 1);
		if (!buf)
			return -ENOMEM;
		n = pfs_st_getxattr(s, r, name, buf, (size_t)n);
		if (n == -ERANGE) {
			free(buf);
			continue;
		}
		if (n < 0) {
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

static int copy_xattrs(struct pfs_store *s, struct pfs_ref dst, struct pfs_ref src,
		       unsigned flags)
{
	char *dl = NULL, *sl = NULL;
	size_t dlen, slen;
	bool private_skip = flags & PFS_META_NO_PRIVATE;
	int ret;

	ret = x_names(s, src, &sl, &slen);
	if (ret < 0)
		goto out;
	ret = x_names(s, dst, &dl, &dlen);
	if (ret < 0)
		goto out;
	for (const char *x = dl; x && x < dl + dlen; x += strlen(x) + 1) {
		if (private_skip && pfs_meta_private_xattr(x))
			continue;
		if (in_list(sl, slen, x))
			continue;
		ret = pfs_st_removexattr(s, dst, x);
		if (ret < 0 && ret != -ENODATA)
			goto out;
	}
	for (const char *x = sl; x && x < sl + slen; x += strlen(x) + 1) {
		void *val;
		ssize_t n;

		if (private_skip && pfs_meta_private_xattr(x))
			continue;
		n = x_get(s, src, x, &val);
		if (n == -ENODATA) /* removed meanwhile */
			continue;
		if (n < 0) {
			ret = (int)n;
			goto out;
		}
		ret = pfs_st_setxattr(s, dst, x, val, (size_t)n, 0);
		free(val);
		if (ret < 0)
			goto out;
	}
	ret = 0;
out:
	free(dl);
	free(sl);
	return ret;
}

int pfs_meta_times(struct pfs_store *s, struct pfs_ref dst, const struct stat *st)
{
	struct timespec ts[2] = {st->st_atim, st->st_mtim};

	return pfs_st_utimes(s, dst, ts);
}

int pfs_meta_copy(struct pfs_store *s, struct pfs_ref dst, struct pfs_ref src,
		  const struct stat *st, unsigned flags, const char **op)
{
	int ret;

	*op = "setting the owner of";
	ret = pfs_st_chown(s, dst, st->st_uid, st->st_gid);
	if (ret < 0)
		return ret;
	*op = "copying the extended attributes of";
	ret = copy_xattrs(s, dst, src, flags);
	if (ret < 0)
		return ret;
	*op = "setting the mode of";
	/* A symlink's mode is fixed (0777) and cannot be changed on Linux. */
	if (!S_ISLNK(st->st_mode)) {
		ret = pfs_st_chmod(s, dst, st->st_mode & 07777);
		if (ret < 0)
			return ret;
	}
	if (flags & PFS_META_NO_TIMES)
		return 0;
	*op = "setting the times of";
	return pfs_meta_times(s, dst, st);
}
