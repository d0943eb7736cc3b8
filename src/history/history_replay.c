/* history_replay: the journal's changes between two positions replayed
 * over in-memory tables of what moved (issue 17; docs/HISTORY.md), on a
 * read-only connection to DIR/history.db: prismfs diff and export (in the
 * client) and the .history tree (in the daemon, history_browse.c) share it.
 *
 * cur(path, orig, mod, fpath, fseq) maps a path now to the path its object
 * had at the first position (NULL: made since), gone holds the paths whose
 * object went away, del(orig, fpath, fseq) the first position's paths that
 * were removed; fpath/fseq: where and when an object was first changed
 * since (its previous version was saved there just before). A path the
 * replay never saw is its own object, unchanged; a path beneath a renamed
 * directory follows it. Whether a rename replaced something the replay
 * never saw is known from the version the rename saved of it. */
#include "history/history_replay.h"

#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PFS_RENAME_EXCHANGE 2 /* <linux/fs.h>'s RENAME_EXCHANGE */
#define PFS_RENAME_WHITEOUT 4 /* <linux/fs.h>'s RENAME_WHITEOUT */

static const char *col(sqlite3_stmt *q, int i)
{
	const unsigned char *t = sqlite3_column_text(q, i);

	return t ? (const char *)t : "";
}

/* Statements are kept prepared on the connection and found again by their
 * text (SQLite lists a connection's statements): a lookup in the .history
 * tree asks a dozen small questions, and preparing them each time was most
 * of its cost (a listing of 10,000 entries took 4.7x the live one). A
 * statement handed out is stepped before anything else asks the same
 * question, so an idle one (not busy) is free. */
int pfs_hq_prep(sqlite3 *db, const char *sql, sqlite3_stmt **q)
{
	for (sqlite3_stmt *s = sqlite3_next_stmt(db, NULL); s; s = sqlite3_next_stmt(db, s))
		if (!sqlite3_stmt_busy(s) && strcmp(sqlite3_sql(s), sql) == 0) {
			*q = s;
			return 0;
		}
	return sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, q, NULL) == SQLITE_OK
		       ? 0
		       : -1;
}

void pfs_hq_done(sqlite3_stmt *q)
{
	if (!q)
		return;
	sqlite3_reset(q);
	sqlite3_clear_bindings(q);
}

void pfs_hq_close(sqlite3 *db)
{
	sqlite3_stmt *s;

	while ((s = sqlite3_next_stmt(db, NULL)))
		sqlite3_finalize(s);
	sqlite3_close(db);
}

int pfs_hq_snap(sqlite3 *db, const char *name, long long *seq, long long *id)
{
	sqlite3_stmt *q;
	int found;

	if (pfs_hq_prep(db, "SELECT seq, id FROM snapshots WHERE name = ?1 OR"
			    " CAST(id AS TEXT) = ?1 ORDER BY name = ?1 DESC LIMIT 1",
			&q) < 0)
		return -1;
	sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
	found = sqlite3_step(q) == SQLITE_ROW;
	if (found) {
		*seq = sqlite3_column_int64(q, 0);
		*id = sqlite3_column_int64(q, 1);
	}
	pfs_hq_done(q);
	return found ? 0 : -1;
}

/* One statement, its parameters as text (NULL: SQL NULL); 0 or -1. With
 * out, the first column of its first row (empty: none; "\x01": NULL). */
static int run(sqlite3 *db, const char *sql, char *out, size_t len, int n, ...)
{
	sqlite3_stmt *q;
	va_list ap;
	int rc;

	if (pfs_hq_prep(db, sql, &q) < 0)
		return -1;
	va_start(ap, n);
	for (int i = 1; i <= n; i++) {
		const char *v = va_arg(ap, const char *);

		if (v)
			sqlite3_bind_text(q, i, v, -1, SQLITE_TRANSIENT);
	}
	va_end(ap);
	rc = sqlite3_step(q);
	if (out) {
		out[0] = '\0';
		if (rc == SQLITE_ROW)
			snprintf(out, len, "%s",
				 sqlite3_column_type(q, 0) == SQLITE_NULL ? "\x01" : col(q, 0));
	}
	pfs_hq_done(q);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

enum found { F_CUR, F_BENEATH, F_GONE, F_UNSEEN };

/* What the object at path p was at the first snapshot: orig "" for one
 * made since (or none), else its path then. */
static enum found lookup(sqlite3 *db, const char *p, char *orig, size_t len)
{
	char q[PATH_MAX], got[PATH_MAX];

	snprintf(q, sizeof(q), "%s", p);
	for (;;) {
		char *slash;

		if (run(db, "SELECT orig FROM cur WHERE path = ?", got, sizeof(got), 1, q) == 0 &&
		    got[0]) {
			if (got[0] == '\x01')
				orig[0] = '\0';
			else
				snprintf(orig, len, "%s%s", got, p + strlen(q));
			return strcmp(q, p) == 0 ? F_CUR : F_BENEATH;
		}
		if (run(db, "SELECT 1 FROM gone WHERE path = ?", got, sizeof(got), 1, q) == 0 &&
		    got[0]) {
			orig[0] = '\0';
			return F_GONE;
		}
		slash = strrchr(q, '/');
		if (!slash)
			break;
		*slash = '\0';
	}
	snprintf(orig, len, "%s", p);
	return F_UNSEEN;
}

/* Move what the tables know beneath directory from to beneath to. */
static int move_under(sqlite3 *db, const char *from, const char *to)
{
	static const char *const sql[] = {
		"UPDATE cur SET path = ?2 || substr(path, length(?1) + 1)"
		" WHERE substr(path, 1, length(?1) + 1) = ?1 || '/'",
		"UPDATE gone SET path = ?2 || substr(path, length(?1) + 1)"
		" WHERE substr(path, 1, length(?1) + 1) = ?1 || '/'",
	};

	for (size_t i = 0; i < 2; i++)
		if (run(db, sql[i], NULL, 0, 2, from, to) < 0)
			return -1;
	return 0;
}

/* Where and when (the row's seq) an object was first changed since the
 * replay's start: its previous version was saved there, just before.
 * Empty for one made since, or not changed (only moved with a parent). */
struct touch {
	char path[PATH_MAX];
	char seq[24];
};

static const struct touch NO_TOUCH;

/* The first change of the object now at p: its own row's, else this one
 * (at p, seq). */
static void first_touch(sqlite3 *db, const char *p, long long seq, struct touch *t)
{
	char got[24];

	if (run(db, "SELECT coalesce(fseq, 0) FROM cur WHERE path = ?", got, sizeof(got), 1, p) ==
		    0 &&
	    got[0]) {
		*t = NO_TOUCH;
		if (strcmp(got, "0") != 0) {
			snprintf(t->seq, sizeof(t->seq), "%s", got);
			run(db, "SELECT fpath FROM cur WHERE path = ?", t->path, sizeof(t->path), 1,
			    p);
		}
		return;
	}
	snprintf(t->path, sizeof(t->path), "%s", p);
	snprintf(t->seq, sizeof(t->seq), "%lld", seq);
}

static int set_cur(sqlite3 *db, const char *p, const char *orig, bool mod,
		   const struct touch *t)
{
	return run(db, "DELETE FROM gone WHERE path = ?1", NULL, 0, 1, p) < 0 ||
			       run(db, "INSERT OR REPLACE INTO cur VALUES(?1, ?2, ?3, ?4, ?5)", NULL,
				   0, 5, p, orig[0] ? orig : NULL, mod ? "1" : "0",
				   t->seq[0] ? t->path : NULL, t->seq[0] ? t->seq : NULL) < 0
		       ? -1
		       : 0;
}

static int add_del(sqlite3 *db, const char *orig, const struct touch *t)
{
	return run(db, "INSERT INTO del VALUES(?, ?, ?)", NULL, 0, 3, orig,
		   t->seq[0] ? t->path : NULL, t->seq[0] ? t->seq : NULL);
}

/* The object at p is gone (unlinked, or replaced). */
static int remove_at(sqlite3 *db, const char *p, const char *orig, const struct touch *t)
{
	if (orig[0] && add_del(db, orig, t) < 0)
		return -1;
	return run(db, "DELETE FROM cur WHERE path = ?1 OR substr(path, 1, length(?1) + 1) ="
		       " ?1 || '/'", NULL, 0, 1, p) < 0 ||
			       run(db, "DELETE FROM gone WHERE substr(path, 1, length(?1) + 1) ="
				   " ?1 || '/'", NULL, 0, 1, p) < 0 ||
			       run(db, "INSERT OR IGNORE INTO gone VALUES(?)", NULL, 0, 1, p) < 0
		       ? -1
		       : 0;
}

static int was_modified(sqlite3 *db, const char *p)
{
	char got[8];

	return run(db, "SELECT mod FROM cur WHERE path = ?", got, sizeof(got), 1, p) == 0 &&
	       strcmp(got, "1") == 0;
}

static int apply_rename(sqlite3 *db, const char *from, const char *to, long long flags,
			long long a_seq, long long seq)
{
	char of[PATH_MAX], ot[PATH_MAX], buf[32], sa[32], ss[32];
	struct touch *tf = malloc(sizeof(*tf)), *tt = malloc(sizeof(*tt));
	enum found ft;
	bool mf, mt;
	int ret = -1;

	if (!tf || !tt)
		goto out;
	lookup(db, from, of, sizeof(of));
	/* renamed in from outside the tree (a layered mount's work
	 * directory: a copy-up, a whiteout): an object made since */
	if (from[0] == '/')
		of[0] = '\0';
	mf = was_modified(db, from);
	first_touch(db, from, seq, tf);
	ft = lookup(db, to, ot, sizeof(ot));
	mt = was_modified(db, to);
	first_touch(db, to, seq, tt);
	if (flags & PFS_RENAME_EXCHANGE) {
		ret = move_under(db, from, "\x02") < 0 || move_under(db, to, from) < 0 ||
				      move_under(db, "\x02", to) < 0 ||
				      set_cur(db, to, of, mf, tf) < 0 ||
				      set_cur(db, from, ot, mt, tt) < 0
			      ? -1
			      : 0;
		goto out;
	}
	if (ft == F_UNSEEN) {
		/* the replay never saw it: did it exist? the rename saved it if so */
		snprintf(sa, sizeof(sa), "%lld", a_seq);
		snprintf(ss, sizeof(ss), "%lld", seq);
		if (run(db, "SELECT 1 FROM versions WHERE path = ?1 AND seq >= ?2 AND seq < ?3",
			buf, sizeof(buf), 3, to, sa, ss) < 0 || !buf[0])
			ot[0] = '\0';
	} else if (ft == F_GONE) {
		ot[0] = '\0';
	}
	if (ot[0] && add_del(db, ot, tt) < 0)
		goto out;
	ret = run(db, "DELETE FROM cur WHERE substr(path, 1, length(?1) + 1) = ?1 || '/'", NULL,
		  0, 1, to) < 0 ||
			      move_under(db, from, to) < 0 || set_cur(db, to, of, mf, tf) < 0 ||
			      run(db, "DELETE FROM cur WHERE path = ?", NULL, 0, 1, from) < 0 ||
			      run(db, "INSERT OR IGNORE INTO gone VALUES(?)", NULL, 0, 1, from) < 0
		      ? -1
		      : 0;
out:
	free(tf);
	free(tt);
	return ret;
}

static int apply(sqlite3 *db, sqlite3_stmt *r, long long a_seq)
{
	const char *kind = col(r, 0), *p = col(r, 1), *p2 = col(r, 2);
	long long arg = sqlite3_column_int64(r, 3), seq = sqlite3_column_int64(r, 4);
	static const char *const mods[] = {"write", "truncate", "chmod", "chown", "utimes",
					   "setxattr", "removexattr", "copy"};
	char orig[PATH_MAX];
	struct touch t;
	enum found f;

	if (!strcmp(kind, "create") || !strcmp(kind, "mkdir") || !strcmp(kind, "mknod") ||
	    !strcmp(kind, "symlink") || !strcmp(kind, "link")) {
		const char *at = strcmp(kind, "link") == 0 ? p2 : p;

		return set_cur(db, at, "", false, &NO_TOUCH);
	}
	if (!strcmp(kind, "unlink") || !strcmp(kind, "rmdir")) {
		lookup(db, p, orig, sizeof(orig));
		first_touch(db, p, seq, &t);
		return remove_at(db, p, orig, &t);
	}
	if (!strcmp(kind, "rename")) {
		/* an object moved out of the tree (a layered mount removes a
		 * directory by way of its work directory) is removed */
		const char *out = (arg & PFS_RENAME_EXCHANGE) ? p : p2;

		if (apply_rename(db, p, p2, arg, a_seq, seq) < 0)
			return -1;
		/* RENAME_WHITEOUT (a layered rename of a lower-origin file)
		 * leaves a whiteout at the old name: an object made then */
		if ((arg & PFS_RENAME_WHITEOUT) && p[0] != '/' &&
		    set_cur(db, p, "", false, &NO_TOUCH) < 0)
			return -1;
		if (out[0] != '/')
			return 0;
		lookup(db, out, orig, sizeof(orig));
		first_touch(db, out, seq, &t);
		return remove_at(db, out, orig, &t);
	}
	for (size_t i = 0; i < sizeof(mods) / sizeof(mods[0]); i++) {
		if (strcmp(kind, mods[i]) == 0) {
			lookup(db, p, orig, sizeof(orig));
			first_touch(db, p, seq, &t);
			return set_cur(db, p, orig, true, &t);
		}
	}
	if (!strcmp(kind, "open-write")) {
		/* the version was saved here, before any byte changed; the
		 * write row that follows may come after a rename above it */
		f = lookup(db, p, orig, sizeof(orig));
		if (f == F_CUR || !orig[0])
			return 0; /* its first change is known, or it is new */
		first_touch(db, p, seq, &t);
		return set_cur(db, p, orig, false, &t);
	}
	return 0;
}

/* The replay's outcome into out, in zfs diff's shape. Something beneath a
 * renamed directory, still where the directory took it, is not renamed
 * itself: it is M if it changed, else not listed. */
int pfs_hq_report(sqlite3 *db)
{
	sqlite3_stmt *c;
	int ret = 0;

	if (sqlite3_exec(db, "INSERT INTO out SELECT '-', orig, NULL FROM del;"
			     "INSERT INTO out SELECT '+', path, NULL FROM cur WHERE orig IS NULL"
			     " AND path <> '';"
			     /* the root ("", its own orig, stored NULL): changed */
			     "INSERT INTO out SELECT 'M', '.', NULL FROM cur WHERE path = ''"
			     " AND mod = 1;",
			 NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "SELECT path, orig, mod FROM cur WHERE orig IS NOT NULL", -1,
			       &c, NULL) != SQLITE_OK)
		return -1;
	while (ret == 0 && sqlite3_step(c) == SQLITE_ROW) {
		const char *p = col(c, 0), *o = col(c, 1), *slash = strrchr(p, '/');
		char parent[PATH_MAX], implied[PATH_MAX * 2];
		bool moved = strcmp(p, o) != 0;

		if (moved && slash) {
			snprintf(parent, sizeof(parent), "%.*s", (int)(slash - p), p);
			lookup(db, parent, implied, sizeof(implied) / 2);
			if (implied[0]) {
				strcat(implied, slash);
				moved = strcmp(implied, o) != 0;
			}
		}
		if (moved)
			ret = run(db, "INSERT INTO out VALUES('R', ?, ?)", NULL, 0, 2, o, p);
		else if (sqlite3_column_int(c, 2))
			ret = run(db, "INSERT INTO out VALUES('M', ?, NULL)", NULL, 0, 1, p);
	}
	sqlite3_finalize(c);
	return ret;
}

int pfs_hq_orig(sqlite3 *db, const char *p, char *orig, size_t len)
{
	return lookup(db, p, orig, len) == F_UNSEEN ? 0 : 1;
}

int pfs_hq_replay(sqlite3 *db, long long sa, long long sb)
{
	static const char TABLES[] =
		"CREATE TEMP TABLE cur(path TEXT PRIMARY KEY, orig TEXT, mod INTEGER, fpath TEXT,"
		" fseq INTEGER);"
		"CREATE TEMP TABLE gone(path TEXT PRIMARY KEY);"
		"CREATE TEMP TABLE del(orig TEXT, fpath TEXT, fseq INTEGER);"
		"CREATE TEMP TABLE out(t TEXT, p TEXT, o TEXT);";
	sqlite3_stmt *r = NULL;
	int ret = -1;

	if (sqlite3_exec(db, "PRAGMA temp_store = MEMORY;", NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_exec(db, TABLES, NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "SELECT kind, path, path2, arg, seq FROM changes WHERE"
				   " seq > ?1 AND (?2 < 0 OR seq <= ?2) AND state = 1 ORDER BY seq",
			       -1, &r, NULL) != SQLITE_OK)
		goto out;
	sqlite3_bind_int64(r, 1, sa);
	sqlite3_bind_int64(r, 2, sb);
	while (sqlite3_step(r) == SQLITE_ROW)
		if (apply(db, r, sa) < 0)
			goto out;
	ret = 0;
out:
	sqlite3_finalize(r);
	return ret;
}
