/* xblob: see xblob.h. */
#include "util/xblob.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

bool pfs_xblob_kept(const char *name)
{
	if (!strncmp(name, "user.", 5))
		return strncmp(name + 5, "overlay.", 8) != 0;
	if (!strncmp(name, "trusted.", 8))
		return strncmp(name + 8, "overlay.", 8) != 0;
	return !strncmp(name, "security.", 9) || !strcmp(name, "system.posix_acl_access") ||
	       !strcmp(name, "system.posix_acl_default");
}

/* Add name's value to the blob: its length first, then the value read in
 * place. 0 (ENODATA: gone since the listing, left out) or -errno. */
static int add_one(const struct pfs_xblob_src *src, const char *name, char **blob,
		   size_t *used)
{
	size_t kl = strlen(name) + 1;
	ssize_t v = src->get(src->arg, name, NULL, 0);
	uint32_t vl;
	char *nb;

	if (v == -ENODATA)
		return 0;
	if (v < 0)
		return (int)v;
	nb = realloc(*blob, *used + kl + 4 + (size_t)v);
	if (!nb)
		return -ENOMEM;
	*blob = nb;
	v = src->get(src->arg, name, nb + *used + kl + 4, (size_t)v);
	if (v == -ENODATA)
		return 0;
	if (v < 0)
		return (int)v;
	memcpy(nb + *used, name, kl);
	vl = (uint32_t)v;
	memcpy(nb + *used + kl, &vl, 4);
	*used += kl + 4 + (size_t)v;
	return 0;
}

int pfs_xblob_read(const struct pfs_xblob_src *src, char **blob, size_t *len)
{
	char *names = NULL, *b = NULL;
	size_t used = 0;
	ssize_t n;
	int ret = 0;

	*blob = NULL;
	*len = 0;
	n = src->list(src->arg, NULL, 0);
	if (n == -ENOTSUP || n == 0)
		return 0;
	if (n < 0)
		return (int)n;
	names = malloc((size_t)n);
	if (!names)
		return -ENOMEM;
	n = src->list(src->arg, names, (size_t)n);
	if (n < 0) {
		ret = (int)n;
		goto out;
	}
	for (char *k = names; k < names + n && ret == 0; k += strlen(k) + 1)
		if (pfs_xblob_kept(k))
			ret = add_one(src, k, &b, &used);
	if (ret < 0)
		goto out;
	*blob = b;
	*len = used;
	b = NULL;
out:
	free(b);
	free(names);
	return ret;
}

int pfs_xblob_next(const char *blob, size_t len, const char **k, const char **val,
		   size_t *vlen)
{
	const char *p = *k ? *val + *vlen : blob, *end = blob + len;
	size_t kl;
	uint32_t vl;

	if (!blob || p >= end)
		return 0;
	kl = strnlen(p, (size_t)(end - p)) + 1;
	if ((size_t)(end - p) < kl + 4)
		return -EINVAL;
	memcpy(&vl, p + kl, 4);
	if ((size_t)(end - p) - kl - 4 < vl)
		return -EINVAL;
	*k = p;
	*val = p + kl + 4;
	*vlen = vl;
	return 1;
}
