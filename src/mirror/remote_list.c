/* remote_list: the growable entry list a remote's list operation fills. */
#include "mirror/remote.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int pfs_rlist_add(struct pfs_rlist *l, const char *name, const struct pfs_rstat *st)
{
	char *dup;

	if (l->n == l->cap) {
		size_t ncap = l->cap ? l->cap * 2 : 32;
		struct pfs_rent *nv = realloc(l->v, ncap * sizeof(*nv));

		if (!nv)
			return -ENOMEM;
		l->v = nv;
		l->cap = ncap;
	}
	dup = strdup(name);
	if (!dup)
		return -ENOMEM;
	l->v[l->n].name = dup;
	l->v[l->n].st = *st;
	l->n++;
	return 0;
}

void pfs_rlist_free(struct pfs_rlist *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i].name);
	free(l->v);
	l->v = NULL;
	l->n = l->cap = 0;
}
