#include "mirror/basetab.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static struct pfs_basetab_ent **slot(struct pfs_basetab *t, uint64_t key)
{
	struct pfs_basetab_ent **p =
		&t->tab[(key * 0x9E3779B97F4A7C15ull) >> 52 & (PFS_BASETAB_BUCKETS - 1)];

	while (*p && (*p)->key != key)
		p = &(*p)->next;
	return p;
}

void *pfs_basetab_get(struct pfs_basetab *t, uint64_t key)
{
	return *slot(t, key);
}

void *pfs_basetab_make(struct pfs_basetab *t, uint64_t key, size_t size)
{
	struct pfs_basetab_ent **p = slot(t, key);

	if (!*p && (*p = calloc(1, size)))
		(*p)->key = key;
	return *p;
}

void pfs_basetab_forget(struct pfs_basetab *t, uint64_t key)
{
	struct pfs_basetab_ent **p = slot(t, key), *e = *p;

	if (e) {
		*p = e->next;
		free(e->conflict);
		free(e);
	}
}

void pfs_basetab_clear(struct pfs_basetab *t)
{
	for (unsigned i = 0; i < PFS_BASETAB_BUCKETS; i++)
		while (t->tab[i]) {
			struct pfs_basetab_ent *e = t->tab[i];

			t->tab[i] = e->next;
			free(e->conflict);
			free(e);
		}
}

char *pfs_mirror_conflict_name(const char *path)
{
	char stamp[32], *out;
	time_t now = time(NULL);
	struct tm tm;

	gmtime_r(&now, &tm);
	strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
	return asprintf(&out, "%s.prismfs-conflict-%s", path, stamp) < 0 ? NULL : out;
}
