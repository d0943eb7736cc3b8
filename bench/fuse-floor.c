/* fuse-floor: the bench's floor column. A FUSE filesystem (libfuse low-level
 * API) that keeps every inode, name and byte in memory and touches no disk,
 * so that a workload run through it costs what FUSE itself costs on the
 * machine: the kernel's requests, the round trips and the copies, and no
 * filesystem work. prismfs's ratio divided by the floor's says how much of
 * the gap to native is prismfs's own.
 *
 * To keep the comparison to prismfs fair it asks the kernel for what prismfs
 * asks for (see floor_init and the reply flags): the same entry and
 * attribute timeouts (86400 s, absences cached too), default_permissions,
 * page and readdir caches kept across opens, no FLUSH, no writeback cache.
 * When the bench finds prismfs's session loop (src/fuse/loop.c) it builds the
 * floor with it (-DFLOOR_PFS_LOOP), so that both take requests from
 * /dev/fuse the same way; otherwise libfuse's multi-threaded loop is used.
 * It does not take requests over io_uring: compare it with prismfs run with
 * BENCH_URING=off.
 *
 * Not a general filesystem: one lock for everything (the floor is about the
 * cost of a request, and a request holds it for a microsecond), no xattrs
 * (get: ENODATA, set: ENOTSUP), no locks, no set-group-ID inheritance.
 *
 * Usage: fuse-floor [-f] [--threads N] [--counts FILE] [-o OPTS] MOUNTPOINT
 * --counts FILE: the number of requests of each kind is written to FILE
 * (lines "op count") on SIGUSR1 and at exit; the bench reads it for its
 * requests-per-file table. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#ifdef FLOOR_PFS_LOOP
#include "fuse/loop.h" /* defines FUSE_USE_VERSION like the rest of prismfs */
#else
#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>
#endif

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#define FLOOR_TIMEOUT 86400.0 /* prismfs's default --timeout */

struct node {
	struct stat st;
	uint64_t nlookup;   /* kernel references */
	unsigned nopen;     /* open files and directories */
	char *data;         /* regular file: contents; symlink: target */
	size_t cap;
	struct dent *first, *last; /* directory: its names, oldest first */
	struct node *parent;       /* directory: for ".." */
	uint64_t next_cookie;      /* directory: of its next name */
};

struct dent {
	struct dent *hnext;        /* hash chain */
	struct dent *prev, *next;  /* the directory's list */
	struct node *dir, *node;
	uint64_t cookie; /* readdir offset: its place in the list, for good */
	char name[];
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct node root;
static struct dent **htab;
static size_t hsize, hcount;
static ino_t next_ino = 2;
static uint64_t nnodes, nbytes;

/* ----------------------------------------------------------- counters -- */
enum {
	C_LOOKUP, C_FORGET, C_GETATTR, C_SETATTR, C_READLINK, C_MKNOD, C_MKDIR,
	C_UNLINK, C_RMDIR, C_SYMLINK, C_RENAME, C_LINK, C_OPEN, C_READ, C_WRITE,
	C_FLUSH, C_RELEASE, C_FSYNC, C_OPENDIR, C_READDIR, C_READDIRPLUS,
	C_RELEASEDIR, C_FSYNCDIR, C_STATFS, C_SETXATTR, C_GETXATTR, C_LISTXATTR,
	C_REMOVEXATTR, C_ACCESS, C_CREATE, C_N
};
/* The names prismfs's op log uses. */
static const char *const cname[C_N] = {
	"lookup", "forget", "getattr", "setattr", "readlink", "mknod", "mkdir",
	"unlink", "rmdir", "symlink", "rename", "link", "open", "read", "write",
	"flush", "release", "fsync", "opendir", "readdir", "readdirplus",
	"releasedir", "fsyncdir", "statfs", "setxattr", "getxattr", "listxattr",
	"removexattr", "access", "create",
};
static _Atomic uint64_t counts[C_N];
static const char *counts_path;

#define COUNT(c) atomic_fetch_add_explicit(&counts[c], 1, memory_order_relaxed)

static void write_counts(void)
{
	char tmp[PATH_MAX];
	FILE *f;

	if (!counts_path || snprintf(tmp, sizeof(tmp), "%s.tmp", counts_path) >= (int)sizeof(tmp))
		return;
	f = fopen(tmp, "w");
	if (!f)
		return;
	for (int i = 0; i < C_N; i++)
		fprintf(f, "%s %llu\n", cname[i],
			(unsigned long long)atomic_load_explicit(&counts[i], memory_order_relaxed));
	fprintf(f, "#nodes %llu bytes %llu\n", (unsigned long long)nnodes,
		(unsigned long long)nbytes);
	/* rename: the reader never sees half a file */
	if (fclose(f) == 0)
		rename(tmp, counts_path);
}

/* SIGUSR1 is blocked in every thread; this one takes it. */
static void *counts_thread(void *arg)
{
	sigset_t *set = arg;
	int sig;

	for (;;)
		if (sigwait(set, &sig) == 0 && sig == SIGUSR1)
			write_counts();
	return NULL;
}

/* -------------------------------------------------------------- nodes -- */
static struct node *N(fuse_ino_t ino)
{
	return ino == FUSE_ROOT_ID ? &root : (struct node *)(uintptr_t)ino;
}

static fuse_ino_t ino_of(struct node *n)
{
	return n == &root ? FUSE_ROOT_ID : (fuse_ino_t)(uintptr_t)n;
}

static void now(struct timespec *ts)
{
	clock_gettime(CLOCK_REALTIME, ts);
}

static void touch_mc(struct node *n) /* content changed */
{
	now(&n->st.st_mtim);
	n->st.st_ctim = n->st.st_mtim;
}

static struct node *node_new(fuse_req_t req, mode_t mode)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct node *n = calloc(1, sizeof(*n));

	if (!n)
		return NULL;
	n->st.st_ino = next_ino++;
	n->st.st_mode = mode;
	n->st.st_nlink = S_ISDIR(mode) ? 2 : 1;
	n->st.st_uid = ctx->uid;
	n->st.st_gid = ctx->gid;
	n->st.st_blksize = 4096;
	n->next_cookie = 3; /* 1 and 2: "." and ".." */
	now(&n->st.st_atim);
	n->st.st_mtim = n->st.st_ctim = n->st.st_atim;
	nnodes++;
	return n;
}

/* Frees n once nothing refers to it: no name, no kernel reference, no open. */
static void node_maybe_free(struct node *n)
{
	if (n == &root || n->st.st_nlink || n->nlookup || n->nopen)
		return;
	nbytes -= S_ISREG(n->st.st_mode) ? n->st.st_size : 0;
	free(n->data);
	free(n);
	nnodes--;
}

static void fill_attr(struct node *n, struct stat *st)
{
	*st = n->st;
	st->st_blocks = (n->st.st_size + 511) / 512;
}

/* ------------------------------------------------------------- names -- */
static size_t hash(struct node *dir, const char *name)
{
	uint64_t h = 1469598103934665603ull ^ (uintptr_t)dir;

	for (; *name; name++)
		h = (h ^ (unsigned char)*name) * 1099511628211ull;
	return (size_t)(h ^ (h >> 29));
}

static struct dent **dent_slot(struct node *dir, const char *name)
{
	struct dent **p = &htab[hash(dir, name) & (hsize - 1)];

	while (*p && ((*p)->dir != dir || strcmp((*p)->name, name) != 0))
		p = &(*p)->hnext;
	return p;
}

static struct dent *dent_find(struct node *dir, const char *name)
{
	return *dent_slot(dir, name);
}

static int grow_table(void)
{
	size_t nsize = hsize ? hsize * 2 : 1024;
	struct dent **nt = calloc(nsize, sizeof(*nt));

	if (!nt)
		return -ENOMEM;
	for (size_t i = 0; i < hsize; i++) {
		for (struct dent *d = htab[i], *nx; d; d = nx) {
			size_t b = hash(d->dir, d->name) & (nsize - 1);

			nx = d->hnext;
			d->hnext = nt[b];
			nt[b] = d;
		}
	}
	free(htab);
	htab = nt;
	hsize = nsize;
	return 0;
}

/* Gives n the name dir/name (not there yet); counts the link. */
static int dent_add(struct node *dir, const char *name, struct node *n)
{
	size_t len = strlen(name);
	struct dent *d, **slot;

	if (hcount >= hsize && grow_table() < 0)
		return -ENOMEM;
	d = malloc(sizeof(*d) + len + 1);
	if (!d)
		return -ENOMEM;
	memcpy(d->name, name, len + 1);
	d->dir = dir;
	d->node = n;
	d->cookie = dir->next_cookie++;
	slot = &htab[hash(dir, name) & (hsize - 1)];
	d->hnext = *slot;
	*slot = d;
	d->next = NULL;
	d->prev = dir->last;
	if (dir->last)
		dir->last->next = d;
	else
		dir->first = d;
	dir->last = d;
	hcount++;
	dir->st.st_size++;
	if (S_ISDIR(n->st.st_mode)) {
		dir->st.st_nlink++;
		n->parent = dir;
	}
	touch_mc(dir);
	return 0;
}

/* Removes the name; the caller drops the link count of the node. */
static void dent_del(struct dent *d)
{
	struct node *dir = d->dir;
	struct dent **slot = dent_slot(dir, d->name);

	*slot = d->hnext;
	if (d->prev)
		d->prev->next = d->next;
	else
		dir->first = d->next;
	if (d->next)
		d->next->prev = d->prev;
	else
		dir->last = d->prev;
	hcount--;
	dir->st.st_size--;
	if (S_ISDIR(d->node->st.st_mode))
		dir->st.st_nlink--;
	touch_mc(dir);
	free(d);
}

static int check_name(const char *name)
{
	return strlen(name) > NAME_MAX ? -ENAMETOOLONG : 0;
}

static void entry_of(struct node *n, struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	e->ino = ino_of(n);
	e->attr_timeout = e->entry_timeout = FLOOR_TIMEOUT;
	fill_attr(n, &e->attr);
	n->nlookup++;
}

/* ---------------------------------------------------------------- ops -- */
static void floor_init(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata;
	/* As prismfs's op_init asks. */
	if (conn->capable & FUSE_CAP_PARALLEL_DIROPS)
		conn->want |= FUSE_CAP_PARALLEL_DIROPS;
	if (conn->capable & FUSE_CAP_SPLICE_WRITE)
		conn->want |= FUSE_CAP_SPLICE_WRITE;
	conn->want &= ~FUSE_CAP_HANDLE_KILLPRIV;
	conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
	if (conn->capable & FUSE_CAP_CACHE_SYMLINKS)
		conn->want |= FUSE_CAP_CACHE_SYMLINKS;
}

static void floor_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fuse_entry_param e;
	struct dent *d;

	COUNT(C_LOOKUP);
	if (check_name(name) < 0) {
		fuse_reply_err(req, ENAMETOOLONG);
		return;
	}
	pthread_mutex_lock(&lock);
	d = dent_find(N(parent), name);
	if (d) {
		entry_of(d->node, &e);
	} else {
		/* an absence, cached like prismfs caches it */
		memset(&e, 0, sizeof(e));
		e.entry_timeout = FLOOR_TIMEOUT;
	}
	pthread_mutex_unlock(&lock);
	fuse_reply_entry(req, &e);
}

static void forget_one(fuse_ino_t ino, uint64_t nlookup)
{
	struct node *n = N(ino);

	n->nlookup -= nlookup < n->nlookup ? nlookup : n->nlookup;
	node_maybe_free(n);
}

static void floor_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	COUNT(C_FORGET);
	pthread_mutex_lock(&lock);
	forget_one(ino, nlookup);
	pthread_mutex_unlock(&lock);
	fuse_reply_none(req);
}

/* Counted per inode, as prismfs's op log counts a batch. */
static void floor_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *f)
{
	atomic_fetch_add_explicit(&counts[C_FORGET], count, memory_order_relaxed);
	pthread_mutex_lock(&lock);
	for (size_t i = 0; i < count; i++)
		forget_one(f[i].ino, f[i].nlookup);
	pthread_mutex_unlock(&lock);
	fuse_reply_none(req);
}

static void floor_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct stat st;

	(void)fi;
	COUNT(C_GETATTR);
	pthread_mutex_lock(&lock);
	fill_attr(N(ino), &st);
	pthread_mutex_unlock(&lock);
	fuse_reply_attr(req, &st, FLOOR_TIMEOUT);
}

static int resize(struct node *n, off_t size)
{
	if (size < 0)
		return -EINVAL;
	if ((size_t)size > n->cap) {
		size_t cap = n->cap ? n->cap : 4096;
		char *p;

		while (cap < (size_t)size)
			cap *= 2;
		p = realloc(n->data, cap);
		if (!p)
			return -ENOSPC;
		n->data = p;
		n->cap = cap;
	}
	if (size > n->st.st_size)
		memset(n->data + n->st.st_size, 0, (size_t)(size - n->st.st_size));
	nbytes += size - n->st.st_size;
	n->st.st_size = size;
	return 0;
}

static void set_time(struct timespec *dst, const struct timespec *src, bool to_now)
{
	if (to_now)
		now(dst);
	else
		*dst = *src;
}

static void floor_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
			  struct fuse_file_info *fi)
{
	struct node *n = N(ino);
	struct stat st;
	int ret = 0;

	(void)fi;
	COUNT(C_SETATTR);
	pthread_mutex_lock(&lock);
	if (to_set & FUSE_SET_ATTR_SIZE) {
		if (S_ISDIR(n->st.st_mode))
			ret = -EISDIR;
		else if (!S_ISREG(n->st.st_mode))
			ret = -EINVAL;
		else if ((ret = resize(n, attr->st_size)) == 0)
			touch_mc(n);
	}
	if (ret == 0) {
		if (to_set & FUSE_SET_ATTR_MODE)
			n->st.st_mode = (n->st.st_mode & S_IFMT) | (attr->st_mode & 07777);
		if (to_set & FUSE_SET_ATTR_UID)
			n->st.st_uid = attr->st_uid;
		if (to_set & FUSE_SET_ATTR_GID)
			n->st.st_gid = attr->st_gid;
		if (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_ATIME_NOW))
			set_time(&n->st.st_atim, &attr->st_atim, to_set & FUSE_SET_ATTR_ATIME_NOW);
		if (to_set & (FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_MTIME_NOW))
			set_time(&n->st.st_mtim, &attr->st_mtim, to_set & FUSE_SET_ATTR_MTIME_NOW);
		if (to_set & FUSE_SET_ATTR_CTIME)
			n->st.st_ctim = attr->st_ctim;
		else
			now(&n->st.st_ctim);
		fill_attr(n, &st);
	}
	pthread_mutex_unlock(&lock);
	if (ret < 0)
		fuse_reply_err(req, -ret);
	else
		fuse_reply_attr(req, &st, FLOOR_TIMEOUT);
}

static void floor_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct node *n = N(ino);
	char *t = NULL;

	COUNT(C_READLINK);
	pthread_mutex_lock(&lock);
	if (S_ISLNK(n->st.st_mode))
		t = strdup(n->data);
	pthread_mutex_unlock(&lock);
	if (t)
		fuse_reply_readlink(req, t);
	else
		fuse_reply_err(req, S_ISLNK(n->st.st_mode) ? ENOMEM : EINVAL);
	free(t);
}

/* Makes a new node named parent/name. fi: reply as a create. */
static void make(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		 dev_t rdev, const char *link, struct fuse_file_info *fi)
{
	struct node *dir = N(parent), *n = NULL;
	struct fuse_entry_param e;
	int ret = check_name(name);

	pthread_mutex_lock(&lock);
	if (ret < 0)
		goto out;
	if (dent_find(dir, name)) {
		ret = -EEXIST;
		goto out;
	}
	n = node_new(req, mode);
	if (!n) {
		ret = -ENOMEM;
		goto out;
	}
	n->st.st_rdev = rdev;
	if (link) {
		n->data = strdup(link);
		if (!n->data) {
			ret = -ENOMEM;
			goto out;
		}
		n->st.st_size = (off_t)strlen(link);
	}
	ret = dent_add(dir, name, n);
	if (ret < 0)
		goto out;
	entry_of(n, &e);
	if (fi)
		n->nopen++;
	n = NULL;
out:
	if (n) {
		n->st.st_nlink = 0;
		node_maybe_free(n);
	}
	pthread_mutex_unlock(&lock);
	if (ret < 0) {
		fuse_reply_err(req, -ret);
	} else if (fi) {
		fi->keep_cache = 1;
		fi->noflush = 1;
		fuse_reply_create(req, &e, fi);
	} else {
		fuse_reply_entry(req, &e);
	}
}

static void floor_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
			dev_t rdev)
{
	COUNT(C_MKNOD);
	make(req, parent, name, mode, rdev, NULL, NULL);
}

static void floor_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	COUNT(C_MKDIR);
	make(req, parent, name, S_IFDIR | (mode & 07777), 0, NULL, NULL);
}

static void floor_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	COUNT(C_SYMLINK);
	make(req, parent, name, S_IFLNK | 0777, 0, link, NULL);
}

static void floor_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
			 struct fuse_file_info *fi)
{
	COUNT(C_CREATE);
	make(req, parent, name, S_IFREG | (mode & 07777), 0, NULL, fi);
}

static void drop_link(struct node *n)
{
	if (S_ISDIR(n->st.st_mode))
		n->st.st_nlink = 0;
	else if (n->st.st_nlink)
		n->st.st_nlink--;
	now(&n->st.st_ctim);
	node_maybe_free(n);
}

static void remove_name(fuse_req_t req, fuse_ino_t parent, const char *name, bool dir)
{
	struct dent *d;
	struct node *n;
	int ret = 0;

	pthread_mutex_lock(&lock);
	d = dent_find(N(parent), name);
	if (!d) {
		ret = -ENOENT;
	} else if (dir && !S_ISDIR(d->node->st.st_mode)) {
		ret = -ENOTDIR;
	} else if (!dir && S_ISDIR(d->node->st.st_mode)) {
		ret = -EISDIR;
	} else if (dir && d->node->first) {
		ret = -ENOTEMPTY;
	} else {
		n = d->node;
		dent_del(d);
		drop_link(n);
	}
	pthread_mutex_unlock(&lock);
	fuse_reply_err(req, -ret);
}

static void floor_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	COUNT(C_UNLINK);
	remove_name(req, parent, name, false);
}

static void floor_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	COUNT(C_RMDIR);
	remove_name(req, parent, name, true);
}

static void floor_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
			 fuse_ino_t newparent, const char *newname, unsigned int flags)
{
	struct node *from = N(parent), *to = N(newparent), *n, *old = NULL;
	struct dent *d, *t;
	int ret = check_name(newname);

	COUNT(C_RENAME);
	if (flags & ~(unsigned)(RENAME_NOREPLACE | RENAME_EXCHANGE)) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	pthread_mutex_lock(&lock);
	if (ret < 0)
		goto out;
	d = dent_find(from, name);
	t = dent_find(to, newname);
	if (!d || (!t && (flags & RENAME_EXCHANGE))) {
		ret = -ENOENT;
		goto out;
	}
	if (t && (flags & RENAME_NOREPLACE)) {
		ret = -EEXIST;
		goto out;
	}
	n = d->node;
	if (flags & RENAME_EXCHANGE) {
		struct node *m = t->node;

		d->node = m;
		t->node = n;
		if (S_ISDIR(n->st.st_mode) != S_ISDIR(m->st.st_mode)) {
			int dn = S_ISDIR(n->st.st_mode) ? 1 : -1;

			to->st.st_nlink += dn;
			from->st.st_nlink -= dn;
		}
		if (S_ISDIR(n->st.st_mode))
			n->parent = to;
		if (S_ISDIR(m->st.st_mode))
			m->parent = from;
		touch_mc(from);
		touch_mc(to);
		goto out;
	}
	if (t) {
		if (t->node == n) /* two names of one file: nothing to do */
			goto out;
		if (S_ISDIR(n->st.st_mode) && !S_ISDIR(t->node->st.st_mode)) {
			ret = -ENOTDIR;
			goto out;
		}
		if (!S_ISDIR(n->st.st_mode) && S_ISDIR(t->node->st.st_mode)) {
			ret = -EISDIR;
			goto out;
		}
		if (S_ISDIR(t->node->st.st_mode) && t->node->first) {
			ret = -ENOTEMPTY;
			goto out;
		}
		old = t->node;
		dent_del(t);
	}
	dent_del(d);
	ret = dent_add(to, newname, n);
	if (ret < 0) { /* out of memory: the name is lost, say so */
		drop_link(n);
		ret = -ENOMEM;
	} else {
		now(&n->st.st_ctim);
	}
	if (old)
		drop_link(old);
out:
	pthread_mutex_unlock(&lock);
	fuse_reply_err(req, -ret);
}

static void floor_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	struct node *n = N(ino);
	struct fuse_entry_param e;
	int ret = check_name(newname);

	COUNT(C_LINK);
	pthread_mutex_lock(&lock);
	if (ret == 0 && S_ISDIR(n->st.st_mode))
		ret = -EPERM;
	if (ret == 0 && dent_find(N(newparent), newname))
		ret = -EEXIST;
	if (ret == 0)
		ret = dent_add(N(newparent), newname, n);
	if (ret == 0) {
		n->st.st_nlink++;
		now(&n->st.st_ctim);
		entry_of(n, &e);
	}
	pthread_mutex_unlock(&lock);
	if (ret < 0)
		fuse_reply_err(req, -ret);
	else
		fuse_reply_entry(req, &e);
}

static void floor_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct node *n = N(ino);
	int ret = 0;

	COUNT(C_OPEN);
	pthread_mutex_lock(&lock);
	if (S_ISDIR(n->st.st_mode))
		ret = -EISDIR;
	else if ((fi->flags & O_TRUNC) && (fi->flags & O_ACCMODE) != O_RDONLY &&
		 S_ISREG(n->st.st_mode) && n->st.st_size)
		ret = resize(n, 0) == 0 ? (touch_mc(n), 0) : -EIO;
	if (ret == 0)
		n->nopen++;
	pthread_mutex_unlock(&lock);
	if (ret < 0) {
		fuse_reply_err(req, -ret);
		return;
	}
	fi->keep_cache = !(fi->flags & O_DIRECT);
	fi->noflush = 1;
	if (fuse_reply_open(req, fi) != 0) {
		pthread_mutex_lock(&lock);
		n->nopen--;
		node_maybe_free(n);
		pthread_mutex_unlock(&lock);
	}
}

static void floor_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	struct node *n = N(ino);

	(void)fi;
	COUNT(C_READ);
	/* The reply is sent under the lock: a write may move the data. */
	pthread_mutex_lock(&lock);
	if (off >= n->st.st_size)
		size = 0;
	else if ((off_t)size > n->st.st_size - off)
		size = (size_t)(n->st.st_size - off);
	fuse_reply_buf(req, size ? n->data + off : NULL, size);
	pthread_mutex_unlock(&lock);
}

static void floor_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
			struct fuse_file_info *fi)
{
	struct node *n = N(ino);
	int ret = 0;

	COUNT(C_WRITE);
	pthread_mutex_lock(&lock);
	if (fi->flags & O_APPEND)
		off = n->st.st_size;
	if (off < 0 || (off_t)size > LLONG_MAX - off)
		ret = -EFBIG;
	else if (off + (off_t)size > n->st.st_size)
		ret = resize(n, off + (off_t)size);
	if (ret == 0) {
		memcpy(n->data + off, buf, size);
		touch_mc(n);
	}
	pthread_mutex_unlock(&lock);
	if (ret < 0)
		fuse_reply_err(req, -ret);
	else
		fuse_reply_write(req, size);
}

static void floor_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino, (void)fi;
	COUNT(C_FLUSH);
	fuse_reply_err(req, 0);
}

static void floor_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct node *n = N(ino);

	(void)fi;
	COUNT(C_RELEASE);
	pthread_mutex_lock(&lock);
	n->nopen--;
	node_maybe_free(n);
	pthread_mutex_unlock(&lock);
	fuse_reply_err(req, 0);
}

static void floor_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	(void)ino, (void)datasync, (void)fi;
	COUNT(C_FSYNC);
	fuse_reply_err(req, 0); /* nothing to write back: memory is the store */
}

/* Directories are stateless, as in prismfs (which answers OPENDIR with
 * ENOSYS when it keeps listings cached, as it does in the bench): the
 * kernel then opens directories without asking and keeps their listings in
 * its cache. A READDIR offset is the cookie of the last name sent; names
 * are listed oldest first, so a name added or removed meanwhile never makes
 * another one be skipped or repeated. */
static void floor_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino, (void)fi;
	COUNT(C_OPENDIR);
	fuse_reply_err(req, ENOSYS);
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi, bool plus)
{
	struct node *dir = N(ino);
	char *buf = malloc(size);
	size_t used = 0;
	struct dent *d = NULL;

	(void)fi;
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	pthread_mutex_lock(&lock);
	if (!S_ISDIR(dir->st.st_mode)) {
		pthread_mutex_unlock(&lock);
		free(buf);
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	if (off >= 2)
		for (d = dir->first; d && d->cookie <= (uint64_t)off; d = d->next)
			;
	else
		d = dir->first;
	for (uint64_t c = off < 0 ? 1 : (uint64_t)off + 1; ; c++) {
		struct fuse_entry_param e;
		const char *name;
		struct node *n;
		size_t want;

		if (c <= 2) {
			/* "." and "..": the kernel takes no reference for them */
			n = c == 1 ? dir : dir->parent ? dir->parent : dir;
			name = c == 1 ? "." : "..";
			memset(&e, 0, sizeof(e));
			e.attr.st_ino = n->st.st_ino;
			e.attr.st_mode = S_IFDIR;
		} else if (d) {
			n = d->node;
			name = d->name;
			c = d->cookie;
			if (plus) {
				entry_of(n, &e);
			} else {
				memset(&e, 0, sizeof(e));
				e.attr.st_ino = n->st.st_ino;
				e.attr.st_mode = n->st.st_mode & S_IFMT;
			}
		} else {
			break;
		}
		if (plus)
			want = fuse_add_direntry_plus(req, buf + used, size - used, name, &e, (off_t)c);
		else
			want = fuse_add_direntry(req, buf + used, size - used, name, &e.attr, (off_t)c);
		if (want > size - used) {
			if (plus && c > 2)
				n->nlookup--; /* not sent: give the reference back */
			break;
		}
		used += want;
		if (c > 2)
			d = d->next;
	}
	pthread_mutex_unlock(&lock);
	fuse_reply_buf(req, buf, used);
	free(buf);
}

static void floor_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			  struct fuse_file_info *fi)
{
	COUNT(C_READDIR);
	do_readdir(req, ino, size, off, fi, false);
}

static void floor_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			      struct fuse_file_info *fi)
{
	COUNT(C_READDIRPLUS);
	do_readdir(req, ino, size, off, fi, true);
}

static void floor_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino, (void)fi;
	COUNT(C_RELEASEDIR); /* not sent: OPENDIR said ENOSYS */
	fuse_reply_err(req, 0);
}

static void floor_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync,
			   struct fuse_file_info *fi)
{
	(void)ino, (void)datasync, (void)fi;
	COUNT(C_FSYNCDIR);
	fuse_reply_err(req, 0);
}

static void floor_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs sv = {0};

	(void)ino;
	COUNT(C_STATFS);
	pthread_mutex_lock(&lock);
	sv.f_bsize = sv.f_frsize = 4096;
	sv.f_blocks = 1ull << 32;
	sv.f_bfree = sv.f_bavail = sv.f_blocks - (nbytes + 4095) / 4096;
	sv.f_files = 1ull << 32;
	sv.f_ffree = sv.f_favail = sv.f_files - nnodes;
	sv.f_namemax = NAME_MAX;
	pthread_mutex_unlock(&lock);
	fuse_reply_statfs(req, &sv);
}

/* No extended attributes: every name is absent, none can be set. The
 * kernel still asks (security.capability on writes, ...), as it asks
 * prismfs. */
static void floor_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
			   size_t size, int flags)
{
	(void)ino, (void)name, (void)value, (void)size, (void)flags;
	COUNT(C_SETXATTR);
	fuse_reply_err(req, ENOTSUP);
}

static void floor_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	(void)ino, (void)name, (void)size;
	COUNT(C_GETXATTR);
	fuse_reply_err(req, ENODATA);
}

static void floor_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	(void)ino;
	COUNT(C_LISTXATTR);
	if (size)
		fuse_reply_buf(req, NULL, 0);
	else
		fuse_reply_xattr(req, 0);
}

static void floor_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	(void)ino, (void)name;
	COUNT(C_REMOVEXATTR);
	fuse_reply_err(req, ENODATA);
}

/* Only sent without default_permissions (the kernel checks otherwise). */
static void floor_access(fuse_req_t req, fuse_ino_t ino, int mask)
{
	(void)ino, (void)mask;
	COUNT(C_ACCESS);
	fuse_reply_err(req, 0);
}

static const struct fuse_lowlevel_ops floor_ops = {
	.init = floor_init,
	.lookup = floor_lookup,
	.forget = floor_forget,
	.forget_multi = floor_forget_multi,
	.getattr = floor_getattr,
	.setattr = floor_setattr,
	.readlink = floor_readlink,
	.mknod = floor_mknod,
	.mkdir = floor_mkdir,
	.unlink = floor_unlink,
	.rmdir = floor_rmdir,
	.symlink = floor_symlink,
	.rename = floor_rename,
	.link = floor_link,
	.open = floor_open,
	.read = floor_read,
	.write = floor_write,
	.flush = floor_flush,
	.release = floor_release,
	.fsync = floor_fsync,
	.opendir = floor_opendir,
	.readdir = floor_readdir,
	.readdirplus = floor_readdirplus,
	.releasedir = floor_releasedir,
	.fsyncdir = floor_fsyncdir,
	.statfs = floor_statfs,
	.setxattr = floor_setxattr,
	.getxattr = floor_getxattr,
	.listxattr = floor_listxattr,
	.removexattr = floor_removexattr,
	.access = floor_access,
	.create = floor_create,
};

/* --------------------------------------------------------------- main -- */
static int usage(void)
{
	fprintf(stderr, "usage: fuse-floor [-f] [--threads N] [--counts FILE] [-o OPTS] MOUNTPOINT\n");
	return 2;
}

int main(int argc, char **argv)
{
	const char *mnt = NULL, *extra = NULL;
	unsigned threads = 16; /* prismfs's default --threads */
	bool fg = false;
	char *opts = NULL;
	struct fuse_session *se = NULL;
	sigset_t usr1;
	pthread_t ct;
	int ret = 1;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-f") == 0) {
			fg = true;
		} else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
			char *end;
			unsigned long v = strtoul(argv[++i], &end, 10);

			if (*end || v < 1 || v > 1024)
				return usage();
			threads = (unsigned)v;
		} else if (strcmp(argv[i], "--counts") == 0 && i + 1 < argc) {
			counts_path = argv[++i];
		} else if (strcmp(argv[i], "-o") == 0 && i + 1 < argc) {
			extra = argv[++i];
		} else if (argv[i][0] != '-' && !mnt) {
			mnt = argv[i];
		} else {
			return usage();
		}
	}
	if (!mnt)
		return usage();
#ifndef FLOOR_PFS_LOOP
	(void)threads;
#endif

	root.st.st_ino = 1;
	root.st.st_mode = S_IFDIR | 0755;
	root.st.st_nlink = 2;
	root.st.st_uid = getuid();
	root.st.st_gid = getgid();
	root.st.st_blksize = 4096;
	root.next_cookie = 3;
	now(&root.st.st_atim);
	root.st.st_mtim = root.st.st_ctim = root.st.st_atim;
	if (grow_table() < 0)
		return 1;

	if (asprintf(&opts, "fsname=fuse-floor,subtype=floor,default_permissions%s%s",
		     extra ? "," : "", extra ? extra : "") < 0)
		return 1;
	{
		char *av[] = {argv[0], "-o", opts, NULL};
		struct fuse_args args = FUSE_ARGS_INIT(3, av);

		se = fuse_session_new(&args, &floor_ops, sizeof(floor_ops), NULL);
		fuse_opt_free_args(&args);
	}
	if (!se)
		goto out;
	if (fuse_set_signal_handlers(se) != 0)
		goto out_se;
	if (fuse_session_mount(se, mnt) != 0)
		goto out_sig;
	if (fuse_daemonize(fg) != 0)
		goto out_unmount;
	/* after the fork: every thread made from here on inherits the mask */
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &usr1, NULL);
	if (counts_path && pthread_create(&ct, NULL, counts_thread, &usr1) == 0)
		pthread_detach(ct);
#ifdef FLOOR_PFS_LOOP
	ret = pfs_loop_run(se, threads, NULL, NULL) < 0;
#else
	{
		struct fuse_loop_config *cfg = fuse_loop_cfg_create();

		if (cfg) {
			fuse_loop_cfg_set_max_threads(cfg, threads);
			ret = fuse_session_loop_mt(se, cfg) != 0;
			fuse_loop_cfg_destroy(cfg);
		}
	}
#endif
	write_counts();
out_unmount:
	fuse_session_unmount(se);
out_sig:
	fuse_remove_signal_handlers(se);
out_se:
	fuse_session_destroy(se);
out:
	free(opts);
	return ret;
}
