#include "commit/inomap.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static size_t slot(dev_t dev, ino_t ino, size_t cap)
{
	uint64_t h = (uint64_t)ino * 0x9e3779b97f4a7c15ull ^ (uint64_t)dev * 0xc2b2ae3d27d4eb4full;

	return (size_t)(h ^ (h >> 29)) & (cap - 1);
}

const struct pfs_inomap_ent *pfs_inomap_get(const struct pfs_inomap *m, dev_t dev, ino_t ino)
{
	if (!m->cap)
		return NULL;
	for (size_t i = slot(dev, ino, m->cap);; i = (i + 1) & (m->cap - 1)) {
		const struct pfs_inomap_ent *e = &m->v[i];

		if (!e->path)
			return NULL;
		if (e->dev == dev && e->ino == ino)
			return e;
	}
}

static void insert(struct pfs_inomap_ent *v, size_t cap, const struct pfs_inomap_ent *e)
{
	size_t i = slot(e->dev, e->ino, cap);

	while (v[i].path)
		i = (i + 1) & (cap - 1);
	v[i] = *e;
}

int pfs_inomap_put(struct pfs_inomap *m, dev_t dev, ino_t ino, const char *path, ino_t tino)
{
	struct pfs_inomap_ent e = {.dev = dev, .ino = ino, .tino = tino};

	if (pfs_inomap_get(m, dev, ino))
		return 0;
	/* Keep at most half full so that probes stay short. */
	if ((m->n + 1) * 2 > m->cap) {
		size_t ncap = m->cap ? m->cap * 2 : 64;
		struct pfs_inomap_ent *v = calloc(ncap, sizeof(*v));

		if (!v)
			return -ENOMEM;
		for (size_t i = 0; i < m->cap; i++)
			if (m->v[i].path)
				insert(v, ncap, &m->v[i]);
		free(m->v);
		m->v = v;
		m->cap = ncap;
	}
	e.path = strdup(path);
	if (!e.path)
		return -ENOMEM;
	insert(m->v, m->cap, &e);
	m->n++;
	return 0;
}

void pfs_inomap_free(struct pfs_inomap *m)
{
	for (size_t i = 0; i < m->cap; i++)
		free(m->v[i].path);
	free(m->v);
	memset(m, 0, sizeof(*m));
}
