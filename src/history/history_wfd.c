/* history_wfd: the files open for writing (h->wfds, under h->lock): what
 * each was when opened, to say at fsync and release if it changed, and
 * whether its creator still has it open from its create (its setup). */
#include "history/history_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static struct hwfd **wfd_slot(struct pfs_history *h, int fd)
{
	struct hwfd **p = &h->wfds[(unsigned)fd % PFS_HIST_NB];

	while (*p && (*p)->fd != fd)
		p = &(*p)->next;
	return p;
}

static struct hwfd **ino_head(struct pfs_history *h, dev_t dev, ino_t ino)
{
	unsigned long long k = (unsigned long long)ino * 0x9E3779B97F4A7C15ull ^ dev;

	return &h->wino[(unsigned)(k >> 40) % PFS_HIST_NB];
}

/* Under h->lock: w out of both tables (*p its place in wfds), freed. */
static void wfd_drop(struct pfs_history *h, struct hwfd **p)
{
	struct hwfd *w = *p, **q = ino_head(h, w->dev, w->ino);

	while (*q && *q != w)
		q = &(*q)->inext;
	if (*q)
		*q = w->inext;
	*p = w->next;
	if (w->created)
		__atomic_sub_fetch(&h->ncreated, 1, __ATOMIC_RELAXED);
	free(w->path);
	free(w);
	h->nwfds--;
}

unsigned long long pfs_hist_rgen(struct pfs_history *h)
{
	return __atomic_load_n(&h->rgen, __ATOMIC_ACQUIRE);
}

/* Under h->lock: w's path if no rename since it was found can have made
 * it stale (malloc'ed), else NULL. */
static char *wfd_path(struct pfs_history *h, const struct hwfd *w)
{
	return w->path && w->pgen == pfs_hist_rgen(h) ? strdup(w->path) : NULL;
}

/* Did fd's file change since it was opened (or last asked)? */
bool pfs_hist_wfd_changed(struct pfs_history *h, int fd, bool forget, struct pfs_caller *who,
			  char **path, char *comm, bool *gone)
{
	struct hwfd **p, *w;
	struct stat s;
	bool changed = false;

	if (path)
		*path = NULL;
	if (comm)
		comm[0] = '\0';
	*gone = false;
	pthread_mutex_lock(&h->lock);
	p = wfd_slot(h, fd);
	w = *p;
	if (w && fstat(fd, &s) == 0 && s.st_ino == w->ino) {
		changed = s.st_size != w->size || s.st_mtim.tv_sec != w->mtime.tv_sec ||
			  s.st_mtim.tv_nsec != w->mtime.tv_nsec;
		w->size = s.st_size;
		w->mtime = s.st_mtim;
		*gone = s.st_nlink == 0; /* as pfs_hist_nameless, without its fstat */
		*who = w->who;
		if (changed && path)
			*path = wfd_path(h, w);
		if (comm)
			memcpy(comm, w->comm, sizeof(w->comm));
	}
	if (w && forget)
		wfd_drop(h, p);
	pthread_mutex_unlock(&h->lock);
	return changed;
}

void pfs_hist_wfd_add(struct pfs_history *h, int fd, bool created, const char *comm,
		      char *path, unsigned long long pgen)
{
	struct hwfd *w = calloc(1, sizeof(*w)), **p, **ih;
	struct stat s;

	if (!w || fstat(fd, &s) < 0) {
		free(w);
		free(path);
		return;
	}
	w->fd = fd;
	w->ino = s.st_ino;
	w->dev = s.st_dev;
	w->created = created;
	w->who = pfs_caller_get();
	snprintf(w->comm, sizeof(w->comm), "%s", comm ? comm : "");
	w->path = path;
	w->pgen = pgen;
	w->size = s.st_size;
	w->mtime = s.st_mtim;
	pthread_mutex_lock(&h->lock);
	p = wfd_slot(h, fd);
	if (*p) { /* a number reused: the old one was closed unseen */
		wfd_drop(h, p);
		p = wfd_slot(h, fd);
	}
	*p = w;
	ih = ino_head(h, w->dev, w->ino);
	w->inext = *ih;
	*ih = w;
	h->nwfds++;
	if (created)
		__atomic_add_fetch(&h->ncreated, 1, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&h->lock);
}

/* A close(2) of fd (FLUSH, which close waits for; RELEASE comes later and
 * need not come before the caller's next call, over io_uring least of
 * all): from now on its creator's attribute changes are changes of their
 * own, with a row each (a dup closed early only costs those rows). */
void pfs_hist_wfd_closed(struct pfs_history *h, int fd)
{
	struct hwfd *w;

	pthread_mutex_lock(&h->lock);
	w = *wfd_slot(h, fd);
	if (w && w->created) {
		w->created = false;
		__atomic_sub_fetch(&h->ncreated, 1, __ATOMIC_RELAXED);
	}
	pthread_mutex_unlock(&h->lock);
}

/* Is r's object a file the caller created through this store and still
 * has open from that create? Then its attribute changes are the creator
 * setting up its new file (tar, cp -p, install: utimes, chown, chmod on
 * the fd before close), covered by the create's row as its writes are:
 * notes riding the next commit instead of a commit each. Measured: untar
 * of 3,000 small files made 4 commits per file, 3 of them these. */
bool pfs_hist_by_creator(struct pfs_history *h, struct pfs_ref r, struct hcreator *c)
{
	struct pfs_caller who = pfs_caller_get();
	struct hwfd *w = NULL;
	const char *n;
	struct stat s;
	bool yes;
	int d;

	c->path = NULL;
	c->comm[0] = '\0';
	c->gone = false;
	/* no file open from its create: no stat (chmod -R, chown -R) */
	if (!who.pid || !__atomic_load_n(&h->ncreated, __ATOMIC_RELAXED))
		return false;
	pfs_hist_ref_at(r, &d, &n);
	pfs_hist_obj(h, &d, &n); /* /proc/self/fd/N: fd N's own object */
	if (n && *n ? fstatat(d, n, &s, AT_SYMLINK_NOFOLLOW) < 0 : fstat(d, &s) < 0)
		return false;
	if (!S_ISREG(s.st_mode))
		return false;
	pthread_mutex_lock(&h->lock);
	if (!n || !*n)
		w = *wfd_slot(h, d);
	if (!w || w->ino != s.st_ino || w->dev != s.st_dev) {
		/* its own descriptor is the view's O_PATH one, not the writer's */
		for (w = *ino_head(h, s.st_dev, s.st_ino); w; w = w->inext)
			if (w->ino == s.st_ino && w->dev == s.st_dev && w->created)
				break;
	}
	yes = w && w->created && w->who.pid == who.pid;
	if (yes) {
		c->path = wfd_path(h, w);
		/* its setup's notes name it as its create's row did: no pread
		 * of its command name each (it has not let go of the file) */
		memcpy(c->comm, w->comm, sizeof(c->comm));
		/* what pfs_hist_nameless would find, without its fstats */
		c->gone = (!n || !*n) && s.st_nlink == 0;
	}
	pthread_mutex_unlock(&h->lock);
	return yes;
}

/* Before a change on r made by its creator (pfs_hist_by_creator): its previous
 * version saved if a snapshot since asks for it (a file created before the
 * snapshot, still open), its path into *path (malloc'ed; NULL for a
 * layered mount's temporary, which is not journaled). 0 or -errno. */
int pfs_hist_creator_before(struct pfs_history *h, struct pfs_ref r, struct hcreator *c)
{
	char **path = &c->path;
	const char *n;
	int d, ret = 0;

	pfs_hist_ref_at(r, &d, &n);
	if (c->gone) { /* unlinked: no change of the tree */
		free(*path);
		*path = NULL;
		return 0;
	}
	bool stale = false;

	if (!*path) { /* renamed since its create (or not known): found again */
		*path = malloc(PATH_MAX);
		if (!*path)
			return -ENOMEM;
		ret = pfs_hist_path_at(h, d, n, *path, PATH_MAX, &stale);
	}
	/* a temporary, or its name removed (other names live on): no row,
	 * the version is saved all the same (by its inode) */
	if (ret == 0 && (pfs_hist_outside(h, *path) || stale)) {
		free(*path);
		*path = NULL;
		return stale ? pfs_hist_save(h, d, n) : 0;
	}
	if (ret == 0)
		ret = pfs_hist_save(h, d, n);
	if (ret < 0) {
		free(*path);
		*path = NULL;
	}
	return ret;
}

/* ...and after it: made, then noted (riding the next commit). */
int pfs_hist_creator_after(struct pfs_history *h, struct hcreator *c, const char *kind,
			   long long arg, int ret)
{
	struct pfs_caller who = pfs_caller_get();

	if (ret == 0 && c->path)
		pfs_hist_db_note_as(h, &who, c->comm[0] ? c->comm : NULL, kind, c->path, arg);
	free(c->path);
	c->path = NULL;
	return ret;
}

void pfs_hist_wfd_free(struct pfs_history *h)
{
	for (unsigned i = 0; i < PFS_HIST_NB; i++) {
		while (h->wfds[i]) {
			struct hwfd *w = h->wfds[i];

			h->wfds[i] = w->next;
			free(w->path);
			free(w);
		}
		h->wino[i] = NULL;
	}
	h->nwfds = 0;
	h->ncreated = 0;
}
