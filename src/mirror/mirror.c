/* mirror: the table a memory cache's mirror is reached through, chosen by
 * its address (mirror.h). */
#include "mirror/local.h"
#include "mirror/mirror.h"
#include "mirror/remote.h"
#include "store/walk.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void pfs_mirror_dir_free(struct pfs_mirror_dir *d)
{
	for (size_t i = 0; i < d->n; i++) {
		free(d->v[i].name);
		free(d->v[i].target);
	}
	free(d->v);
	d->v = NULL;
	d->n = d->cap = 0;
}

int pfs_mirror_dir_add(struct pfs_mirror_dir *d, const char *name, const struct stat *st,
		       const char *target)
{
	struct pfs_mirror_ent *e;

	if (pfs_grow(&d->v, &d->cap, d->n, sizeof(*d->v)) < 0)
		return -ENOMEM;
	e = &d->v[d->n];
	e->name = strdup(name);
	e->target = target ? strdup(target) : NULL;
	if (!e->name || (target && !e->target)) {
		free(e->name);
		free(e->target);
		return -ENOMEM;
	}
	e->st = *st;
	d->n++;
	return 0;
}

static bool has_scheme(const char *a, const char *scheme)
{
	size_t n = strlen(scheme);

	return strncasecmp(a, scheme, n) == 0 && strncmp(a + n, "://", 3) == 0;
}

int pfs_mirror_open(struct pfs_mirror **out, const char *address, struct pfs_store *st,
		    const struct pfs_mirror_opts *o, char *err, size_t errlen)
{
	static const char *const remote[] = {"http", "https", "dav", "davs", "s3"};

	if (has_scheme(address, "file"))
		address += 7;
	for (size_t i = 0; i < sizeof(remote) / sizeof(remote[0]); i++)
		if (has_scheme(address, remote[i]))
			return pfs_mirror_remote_open(out, address, o, err, errlen);
	if (!*address || strstr(address, "://")) {
		snprintf(err, errlen, "mirror %s: not a directory, file://, http(s)://, dav(s):// "
			 "or s3:// address", address);
		return -EINVAL;
	}
	return pfs_mirror_local_open(out, st, address, err, errlen);
}

void pfs_mirror_shown_address(const char *address, char *buf, size_t len)
{
	const char *host = strstr(address, "://"), *at;

	host = host ? host + 3 : address;
	at = strchr(host, '@');
	if (at && (!strchr(host, '/') || at < strchr(host, '/')))
		snprintf(buf, len, "%.*s%s", (int)(host - address), address, at + 1);
	else
		snprintf(buf, len, "%s", address);
}
