/* cache_links: a mirror file with several names, met in several
 * directories as they are filled, is one file in the cache too.
 *
 * Filling makes one cache object per mirror name; a mirror file whose
 * link count is above one would become several independent files, and a
 * write through one name would not show through the others (nor would
 * its link count). So the first name filled is remembered by the mirror
 * file's identity, with how many of its names are still to be met, and
 * each later one is made a hard link to it. The entry goes once every
 * name has been met; it holds an O_PATH descriptor meanwhile, so the
 * descriptors held are bounded by the link groups half filled.
 *
 * Everything here runs under c->load_lock (filling holds it). */
#include "cache/cache_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define LBUCKETS 256u

struct lnk {
	struct lnk *next;
	dev_t dev;
	ino_t ino;
	nlink_t left; /* names of it on the mirror not met yet */
	int fd;       /* O_PATH, the cache object */
};

struct pfs_cache_links {
	struct lnk *tab[LBUCKETS];
};

static struct lnk **lslot(struct pfs_cache_links *l, const struct stat *mst)
{
	struct lnk **p = &l->tab[pfs_cache_bucket((uint64_t)mst->st_ino) & (LBUCKETS - 1)];

	while (*p && ((*p)->ino != mst->st_ino || (*p)->dev != mst->st_dev))
		p = &(*p)->next;
	return p;
}

static void drop(struct lnk **p)
{
	struct lnk *e = *p;

	*p = e->next;
	close(e->fd);
	free(e);
}

int pfs_cache_link_fill(struct pfs_cache *c, int dirfd, const char *name,
			const struct stat *mst)
{
	char proc[32];
	struct lnk **p;
	int ret;

	if (!S_ISREG(mst->st_mode) || mst->st_nlink < 2 || !c->links)
		return 0;
	p = lslot(c->links, mst);
	if (!*p)
		return 0;
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", (*p)->fd);
	ret = pfs_st_link(c->in, AT_FDCWD, proc, dirfd, name, AT_SYMLINK_FOLLOW);
	if (ret == -ENOENT) {
		/* Every name of it in the cache is gone (and so, written back,
		 * from the mirror): what the mirror still has is another file. */
		drop(p);
		return 0;
	}
	if (ret < 0)
		return ret;
	if (--(*p)->left == 0)
		drop(p);
	return 1;
}

void pfs_cache_link_note(struct pfs_cache *c, int dirfd, const char *name,
			 const struct stat *mst)
{
	struct lnk *e;
	int fd;

	if (!S_ISREG(mst->st_mode) || mst->st_nlink < 2)
		return;
	if (!c->links && !(c->links = calloc(1, sizeof(*c->links))))
		return; /* the names stay apart: no worse than before */
	fd = pfs_st_openat(c->in, dirfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC, 0);
	if (fd < 0)
		return;
	e = calloc(1, sizeof(*e));
	if (!e) {
		close(fd);
		return;
	}
	e->dev = mst->st_dev;
	e->ino = mst->st_ino;
	e->left = mst->st_nlink - 1;
	e->fd = fd;
	e->next = *lslot(c->links, mst);
	*lslot(c->links, mst) = e;
}

void pfs_cache_links_free(struct pfs_cache *c)
{
	if (!c->links)
		return;
	for (unsigned i = 0; i < LBUCKETS; i++)
		while (c->links->tab[i])
			drop(&c->links->tab[i]);
	free(c->links);
	c->links = NULL;
}
