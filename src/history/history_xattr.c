/* history_xattr: the extended attributes kept with a saved version (user.*,
 * the POSIX ACLs, security.*, trusted.*: util/xblob.h, pfs_xblob_kept;
 * history_save.c writes them, history_browse.c reads them back for the
 * .history tree; docs/HISTORY.md, Saved versions). One blob per version,
 * in the versions row, in util/xblob.h's form. */
#include "history/history_int.h"
#include "util/xblob.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct xsrc {
	struct pfs_history *h;
	struct pfs_ref r;
};

static ssize_t x_list(void *arg, char *buf, size_t len)
{
	struct xsrc *x = arg;

	return pfs_st_listxattr(x->h->in, x->r, buf, len);
}

static ssize_t x_get(void *arg, const char *name, void *buf, size_t len)
{
	struct xsrc *x = arg;

	return pfs_st_getxattr(x->h->in, x->r, name, buf, len);
}

int pfs_hist_xattrs(struct pfs_history *h, int dirfd, const char *name, char **out,
		    size_t *len)
{
	struct xsrc x = {h, name && *name ? pfs_ref_at(dirfd, name) : pfs_ref_path(dirfd)};
	const struct pfs_xblob_src src = {x_list, x_get, &x};

	return pfs_xblob_read(&src, out, len);
}

ssize_t pfs_hist_xa_get(const char *b, size_t len, const char *name, char *buf, size_t size)
{
	const char *k = NULL, *v = NULL;
	size_t out = 0, vl = 0, kl;
	int r;

	while ((r = pfs_xblob_next(b, len, &k, &v, &vl)) > 0) {
		kl = strlen(k) + 1;
		if (!name && !pfs_xblob_kept(k))
			continue; /* kept by an older version (user.overlay.*) */
		if (!name) {
			if (size && out + kl > size)
				return -ERANGE;
			if (size)
				memcpy(buf + out, k, kl);
			out += kl;
		} else if (!strcmp(k, name)) {
			if (size && vl > size)
				return -ERANGE;
			if (size)
				memcpy(buf, v, vl);
			return (ssize_t)vl;
		}
	}
	if (r < 0)
		return r;
	return name ? -ENODATA : (ssize_t)out;
}

ssize_t pfs_hist_xa_list(struct pfs_history *h, struct pfs_ref r, char *buf, size_t size)
{
	ssize_t n = pfs_st_listxattr(h->in, r, NULL, 0), out = 0;
	char *all;

	if (n <= 0)
		return n == -ENOTSUP ? 0 : n;
	all = malloc((size_t)n);
	if (!all)
		return -ENOMEM;
	n = pfs_st_listxattr(h->in, r, all, (size_t)n);
	for (char *k = all; n > 0 && k < all + n; k += strlen(k) + 1) {
		size_t kl = strlen(k) + 1;

		if (!pfs_xblob_kept(k))
			continue;
		if (size && (size_t)out + kl > size) {
			out = -ERANGE;
			break;
		}
		if (size)
			memcpy(buf + out, k, kl);
		out += (ssize_t)kl;
	}
	free(all);
	return n < 0 ? n : out;
}
