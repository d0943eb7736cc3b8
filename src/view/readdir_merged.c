/* readdir_merged: a merged (layered) directory listed without a handle.
 *
 * With stateless_dirs the kernel opens directories without asking (no
 * OPENDIR/RELEASEDIR round trip per directory a walker enters) and keeps
 * their listings; each READDIR comes alone, at the kernel's offset. A
 * merge has no backing cookies to resume at, so the listing is ordered by
 * a hash of each name and an entry's offset is its hash, as ext4's htree
 * cookies are: a READDIR resumes after the offset in any listing of the
 * directory, so an entry neither added nor removed during a listing is
 * returned exactly once (two names sharing a 62-bit hash aside). "." and
 * ".." come first, at 1 and 2.
 *
 * Merging a directory means reading each layer's part and looking up its
 * upper names, so the listing a READDIR at offset 0 takes is kept for the
 * READDIRs that continue it (a few directories at once, by node); a
 * listing starting again takes a new one. */
#include "view/view.h"
#include "view/ns.h"
#include "view/readdir_merged.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define MLIST_SLOTS 8

struct ment {
	uint64_t off; /* the hash: this entry's offset */
	ino_t ino;
	unsigned char type;
	char *name;
};

struct mlist {
	struct pfs_node *n; /* with dev and ino: a node freed and reused */
	dev_t dev;          /* elsewhere is another key */
	ino_t ino;
	struct ment *v;
	size_t cnt, cap;
	uint64_t used; /* the cache's clock when last used */
};

struct pfs_mlists {
	pthread_mutex_t lock;
	struct mlist *slot[MLIST_SLOTS];
	uint64_t clock;
};

static uint64_t name_off(const char *name)
{
	uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */

	if (strcmp(name, ".") == 0)
		return 1;
	if (strcmp(name, "..") == 0)
		return 2;
	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		h = (h ^ *p) * 0x100000001b3ULL;
	h ^= h >> 29; /* FNV's low bits mix poorly */
	return 3 + (h & ((1ULL << 62) - 1));
}

static void mlist_free(struct mlist *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->cnt; i++)
		free(l->v[i].name);
	free(l->v);
	free(l);
}

static int add_cb(void *arg, const char *name, ino_t ino, unsigned char type)
{
	struct mlist *l = arg;

	if (l->cnt == l->cap) {
		size_t nc = l->cap ? l->cap * 2 : 64;
		struct ment *nv = realloc(l->v, nc * sizeof(*nv));

		if (!nv)
			return -ENOMEM;
		l->v = nv;
		l->cap = nc;
	}
	l->v[l->cnt].name = strdup(name);
	if (!l->v[l->cnt].name)
		return -ENOMEM;
	l->v[l->cnt].off = name_off(name);
	l->v[l->cnt].ino = ino;
	l->v[l->cnt].type = type;
	l->cnt++;
	return 0;
}

static int by_off(const void *a, const void *b)
{
	const struct ment *x = a, *y = b;

	if (x->off != y->off)
		return x->off < y->off ? -1 : 1;
	return strcmp(x->name, y->name);
}

static int take(struct pfs_fs *fs, struct pfs_node *n, struct mlist **out)
{
	struct mlist *l = calloc(1, sizeof(*l));
	int ret;

	if (!l)
		return -ENOMEM;
	l->n = n;
	l->dev = n->dev;
	l->ino = n->ino;
	ret = fs->ns->list(fs, n, NULL, add_cb, l);
	if (ret < 0) {
		mlist_free(l);
		return ret;
	}
	qsort(l->v, l->cnt, sizeof(*l->v), by_off);
	*out = l;
	return 0;
}

static struct pfs_mlists *cache_of(struct pfs_fs *fs)
{
	struct pfs_mlists *c = __atomic_load_n(&fs->mlists, __ATOMIC_ACQUIRE), *none = NULL;

	if (c)
		return c;
	c = calloc(1, sizeof(*c));
	if (!c)
		return NULL; /* every READDIR lists afresh */
	pthread_mutex_init(&c->lock, NULL);
	if (!__atomic_compare_exchange_n(&fs->mlists, &none, c, false, __ATOMIC_ACQ_REL,
					 __ATOMIC_ACQUIRE)) {
		pthread_mutex_destroy(&c->lock);
		free(c);
		return none;
	}
	return c;
}

/* n's kept listing, taken out of the cache (the caller owns it), or NULL. */
static struct mlist *cache_get(struct pfs_fs *fs, struct pfs_node *n)
{
	struct pfs_mlists *c = cache_of(fs);
	struct mlist *l = NULL;

	if (!c)
		return NULL;
	pthread_mutex_lock(&c->lock);
	for (size_t i = 0; i < MLIST_SLOTS; i++) {
		struct mlist *s = c->slot[i];

		if (s && s->n == n && s->dev == n->dev && s->ino == n->ino) {
			l = s;
			c->slot[i] = NULL;
			break;
		}
	}
	pthread_mutex_unlock(&c->lock);
	return l;
}

/* Keep l for the READDIRs continuing it: in a free slot, over an older
 * listing of the same node, or over the least recently used. */
static void cache_put(struct pfs_fs *fs, struct mlist *l)
{
	struct pfs_mlists *c = cache_of(fs);
	struct mlist *old;
	size_t at = 0;

	if (!c) {
		mlist_free(l);
		return;
	}
	pthread_mutex_lock(&c->lock);
	l->used = ++c->clock;
	for (size_t i = 0; i < MLIST_SLOTS; i++) {
		struct mlist *s = c->slot[i];

		if (!s || (s->n == l->n && s->dev == l->dev && s->ino == l->ino)) {
			at = i;
			break;
		}
		if (s->used < c->slot[at]->used)
			at = i;
	}
	old = c->slot[at];
	c->slot[at] = l;
	pthread_mutex_unlock(&c->lock);
	mlist_free(old);
}

void pfs_readdir_merged_free(struct pfs_fs *fs)
{
	struct pfs_mlists *c = __atomic_exchange_n(&fs->mlists, NULL, __ATOMIC_ACQ_REL);

	if (!c)
		return;
	for (size_t i = 0; i < MLIST_SLOTS; i++)
		mlist_free(c->slot[i]);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

/* The first entry after offset off (a binary search: sorted by offset). */
static size_t first_after(const struct mlist *l, off_t off)
{
	size_t lo = 0, hi = l->cnt;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (l->v[mid].off <= (uint64_t)off)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static bool is_dot(const char *name)
{
	return name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'));
}

ssize_t pfs_readdir_merged(struct pfs_fs *fs, fuse_req_t req, struct pfs_node *n, char *buf,
			   size_t size, off_t off, bool plus)
{
	struct mlist *l = NULL;
	size_t used = 0, from;
	int err = 0;
	/* Holds the node's fds in every layer open for this request (and
	 * finds a directory removed meanwhile: as a removed plain one). */
	int fd = pfs_node_fd(fs, n);

	if (fd < 0)
		return fd == -ESTALE ? -ENOENT : fd;
	if (off != 0)
		l = cache_get(fs, n);
	if (!l) {
		err = take(fs, n, &l);
		if (err < 0)
			return err;
	}
	from = first_after(l, off);
	for (size_t i = from; i < l->cnt; i++) {
		struct ment *me = &l->v[i];
		struct fuse_entry_param e;
		size_t want;

		if (plus && !is_dot(me->name)) {
			int ret = pfs_view_lookup(fs, n, me->name, &e);

			if (ret == -ENOENT)
				continue; /* gone since the listing was taken */
			if (ret < 0) {
				err = ret;
				break;
			}
		} else {
			memset(&e, 0, sizeof(e));
			e.attr.st_ino = me->ino;
			e.attr.st_mode = (mode_t)me->type << 12;
		}
		want = plus ? fuse_add_direntry_plus(req, buf + used, size - used, me->name, &e,
						     (off_t)me->off)
			    : fuse_add_direntry(req, buf + used, size - used, me->name, &e.attr,
						(off_t)me->off);
		if (want > size - used) {
			if (plus && e.ino)
				pfs_node_forget(fs, pfs_node_of(fs, e.ino), 1);
			break;
		}
		used += want;
	}
	/* Asked past its end: the listing is over, its memory is not kept. */
	if (off != 0 && from == l->cnt)
		mlist_free(l);
	else
		cache_put(fs, l);
	/* An error after some entries: return those; the next call reports it. */
	if (err && used == 0)
		return err;
	return (ssize_t)used;
}
