/* node: the table of nodes the kernel knows, keyed by backing (dev, ino).
 * Sharded so that lookups in different directories do not contend; the
 * nodeid the kernel sees is the node's address, so ino -> node is O(1). */
#include "view.h"
#include "util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SHARDS 64

struct shard {
	pthread_mutex_t lock;
	struct pfs_node **buckets;
	size_t nbuckets; /* power of two */
	size_t count;
};

struct pfs_nodes {
	struct shard shards[SHARDS];
};

static uint64_t hash_key(dev_t dev, ino_t ino)
{
	uint64_t h = (uint64_t)ino * 0x9e3779b97f4a7c15ull ^ (uint64_t)dev * 0xc2b2ae3d27d4eb4full;

	return h ^ (h >> 29);
}

static struct shard *shard_of(struct pfs_fs *fs, dev_t dev, ino_t ino)
{
	return &fs->nodes->shards[hash_key(dev, ino) % SHARDS];
}

static size_t bucket_of(const struct shard *s, dev_t dev, ino_t ino)
{
	return (hash_key(dev, ino) / SHARDS) & (s->nbuckets - 1);
}

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
	root->fd = root_fd;
	root->type = S_IFDIR;
	root->nlookup = 2;
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

static void free_node(struct pfs_node *n)
{
	close(n->fd);
	free(n->name);
	free(n);
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
				free_node(n);
			}
		}
		free(s->buckets);
		pthread_mutex_destroy(&s->lock);
	}
	free(t);
	fs->nodes = NULL;
	free(fs->root); /* its fd is fs->root_fd, closed by the owner */
	fs->root = NULL;
}

static void grow(struct shard *s)
{
	size_t nb = s->nbuckets * 2;
	struct pfs_node **nbk = calloc(nb, sizeof(*nbk));

	if (!nbk)
		return; /* longer chains, still correct */
	for (size_t b = 0; b < s->nbuckets; b++) {
		struct pfs_node *n = s->buckets[b], *next;

		for (; n; n = next) {
			size_t i = (hash_key(n->dev, n->ino) / SHARDS) & (nb - 1);

			next = n->hnext;
			n->hnext = nbk[i];
			nbk[i] = n;
		}
	}
	free(s->buckets);
	s->buckets = nbk;
	s->nbuckets = nb;
}

static struct pfs_node *find_locked(struct shard *s, dev_t dev, ino_t ino)
{
	struct pfs_node *n = s->buckets[bucket_of(s, dev, ino)];

	while (n && !(n->dev == dev && n->ino == ino))
		n = n->hnext;
	return n;
}

static void unlink_locked(struct shard *s, struct pfs_node *n)
{
	struct pfs_node **pp = &s->buckets[bucket_of(s, n->dev, n->ino)];

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
	s = shard_of(fs, n->dev, n->ino);
	pthread_mutex_lock(&s->lock);
	n->refs++;
	pthread_mutex_unlock(&s->lock);
}

/* Drop one child's hold on n; free n (and walk up) once nothing holds it. */
static void put_ref(struct pfs_fs *fs, struct pfs_node *n)
{
	while (n && n != fs->root) {
		struct shard *s = shard_of(fs, n->dev, n->ino);
		struct pfs_node *parent;
		bool gone;

		pthread_mutex_lock(&s->lock);
		n->refs--;
		gone = n->refs == 0 && n->nlookup == 0;
		if (gone)
			unlink_locked(s, n);
		pthread_mutex_unlock(&s->lock);
		if (!gone)
			return;
		parent = n->parent;
		free_node(n);
		n = parent;
	}
}

int pfs_node_intern(struct pfs_fs *fs, struct pfs_node *parent, const char *name, int fd,
		    const struct stat *st, struct pfs_node **out)
{
	struct shard *s = shard_of(fs, st->st_dev, st->st_ino);
	struct pfs_node *n, *fresh;

	if (st->st_dev == fs->root->dev && st->st_ino == fs->root->ino) {
		/* Only reachable through a bind mount of the source inside itself. */
		close(fd);
		*out = fs->root;
		return 0;
	}
	pthread_mutex_lock(&s->lock);
	n = find_locked(s, st->st_dev, st->st_ino);
	if (n) {
		n->nlookup++;
		pthread_mutex_unlock(&s->lock);
		close(fd);
		*out = n;
		return 0;
	}
	pthread_mutex_unlock(&s->lock);

	/* Build outside the lock; recheck before inserting. */
	fresh = calloc(1, sizeof(*fresh));
	if (!fresh || !(fresh->name = strdup(name))) {
		free(fresh);
		close(fd);
		return -ENOMEM;
	}
	fresh->dev = st->st_dev;
	fresh->ino = st->st_ino;
	fresh->fd = fd;
	fresh->type = st->st_mode & S_IFMT;
	fresh->nlookup = 1;
	fresh->parent = parent;
	get_ref(fs, parent);

	pthread_mutex_lock(&s->lock);
	n = find_locked(s, st->st_dev, st->st_ino);
	if (n) {
		n->nlookup++;
		pthread_mutex_unlock(&s->lock);
		put_ref(fs, parent);
		free_node(fresh);
		*out = n;
		return 0;
	}
	if (s->count >= s->nbuckets)
		grow(s);
	fresh->hnext = s->buckets[bucket_of(s, fresh->dev, fresh->ino)];
	s->buckets[bucket_of(s, fresh->dev, fresh->ino)] = fresh;
	s->count++;
	pthread_mutex_unlock(&s->lock);
	*out = fresh;
	return 0;
}

void pfs_node_forget(struct pfs_fs *fs, struct pfs_node *n, uint64_t nlookup)
{
	struct shard *s;
	struct pfs_node *parent;
	bool gone;

	if (n == fs->root)
		return;
	s = shard_of(fs, n->dev, n->ino);
	pthread_mutex_lock(&s->lock);
	n->nlookup = nlookup > n->nlookup ? 0 : n->nlookup - nlookup;
	gone = n->nlookup == 0 && n->refs == 0;
	if (gone)
		unlink_locked(s, n);
	pthread_mutex_unlock(&s->lock);
	if (!gone)
		return;
	parent = n->parent;
	free_node(n);
	put_ref(fs, parent);
}

void pfs_node_moved(struct pfs_fs *fs, dev_t dev, ino_t ino, struct pfs_node *parent,
		    const char *name)
{
	struct shard *s = shard_of(fs, dev, ino);
	struct pfs_node *n, *old = NULL;
	char *nn = strdup(name);

	if (!nn)
		return; /* only the logged name goes stale */
	pthread_rwlock_wrlock(&fs->names_lock);
	pthread_mutex_lock(&s->lock);
	n = find_locked(s, dev, ino);
	if (n)
		n->refs++; /* keep it while we rename it */
	pthread_mutex_unlock(&s->lock);
	if (n) {
		get_ref(fs, parent);
		old = n->parent;
		n->parent = parent;
		free(n->name);
		n->name = nn;
		nn = NULL;
	}
	pthread_rwlock_unlock(&fs->names_lock);
	free(nn);
	if (n) {
		put_ref(fs, old);
		put_ref(fs, n);
	}
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
	for (; n && n != fs->root && np < PFS_ARRAY_SIZE(parts); n = n->parent) {
		parts[np++] = n->name;
		len += strlen(n->name) + 1;
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
