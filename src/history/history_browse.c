/* history_browse: what a path was at a snapshot, for the .history tree the
 * view shows (store/past.h; issue 17 item 4; docs/HISTORY.md, Browse).
 *
 * The same rule as prismfs export (cli/history_export.c), asked one path
 * at a time: the journal's rows since the snapshot are replayed
 * (history_replay.c) on a read-only connection of the daemon's own, in one
 * read transaction (so the replay and the versions it reads agree), kept
 * until the database changes (see begin). A path at S is, in this
 * order: removed since (del: its version saved at its first change, or
 * nothing if pruned), an object the replay saw (cur: its version if it
 * changed, else its live path), one beneath a directory renamed since (the
 * live path follows the directory), or its own live path, unchanged. Live
 * objects are read in SOURCE directly: reads are no changes, and the
 * history store has nothing to record for them.
 *
 * One browse at a time (bmu), and never under h->lock but to write the
 * pending outcomes first. Cost: a replay of the rows since S when the
 * journal changed (or another snapshot is asked), then a few indexed
 * lookups per path. */
#include "util/util.h"
#include "history/history_int.h"
#include "history/history_replay.h"
#include "util/xblob.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/xattr.h>
#include <unistd.h>

/* Where a path at S is now: live (a path in SOURCE), or a saved version. */
struct where {
	bool saved;
	bool gone;             /* removed since: no live object (nor names) */
	char live[PATH_MAX];
	struct pfs_past_obj o; /* saved: the version's row */
	long long vrow;        /* saved: its rowid (its xattrs) */
	char file[64];         /* saved: its data in DIR/versions ("" none) */
};

static const char *col(sqlite3_stmt *q, int i)
{
	const unsigned char *t = sqlite3_column_text(q, i);

	return t ? (const char *)t : "";
}

static long long data_version(sqlite3 *db)
{
	sqlite3_stmt *q;
	long long v = -1;

	if (pfs_hq_prep(db, "PRAGMA data_version", &q) == 0) {
		if (sqlite3_step(q) == SQLITE_ROW)
			v = sqlite3_column_int64(q, 0);
		pfs_hq_done(q);
	}
	return v;
}

/* One statement without rows (BEGIN, COMMIT): 0 or -1. */
static int step1(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *q;
	int rc;

	if (pfs_hq_prep(db, sql, &q) < 0)
		return -1;
	rc = sqlite3_step(q);
	pfs_hq_done(q);
	return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : -1;
}

/* Under bmu: the connection, and a read transaction with the replay of
 * the rows since snap. The replay's TEMP tables are kept (end commits)
 * while the database is as it was (SQLite's data_version: any commit of
 * the journal's, a change or a prune, moves it) and the snapshot is the
 * same: browsing a tree nobody changes replays once. 0, -ENOENT (no such
 * snapshot) or -EIO. */
static int begin(struct pfs_history *h, const char *snap, long long *seq)
{
	long long id, ver;
	char path[PATH_MAX + 16];

	if (!h->bdb) {
		snprintf(path, sizeof(path), "%s/history.db", h->dir);
		if (sqlite3_open_v2(path, &h->bdb, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
		    sqlite3_exec(h->bdb, "PRAGMA temp_store = MEMORY", NULL, NULL, NULL) !=
			    SQLITE_OK) {
			pfs_hq_close(h->bdb);
			h->bdb = NULL;
			return -EIO;
		}
		sqlite3_busy_timeout(h->bdb, 10000);
	}
	if (h->rootfd < 0) {
		h->rootfd = pfs_hist_root(h);
		if (h->rootfd < 0)
			return h->rootfd;
	}
	/* the outcomes held back are the replay's: a change made is state 1 */
	pfs_history_flush(&h->base);
	if (step1(h->bdb, "BEGIN") < 0)
		return -EIO;
	if (!snap)
		return 0;
	/* a read of the main database starts the transaction's snapshot */
	if (pfs_hq_snap(h->bdb, snap, seq, &id) < 0) {
		step1(h->bdb, "ROLLBACK");
		return -ENOENT;
	}
	ver = data_version(h->bdb);
	if (h->b_valid && h->b_ver == ver && h->b_id == id)
		return 0;
	h->b_valid = false;
	if (sqlite3_exec(h->bdb, "DROP TABLE IF EXISTS temp.cur; DROP TABLE IF EXISTS temp.gone;"
				 "DROP TABLE IF EXISTS temp.del; DROP TABLE IF EXISTS temp.out;",
			 NULL, NULL, NULL) != SQLITE_OK ||
	    pfs_hq_replay(h->bdb, *seq, -1) < 0) {
		sqlite3_exec(h->bdb, "ROLLBACK", NULL, NULL, NULL);
		return -EIO;
	}
	h->b_valid = true;
	h->b_ver = ver;
	h->b_id = id;
	return 0;
}

static void end(struct pfs_history *h)
{
	/* read-only: the commit keeps the replay's TEMP tables for the next */
	if (h->b_ls)
		sqlite3_exec(h->bdb, "DROP TABLE IF EXISTS temp.ls", NULL, NULL, NULL);
	h->b_ls = false;
	if (step1(h->bdb, "COMMIT") < 0) {
		step1(h->bdb, "ROLLBACK");
		h->b_valid = false;
	}
	pthread_mutex_unlock(&h->bmu);
}

/* One row of sql (text parameters) into q, stepped: 1 a row, 0 none, -1. */
static int row(sqlite3 *db, sqlite3_stmt **q, const char *sql, const char *a, const char *b)
{
	if (pfs_hq_prep(db, sql, q) < 0) {
		*q = NULL;
		return -1;
	}
	sqlite3_bind_text(*q, 1, a, -1, SQLITE_STATIC);
	if (b)
		sqlite3_bind_text(*q, 2, b, -1, SQLITE_STATIC);
	switch (sqlite3_step(*q)) {
	case SQLITE_ROW:
		return 1;
	case SQLITE_DONE:
		return 0;
	default:
		return -1;
	}
}

/* A version's row (mode, uid, gid, size, mtime_ns, file, pruned, rdev,
 * dev, ino, rowid) into w. 0. */
static int version_row(sqlite3_stmt *q, struct where *w)
{
	long long mt = sqlite3_column_int64(q, 4);

	memset(&w->o, 0, sizeof(w->o));
	w->saved = true;
	w->o.mode = (mode_t)sqlite3_column_int64(q, 0);
	w->o.uid = (uid_t)sqlite3_column_int64(q, 1);
	w->o.gid = (gid_t)sqlite3_column_int64(q, 2);
	w->o.size = (off_t)sqlite3_column_int64(q, 3);
	w->o.mtime.tv_sec = (time_t)(mt / 1000000000ll);
	w->o.mtime.tv_nsec = (long)(mt % 1000000000ll);
	w->o.ctime = w->o.mtime;
	w->o.nlink = S_ISDIR(w->o.mode) ? 2 : 1;
	w->o.rdev = (dev_t)sqlite3_column_int64(q, 7);
	snprintf(w->file, sizeof(w->file), "%s", sqlite3_column_int(q, 6) ? "" : col(q, 5));
	w->vrow = sqlite3_column_int64(q, 10);
	return 0;
}

/* The version of an object of path at S (live and unchanged through that
 * name, or saved at its first change through it) that a change through
 * another of its names (hard links) saved since S: the first saved since
 * S with its inode (which no other object can have had since: this one
 * held it from S on). 0 (w filled), -ENOENT none (or pruned: w as it was). */
static int by_inode(struct pfs_history *h, long long seq, dev_t dev, ino_t ino, nlink_t nlink,
		    struct where *w)
{
	sqlite3_stmt *q;
	int ret = -ENOENT;

	if (pfs_hq_prep(h->bdb, "SELECT mode, uid, gid, size, mtime_ns, coalesce(file, ''),"
				" pruned, rdev, dev, ino, rowid FROM versions WHERE ino = ?1"
				" AND dev = ?2 AND"
				" seq >= ?3 AND snap >= ?4 ORDER BY seq, rowid LIMIT 1",
			&q) < 0)
		return -EIO;
	sqlite3_bind_int64(q, 1, (sqlite3_int64)ino);
	sqlite3_bind_int64(q, 2, (sqlite3_int64)dev);
	sqlite3_bind_int64(q, 3, seq);
	sqlite3_bind_int64(q, 4, h->b_id);
	if (sqlite3_step(q) == SQLITE_ROW && !sqlite3_column_int(q, 6)) {
		ret = version_row(q, w);
		w->o.nlink = nlink;
	}
	pfs_hq_done(q);
	return ret;
}

/* The version saved at fpath before its row fseq, not before S; fseq < 0:
 * the one saved with snapshot S itself at path (at S's position: a file
 * open for writing at S, saved then, as nothing later can: passthrough
 * writes reach it with no call of ours, and its first change after S may
 * find it saved already). 0 (w filled), -ENOENT none (pruned rows keep
 * their place, without data). */
static int version(struct pfs_history *h, long long seq, const char *fpath, long long fseq,
		   struct where *w)
{
	sqlite3_stmt *q;
	int ret = -ENOENT;

	if (pfs_hq_prep(h->bdb, fseq >= 0
				  ? "SELECT mode, uid, gid, size, mtime_ns, coalesce(file, ''),"
				    " pruned, rdev, dev, ino, rowid FROM versions WHERE path = ?1 AND"
				    " seq >= ?2 AND seq < ?3 ORDER BY seq DESC, rowid DESC LIMIT 1"
				  : "SELECT mode, uid, gid, size, mtime_ns, coalesce(file, ''),"
				    " pruned, rdev, dev, ino, rowid FROM versions WHERE path = ?1 AND"
				    " snap = ?2 AND seq = ?3 ORDER BY rowid LIMIT 1",
			&q) < 0)
		return -EIO;
	sqlite3_bind_text(q, 1, fpath, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 2, fseq >= 0 ? seq : h->b_id);
	sqlite3_bind_int64(q, 3, fseq >= 0 ? fseq : seq);
	if (sqlite3_step(q) == SQLITE_ROW) {
		ret = version_row(q, w);
		/* a file with hard links: the first change since S may have
		 * come through another name, whose save is what it was at S */
		if (sqlite3_column_type(q, 9) != SQLITE_NULL) {
			dev_t dev = (dev_t)sqlite3_column_int64(q, 8);
			ino_t ino = (ino_t)sqlite3_column_int64(q, 9);

			pfs_hq_done(q);
			by_inode(h, seq, dev, ino, w->o.nlink, w);
			return ret;
		}
	}
	pfs_hq_done(q);
	return ret;
}

/* After begin: where path (at S) is now. 0 or -ENOENT / -EIO. */
static int locate(struct pfs_history *h, long long seq, const char *path, struct where *w)
{
	char anc[PATH_MAX];
	sqlite3_stmt *q = NULL;
	bool moved = false;
	int r, ret = -ENOENT;

	memset(w, 0, sizeof(*w));
	if (!*path) { /* the root: itself, as its first save since S kept it */
		if (pfs_hq_prep(h->bdb, "SELECT mode, uid, gid, size, mtime_ns, coalesce(file,"
					" ''), pruned, rdev, dev, ino, rowid FROM versions WHERE"
					" path = '' AND seq >= ?1 AND snap >= ?2 ORDER BY seq,"
					" rowid LIMIT 1", &q) < 0)
			return -EIO;
		sqlite3_bind_int64(q, 1, seq);
		sqlite3_bind_int64(q, 2, h->b_id);
		if (sqlite3_step(q) == SQLITE_ROW && !sqlite3_column_int(q, 6))
			version_row(q, w);
		pfs_hq_done(q);
		return 0;
	}
	/* Open for writing at S: saved with S itself, which comes first. A
	 * version at path with S's own position is what path held at S (no row
	 * came between), while the window before its first change may also
	 * hold the saves of later snapshots it was still open at (of data
	 * written since: passthrough writes make no row), the latest of which
	 * the window's query would take. */
	r = row(h->bdb, &q, "SELECT fpath, fseq FROM del WHERE orig = ?1", path, NULL);
	if (r != 0) {
		w->gone = true;
		if (r > 0)
			ret = version(h, seq, path, -1, w);
		if (r > 0 && ret < 0 && sqlite3_column_type(q, 1) != SQLITE_NULL)
			ret = version(h, seq, col(q, 0), sqlite3_column_int64(q, 1), w);
		pfs_hq_done(q);
		return r < 0 ? -EIO : ret;
	}
	pfs_hq_done(q);
	r = row(h->bdb, &q, "SELECT path, fpath, fseq FROM cur WHERE orig = ?1", path, NULL);
	if (r != 0) {
		if (r > 0) {
			snprintf(w->live, sizeof(w->live), "%s", col(q, 0));
			ret = 0;
			/* no version of its first change (pruned): the live one */
			if (version(h, seq, path, -1, w) < 0 &&
			    (sqlite3_column_type(q, 2) == SQLITE_NULL ||
			     version(h, seq, col(q, 1), sqlite3_column_int64(q, 2), w) < 0))
				w->saved = false;
		}
		pfs_hq_done(q);
		return r < 0 ? -EIO : ret;
	}
	pfs_hq_done(q);
	/* not seen itself: beneath the nearest ancestor that moved, if any */
	snprintf(anc, sizeof(anc), "%s", path);
	snprintf(w->live, sizeof(w->live), "%s", path);
	for (char *slash; (slash = strrchr(anc, '/'));) {
		*slash = '\0';
		r = row(h->bdb, &q, "SELECT path FROM cur WHERE orig = ?1", anc, NULL);
		if (r > 0 && (size_t)snprintf(w->live, sizeof(w->live), "%s%s", col(q, 0),
					      path + strlen(anc)) >= sizeof(w->live))
			r = -1;
		pfs_hq_done(q);
		if (r < 0)
			return -EIO;
		if (r > 0) {
			moved = true;
			break;
		}
	}
	/* another object there now: path named nothing at S */
	r = row(h->bdb, &q, "SELECT 1 FROM cur WHERE path = ?1", w->live, NULL);
	pfs_hq_done(q);
	if (r != 0)
		return r < 0 ? -EIO : -ENOENT;
	/* no row names it or a directory above it since S: the same object,
	 * unless written without a row (open for writing at S: saved then) */
	if (moved || version(h, seq, path, -1, w) < 0)
		w->saved = false;
	return 0;
}

static int live_stat(struct pfs_history *h, long long seq, struct where *w,
		     struct pfs_past_obj *o)
{
	const char *live = w->live;
	struct stat st;

	/* through the store: a cache fills what it has not listed yet */
	int r = pfs_st_stat(h->in, h->rootfd, live, &st,
			    AT_SYMLINK_NOFOLLOW | (*live ? 0 : AT_EMPTY_PATH));

	if (r < 0)
		return r;
	if (!S_ISDIR(st.st_mode) && by_inode(h, seq, st.st_dev, st.st_ino, st.st_nlink, w) == 0) {
		*o = w->o;
		return 0;
	}
	o->mode = st.st_mode;
	o->uid = st.st_uid;
	o->gid = st.st_gid;
	o->size = st.st_size;
	o->nlink = st.st_nlink;
	o->rdev = st.st_rdev;
	o->mtime = st.st_mtim;
	o->ctime = st.st_ctim;
	return 0;
}

/* The start of a question about snapshot snap: its room w (the caller's
 * to free after end()), the browse lock taken, the replay at snap ready.
 * On failure nothing is held. */
static int enter(struct pfs_history *h, const char *snap, long long *seq, struct where **w)
{
	int ret;

	*w = malloc(sizeof(**w));
	if (!*w)
		return -ENOMEM;
	pthread_mutex_lock(&h->bmu);
	ret = begin(h, snap, seq);
	if (ret < 0) {
		pthread_mutex_unlock(&h->bmu);
		free(*w);
		*w = NULL;
	}
	return ret;
}

static int b_snapshots(void *ctx, pfs_past_name_cb *cb, void *arg)
{
	struct pfs_history *h = ctx;
	sqlite3_stmt *q = NULL;
	int ret;

	pthread_mutex_lock(&h->bmu);
	ret = begin(h, NULL, NULL);
	if (ret < 0) {
		pthread_mutex_unlock(&h->bmu);
		return ret;
	}
	if (sqlite3_prepare_v2(h->bdb, "SELECT name FROM snapshots ORDER BY id", -1, &q, NULL) !=
	    SQLITE_OK)
		ret = -EIO;
	while (ret == 0 && sqlite3_step(q) == SQLITE_ROW) {
		const char *n = col(q, 0);

		/* a name no directory can have is not shown */
		if (*n && !strchr(n, '/') && strcmp(n, ".") && strcmp(n, "..") &&
		    strlen(n) <= NAME_MAX)
			ret = cb(arg, n, S_IFDIR);
	}
	sqlite3_finalize(q);
	end(h);
	return ret;
}

static int stat_locked(struct pfs_history *h, long long seq, const char *path,
		       struct pfs_past_obj *o, struct where *w)
{
	int ret = locate(h, seq, path, w);

	if (ret < 0)
		return ret;
	if (w->saved) {
		*o = w->o;
		return 0;
	}
	return live_stat(h, seq, w, o);
}

static int b_stat(void *ctx, const char *snap, const char *path, struct pfs_past_obj *o)
{
	struct pfs_history *h = ctx;
	struct where *w;
	long long seq;
	int ret;

	ret = enter(h, snap, &seq, &w);
	if (ret < 0)
		return ret;
	ret = stat_locked(h, seq, path, o, w);
	end(h);
	free(w);
	return ret;
}

/* Is p (a path at S) directly in directory dir? */
static bool in_dir(const char *p, const char *dir, size_t dlen)
{
	if (dlen && (strncmp(p, dir, dlen) != 0 || p[dlen] != '/'))
		return false;
	p += dlen ? dlen + 1 : 0;
	return *p && !strchr(p, '/');
}

static int add_name(sqlite3 *db, const char *name)
{
	sqlite3_stmt *q;
	int r = row(db, &q, "INSERT OR IGNORE INTO temp.ls VALUES(?1)", name, NULL);

	pfs_hq_done(q);
	return r < 0 ? -EIO : 0;
}

/* The live object at path opened: with O_NOATIME where permitted (the
 * daemon owns it or has CAP_FOWNER, else EPERM: then without), since a
 * browse is the history's read, not an access of the file's: a mount
 * with --history answers stat of the live file as one without. */
static int live_open(struct pfs_history *h, const char *path, int flags)
{
	int fd = pfs_st_openat(h->in, h->rootfd, path, flags | O_NOATIME, 0);

	return fd == -EPERM ? pfs_st_openat(h->in, h->rootfd, path, flags, 0) : fd;
}

/* The names directory dir had at S into temp.ls: the live directory's
 * names that were there then, and what moved away or went since. */
static int gather(struct pfs_history *h, const char *dir, const char *live)
{
	size_t dlen = strlen(dir);
	char lp[PATH_MAX], orig[PATH_MAX];
	sqlite3_stmt *q = NULL;
	struct dirent *de;
	DIR *dp = NULL;
	int fd, ret = 0;

	if (sqlite3_exec(h->bdb, "CREATE TEMP TABLE ls(name TEXT PRIMARY KEY)", NULL, NULL,
			 NULL) != SQLITE_OK)
		return -EIO;
	h->b_ls = true;
	if (live) {
		fd = live_open(h, *live ? live : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0 || !(dp = fdopendir(fd))) {
			ret = fd < 0 ? fd : -errno;
			if (fd >= 0)
				close(fd);
			return ret;
		}
		while (ret == 0 && (de = readdir(dp))) {
			if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
				continue;
			if ((size_t)snprintf(lp, sizeof(lp), "%s%s%s", live, *live ? "/" : "",
					     de->d_name) >= sizeof(lp))
				continue; /* no path the journal can name */
			pfs_hq_orig(h->bdb, lp, orig, sizeof(orig));
			if (orig[0] && in_dir(orig, dir, dlen))
				ret = add_name(h->bdb, orig + (dlen ? dlen + 1 : 0));
		}
		closedir(dp);
	}
	if (ret == 0 && sqlite3_prepare_v2(h->bdb, "SELECT orig FROM cur WHERE orig IS NOT NULL"
						   " UNION ALL SELECT orig FROM del", -1, &q,
					   NULL) != SQLITE_OK)
		ret = -EIO;
	while (ret == 0 && sqlite3_step(q) == SQLITE_ROW)
		if (in_dir(col(q, 0), dir, dlen))
			ret = add_name(h->bdb, col(q, 0) + (dlen ? dlen + 1 : 0));
	sqlite3_finalize(q);
	return ret;
}

static int b_list(void *ctx, const char *snap, const char *dir, pfs_past_name_cb *cb, void *arg)
{
	struct pfs_history *h = ctx;
	struct where *w;
	struct pfs_past_obj o;
	char p[PATH_MAX];
	sqlite3_stmt *q = NULL;
	long long seq;
	int ret;

	ret = enter(h, snap, &seq, &w);
	if (ret < 0)
		return ret;
	ret = stat_locked(h, seq, dir, &o, w);
	if (ret == 0 && !S_ISDIR(o.mode))
		ret = -ENOTDIR;
	if (ret == 0)
		/* a directory changed since (its mode, or renamed) but still
		 * there still holds its unchanged names */
		ret = gather(h, dir, w->gone ? NULL : w->live);
	if (ret == 0 && sqlite3_prepare_v2(h->bdb, "SELECT name FROM temp.ls ORDER BY name", -1,
					   &q, NULL) != SQLITE_OK)
		ret = -EIO;
	while (ret == 0 && sqlite3_step(q) == SQLITE_ROW) {
		const char *name = col(q, 0);

		if ((size_t)snprintf(p, sizeof(p), "%s%s%s", dir, *dir ? "/" : "", name) >=
		    sizeof(p))
			continue;
		/* one whose version is lost is not listed (a lookup says ENOENT) */
		if (stat_locked(h, seq, p, &o, w) == 0)
			ret = cb(arg, name, o.mode & S_IFMT);
	}
	sqlite3_finalize(q);
	end(h);
	free(w);
	return ret;
}

/* A symlink's target as a descriptor to read (its version's data is the
 * target already). */
static int target_fd(struct pfs_history *h, const char *live)
{
	char t[PATH_MAX];
	ssize_t n = pfs_st_readlink(h->in, h->rootfd, live, t, sizeof(t));

	if (n < 0)
		return (int)n;
	return pfs_memfd_of("prismfs-target", t, (size_t)n);
}

static int b_open(void *ctx, const char *snap, const char *path)
{
	struct pfs_history *h = ctx;
	struct where *w;
	struct pfs_past_obj o;
	long long seq;
	int ret;

	ret = enter(h, snap, &seq, &w);
	if (ret < 0)
		return ret;
	ret = stat_locked(h, seq, path, &o, w);
	if (ret == 0 && !S_ISREG(o.mode) && !S_ISLNK(o.mode))
		ret = -EISDIR;
	else if (ret == 0 && w->saved)
		ret = w->file[0] ? openat(h->vdir, w->file, O_RDONLY | O_CLOEXEC) : -EIO;
	else if (ret == 0 && S_ISLNK(o.mode))
		ret = target_fd(h, w->live);
	else if (ret == 0)
		ret = live_open(h, w->live, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (ret == -1)
		ret = -errno;
	end(h);
	free(w);
	return ret;
}

/* The table at snap: the last recorded at or before its position. */
static int b_table(void *ctx, const char *snap, long long *id, char **json)
{
	struct pfs_history *h = ctx;
	long long seq, sid;
	sqlite3_stmt *q;
	int ret;

	*json = NULL;
	*id = 0;
	if (!__atomic_load_n(&h->mapped, __ATOMIC_RELAXED))
		return 0; /* never a table: no question */
	pthread_mutex_lock(&h->bmu);
	ret = begin(h, NULL, NULL);
	if (ret < 0) {
		pthread_mutex_unlock(&h->bmu);
		return ret;
	}
	if (pfs_hq_snap(h->bdb, snap, &seq, &sid) < 0) {
		ret = -ENOENT;
	} else if (pfs_hq_prep(h->bdb, "SELECT seq, json FROM maps WHERE seq <= ?1"
				       " ORDER BY seq DESC LIMIT 1", &q) < 0) {
		ret = -EIO;
	} else {
		sqlite3_bind_int64(q, 1, seq);
		if (sqlite3_step(q) == SQLITE_ROW) {
			*id = sqlite3_column_int64(q, 0);
			*json = strdup(col(q, 1));
			if (!*json)
				ret = -ENOMEM;
		}
		pfs_hq_done(q);
	}
	end(h);
	return ret;
}

static int b_set_table(void *ctx, const char *json)
{
	return pfs_hist_db_table(ctx, json);
}

/* The xattrs kept with the version w (pfs_hist_xattrs' blob) into *blob
 * (malloc'ed): 1, or 0 none kept (a version saved before they were). */
static int kept_xattrs(struct pfs_history *h, const struct where *w, char **blob, size_t *len)
{
	sqlite3_stmt *q;
	int ret = 0;

	*blob = NULL;
	*len = 0;
	if (pfs_hq_prep(h->bdb, "SELECT xattrs FROM versions WHERE rowid = ?1", &q) < 0)
		return -EIO;
	sqlite3_bind_int64(q, 1, w->vrow);
	if (sqlite3_step(q) == SQLITE_ROW && sqlite3_column_type(q, 0) != SQLITE_NULL) {
		*len = (size_t)sqlite3_column_bytes(q, 0);
		*blob = malloc(*len + 1);
		ret = *blob ? 1 : -ENOMEM;
		if (*blob && *len)
			memcpy(*blob, sqlite3_column_blob(q, 0), *len);
	}
	pfs_hq_done(q);
	return ret;
}

/* An xattr (name) or the kept names (name NULL) of path at S: a saved
 * version's kept ones (user.*, ACLs, security.*, trusted.*: a blob of a
 * version saved when only user.* ones were kept has no others, and shows
 * none; names not kept, as a layered past's overlay.opaque, are read
 * live), else the live object's. Removed since with none kept: none. */
static ssize_t past_xattr(struct pfs_history *h, const char *snap, const char *path,
			  const char *name, char *buf, size_t size)
{
	struct pfs_past_obj o;
	struct where *w;
	long long seq;
	ssize_t ret;
	size_t len;
	char *blob;

	ret = enter(h, snap, &seq, &w);
	if (ret < 0)
		return ret;
	ret = stat_locked(h, seq, path, &o, w);
	if (ret == 0 && w->saved && (!name || pfs_xblob_kept(name))) {
		int kept = kept_xattrs(h, w, &blob, &len);

		/* kept: the answer, even an empty one (no names, or a value
		 * of length 0: taken for "none kept", the live object's
		 * answered instead) */
		ret = kept > 0 ? pfs_hist_xa_get(blob, len, name, buf, size) : kept;
		free(blob);
		if (kept != 0)
			goto out;
		/* none kept (an older version): the live object's, unless gone */
	}
	if (ret == 0 && w->gone)
		ret = name ? -ENODATA : 0;
	else if (ret == 0) {
		struct pfs_ref r = *w->live ? pfs_ref_at(h->rootfd, w->live) : pfs_ref_path(h->rootfd);

		ret = name ? pfs_st_getxattr(h->in, r, name, buf, size) : pfs_hist_xa_list(h, r, buf, size);
		if (ret == -ENOTSUP)
			ret = name ? -ENODATA : 0;
	}
out:
	end(h);
	free(w);
	return ret;
}

static ssize_t b_getxattr(void *ctx, const char *snap, const char *path, const char *name,
			  char *buf, size_t size)
{
	return past_xattr(ctx, snap, path, name, buf, size);
}

static ssize_t b_listxattr(void *ctx, const char *snap, const char *path, char *buf,
			   size_t size)
{
	return past_xattr(ctx, snap, path, NULL, buf, size);
}

static void b_watch(void *ctx, void (*cb)(void *arg), void *arg)
{
	struct pfs_history *h = ctx;

	h->on_snaps = cb;
	h->on_snaps_arg = arg;
}

void pfs_hist_snaps_changed(struct pfs_history *h)
{
	if (h->on_snaps)
		h->on_snaps(h->on_snaps_arg);
}

void pfs_hist_browse_init(struct pfs_history *h)
{
	pthread_mutex_init(&h->bmu, NULL);
	h->bdb = NULL;
	h->rootfd = -1;
	h->b_valid = false;
	h->b_ls = false;
	h->past = (struct pfs_past){
		.ctx = h,
		.snapshots = b_snapshots,
		.stat = b_stat,
		.list = b_list,
		.open = b_open,
		.table = b_table,
		.set_table = b_set_table,
		.getxattr = b_getxattr,
		.listxattr = b_listxattr,
		.watch = b_watch,
	};
}

void pfs_hist_browse_fini(struct pfs_history *h)
{
	if (h->bdb)
		pfs_hq_close(h->bdb);
	h->bdb = NULL;
	if (h->rootfd >= 0)
		close(h->rootfd);
	h->rootfd = -1;
	pthread_mutex_destroy(&h->bmu);
}

const struct pfs_past *pfs_history_past(struct pfs_store *st)
{
	return &H(st)->past;
}
