/* remote_apply: the write-back ops applied to a server (remote.c's top
 * says the rules: conditional writes on a base, idempotence, conflicts kept
 * beside), over the object operations of remote.h. */
#include "mirror/remote_int.h"

#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Count a conflict and say what happened. */
__attribute__((format(printf, 2, 3))) static void note_conflict(struct pfs_mirror_remote *m,
								const char *fmt, ...)
{
	char report[sizeof(m->last_conflict)];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(report, sizeof(report), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&m->lock);
	m->conflicts++;
	memcpy(m->last_conflict, report, sizeof(report));
	pthread_mutex_unlock(&m->lock);
	fprintf(stderr, "prismfs: mirror: conflict: %s\n", report);
}

static void meta_of(const struct stat *st, unsigned caps, struct pfs_rmeta *meta)
{
	memset(meta, 0, sizeof(*meta));
	meta->mode = st->st_mode & 07777;
	meta->uid = st->st_uid;
	meta->gid = st->st_gid;
	meta->mtime = st->st_mtim;
	if (caps & PFS_RCAP_META)
		meta->has = PFS_RMETA_MODE | PFS_RMETA_OWNER | PFS_RMETA_MTIME;
	else if (caps & PFS_RCAP_MTIME_DATE)
		meta->has = PFS_RMETA_MTIME;
}

/* An etag's opaque tag: without its weakness mark (W/). */
static const char *opaque(const char *etag)
{
	return strncmp(etag, "W/", 2) == 0 ? etag + 2 : etag;
}

/* Whether rs is what b recorded: by etag where both have one, else by
 * size and mtime. The etags compare weakly (RFC 9110 8.8.3.2: the opaque
 * tags, W/ or not): Apache gives a weak ETag for a second after each
 * change and the strong one with the same tag after (W/"size-mtime"), and
 * its GET and HEAD date a file whose mtime is ahead of the server's clock
 * "now" (Last-Modified) while its PROPFIND gives the file's own: neither
 * is a change on the server, and taking it for one would keep the
 * mount's version aside as a conflict of its own making. */
static bool base_holds(const struct rbase *b, const struct pfs_rstat *rs)
{
	if (*b->etag && *rs->etag)
		return strcmp(opaque(rs->etag), opaque(b->etag)) == 0;
	return rs->size == b->size && (int64_t)rs->mtime.tv_sec == b->mtime;
}

/* Whether the server still holds what b says, for servers that ignore
 * conditions (base_holds). 1, 0 or -errno. */
static int still_base(struct pfs_remote *r, const char *path, const struct rbase *b,
		      char *err, size_t errlen)
{
	struct pfs_rstat rs;
	int ret = r->ops->stat(r, path, &rs, err, errlen);

	if (ret == -ENOENT)
		return !b->present;
	if (ret < 0)
		return ret;
	if (!b->present || rs.dir)
		return 0;
	return base_holds(b, &rs);
}

/* Write the cache file of op (its data: size bytes of dfd; fd < 0: an
 * empty file) to path, on condition b (NULL: none); *after: what the
 * server holds then. */
static int put_file(struct pfs_mirror_remote *m, struct pfs_wb_op *op, const char *path,
		    const struct rbase *b, struct pfs_rstat *after, char *err, size_t errlen)
{
	struct pfs_remote *r = m->wb;
	int dfd = op->datafd >= 0 ? op->datafd : op->fd, empty = -1;
	const char *cond = NULL;
	struct pfs_rmeta meta;
	struct stat st, dst;
	int ret;

	if (op->fd >= 0 && (fstat(op->fd, &st) < 0 || fstat(dfd, &dst) < 0))
		return -errno;
	if (op->fd < 0) { /* a CREATE: an empty file, with the op's metadata */
		empty = memfd_create("prismfs-empty", MFD_CLOEXEC);
		if (empty < 0)
			return -errno;
		dfd = empty;
		memset(&st, 0, sizeof(st));
		st.st_mode = S_IFREG | (op->mode & 07777);
		st.st_uid = op->uid;
		st.st_gid = op->gid;
		clock_gettime(CLOCK_REALTIME, &st.st_mtim);
		dst.st_size = 0;
	}
	meta_of(&st, r->caps, &meta);
	/* A weak ETag never satisfies If-Match (RFC 9110 13.1.1: a strong
	 * comparison), and Apache gives one for a second after each change
	 * (W/"size-mtime": a change within the same second would not alter
	 * it) — so a file written twice within a second would be refused as
	 * a conflict, and waiting it out cost a second a file. Such a base is
	 * compared by a look just before the write instead. */
	if (b && ((b->present && strncmp(b->etag, "W/", 2) == 0) ||
		  !(r->caps & PFS_RCAP_IF_MATCH))) { /* or a server ignoring If-Match */
		ret = still_base(r, path, b, err, errlen);
		if (ret == 0) {
			snprintf(err, errlen, "%s changed on the server", path);
			ret = -ESTALE;
		}
		if (ret < 0)
			goto out;
	} else if (b) {
		cond = !b->present ? "*" : *b->etag ? b->etag : NULL;
	}
	memset(after, 0, sizeof(*after));
	ret = r->ops->put(r, path, dfd, (uint64_t)dst.st_size, &meta, cond, after, err, errlen);
out:
	if (empty >= 0)
		close(empty);
	return ret;
}

/* Does the server's path hold exactly the size bytes of dfd? Asked only
 * when a conditional write is refused (rare), the copy on disk, not in
 * memory. 1, 0 or -errno. */
static int holds_ours(struct pfs_mirror_remote *m, const char *path, int dfd, uint64_t size)
{
	char err[256], a[65536], b[65536];
	struct pfs_rstat rs;
	int tmp, ret;

	ret = m->wb->ops->stat(m->wb, path, &rs, err, sizeof(err));
	if (ret < 0 || rs.dir || rs.size != size)
		return ret < 0 ? ret : 0;
	tmp = open("/var/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (tmp < 0)
		return -errno;
	ret = m->wb->ops->get(m->wb, path, tmp, &rs, err, sizeof(err));
	for (uint64_t off = 0; ret == 0 && off < size;) {
		size_t want = size - off < sizeof(a) ? (size_t)(size - off) : sizeof(a);
		ssize_t x = pread(tmp, a, want, (off_t)off), y = pread(dfd, b, want, (off_t)off);

		if (x != (ssize_t)want || y != (ssize_t)want || memcmp(a, b, want) != 0)
			ret = 1; /* not ours */
		off += want;
	}
	close(tmp);
	return ret < 0 ? ret : ret == 0;
}

/* A file's data (or, for a CREATE, the empty file) to the mirror, unless
 * the server changed it since the cache had it: then beside it. */
static int apply_data(struct pfs_mirror_remote *m, struct pfs_wb_op *op, bool create,
		      char *err, size_t errlen)
{
	struct rbase b = {.present = false};
	struct pfs_rstat after;
	char *target = NULL, *cname;
	struct base_ent *e;
	bool aside = false;
	int ret;

	pthread_mutex_lock(&m->lock);
	e = op->key ? pfs_basetab_get(&m->bt, op->key) : NULL;
	if (e && e->h.conflict) {
		aside = true;
		target = strdup(e->h.conflict);
	} else if (e && !create) {
		b = e->b;
	}
	pthread_mutex_unlock(&m->lock);
	if (aside && !target)
		return -ENOMEM;
	/* A file the cache never loaded nor wrote, or made just now, is new
	 * to the mirror: it must not be there yet. */
	ret = put_file(m, op, aside ? target : op->path, aside ? NULL : &b, &after, err, errlen);
	free(target);
	if (ret == -ESTALE && !aside) {
		/* Refused: perhaps because a try before did it — an answer lost
		 * to a reset (libcurl itself sends a request again when a
		 * reused connection dies), or a journal replayed after a crash.
		 * The server holding exactly our data is not a conflict. */
		int dfd = op->datafd >= 0 ? op->datafd : op->fd, same;
		struct stat ds = {.st_size = 0};

		if (dfd >= 0 && fstat(dfd, &ds) < 0)
			return -errno;
		same = dfd < 0 ? holds_ours(m, op->path, -1, 0)
			       : holds_ours(m, op->path, dfd, (uint64_t)ds.st_size);
		if (same < 0)
			return same;
		if (same && m->wb->ops->stat(m->wb, op->path, &after, err, errlen) == 0)
			ret = 0;
	}
	if (ret == 0)
		return aside || !op->key ? 0 : pfs_remote_set_base(m, op->key, &after);
	if (ret != -ESTALE || aside)
		return ret;
	cname = pfs_mirror_conflict_name(op->path);
	if (!cname)
		return -ENOMEM;
	ret = put_file(m, op, cname, NULL, &after, err, errlen);
	if (ret == 0 && op->key)
		ret = pfs_remote_set_base(m, op->key, &after);
	if (ret == 0) {
		note_conflict(m, "%s changed on the server: its version kept, the cache's "
			      "written to %s", op->path, cname);
		pthread_mutex_lock(&m->lock);
		e = op->key ? pfs_basetab_get(&m->bt, op->key) : NULL;
		if (e) {
			free(e->h.conflict);
			e->h.conflict = cname;
			cname = NULL;
		}
		pthread_mutex_unlock(&m->lock);
	}
	free(cname);
	return ret;
}

static int apply_attr(struct pfs_mirror_remote *m, struct pfs_wb_op *op, char *err,
		      size_t errlen)
{
	struct pfs_remote *r = m->wb;
	struct pfs_rmeta meta = {0};
	struct pfs_rstat out;
	bool dir = S_ISDIR(op->mode);
	int ret;

	if (!(r->caps & PFS_RCAP_META))
		return 0; /* not kept by this server: describe() says so */
	if (op->mask & PFS_WB_MODE)
		meta.has |= PFS_RMETA_MODE;
	if (op->mask & PFS_WB_OWNER)
		meta.has |= PFS_RMETA_OWNER;
	if (op->mask & PFS_WB_MTIME)
		meta.has |= PFS_RMETA_MTIME;
	if (!meta.has)
		return 0;
	meta.mode = op->mode & 07777;
	meta.uid = op->uid;
	meta.gid = op->gid;
	meta.mtime = op->mtime;
	memset(&out, 0, sizeof(out));
	ret = r->ops->setmeta(r, op->path, dir, &meta, &out, err, errlen);
	if (ret == -ENOENT)
		return 0; /* gone since (a later op removes it): nothing to keep */
	if (ret == 0 && !dir && op->key && *out.etag) {
		/* S3 copies the object onto itself: a new etag, same content. */
		pthread_mutex_lock(&m->lock);
		struct base_ent *e = pfs_basetab_get(&m->bt, op->key);

		if (e && !e->h.conflict)
			pfs_remote_base_of(&out, &e->b);
		pthread_mutex_unlock(&m->lock);
	}
	return ret == -EOPNOTSUPP ? 0 : ret;
}

/* A directory the view removed or replaced still holds, on the server,
 * names the cache never had (a conflict's copy, a file made there): it
 * goes aside, to PATH.prismfs-conflict-STAMP, rather than stop the
 * write-back for good or lose those names. */
static int aside(struct pfs_mirror_remote *m, const char *path, char *err, size_t errlen)
{
	char *cname = pfs_mirror_conflict_name(path);
	int ret;

	if (!cname)
		return -ENOMEM;
	ret = m->wb->ops->move(m->wb, path, cname, true, true, err, errlen);
	if (ret == 0)
		note_conflict(m, "%s held names the cache did not have on the server: kept as %s",
			      path, cname);
	free(cname);
	return ret;
}

/* Where the view's file key is on the server, for an op by path after a
 * change behind the mount (as mirror/local_conflict.c): its conflict copy
 * once it has one (*copy, the caller's to free), or still path, which
 * *changed says no longer holds the base (a look just before: a change
 * landing between the look and the op is not seen). A file the cache
 * never loaded has no base here; listed (wbop.h: as the cache listed it,
 * or NULL) stands for it: its size and mtime to the second — a change
 * keeping both within that second is not told apart. */
static int view_file(struct pfs_mirror_remote *m, uint64_t key, const char *path,
		     const struct pfs_wb_base *listed, char **copy, bool *changed, char *err,
		     size_t errlen)
{
	struct rbase b = {.present = false};
	bool by_listing;
	struct pfs_rstat rs;
	struct base_ent *e;
	int ret = 0;

	*copy = NULL;
	*changed = false;
	if (!key)
		return 0;
	pthread_mutex_lock(&m->lock);
	e = pfs_basetab_get(&m->bt, key);
	if (e && e->h.conflict)
		ret = (*copy = strdup(e->h.conflict)) ? 0 : -ENOMEM;
	else if (e)
		b = e->b;
	by_listing = !e && listed && listed->valid;
	pthread_mutex_unlock(&m->lock);
	if (ret < 0 || *copy || (!b.present && !by_listing))
		return ret;
	ret = m->wb->ops->stat(m->wb, path, &rs, err, errlen);
	if (ret == -ENOENT)
		return 0;
	if (ret < 0)
		return ret;
	if (by_listing)
		*changed = rs.dir || rs.size != (uint64_t)listed->size ||
			   (rs.listed_mtime ? rs.listed_mtime : (int64_t)rs.mtime.tv_sec) !=
				   (int64_t)listed->mtime.tv_sec;
	else
		*changed = !base_holds(&b, &rs);
	return 0;
}

/* A rename over op->path2 replaces the view's file op->key2 there: the
 * view's file goes (its conflict copy, once it has one), never the other
 * party's — a file at path2 changed behind the mount, or the one a
 * conflict left there — which is moved aside first, to
 * NAME.prismfs-conflict-STAMP, counted as a conflict (as
 * local_conflict.c's pfs_local_replaced). */
static int replaced(struct pfs_mirror_remote *m, const struct pfs_wb_op *op, char *err,
		    size_t errlen)
{
	struct pfs_remote *r = m->wb;
	char *copy, *cname;
	bool changed;
	int ret = view_file(m, op->key2, op->path2, &op->base, &copy, &changed, err, errlen);

	if (ret < 0 || (!copy && !changed))
		return ret;
	if (copy) {
		ret = r->ops->remove(r, copy, false, NULL, err, errlen);
		free(copy);
		if (ret < 0 && ret != -ENOENT)
			return ret;
	}
	cname = pfs_mirror_conflict_name(op->path2);
	if (!cname)
		return -ENOMEM;
	ret = r->ops->move(r, op->path2, cname, false, true, err, errlen);
	if (ret == 0)
		note_conflict(m, "%s changed on the server behind the mount; replaced in the view "
			      "by a rename, the server's version is kept as %s", op->path2, cname);
	free(cname);
	if (ret == 0 || ret == -ENOENT) {
		pthread_mutex_lock(&m->lock);
		pfs_basetab_forget(&m->bt, op->key2);
		pthread_mutex_unlock(&m->lock);
		ret = 0;
	}
	return ret;
}

static int apply_rename(struct pfs_mirror_remote *m, struct pfs_wb_op *op, char *err,
			size_t errlen)
{
	struct pfs_remote *r = m->wb;
	struct pfs_rstat a, b;
	bool dir;
	int ret;

	ret = r->ops->stat(r, op->path, &a, err, errlen);
	if (ret == -ENOENT) /* done already (a replay) if the target is there */
		return r->ops->stat(r, op->path2, &b, err, errlen) == 0 ? 0 : ret;
	if (ret < 0)
		return ret;
	dir = a.dir;
	if (op->flags & RENAME_EXCHANGE) {
		/* Not atomic on the server; each step is a valid tree. */
		char *tmp;

		if (asprintf(&tmp, "%s.prismfs-wb.x%lu", op->path2, (unsigned long)op->seq) < 0)
			return -ENOMEM;
		ret = r->ops->stat(r, op->path2, &b, err, errlen);
		if (ret == 0)
			ret = r->ops->move(r, op->path2, tmp, b.dir, true, err, errlen);
		if (ret == 0)
			ret = r->ops->move(r, op->path, op->path2, dir, true, err, errlen);
		if (ret == 0)
			ret = r->ops->move(r, tmp, op->path, b.dir, true, err, errlen);
		free(tmp);
		return ret;
	}
	if (!dir && op->key2 && !(op->flags & RENAME_NOREPLACE)) {
		ret = replaced(m, op, err, errlen); /* (the source is there: no replay) */
		if (ret < 0)
			return ret;
	}
	if (dir && !(op->flags & RENAME_NOREPLACE) &&
	    r->ops->stat(r, op->path2, &b, err, errlen) == 0 && b.dir) {
		/* rename(2) over an empty directory replaces it; a server's
		 * MOVE would merge or refuse. */
		ret = r->ops->remove(r, op->path2, true, NULL, err, errlen);
		if (ret == -ENOTEMPTY)
			ret = aside(m, op->path2, err, errlen);
		if (ret < 0 && ret != -ENOENT)
			return ret;
	}
	return r->ops->move(r, op->path, op->path2, dir, op->flags & RENAME_NOREPLACE, err,
			    errlen);
}

/* UNLINK, RENAME and ATTR of a file act on the view's file: its conflict
 * copy once it has one; a change behind the mount the view never saw is
 * not removed, nor given the view's attributes (kept, a conflict), and a
 * rename moves it (said). 1: the op is done here; 0: applied as usual. */
static int by_view(struct pfs_mirror_remote *m, struct pfs_wb_op *op, bool *moved_changed,
		   char *err, size_t errlen)
{
	struct pfs_remote *r = m->wb;
	struct pfs_wb_op o;
	struct pfs_rstat rs;
	char *copy;
	bool changed;
	int ret;

	if (!op->key || (op->kind == PFS_WB_RENAME && (op->flags & RENAME_EXCHANGE)))
		return 0;
	ret = view_file(m, op->key, op->path, op->kind == PFS_WB_UNLINK ? &op->base : NULL,
			&copy, &changed, err, errlen);
	if (ret < 0 || (!copy && !changed && op->kind != PFS_WB_UNLINK))
		return ret;
	if (op->kind == PFS_WB_UNLINK) {
		if (changed)
			note_conflict(m, "%s changed on the server behind the mount; removed in the "
				      "view, the server's version is kept", op->path);
		else
			ret = r->ops->remove(r, copy ? copy : op->path, false, NULL, err, errlen);
		if (ret == -ENOENT)
			ret = 0;
		if (ret == 0) { /* its last name (cache.c): the key may be reused */
			pthread_mutex_lock(&m->lock);
			pfs_basetab_forget(&m->bt, op->key);
			pthread_mutex_unlock(&m->lock);
		}
		free(copy);
		return ret < 0 ? ret : 1;
	}
	if (changed && op->kind == PFS_WB_ATTR) {
		note_conflict(m, "%s changed on the server behind the mount; the view's %s is not "
			      "applied to it", op->path, pfs_wb_kind_name(op->kind));
		return 1;
	}
	if (changed) { /* a rename: applied as usual, said after */
		*moved_changed = true;
		return 0;
	}
	o = *op; /* the same op, on the copy */
	o.path = copy;
	ret = op->kind == PFS_WB_RENAME ? apply_rename(m, &o, err, errlen)
					: apply_attr(m, &o, err, errlen);
	if (ret == 0 && op->kind == PFS_WB_RENAME) {
		/* the view's file at its own name now: no copy any more */
		bool have = r->ops->stat(r, op->path2, &rs, err, errlen) == 0;

		pthread_mutex_lock(&m->lock);
		struct base_ent *e = pfs_basetab_get(&m->bt, op->key);

		if (e) {
			free(e->h.conflict);
			e->h.conflict = NULL;
			pfs_remote_base_of(have ? &rs : NULL, &e->b);
		}
		pthread_mutex_unlock(&m->lock);
	}
	free(copy);
	return ret < 0 ? ret : 1;
}

static int apply_op(void *arg, struct pfs_wb_op *op, char *err, size_t errlen)
{
	struct pfs_mirror_remote *m = arg;
	struct pfs_remote *r = m->wb;
	struct pfs_rmeta meta = {0};
	struct pfs_rstat rs;
	bool changed = false;
	int ret;

	if (op->kind == PFS_WB_UNLINK || op->kind == PFS_WB_RENAME || op->kind == PFS_WB_ATTR) {
		ret = by_view(m, op, &changed, err, errlen);
		if (ret != 0)
			return ret < 0 ? ret : 0;
	}
	switch (op->kind) {
	case PFS_WB_MKDIR:
		meta.mode = op->mode & 07777;
		meta.uid = op->uid;
		meta.gid = op->gid;
		meta.has = r->caps & PFS_RCAP_META ? PFS_RMETA_MODE | PFS_RMETA_OWNER : 0;
		ret = r->ops->mkdir(r, op->path, &meta, err, errlen);
		if (ret == -EEXIST && r->ops->stat(r, op->path, &rs, err, errlen) == 0 && rs.dir)
			ret = 0; /* there already (a replay, or made behind us) */
		return ret;
	case PFS_WB_CREATE:
	case PFS_WB_DATA:
		return apply_data(m, op, op->kind == PFS_WB_CREATE, err, errlen);
	case PFS_WB_UNLINK:
	case PFS_WB_RMDIR:
		ret = r->ops->remove(r, op->path, op->kind == PFS_WB_RMDIR, NULL, err, errlen);
		if (ret == -ENOTEMPTY && op->kind == PFS_WB_RMDIR)
			ret = aside(m, op->path, err, errlen);
		return ret == -ENOENT ? 0 : ret;
	case PFS_WB_RENAME:
		ret = apply_rename(m, op, err, errlen);
		if (ret == 0 && changed)
			note_conflict(m, "%s changed on the server behind the mount; moved to %s as "
				      "the view renamed it, its changes kept there", op->path,
				      op->path2);
		return ret;
	case PFS_WB_ATTR:
		return apply_attr(m, op, err, errlen);
	default:
		/* The cache refuses what this mirror cannot keep (caps); an op of
		 * another kind can only come from a journal written with another
		 * mirror. Say so once rather than stop the queue for good. */
		if (!m->skipped_warned) {
			m->skipped_warned = true;
			fprintf(stderr, "prismfs: mirror: %s of %s cannot be kept on %s; skipped\n",
				pfs_wb_kind_name(op->kind), op->path, m->url);
		}
		return 0;
	}
}

/* The directories above path made again on the server, where they are
 * missing (removed there behind the cache, whose own tree still has them). */
static int make_parents(struct pfs_mirror_remote *m, const char *path, char *err,
			size_t errlen)
{
	struct pfs_remote *r = m->wb;
	struct pfs_rmeta meta = {0};
	char *p = strdup(path), *slash;
	int ret = 0;

	if (!p)
		return -ENOMEM;
	for (slash = strchr(p, '/'); ret == 0 && slash; slash = strchr(slash + 1, '/')) {
		*slash = '\0';
		ret = r->ops->mkdir(r, p, &meta, err, errlen);
		if (ret == -EEXIST)
			ret = 0;
		*slash = '/';
	}
	free(p);
	return ret;
}

int pfs_remote_apply(void *arg, struct pfs_wb_op *op, char *err, size_t errlen)
{
	struct pfs_mirror_remote *m = arg;
	const char *to = op->kind == PFS_WB_RENAME ? op->path2 : op->path;
	int ret = apply_op(arg, op, err, errlen);

	/* A parent removed on the server (WebDAV's 409) while the cache's
	 * change to a name in it waited: the cache's tree wins, as for any
	 * change not yet written back; the parents are made again. */
	if (ret == -ENOENT && to && strchr(to, '/') &&
	    (op->kind == PFS_WB_MKDIR || op->kind == PFS_WB_CREATE || op->kind == PFS_WB_DATA ||
	     op->kind == PFS_WB_RENAME) &&
	    make_parents(m, to, err, errlen) == 0)
		ret = apply_op(arg, op, err, errlen);
	return ret;
}
