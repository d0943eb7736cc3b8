#include "layers/ovlfmt.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

bool pfs_ovl_is_whiteout(const struct stat *st)
{
	return S_ISCHR(st->st_mode) && st->st_rdev == makedev(0, 0);
}

bool pfs_ovl_has_wh_file(struct pfs_store *s, int dirfd, const char *name)
{
	char wh[NAME_MAX + 8];
	struct stat st;

	if (strlen(name) > NAME_MAX - 4)
		return false;
	snprintf(wh, sizeof(wh), PFS_OVL_WH_PREFIX "%s", name);
	return pfs_st_stat(s, dirfd, wh, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

ssize_t pfs_ovl_get(struct pfs_store *s, struct pfs_ref r, const char *key, char *buf, size_t len)
{
	static const char *const ns[] = {"trusted.overlay.", "user.overlay."};
	char name[64];
	ssize_t n = -ENODATA;

	for (size_t i = 0; i < 2 && n == -ENODATA; i++) {
		snprintf(name, sizeof(name), "%s%s", ns[i], key);
		n = pfs_meta_getxattr(s, r, name, buf, len ? len - 1 : 0);
		/* No xattr support, or no right to read trusted.*: as unset. */
		if (n == -ENOTSUP || n == -EPERM)
			n = -ENODATA;
	}
	if (n >= 0 && len)
		buf[n] = '\0';
	return n;
}

int pfs_ovl_has(struct pfs_store *s, struct pfs_ref r, const char *key)
{
	char v[16];
	ssize_t n = pfs_ovl_get(s, r, key, v, sizeof(v));

	/* -ERANGE: set, to something longer (a metacopy digest). */
	if (n >= 0 || n == -ERANGE)
		return 1;
	return n == -ENODATA ? 0 : (int)n;
}

static int cmp_ent(const void *a, const void *b)
{
	return strcmp(((const struct pfs_ovl_ent *)a)->name, ((const struct pfs_ovl_ent *)b)->name);
}

/* Is this entry a whiteout? Fills in its type when the listing did not. */
static int classify(struct pfs_store *s, int dirfd, struct pfs_ovl_ent *e, bool xwhiteouts)
{
	struct stat st;
	char v[8];
	int ret;

	if (e->type != DT_UNKNOWN && e->type != DT_CHR && !(xwhiteouts && e->type == DT_REG))
		return 0;
	ret = pfs_st_stat(s, dirfd, e->name, &st, AT_SYMLINK_NOFOLLOW);
	if (ret < 0)
		return ret;
	e->type = IFTODT(st.st_mode);
	if (pfs_ovl_is_whiteout(&st))
		e->flags |= PFS_OVL_WHITEOUT;
	else if (xwhiteouts && S_ISREG(st.st_mode) && st.st_size == 0 &&
		 pfs_ovl_get(s, pfs_ref_at(dirfd, e->name), "whiteout", v, sizeof(v)) >= 0)
		e->flags |= PFS_OVL_WHITEOUT;
	return 0;
}

int pfs_ovl_read_dir(struct pfs_store *s, int dirfd, struct pfs_ovl_dir *d)
{
	size_t pre = strlen(PFS_OVL_WH_PREFIX), out = 0;
	bool xwhiteouts = false;
	char v[8];
	int ret;

	memset(d, 0, sizeof(*d));
	ret = pfs_names_read(dirfd, &d->raw);
	if (ret < 0)
		return ret;
	if (pfs_ovl_get(s, pfs_ref_fd(dirfd), "opaque", v, sizeof(v)) >= 0) {
		d->opaque = strcmp(v, "y") == 0;
		/* "x": not opaque, but holds xattr whiteouts. */
		xwhiteouts = strcmp(v, "x") == 0;
	}
	d->v = calloc(d->raw.n ? d->raw.n : 1, sizeof(*d->v));
	if (!d->v) {
		ret = -ENOMEM;
		goto fail;
	}
	for (size_t i = 0; i < d->raw.n; i++) {
		const struct pfs_name *r = &d->raw.v[i];
		struct pfs_ovl_ent *e = &d->v[out];

		if (strcmp(r->name, PFS_OVL_OPAQUE_MARKER) == 0) {
			d->opaque = true;
			continue;
		}
		if (strncmp(r->name, PFS_OVL_WH_PREFIX, pre) == 0) {
			const char *target = r->name + pre;

			/* .wh..wh.* other than the opaque marker: AUFS's own
			 * bookkeeping, never content. */
			if (!*target || strncmp(target, PFS_OVL_WH_PREFIX, pre) == 0)
				continue;
			e->name = target;
			e->type = DT_UNKNOWN;
			e->flags = PFS_OVL_WHITEOUT;
			out++;
			continue;
		}
		e->name = r->name;
		e->type = r->type;
		e->flags = 0;
		ret = classify(s, dirfd, e, xwhiteouts);
		if (ret == -ENOENT)
			continue;
		if (ret < 0)
			goto fail;
		out++;
	}
	if (out > 1)
		qsort(d->v, out, sizeof(*d->v), cmp_ent);
	/* A name both whited out and present: the lower one is gone and the
	 * upper one stands alone. */
	d->n = 0;
	for (size_t i = 0; i < out; i++) {
		struct pfs_ovl_ent *prev = d->n ? &d->v[d->n - 1] : NULL;

		if (prev && strcmp(prev->name, d->v[i].name) == 0) {
			if (prev->flags & PFS_OVL_WHITEOUT)
				*prev = d->v[i];
			if (!(prev->flags & PFS_OVL_WHITEOUT))
				prev->flags |= PFS_OVL_FRESH;
			continue;
		}
		d->v[d->n++] = d->v[i];
	}
	return 0;
fail:
	pfs_ovl_dir_free(d);
	return ret;
}

const struct pfs_ovl_ent *pfs_ovl_find(const struct pfs_ovl_dir *d, const char *name)
{
	struct pfs_ovl_ent key = {.name = name};

	if (!d->n)
		return NULL;
	return bsearch(&key, d->v, d->n, sizeof(*d->v), cmp_ent);
}

void pfs_ovl_dir_free(struct pfs_ovl_dir *d)
{
	free(d->v);
	pfs_names_free(&d->raw);
	memset(d, 0, sizeof(*d));
}
