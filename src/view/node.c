/* node: the table of nodes the kernel knows, keyed by backing (dev, ino).
 * Sharded so that lookups in different directories do not contend; the
 * nodeid the kernel sees is the node's address, so ino -> node is O(1).
 * The nodes' fds and the sweep are in node_pins.c, what open files add to
 * a node in node_open.c (node_int.h). */
#include "view/node_int.h"
#include "layers/layer.h"
#include "view/nodefd.h"
#include "util/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int pfs_nodes_init(struct pfs_fs *fs, int root_fd)
{
	struct pfs_nodes *t = calloc(1, sizeof(*t));
	struct pfs_node *root = calloc(1, sizeof(*root));
	struct stat st;
	int ret = -ENOMEM;

	if (!t || !root)
		goto err;
	for (int i = 0; i < SHARDS; i++) {
		pthread_mutex_init(&t->shards[i].lock, NULL);
		t->shards[i].nbuckets = 64;
		t->shards[i].buckets = calloc(64, sizeof(struct pfs_node *));
		if (!t->shards[i].buckets)
			goto err;
	}
	if (fstatat(root_fd, "", &st, AT_EMPTY_PATH) < 0) {
		ret = -errno;
		goto err;
	}
	/* The root lives outside the table: the kernel calls it 1, not its address. */
	root->dev = st.st_dev;
	root->ino = st.st_ino;
	root->bfd = root_fd;
	root->fd_fixed = true;
	if (fs->layers) {
		/* Known by the source's root; changed through the upper's (or
		 * shown by SOURCE's, on a mount of lowers only). */
		root->ln = pfs_layer_root_ln(fs);
		if (!root->ln)
			goto err;
		root->bfd = root->ln->fd[root->ln->top];
	}
	root->type = S_IFDIR;
	root->nlookup = 2;
	pthread_mutex_init(&t->sweep_lock, NULL);
	fs->nodes = t;
	fs->root = root;
	return 0;
err:
	for (int i = 0; t && i < SHARDS; i++) {
		free(t->shards[i].buckets);
		pthread_mutex_destroy(&t->shards[i].lock);
	}
	free(root);
	free(t);
	return ret;
}

/* Drop one alias's hold on n. */
static void put_ref(struct pfs_fs *fs, struct pfs_node *n)
{
	pfs_node_drop(fs, n, 0);
}

static struct pfs_alias *alias_new(struct pfs_node *parent, const char *name)
{
	size_t l = strlen(name) + 1;
	struct pfs_alias *a = malloc(sizeof(*a) + l);

	if (a) {
		a->next = NULL;
		a->parent = parent;
		memcpy(a->name, name, l);
	}
	return a;
}

long pfs_node_nfds(struct pfs_fs *fs, const struct pfs_node *n)
{
	long count = 0;

	if (!n->ln)
		return n->bfd >= 0;
	for (size_t i = 0; fs->layers && i < fs->layers->n; i++)
		count += __atomic_load_n(&n->ln->fd[i], __ATOMIC_RELAXED) >= 0;
	return count;
}

/* Whether a layered node's fds may be closed and reopened: not a synthetic
 * directory (its fd is on a removed one) nor an object the table placed
 * (a second fd, on where it was placed, would be needed for a copy-up). */
static bool ln_sweepable(const struct pfs_lnode *ln)
{
	return !ln->syn && ln->sdir < 0;
}

/* n is out of the table and nothing refers to it. Its names let go of
 * their parents unless the whole table is going (drop_parents false). */
static void free_node(struct pfs_fs *fs, struct pfs_node *n, bool drop_parents)
{
	struct pfs_alias *a = n->alias, *next;

	if (!n->fd_fixed)
		__atomic_sub_fetch(&fs->nfd->held, pfs_node_nfds(fs, n), __ATOMIC_RELAXED);
	if (n->writers) /* lingering: the kernel has forgotten it after all */
		__atomic_sub_fetch(&fs->writers, n->writers, __ATOMIC_RELEASE);
	if (n->ln)
		pfs_lnode_free(fs->layers, n->ln, -1);
	else if (n->bfd >= 0)
		close(n->bfd);
	free(n->handle);
	free(n);
	for (; a; a = next) {
		next = a->next;
		if (drop_parents)
			put_ref(fs, a->parent);
		free(a);
	}
}

static void release_node(struct pfs_fs *fs, struct pfs_node *n)
{
	free_node(fs, n, true);
}

void pfs_nodes_destroy(struct pfs_fs *fs)
{
	struct pfs_nodes *t = fs->nodes;

	if (!t)
		return;
	for (int i = 0; i < SHARDS; i++) {
		struct shard *s = &t->shards[i];

		for (size_t b = 0; b < s->nbuckets; b++) {
			struct pfs_node *n = s->buckets[b], *next;

			for (; n; n = next) {
				next = n->hnext;
				free_node(fs, n, false);
			}
		}
		free(s->buckets);
		pthread_mutex_destroy(&s->lock);
	}
	pthread_mutex_destroy(&t->sweep_lock);
	free(t);
	fs->nodes = NULL;
	if (fs->root)
		free(fs->root->ln); /* its descriptors are the layers' */
	free(fs->root); /* its fd is fs->root_fd, closed by the owner */
	fs->root = NULL;
}

/* Rehash s into nb buckets (a power of two). Under s's lock. */
static void resize(struct shard *s, size_t nb)
{
	struct pfs_node **nbk = calloc(nb, sizeof(*nbk));

	if (!nbk)
		return; /* longer chains (or a larger table), still correct */
	for (size_t b = 0; b < s->nbuckets; b++) {
		struct pfs_node *n = s->buckets[b], *next;

		for (; n; n = next) {
			size_t i = (hash_key(n->dev, n->ino, n->ctx) / SHARDS) & (nb - 1);

			next = n->hnext;
			n->hnext = nbk[i];
			nbk[i] = n;
		}
	}
	free(s->buckets);
	s->buckets = nbk;
	s->nbuckets = nb;
}

static void grow(struct shard *s)
{
	resize(s, s->nbuckets * 2);
}

/* After the kernel forgot most nodes: a table sized for a million nodes
 * would otherwise stay resident for good. Under s's lock. */
static void shrink(struct shard *s)
{
	size_t nb = s->nbuckets;

	while (nb > 64 && s->count < nb / 4)
		nb /= 2;
	if (nb != s->nbuckets)
		resize(s, nb);
}

static struct pfs_node *find_locked(struct shard *s, dev_t dev, ino_t ino, uint64_t ctx)
{
	struct pfs_node *n = s->buckets[bucket_of(s, dev, ino, ctx)];

	while (n && !(n->dev == dev && n->ino == ino && n->ctx == ctx))
		n = n->hnext;
	return n;
}

static void unlink_locked(struct shard *s, struct pfs_node *n)
{
	struct pfs_node **pp = &s->buckets[bucket_of(s, n->dev, n->ino, n->ctx)];

	while (*pp != n)
		pp = &(*pp)->hnext;
	*pp = n->hnext;
	s->count--;
}

static void get_ref(struct pfs_fs *fs, struct pfs_node *n)
{
	struct shard *s;

	if (n == fs->root)
		return;
	s = shard_of(fs, n);
	pthread_mutex_lock(&s->lock);
	n->refs++;
	pthread_mutex_unlock(&s->lock);
}

void pfs_node_drop(struct pfs_fs *fs, struct pfs_node *n, uint32_t pins)
{
	struct shard *s;
	bool gone;

	if (!n || n == fs->root)
		return;
	s = shard_of(fs, n);
	pthread_mutex_lock(&s->lock);
	n->pins -= pins;
	n->refs--;
	gone = n->refs == 0 && n->nlookup == 0;
	if (gone)
		unlink_locked(s, n);
	pthread_mutex_unlock(&s->lock);
	if (gone)
		release_node(fs, n);
}

static struct pfs_alias **alias_find(struct pfs_node *n, struct pfs_node *parent,
				     const char *name)
{
	struct pfs_alias **pp = &n->alias;

	for (; *pp; pp = &(*pp)->next)
		if ((*pp)->parent == parent && strcmp((*pp)->name, name) == 0)
			return pp;
	return NULL;
}

/* A lookup found n under (parent, name): remember that name too. */
static void alias_note(struct pfs_fs *fs, struct pfs_node *n, struct pfs_node *parent,
		       const char *name)
{
	struct pfs_alias *a;
	bool known;

	pthread_rwlock_rdlock(&fs->names_lock);
	known = alias_find(n, parent, name) != NULL;
	pthread_rwlock_unlock(&fs->names_lock);
	if (known || !(a = alias_new(parent, name)))
		return;
	pthread_rwlock_wrlock(&fs->names_lock);
	if (alias_find(n, parent, name)) {
		pthread_rwlock_unlock(&fs->names_lock);
		free(a);
		return;
	}
	get_ref(fs, parent);
	{
		/* Appended: the name a node was first known by stays the one shown. */
		struct pfs_alias **pp = &n->alias;

		while (*pp)
			pp = &(*pp)->next;
		*pp = a;
	}
	pthread_rwlock_unlock(&fs->names_lock);
}

/* The node of (st's dev and ino, ctx) if it is still the object at fd. A
 * node holding its fd keeps its inode alive, so its number cannot have
 * been reused; one whose fd the budget closed may name a removed object
 * whose number a new one now has. That node is retired (it lives on for
 * the kernel's references to the old object) and a new one is made. */
static struct pfs_node *find_current_locked(struct shard *s, const struct stat *st,
					    uint64_t ctx, int fd)
{
	struct pfs_node *n = find_locked(s, st->st_dev, st->st_ino, ctx);
	const struct file_handle *h;

	/* A synthetic node (dev 0) is named by its path: no number to reuse,
	 * and no handle (its fd is a copy of the empty directory's). */
	if (!n || n->fd_fixed || n->bfd >= 0 || n->dev == 0)
		return n;
	/* fd is the top object of a layered name: a closed node's top handle. */
	h = n->ln ? n->ln->hs[n->ln->top].h : n->handle;
	if (n->type == (st->st_mode & S_IFMT) && pfs_nodefd_same(fd, h))
		return n;
	n->ctx = (uint64_t)(uintptr_t)n | 1; /* as pfs_node_retire */
	return NULL;
}

/* Past this many node fds a request sweeps at once, not at its end. */
static long fd_hard_limit(struct pfs_fs *fs)
{
	long b = fs->nfd->budget;

	return b + (b / 8 > 16 ? b / 8 : 16);
}

int pfs_node_intern(struct pfs_fs *fs, struct pfs_node *parent, const char *name, int fd,
		    const struct stat *st, uint64_t ctx, struct pfs_node **out)
{
	return pfs_node_intern_ln(fs, parent, name, fd, st, ctx, NULL, out, NULL);
}

int pfs_node_intern_ln(struct pfs_fs *fs, struct pfs_node *parent, const char *name, int fd,
		       const struct stat *st, uint64_t ctx, struct pfs_lnode *ln,
		       struct pfs_node **out, bool *made)
{
	struct shard *s = shard_for(fs, st->st_dev, st->st_ino, ctx);
	struct pfs_node *n, *fresh;
	long fds;

	if (made)
		*made = false;

	if (st->st_dev == fs->root->dev && st->st_ino == fs->root->ino && ctx == 0) {
		/* Only reachable through a bind mount of the source inside itself. */
		if (ln)
			pfs_lnode_free(fs->layers, ln, fd);
		close(fd);
		*out = fs->root;
		return 0;
	}
	pthread_mutex_lock(&s->lock);
	n = find_current_locked(s, st, ctx, fd);
	if (n) {
		n->nlookup++;
		pthread_mutex_unlock(&s->lock);
		if (ln)
			pfs_lnode_free(fs->layers, ln, fd);
		close(fd);
		alias_note(fs, n, parent, name);
		*out = n;
		return 0;
	}
	pthread_mutex_unlock(&s->lock);

	/* Build outside the lock; recheck before inserting. */
	fresh = calloc(1, sizeof(*fresh));
	if (!fresh || !(fresh->alias = alias_new(parent, name))) {
		free(fresh);
		if (ln)
			pfs_lnode_free(fs->layers, ln, fd);
		close(fd);
		return -ENOMEM;
	}
	fresh->ln = ln;
	fresh->dev = st->st_dev;
	fresh->ino = st->st_ino;
	fresh->ctx = ctx;
	fresh->bfd = fd;
	/* A synthetic node's fd (dev 0) is a copy of the daemon's own empty
	 * directory's: swept like any other, and copied again when needed (a
	 * walk of 10,000 names under .history held 10,000 of them). */
	fresh->fd_fixed = ln && !ln_sweepable(ln);
	fresh->fd_used = true; /* the kernel is about to use it */
	fresh->type = st->st_mode & S_IFMT;
	fresh->nlookup = 1;
	get_ref(fs, parent);

	pthread_mutex_lock(&s->lock);
	n = find_current_locked(s, st, ctx, fd);
	if (n) {
		n->nlookup++;
		pthread_mutex_unlock(&s->lock);
		release_node(fs, fresh);
		alias_note(fs, n, parent, name);
		*out = n;
		return 0;
	}
	if (s->count >= s->nbuckets)
		grow(s);
	fresh->hnext = s->buckets[bucket_of(s, fresh->dev, fresh->ino, ctx)];
	s->buckets[bucket_of(s, fresh->dev, fresh->ino, ctx)] = fresh;
	s->count++;
	fds = fresh->fd_fixed ? 0 : pfs_node_nfds(fs, fresh);
	pthread_mutex_unlock(&s->lock);
	if (fds && __atomic_add_fetch(&fs->nfd->held, fds, __ATOMIC_RELAXED) > fd_hard_limit(fs))
		pfs_nodes_sweep(fs); /* a READDIRPLUS can make thousands of nodes at once */
	*out = fresh;
	if (made)
		*made = true;
	return 0;
}

void pfs_node_forget(struct pfs_fs *fs, struct pfs_node *n, uint64_t nlookup)
{
	struct shard *s;
	bool gone;

	if (n == fs->root)
		return;
	s = shard_of(fs, n);
	pthread_mutex_lock(&s->lock);
	n->nlookup = nlookup > n->nlookup ? 0 : n->nlookup - nlookup;
	gone = n->nlookup == 0 && n->refs == 0;
	if (gone)
		unlink_locked(s, n);
	pthread_mutex_unlock(&s->lock);
	if (gone)
		release_node(fs, n);
}

/* Find (dev, ino, ctx) and hold it against a concurrent forget. */
struct pfs_node *pfs_node_find(struct pfs_fs *fs, dev_t dev, ino_t ino, uint64_t ctx)
{
	struct shard *s;
	struct pfs_node *n;

	if (dev == fs->root->dev && ino == fs->root->ino && ctx == 0)
		return fs->root;
	s = shard_for(fs, dev, ino, ctx);
	pthread_mutex_lock(&s->lock);
	n = find_locked(s, dev, ino, ctx);
	if (n)
		n->refs++;
	pthread_mutex_unlock(&s->lock);
	return n;
}

void pfs_node_release(struct pfs_fs *fs, struct pfs_node *n)
{
	put_ref(fs, n);
}

void pfs_node_hold(struct pfs_fs *fs, struct pfs_node *n)
{
	get_ref(fs, n);
}

void pfs_node_retire(struct pfs_fs *fs, struct pfs_node *n)
{
	struct shard *s;

	if (n == fs->root)
		return;
	/* The ctx is in the key but not in the hash: the node stays in its
	 * chain (so teardown still finds it) under a key no lookup asks for. */
	s = shard_of(fs, n);
	pthread_mutex_lock(&s->lock);
	n->ctx = (uint64_t)(uintptr_t)n | 1;
	pthread_mutex_unlock(&s->lock);
}

size_t pfs_node_siblings(struct pfs_fs *fs, struct pfs_node *n, struct pfs_node **out, size_t max)
{
	struct shard *s;
	struct pfs_node *m;
	size_t count = 0;

	if (pfs_node_synthetic(n))
		return 0;
	s = shard_of(fs, n);
	pthread_mutex_lock(&s->lock);
	for (m = s->buckets[bucket_of(s, n->dev, n->ino, n->ctx)]; m && count < max; m = m->hnext) {
		if (m != n && m->dev == n->dev && m->ino == n->ino) {
			m->refs++;
			out[count++] = m;
		}
	}
	pthread_mutex_unlock(&s->lock);
	/* The root is no table entry: a graft of the source root is its sibling. */
	if (count < max && n != fs->root && n->dev == fs->root->dev && n->ino == fs->root->ino)
		out[count++] = fs->root;
	return count;
}

size_t pfs_node_all(struct pfs_fs *fs, dev_t dev, ino_t ino, struct pfs_node **out, size_t max)
{
	struct pfs_node *n = pfs_node_find(fs, dev, ino, 0);
	size_t count = 0;

	if (!n) { /* ctx 0 is not held: any node of the object stands in */
		struct shard *s = shard_for(fs, dev, ino, 0);

		pthread_mutex_lock(&s->lock);
		for (n = s->buckets[bucket_of(s, dev, ino, 0)]; n; n = n->hnext)
			if (n->dev == dev && n->ino == ino)
				break;
		if (n)
			n->refs++;
		pthread_mutex_unlock(&s->lock);
	}
	if (!n || !max)
		goto out;
	out[count++] = n;
	count += pfs_node_siblings(fs, n, out + 1, max - 1);
	return count;
out:
	if (n)
		put_ref(fs, n);
	return count;
}

bool pfs_node_known_as(struct pfs_fs *fs, struct pfs_node *n, struct pfs_node *parent,
		       const char *name)
{
	bool known;

	pthread_rwlock_rdlock(&fs->names_lock);
	known = alias_find(n, parent, name) != NULL;
	pthread_rwlock_unlock(&fs->names_lock);
	return known;
}

void pfs_node_renamed(struct pfs_fs *fs, dev_t dev, ino_t ino, uint64_t ctx,
		      struct pfs_node *parent, const char *name, struct pfs_node *np,
		      const char *nn)
{
	struct pfs_node *n = pfs_node_find(fs, dev, ino, ctx), *old = NULL;
	struct pfs_alias *fresh, **pp;

	if (!n)
		return;
	fresh = alias_new(np, nn);
	pthread_rwlock_wrlock(&fs->names_lock);
	if (fresh && !alias_find(n, np, nn)) {
		get_ref(fs, np);
		pp = alias_find(n, parent, name);
		if (pp) { /* the name moves: same place in the list */
			fresh->next = (*pp)->next;
			old = (*pp)->parent;
			free(*pp);
			*pp = fresh;
		} else {
			fresh->next = n->alias;
			n->alias = fresh;
		}
		fresh = NULL;
	}
	pthread_rwlock_unlock(&fs->names_lock);
	free(fresh);
	put_ref(fs, old);
	put_ref(fs, n);
}

void pfs_node_unlinked(struct pfs_fs *fs, dev_t dev, ino_t ino, uint64_t ctx,
		       struct pfs_node *parent, const char *name)
{
	struct pfs_node *n = pfs_node_find(fs, dev, ino, ctx), *old = NULL;
	struct pfs_alias **pp, *gone = NULL;

	if (!n)
		return;
	pthread_rwlock_wrlock(&fs->names_lock);
	pp = alias_find(n, parent, name);
	/* Keep the last name: an open, unlinked file is still logged by it. */
	if (pp && !(n->alias == *pp && !(*pp)->next)) {
		gone = *pp;
		*pp = gone->next;
		old = gone->parent;
	}
	pthread_rwlock_unlock(&fs->names_lock);
	free(gone);
	put_ref(fs, old);
	put_ref(fs, n);
}

int pfs_node_name(struct pfs_fs *fs, struct pfs_node *n, int *parent_fd, char *name,
		  size_t len)
{
	struct pfs_node *parent = NULL;
	int ret = -ENOENT;

	pthread_rwlock_rdlock(&fs->names_lock);
	if (n->alias && strlen(n->alias->name) < len) {
		parent = n->alias->parent;
		get_ref(fs, parent);
		strcpy(name, n->alias->name);
		ret = 0;
	}
	pthread_rwlock_unlock(&fs->names_lock);
	if (ret < 0)
		return ret;
	/* Outside the names lock: it may have to be reopened. */
	ret = pfs_node_fd(fs, parent);
	put_ref(fs, parent);
	if (ret < 0)
		return ret;
	*parent_fd = ret;
	return 0;
}

char *pfs_node_path(struct pfs_fs *fs, struct pfs_node *n, const char *name)
{
	const char *parts[256];
	size_t np = 0, len = 0;
	char *out, *p;

	pthread_rwlock_rdlock(&fs->names_lock);
	if (name) {
		parts[np++] = name;
		len += strlen(name) + 1;
	}
	for (; n && n != fs->root && n->alias && np < PFS_ARRAY_SIZE(parts);
	     n = n->alias->parent) {
		parts[np++] = n->alias->name;
		len += strlen(n->alias->name) + 1;
	}
	out = malloc(len + 2);
	if (out) {
		p = out;
		if (np == 0)
			*p++ = '/';
		while (np) {
			size_t l = strlen(parts[--np]);

			*p++ = '/';
			memcpy(p, parts[np], l);
			p += l;
		}
		*p = '\0';
	}
	pthread_rwlock_unlock(&fs->names_lock);
	return out;
}

size_t pfs_nodes_count(struct pfs_fs *fs)
{
	size_t total = 0;

	for (int i = 0; i < SHARDS; i++) {
		pthread_mutex_lock(&fs->nodes->shards[i].lock);
		total += fs->nodes->shards[i].count;
		pthread_mutex_unlock(&fs->nodes->shards[i].lock);
	}
	return total;
}

/* Freed nodes are small chunks scattered through malloc's arenas, which keep
 * them as resident memory; after a large forget (memory pressure, drop_caches)
 * hand the free pages back, at most once per 8192 forgotten nodes. */
void pfs_nodes_maybe_trim(struct pfs_fs *fs, size_t forgotten)
{
	static unsigned long pending;
	unsigned long now = __atomic_add_fetch(&pending, forgotten, __ATOMIC_RELAXED);

	if (now >= 8192 && __atomic_compare_exchange_n(&pending, &now, 0, false,
							__ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
		struct pfs_nodes *t = fs->nodes;

		/* The sweep's hand is an index into these tables. */
		pthread_mutex_lock(&t->sweep_lock);
		for (int i = 0; i < SHARDS; i++) {
			pthread_mutex_lock(&t->shards[i].lock);
			shrink(&t->shards[i]);
			pthread_mutex_unlock(&t->shards[i].lock);
		}
		t->sweep_bucket = 0;
		pthread_mutex_unlock(&t->sweep_lock);
		malloc_trim(0);
	}
}

/* Every directory's attributes the kernel holds marked stale (its names and
 * cached listings stay until then): the next use asks the store, which
 * lists a remote mirror's directory again after prismfs sync. */
void pfs_nodes_stale_dirs(struct pfs_fs *fs)
{
	if (!fs->kernel || !fs->nodes)
		return;
	fs->kernel->inval_inode(fs->kernel_ctx, FUSE_ROOT_ID, -1, 0);
	for (int i = 0; i < SHARDS; i++) {
		struct shard *s = &fs->nodes->shards[i];

		/* With a negative offset the kernel only marks the attributes
		 * (under a spinlock): nothing it does waits for this lock. */
		pthread_mutex_lock(&s->lock);
		for (size_t b = 0; b < s->nbuckets; b++)
			for (struct pfs_node *n = s->buckets[b]; n; n = n->hnext)
				if (S_ISDIR(n->type) && n->nlookup && n != fs->root)
					fs->kernel->inval_inode(fs->kernel_ctx, pfs_ino_of(fs, n),
								-1, 0);
		pthread_mutex_unlock(&s->lock);
	}
}
