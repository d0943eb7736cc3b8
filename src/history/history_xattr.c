/* history_xattr: the user.* extended attributes kept with a saved version
 * (history_save.c writes them, history_browse.c reads them back for the
 * .history tree; docs/HISTORY.md, Saved versions). One blob per version,
 * in the versions row: for each attribute its name, a NUL, its value's
 * length (4 bytes, host order: the blob never leaves this machine's DIR),
 * its value. Only user.*: the others (security.*, system.posix_acl_*,
 * trusted.*) are the system's, which .history does not show. */
#include "history/history_int.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int pfs_hist_xattrs(struct pfs_history *h, int dirfd, const char *name, char **out,
		    size_t *len)
{
	struct pfs_ref r = name && *name ? pfs_ref_at(dirfd, name) : pfs_ref_path(dirfd);
	char *names = NULL, *blob = NULL, *nb;
	ssize_t n, v;
	size_t used = 0;
	int ret = 0;

	*out = NULL;
	*len = 0;
	n = pfs_st_listxattr(h->in, r, NULL, 0);
	if (n == -ENOTSUP || n == 0)
		return 0;
	if (n < 0)
		return (int)n;
	names = malloc((size_t)n + 1);
	if (!names)
		return -ENOMEM;
	n = pfs_st_listxattr(h->in, r, names, (size_t)n);
	if (n < 0) { /* -ERANGE: one was added meanwhile (a change not ours) */
		ret = (int)n;
		goto out;
	}
	for (char *k = names; k < names + n; k += strlen(k) + 1) {
		uint32_t vl;
		size_t kl = strlen(k) + 1;

		if (strncmp(k, "user.", 5) != 0)
			continue;
		v = pfs_st_getxattr(h->in, r, k, NULL, 0);
		if (v == -ENODATA)
			continue;
		if (v < 0 || !(nb = realloc(blob, used + kl + 4 + (size_t)v))) {
			ret = v < 0 ? (int)v : -ENOMEM;
			goto out;
		}
		blob = nb;
		v = pfs_st_getxattr(h->in, r, k, blob + used + kl + 4, (size_t)v);
		if (v < 0) {
			ret = (int)v;
			goto out;
		}
		memcpy(blob + used, k, kl);
		vl = (uint32_t)v;
		memcpy(blob + used + kl, &vl, 4);
		used += kl + 4 + (size_t)v;
	}
	*out = blob;
	*len = used;
	blob = NULL;
out:
	free(blob);
	free(names);
	return ret;
}

ssize_t pfs_hist_xa_get(const char *b, size_t len, const char *name, char *buf, size_t size)
{
	size_t out = 0;

	for (const char *k = b; k < b + len;) {
		size_t kl = strlen(k) + 1;
		uint32_t vl;

		memcpy(&vl, k + kl, 4);
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
				memcpy(buf, k + kl + 4, vl);
			return vl;
		}
		k += kl + 4 + vl;
	}
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

		if (strncmp(k, "user.", 5) != 0)
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
