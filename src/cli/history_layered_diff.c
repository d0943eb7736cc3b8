/* history_layered_diff: prismfs diff on a layered mount speaks of the
 * merged view, not of the upper (docs/HISTORY.md, Layered mounts).
 *
 * The journal's replay (the out table) is of U: a copy-up is a name made
 * in U, the removal of a lower name the mknod of its whiteout, a directory
 * made again over a removed lower one an opaque directory renamed in.
 * Rather than derive overlayfs's rules a second time, the replay's lines
 * only name the candidates, and the two merged trees -- .history/A, and
 * .history/B or the mount now, which the daemon already merges as the
 * kernel does -- say what each name is: present at A only '-', at B only
 * '+', at both 'M' (a directory only if the journal changed it in place or
 * its mode or owner differ), at neither (hidden or never there) nothing;
 * of another type on each side '-' and '+'. A directory present on one
 * side only brings its whole subtree; one present on both the names only
 * one side's listing has (the lowers' names an opaque directory hides, and
 * the names beneath a whited-out directory, are named by no journal row).
 * A rename stays 'R' when the merged trees agree (the name gone, the other
 * new); the rename of a lower file is a copy-up, a rename and a whiteout,
 * so '-' and '+'. */
#include "cli/cli.h"
#include "cli/history_cmd_int.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct ld {
	sqlite3 *db;
	const char *side[2]; /* the merged tree at A, at B (or now) */
	const char *past;    /* the browse directory, not a name of the root */
	sqlite3_stmt *cand, *put;
};

/* rel's path in side s ("." the side's root); 0 or -ENAMETOOLONG. */
static int at(const struct ld *c, int s, const char *rel, char *buf, size_t len)
{
	int n = strcmp(rel, ".") == 0 ? snprintf(buf, len, "%s", c->side[s])
				      : snprintf(buf, len, "%s/%s", c->side[s], rel);

	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

static int child(const char *dir, const char *name, char *buf, size_t len)
{
	int n = strcmp(dir, ".") == 0 ? snprintf(buf, len, "%s", name)
				      : snprintf(buf, len, "%s/%s", dir, name);

	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

static int step(sqlite3_stmt *q, int n, const char *a, const char *b, const char *t)
{
	int rc;

	sqlite3_reset(q);
	sqlite3_bind_text(q, 1, a, -1, SQLITE_STATIC);
	if (n > 1)
		sqlite3_bind_text(q, 2, b, -1, SQLITE_STATIC);
	if (n > 2)
		sqlite3_bind_text(q, 3, t, -1, SQLITE_STATIC);
	rc = sqlite3_step(q);
	sqlite3_reset(q);
	return rc == SQLITE_DONE ? 0 : -EIO;
}

static int put(struct ld *c, char t, const char *p, const char *o)
{
	char ts[2] = {t, '\0'};

	return step(c->put, 3, ts, p, o);
}

/* A name to look at, with what the journal said of it ('x': settled). */
static int cand(struct ld *c, const char *p, char hint)
{
	char hs[2] = {hint, '\0'};

	return step(c->cand, 2, p, hs, NULL);
}

static bool skip(const struct ld *c, const char *dir, const char *name)
{
	return strcmp(name, ".") == 0 || strcmp(name, "..") == 0 ||
	       (strcmp(dir, ".") == 0 && strcmp(name, c->past) == 0);
}

/* Every name beneath rel in side s, as t: a directory on one side only. */
static int tree(struct ld *c, int s, const char *rel, char t)
{
	char path[PATH_MAX * 2], sub[PATH_MAX];
	struct dirent *e;
	DIR *d;
	int ret;

	if ((ret = at(c, s, rel, path, sizeof(path))) < 0)
		return ret;
	if (!(d = opendir(path)))
		return -errno;
	while ((e = readdir(d))) {
		struct stat st;
		bool dir = e->d_type == DT_DIR;

		if (skip(c, rel, e->d_name))
			continue;
		if ((ret = child(rel, e->d_name, sub, sizeof(sub))) < 0 ||
		    (ret = put(c, t, sub, NULL)) < 0)
			break;
		if (e->d_type == DT_UNKNOWN) {
			char full[PATH_MAX * 2];

			if ((ret = at(c, s, sub, full, sizeof(full))) < 0)
				break;
			dir = lstat(full, &st) == 0 && S_ISDIR(st.st_mode);
		}
		if (dir && (ret = tree(c, s, sub, t)) < 0)
			break;
	}
	closedir(d);
	return ret;
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);
}

/* A directory on both sides: the names one side's listing has and the
 * other's not become candidates. */
static int listings(struct ld *c, const char *rel)
{
	char path[PATH_MAX * 2], sub[PATH_MAX];
	struct dirent **l[2] = {NULL, NULL};
	int n[2] = {-1, -1}, i = 0, j = 0, ret = 0;

	for (int s = 0; s < 2; s++) {
		if ((ret = at(c, s, rel, path, sizeof(path))) < 0)
			goto out;
		if ((n[s] = scandir(path, &l[s], NULL, by_name)) < 0) {
			ret = -errno;
			goto out;
		}
	}
	while (ret == 0 && (i < n[0] || j < n[1])) {
		int cmp = i == n[0] ? 1 : j == n[1] ? -1 : strcmp(l[0][i]->d_name, l[1][j]->d_name);
		const char *name = cmp <= 0 ? l[0][i]->d_name : l[1][j]->d_name;

		if (cmp != 0 && !skip(c, rel, name) &&
		    (ret = child(rel, name, sub, sizeof(sub))) == 0)
			ret = cand(c, sub, ' ');
		i += cmp <= 0;
		j += cmp >= 0;
	}
out:
	for (int s = 0; s < 2; s++) {
		for (int k = 0; k < n[s]; k++)
			free(l[s][k]);
		free(l[s]);
	}
	return ret;
}

/* lstat of rel on side s: 1, 0 (not there), or -errno. */
static int look(const struct ld *c, int s, const char *rel, struct stat *st)
{
	char path[PATH_MAX * 2];
	int ret = at(c, s, rel, path, sizeof(path));

	if (ret < 0)
		return ret;
	if (lstat(path, st) == 0)
		return 1;
	return errno == ENOENT || errno == ENOTDIR ? 0 : -errno;
}

static int classify(struct ld *c, const char *rel, char hint)
{
	struct stat st[2];
	int ex[2], ret;

	for (int s = 0; s < 2; s++)
		if ((ex[s] = look(c, s, rel, &st[s])) < 0)
			return ex[s];
	if (ex[0] && ex[1] && (st[0].st_mode & S_IFMT) == (st[1].st_mode & S_IFMT)) {
		if (!S_ISDIR(st[0].st_mode))
			return put(c, 'M', rel, NULL);
		if ((hint == 'M' || st[0].st_mode != st[1].st_mode || st[0].st_uid != st[1].st_uid ||
		     st[0].st_gid != st[1].st_gid) &&
		    (ret = put(c, 'M', rel, NULL)) < 0)
			return ret;
		return listings(c, rel);
	}
	for (int s = 0; s < 2; s++) {
		char t = s ? '+' : '-';

		if (!ex[s])
			continue;
		if ((ret = put(c, t, rel, NULL)) < 0 ||
		    (S_ISDIR(st[s].st_mode) && (ret = tree(c, s, rel, t)) < 0))
			return ret;
	}
	return 0;
}

/* A rename the merged trees agree with: from gone at B, to new at B. */
static int renamed(struct ld *c, const char *from, const char *to)
{
	struct stat f[2], t[2];
	int r[4] = {look(c, 0, from, &f[0]), look(c, 1, from, &f[1]), look(c, 0, to, &t[0]),
		    look(c, 1, to, &t[1])};

	for (int i = 0; i < 4; i++)
		if (r[i] < 0)
			return r[i];
	return r[0] && !r[1] && !r[2] && r[3] &&
	       (f[0].st_mode & S_IFMT) == (t[1].st_mode & S_IFMT);
}

/* The candidates a line of the replay names. */
static int line(struct ld *c, char t, const char *p, const char *o)
{
	const char *base;
	int ret;

	if (t == 'R') { /* a temporary outside U is never in the merged view */
		if (p[0] == '/' || o[0] == '/')
			return p[0] == '/' ? (o[0] == '/' ? 0 : cand(c, o, '+')) : cand(c, p, '-');
		if ((ret = renamed(c, p, o)) < 0)
			return ret;
		if (ret)
			return put(c, 'R', p, o) < 0 || cand(c, p, 'x') < 0 || cand(c, o, 'x') < 0
				       ? -EIO
				       : 0;
		return cand(c, p, ' ') < 0 ? -EIO : cand(c, o, ' ');
	}
	if (p[0] == '/')
		return 0;
	if ((ret = cand(c, p, t)) < 0)
		return ret;
	/* a whiteout or opaque marker of the .wh. form: the name it hides */
	base = strrchr(p, '/');
	base = base ? base + 1 : p;
	if (strcmp(base, ".wh..wh..opq") == 0) {
		char dir[PATH_MAX];

		snprintf(dir, sizeof(dir), "%.*s", base == p ? 1 : (int)(base - p - 1),
			 base == p ? "." : p);
		return cand(c, dir, ' ');
	}
	if (strncmp(base, ".wh.", 4) == 0 && base[4]) {
		char name[PATH_MAX];

		snprintf(name, sizeof(name), "%.*s%s", (int)(base - p), p, base + 4);
		return cand(c, name, ' ');
	}
	return 0;
}

int pfs_hq_layered(sqlite3 *db, const char *side_a, const char *side_b, const char *past)
{
	struct ld c = {db, {side_a, side_b}, past, NULL, NULL};
	sqlite3_stmt *r = NULL;
	long long last = 0;
	int ret = -EIO;

	if (sqlite3_exec(db, "CREATE TEMP TABLE cand(p TEXT PRIMARY KEY, hint TEXT);"
			     "CREATE TEMP TABLE lout(t TEXT, p TEXT, o TEXT);",
			 NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "INSERT INTO cand VALUES(?1, ?2) ON CONFLICT(p) DO UPDATE SET"
				   " hint = CASE WHEN hint = 'x' OR ?2 = ' ' THEN hint ELSE ?2 END",
			       -1, &c.cand, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "INSERT INTO lout VALUES(?1, ?2, ?3)", -1, &c.put, NULL) !=
		    SQLITE_OK ||
	    /* renames first: a name a kept rename settles is no candidate */
	    sqlite3_prepare_v2(db, "SELECT t, p, o FROM out ORDER BY t <> 'R'", -1, &r, NULL) !=
		    SQLITE_OK)
		goto out;
	ret = 0;
	while (ret == 0 && sqlite3_step(r) == SQLITE_ROW)
		ret = line(&c, pfs_hc_col(r, 0)[0], pfs_hc_col(r, 1), pfs_hc_col(r, 2));
	sqlite3_finalize(r);
	r = NULL;
	if (ret < 0)
		goto out;
	/* in the order met: listings add names as they go */
	if (sqlite3_prepare_v2(db, "SELECT rowid, p, hint FROM cand WHERE rowid > ? AND"
				   " hint <> 'x' ORDER BY rowid LIMIT 1",
			       -1, &r, NULL) != SQLITE_OK) {
		ret = -EIO;
		goto out;
	}
	for (;;) {
		char p[PATH_MAX], hint;

		sqlite3_reset(r);
		sqlite3_bind_int64(r, 1, last);
		if (sqlite3_step(r) != SQLITE_ROW)
			break;
		last = sqlite3_column_int64(r, 0);
		snprintf(p, sizeof(p), "%s", pfs_hc_col(r, 1));
		hint = pfs_hc_col(r, 2)[0];
		sqlite3_reset(r);
		if ((ret = classify(&c, p, hint)) < 0)
			goto out;
	}
	if (sqlite3_exec(db, "DELETE FROM out; INSERT INTO out SELECT DISTINCT t, p, o FROM lout;",
			 NULL, NULL, NULL) != SQLITE_OK)
		ret = -EIO;
out:
	sqlite3_finalize(r);
	sqlite3_finalize(c.cand);
	sqlite3_finalize(c.put);
	return ret;
}
