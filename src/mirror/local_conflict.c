/* local_conflict: how a local mirror's write-back keeps what changed behind
 * the mount (README, conflicts): the file a view's op by path stands for
 * (its conflict copy once it has one), the base a change refreshes, what
 * goes aside as NAME.prismfs-conflict-STAMP, and the count and last line
 * status shows. The ops themselves are local_apply.c. */
#include "mirror/local_int.h"
#include "store/meta.h"
#include "util/util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

bool pfs_local_same_base(const struct pfs_wb_base *b, const struct stat *st)
{
	return b->dev == st->st_dev && b->ino == st->st_ino && b->size == st->st_size &&
	       b->mtime.tv_sec == st->st_mtim.tv_sec && b->mtime.tv_nsec == st->st_mtim.tv_nsec;
}

/* After a change to the file key through the cache (attrs, xattrs): its
 * new state is the base, if the old base still held (else the change
 * behind the mount is kept as the base's difference, for DATA to see). */
void pfs_local_refresh_base(struct pfs_mirror_local *m, uint64_t key, int dfd, const char *name,
			 const struct stat *before)
{
	struct base_ent *e;
	struct stat st;
	bool held;

	if (!key || pfs_st_stat(m->st, dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return;
	pthread_mutex_lock(&m->lock);
	e = pfs_basetab_get(&m->bt, key);
	held = e && before && pfs_local_same_base(&e->base, before);
	if (held)
		pfs_local_to_base(&st, &e->base);
	pthread_mutex_unlock(&m->lock);
}

/* Count a conflict and say what happened (m->lock not held). */
__attribute__((format(printf, 2, 3))) void pfs_local_note(struct pfs_mirror_local *m,
						       const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&m->lock);
	m->conflicts++;
	va_start(ap, fmt);
	vsnprintf(m->last_conflict, sizeof(m->last_conflict), fmt, ap);
	va_end(ap);
	fprintf(stderr, "prismfs: mirror: conflict: %s\n", m->last_conflict);
	pthread_mutex_unlock(&m->lock);
}

/* Where the view's file op->key is on the mirror, for an op by path after
 * a change behind the mount: its conflict copy, once it has one (*aside,
 * a name in the same directory, the caller's to free) — the file at name
 * is then the other party's, never to be changed for the view; or still
 * name, which *changed says no longer holds what the cache loaded or last
 * wrote there (a change behind the mount the view never saw). */
int pfs_local_view_file(struct pfs_mirror_local *m, uint64_t key, const struct pfs_wb_base *listed,
		     int dfd, const char *name, char **aside, bool *changed)
{
	struct pfs_wb_base b = {.valid = false};
	struct base_ent *e;
	struct stat cur;
	bool loaded;
	int ret = 0;

	*aside = NULL;
	*changed = false;
	if (!key)
		return 0;
	pthread_mutex_lock(&m->lock);
	e = pfs_basetab_get(&m->bt, key);
	if (e && e->h.conflict)
		ret = (*aside = strdup(e->h.conflict)) ? 0 : -ENOMEM;
	else if (e)
		b = e->base;
	else if (listed && listed->valid) /* never loaded: as listed (size, mtime) */
		b = *listed;
	loaded = e != NULL;
	pthread_mutex_unlock(&m->lock);
	/* (the look only where there is something to compare: an op on a
	 * file the mirror knows nothing of costs no system call) */
	if (ret < 0 || !b.valid || pfs_st_stat(m->st, dfd, name, &cur, AT_SYMLINK_NOFOLLOW) < 0)
		return ret;
	if (loaded)
		*changed = !pfs_local_same_base(&b, &cur);
	else
		*changed = cur.st_size != b.size || cur.st_mtim.tv_sec != b.mtime.tv_sec ||
			   cur.st_mtim.tv_nsec != b.mtime.tv_nsec;
	return ret;
}

/* The view's file op->key is now at name (dfd): no conflict copy any more,
 * what name holds its base (a rename of the copy to the view's new name). */
void pfs_local_settle(struct pfs_mirror_local *m, uint64_t key, int dfd, const char *name)
{
	struct base_ent *e;
	struct stat st;
	bool have = pfs_st_stat(m->st, dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0;

	pthread_mutex_lock(&m->lock);
	e = pfs_basetab_get(&m->bt, key);
	if (e) {
		free(e->h.conflict);
		e->h.conflict = NULL;
		if (have)
			pfs_local_to_base(&st, &e->base);
		else
			e->base.valid = false;
	}
	pthread_mutex_unlock(&m->lock);
}

/* A directory the view removed or replaced still holds, on the mirror,
 * names the cache never had (a conflict's copy, a file made behind the
 * mount): it goes aside, to NAME.prismfs-conflict-STAMP, rather than stop
 * the write-back for good or lose those names. */
int pfs_local_aside(struct pfs_mirror_local *m, int dfd, const char *name, const char *path)
{
	char *cname = pfs_mirror_conflict_name(name);
	int ret;

	if (!cname)
		return -ENOMEM;
	ret = pfs_st_rename(m->st, dfd, name, dfd, cname, RENAME_NOREPLACE);
	if (ret == 0) {
		pthread_mutex_lock(&m->lock);
		m->conflicts++;
		snprintf(m->last_conflict, sizeof(m->last_conflict),
			 "%s held names the cache did not have on the mirror; kept as %s", path,
			 cname);
		pthread_mutex_unlock(&m->lock);
		fprintf(stderr, "prismfs: mirror: %s held names the cache did not have; kept as "
			"%s\n", path, cname);
	}
	free(cname);
	return ret;
}

/* A rename over name (dfd) replaces the view's file op->key2 there: the
 * view's file goes (its conflict copy, once it has one), never the other
 * party's — a file at name changed behind the mount, or the one a conflict
 * left there — which is moved aside first, to NAME.prismfs-conflict-STAMP,
 * counted as a conflict. */
int pfs_local_replaced(struct pfs_mirror_local *m, const struct pfs_wb_op *op, int dfd,
		    const char *name)
{
	char *copy, *cname;
	bool changed;
	int ret = pfs_local_view_file(m, op->key2, &op->base, dfd, name, &copy, &changed);

	if (ret < 0 || (!copy && !changed))
		return ret;
	if (copy) {
		ret = pfs_st_unlink(m->st, dfd, copy, 0);
		free(copy);
		if (ret < 0 && ret != -ENOENT)
			return ret;
	}
	cname = pfs_mirror_conflict_name(name);
	if (!cname)
		return -ENOMEM;
	ret = pfs_st_rename(m->st, dfd, name, dfd, cname, RENAME_NOREPLACE);
	if (ret == 0)
		pfs_local_note(m, "%s changed on the mirror behind the mount; replaced in the view by a "
		     "rename, the mirror's version is kept as %s", op->path2, cname);
	free(cname);
	if (ret == 0 || ret == -ENOENT) {
		pthread_mutex_lock(&m->lock);
		pfs_basetab_forget(&m->bt, op->key2);
		pthread_mutex_unlock(&m->lock);
		ret = 0;
	}
	return ret;
}
