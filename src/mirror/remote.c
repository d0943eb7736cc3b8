/* remote: a mirror on a server spoken to over HTTP (WebDAV, S3) — the
 * write-back rules once, over the object operations of remote.h.
 *
 * Two connections: the write-back worker's own, and one for loads (listing
 * a directory, fetching a file), which FUSE threads take in turn under
 * m->load_lock — a slow upload never holds up a lookup.
 *
 * Conflicts. Every file the cache loaded or wrote has a base: the ETag the
 * server gave for that content, by cache inode (key). A data write-back is
 * conditional on it — If-Match: ETAG for an update, If-None-Match: * for a
 * file the mirror has never had — so a change made on the server since is
 * found by the server itself, atomically, where it honours conditions
 * (PFS_RCAP_IF_MATCH). Where it does not (nginx, rclone), the base is
 * compared by a stat just before the write, and a change landing between
 * the two can still be overwritten: describe() says so. A failed condition
 * keeps both: the cache's version goes to NAME.prismfs-conflict-STAMP, and
 * so do that file's later write-backs; the server's version stays. An
 * unlink, rename or attrs of a file, and a rename over one, compare by a
 * stat just before (remote_apply.c: view_file): a file changed there is
 * kept (moved aside when replaced), a file the cache never loaded
 * compared with what its listing showed (size, mtime to the second).
 *
 * Idempotence (a journal replayed after a crash applies an op again): a
 * directory that exists, a removal that finds nothing, a move whose source
 * is gone and whose target exists, all count as done. A create that finds
 * a file it did not make keeps the cache's file aside as a conflict.
 *
 * Durability: a server answers a write once it has it; flush has nothing
 * left to do.
 *
 * Lock order: m->load_lock -> m->lock (the base table); never held across
 * a call into the cache. The worker's connection is its alone. */
#include "mirror/basetab.h"
#include "mirror/mirror.h"
#include "mirror/remote.h"

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

#include "mirror/remote_int.h"


void pfs_remote_base_of(const struct pfs_rstat *rs, struct rbase *b)
{
	b->present = rs != NULL;
	snprintf(b->etag, sizeof(b->etag), "%s", rs ? rs->etag : "");
	b->size = rs ? rs->size : 0;
	b->mtime = rs ? (int64_t)rs->mtime.tv_sec : 0;
}

/* Set key's base (rs NULL: the mirror has no such file). */
int pfs_remote_set_base(struct pfs_mirror_remote *m, uint64_t key, const struct pfs_rstat *rs)
{
	struct base_ent *e;

	pthread_mutex_lock(&m->lock);
	e = pfs_basetab_make(&m->bt, key, sizeof(*e));
	if (!e) {
		pthread_mutex_unlock(&m->lock);
		return -ENOMEM;
	}
	pfs_remote_base_of(rs, &e->b);
	pthread_mutex_unlock(&m->lock);
	return 0;
}

/* A stable inode number for path: a remote has none, and the cache only
 * uses it to find several names of one file (never, here: nlink is 1). */
static ino_t path_ino(const char *path)
{
	uint64_t h = 1469598103934665603ull;

	for (const unsigned char *p = (const unsigned char *)path; *p; p++)
		h = (h ^ *p) * 1099511628211ull;
	return (ino_t)(h | 1);
}

static void to_stat(const char *path, const struct pfs_rstat *rs, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_mode = rs->dir ? S_IFDIR | 0755 : S_IFREG | 0644;
	if (rs->has & PFS_RMETA_MODE)
		st->st_mode = (st->st_mode & S_IFMT) | (rs->mode & 07777);
	st->st_uid = rs->has & PFS_RMETA_OWNER ? rs->uid : getuid();
	st->st_gid = rs->has & PFS_RMETA_OWNER ? rs->gid : getgid();
	st->st_nlink = rs->dir ? 2 : 1;
	st->st_size = rs->dir ? 0 : (off_t)rs->size;
	st->st_blocks = (blkcnt_t)((rs->size + 511) / 512);
	st->st_blksize = 4096;
	st->st_mtim = rs->mtime;
	st->st_atim = rs->mtime;
	st->st_ctim = rs->mtime;
	st->st_ino = path_ino(path);
}

/* A stat on the loads' connection; a failure other than absence said on
 * stderr. */
static int ld_stat(struct pfs_mirror_remote *m, const char *path, struct pfs_rstat *rs)
{
	char err[256];
	int ret;

	pthread_mutex_lock(&m->load_lock);
	ret = m->ld->ops->stat(m->ld, path, rs, err, sizeof(err));
	pthread_mutex_unlock(&m->load_lock);
	if (ret < 0 && ret != -ENOENT)
		fprintf(stderr, "prismfs: mirror: %s\n", err);
	return ret;
}

static int r_stat(struct pfs_mirror *mm, const char *path, struct stat *st)
{
	struct pfs_rstat rs;
	int ret = ld_stat(R(mm), path, &rs);

	if (ret == 0)
		to_stat(path, &rs, st);
	return ret;
}

/* Names a write-back or a probe leaves for a moment, never shown. */
static bool hidden(const char *name)
{
	return strncmp(name, ".prismfs-wb.", 12) == 0;
}

static int r_list(struct pfs_mirror *mm, const char *path, struct pfs_mirror_dir *out)
{
	struct pfs_mirror_remote *m = R(mm);
	struct pfs_rlist l = {0};
	char err[256], *sub = NULL;
	int ret;

	pthread_mutex_lock(&m->load_lock);
	ret = m->ld->ops->list(m->ld, path, &l, err, sizeof(err));
	pthread_mutex_unlock(&m->load_lock);
	if (ret < 0 && ret != -ENOENT && ret != -ENOTDIR)
		fprintf(stderr, "prismfs: mirror: %s\n", err);
	for (size_t i = 0; ret == 0 && i < l.n; i++) {
		struct stat st;

		if (hidden(l.v[i].name) || !strcmp(l.v[i].name, ".") || !strcmp(l.v[i].name, ".."))
			continue;
		if (asprintf(&sub, "%s%s%s", path, *path ? "/" : "", l.v[i].name) < 0) {
			ret = -ENOMEM;
			break;
		}
		to_stat(sub, &l.v[i].st, &st);
		free(sub);
		ret = pfs_mirror_dir_add(out, l.v[i].name, &st, NULL);
	}
	pfs_rlist_free(&l);
	return ret;
}

/* What the server keeps beyond the data goes onto the cache's object. */
static int r_meta(struct pfs_mirror *mm, const char *path, const struct stat *st,
		  struct pfs_store *in, struct pfs_ref dst)
{
	struct timespec ts[2] = {st->st_atim, st->st_mtim};
	int ret;

	(void)mm;
	(void)path;
	ret = pfs_st_chmod(in, dst, st->st_mode & 07777);
	if (ret == 0 && (st->st_uid != getuid() || st->st_gid != getgid()))
		ret = pfs_st_chown(in, dst, st->st_uid, st->st_gid);
	if (ret == 0)
		ret = pfs_st_utimes(in, dst, ts);
	return ret;
}

static int r_fetch(struct pfs_mirror *mm, const char *path, uint64_t key, int fd,
		   struct stat *st)
{
	struct pfs_mirror_remote *m = R(mm);
	struct pfs_rstat rs;
	char err[256];
	int ret;

	pthread_mutex_lock(&m->load_lock);
	ret = m->ld->ops->get(m->ld, path, fd, &rs, err, sizeof(err));
	pthread_mutex_unlock(&m->load_lock);
	if (ret < 0) {
		fprintf(stderr, "prismfs: mirror: %s\n", err);
		return ret;
	}
	to_stat(path, &rs, st);
	return pfs_remote_set_base(m, key, &rs);
}

static int r_remember(struct pfs_mirror *mm, uint64_t key, const char *path)
{
	struct pfs_mirror_remote *m = R(mm);
	struct pfs_rstat rs;
	int ret = ld_stat(m, path, &rs);

	if (ret == -ENOENT)
		return pfs_remote_set_base(m, key, NULL);
	return ret < 0 ? ret : pfs_remote_set_base(m, key, &rs);
}

/* "1 SIZE MTIME ETAG" (present) or "0" (the mirror had no such file). */
static int r_base_save(struct pfs_mirror *mm, uint64_t key, char *buf, size_t len)
{
	struct pfs_mirror_remote *m = R(mm);
	struct base_ent *e;
	int n = -1;

	pthread_mutex_lock(&m->lock);
	e = pfs_basetab_get(&m->bt, key);
	if (e && e->h.conflict) /* where its write-backs go */
		n = snprintf(buf, len, "c %s", e->h.conflict);
	else if (e)
		n = e->b.present ? snprintf(buf, len, "1 %" PRIu64 " %" PRId64 " %s", e->b.size,
					    e->b.mtime, e->b.etag)
				 : snprintf(buf, len, "0");
	pthread_mutex_unlock(&m->lock);
	return n < 0 ? -ENOENT : (size_t)n >= len ? -ENAMETOOLONG : 0;
}

static int r_base_load(struct pfs_mirror *mm, uint64_t key, const char *line)
{
	struct pfs_mirror_remote *m = R(mm);
	struct base_ent *e;
	struct rbase b = {0};
	int present = 0, off = 0;

	if (strncmp(line, "c ", 2) == 0 && line[2]) {
		char *cname = strdup(line + 2);

		if (!cname)
			return -ENOMEM;
		pthread_mutex_lock(&m->lock);
		e = pfs_basetab_get(&m->bt, key) ? NULL : pfs_basetab_make(&m->bt, key, sizeof(*e));
		if (e) {
			e->h.conflict = cname;
			cname = NULL;
		}
		pthread_mutex_unlock(&m->lock);
		free(cname);
		return 0;
	}
	if (sscanf(line, "%d %" SCNu64 " %" SCNd64 " %n", &present, &b.size, &b.mtime, &off) >= 1 &&
	    present && off > 0)
		snprintf(b.etag, sizeof(b.etag), "%s", line + off);
	else if (strcmp(line, "0") != 0)
		return -EINVAL;
	b.present = present;
	pthread_mutex_lock(&m->lock);
	e = pfs_basetab_get(&m->bt, key) ? NULL : pfs_basetab_make(&m->bt, key, sizeof(*e));
	if (e)
		e->b = b;
	pthread_mutex_unlock(&m->lock);
	return 0;
}

static void r_forget(struct pfs_mirror *mm, uint64_t key)
{
	struct pfs_mirror_remote *m = R(mm);

	pthread_mutex_lock(&m->lock);
	pfs_basetab_forget(&m->bt, key);
	pthread_mutex_unlock(&m->lock);
}

static int r_flush(void *arg, char *err, size_t errlen)
{
	(void)arg;
	(void)err;
	(void)errlen;
	return 0; /* a server answers a write once it has it */
}

static unsigned long r_conflicts(struct pfs_mirror *mm, char *buf, size_t len)
{
	struct pfs_mirror_remote *m = R(mm);
	unsigned long n;

	pthread_mutex_lock(&m->lock);
	n = m->conflicts;
	if (buf && len)
		snprintf(buf, len, "%s", m->last_conflict);
	pthread_mutex_unlock(&m->lock);
	return n;
}

static void r_describe(struct pfs_mirror *mm, char *buf, size_t len)
{
	struct pfs_mirror_remote *m = R(mm);
	unsigned caps = m->wb->caps;

	snprintf(buf, len, "%s %s (%s): conflicts %s; %s",
		 m->wb->ops->kind, m->url, *m->wb->server ? m->wb->server : "server",
		 caps & PFS_RCAP_IF_MATCH ? "refused by the server (conditional writes)"
					  : "checked just before each write (the server "
					    "ignores conditions: a change in between is lost)",
		 caps & PFS_RCAP_META && !(caps & PFS_RCAP_LIST_META)
			 ? "mode, owner and mtime kept (a file's shown once it is first read: "
			   "listings carry none)"
		 : caps & PFS_RCAP_META ? "mode, owner and mtime kept"
		 : caps & PFS_RCAP_MTIME_DATE ? "mtime kept; mode and owner not kept"
					      : "mode, owner and mtime not kept");
}

static void r_close(struct pfs_mirror *mm)
{
	struct pfs_mirror_remote *m = R(mm);

	pfs_basetab_clear(&m->bt);
	if (m->wb)
		m->wb->ops->close(m->wb);
	if (m->ld)
		m->ld->ops->close(m->ld);
	pthread_mutex_destroy(&m->lock);
	pthread_mutex_destroy(&m->load_lock);
	free(m);
}

static struct pfs_mirror_ops remote_ops_for(const struct pfs_remote *r)
{
	struct pfs_mirror_ops o = {
		.kind = r->ops->kind,
		.caps = (r->caps & PFS_RCAP_META ? PFS_MIRROR_MODE | PFS_MIRROR_OWNER |
							   PFS_MIRROR_MTIME
						 : 0) |
			(r->caps & PFS_RCAP_MTIME_DATE ? PFS_MIRROR_MTIME : 0) |
			(r->caps & PFS_RCAP_IF_MATCH ? PFS_MIRROR_COND : 0) |
			(r->caps & PFS_RCAP_LIST_META || !(r->caps & PFS_RCAP_META)
				 ? PFS_MIRROR_LISTMETA : 0),
		.stat = r_stat,
		.list = r_list,
		.meta = r_meta,
		.fetch = r_fetch,
		.remember = r_remember,
		.forget = r_forget,
		.apply = pfs_remote_apply,
		.flush = r_flush,
		.conflicts = r_conflicts,
		.describe = r_describe,
		.base_save = r_base_save,
		.base_load = r_base_load,
		.close = r_close,
	};
	return o;
}

struct remote_m {
	struct pfs_mirror_remote m;
	struct pfs_mirror_ops ops; /* caps are the server's: one table per mount */
};

int pfs_mirror_remote_open(struct pfs_mirror **out, const char *url,
			   const struct pfs_mirror_opts *o, char *err, size_t errlen)
{
	struct pfs_remote_opts ro = {.s3_endpoint = o ? o->s3_endpoint : NULL,
				     .s3_region = o ? o->s3_region : NULL,
				     .s3_profile = o ? o->s3_profile : NULL,
				     .timeout_ms = o ? o->timeout_ms : 0};
	int (*opener)(struct pfs_remote **, const char *, const struct pfs_remote_opts *, char *,
		      size_t);
	struct remote_m *rm;
	int ret;

	opener = strncmp(url, "s3://", 5) == 0 ? pfs_s3_open : pfs_dav_open;
	rm = calloc(1, sizeof(*rm));
	if (!rm) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	pthread_mutex_init(&rm->m.lock, NULL);
	pthread_mutex_init(&rm->m.load_lock, NULL);
	pfs_mirror_shown_address(url, rm->m.url, sizeof(rm->m.url));
	ret = opener(&rm->m.wb, url, &ro, err, errlen);
	if (ret == 0)
		ret = opener(&rm->m.ld, url, &ro, err, errlen);
	if (ret < 0) { /* the message names the mirror, never its password */
		char *why = strdup(err);

		snprintf(err, errlen, "mirror %s: %s", rm->m.url, why ? why : strerror(-ret));
		free(why);
		r_close(&rm->m.base);
		return ret;
	}
	rm->ops = remote_ops_for(rm->m.wb);
	rm->m.base.ops = &rm->ops;
	*out = &rm->m.base;
	return 0;
}
