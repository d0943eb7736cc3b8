/* history_query: prismfs versions and prismfs diff (issue 17), read from
 * DIR/history.db as prismfs log is (read-only; the daemon is asked only
 * where DIR is, and writes the outcomes it holds first).
 *
 * diff replays the journal's rows between two snapshots' positions (the
 * changes that were made, state 1) over an in-memory table of what moved:
 * cur(path, orig, mod) maps a path now to the path its object had at the
 * first snapshot (NULL: made since), gone holds the paths whose object
 * went away, del the first snapshot's paths that were removed. A path the
 * replay never saw is its own object, unchanged; a path beneath a renamed
 * directory follows it. Whether a rename replaced something the replay
 * never saw is known from the version the rename saved of it. */
#include "cli/cli.h"
#include "cli/cmdutil.h"
#include "cli/history_cmd_int.h"

#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

bool pfs_history_query_is(const char *w)
{
	return strcmp(w, "versions") == 0 || strcmp(w, "diff") == 0 || strcmp(w, "restore") == 0;
}

/* The names an object had: PATH, and before each rename that brought
 * something to PATH (or to a directory above it), the name it came from,
 * followed back the same way. Each name with the newest position up to
 * which its versions count (hi; LLONG_MAX for PATH itself). Taken newest
 * first, so a name is met first with its largest hi and visited once:
 * renames back and forth stay linear. */
struct vname {
	char path[PATH_MAX];
	long long hi;
	bool done;
};

/* Where the object at cur came from through the rename row (src, dst,
 * flags): 1 with *was set, 0 if the rename did not bring it. */
static int came_from(const char *cur, const char *src, const char *dst, long long flags,
		     char *was, size_t len)
{
	size_t dl = strlen(dst), sl = strlen(src);

	if (strncmp(cur, dst, dl) == 0 && (cur[dl] == '\0' || cur[dl] == '/'))
		return (size_t)snprintf(was, len, "%s%s", src, cur + dl) < len;
	/* RENAME_EXCHANGE: what is at src now was at dst */
	if ((flags & 2) && strncmp(cur, src, sl) == 0 && (cur[sl] == '\0' || cur[sl] == '/'))
		return (size_t)snprintf(was, len, "%s%s", dst, cur + sl) < len;
	return 0;
}

static int add_name(struct vname **v, size_t *n, const char *path, long long hi)
{
	struct vname *nv;

	for (size_t i = 0; i < *n; i++)
		if (strcmp((*v)[i].path, path) == 0) {
			if (!(*v)[i].done && hi > (*v)[i].hi)
				(*v)[i].hi = hi;
			return 0;
		}
	nv = realloc(*v, (*n + 1) * sizeof(**v));
	if (!nv)
		return -1;
	*v = nv;
	snprintf(nv[*n].path, sizeof(nv[*n].path), "%s", path);
	nv[*n].hi = hi;
	nv[*n].done = false;
	(*n)++;
	return 0;
}

static int names_of(sqlite3 *db, const char *rel, struct vname **v, size_t *n)
{
	sqlite3_stmt *r = NULL;
	char was[PATH_MAX];
	int ret = -1;

	*v = NULL;
	*n = 0;
	if (add_name(v, n, rel, LLONG_MAX) < 0 ||
	    sqlite3_prepare_v2(db, "SELECT seq, path, path2, arg FROM changes WHERE kind = 'rename'"
				   " AND state = 1 AND seq < ?2 AND (path2 = ?1 OR substr(?1, 1,"
				   " length(path2) + 1) = path2 || '/' OR (arg & 2 AND (path = ?1 OR"
				   " substr(?1, 1, length(path) + 1) = path || '/'))) ORDER BY seq DESC",
			       -1, &r, NULL) != SQLITE_OK)
		goto out;
	for (;;) {
		size_t k = *n;

		for (size_t i = 0; i < *n; i++) /* the newest not visited */
			if (!(*v)[i].done && (k == *n || (*v)[i].hi > (*v)[k].hi))
				k = i;
		if (k == *n)
			break;
		(*v)[k].done = true;
		sqlite3_reset(r);
		sqlite3_bind_text(r, 1, (*v)[k].path, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(r, 2, (*v)[k].hi);
		while (sqlite3_step(r) == SQLITE_ROW)
			if (came_from((*v)[k].path, pfs_hc_col(r, 1), pfs_hc_col(r, 2),
				      sqlite3_column_int64(r, 3), was, sizeof(was)) &&
			    add_name(v, n, was, sqlite3_column_int64(r, 0)) < 0)
				goto out;
	}
	ret = 0;
out:
	sqlite3_finalize(r);
	return ret;
}

static int cmd_versions(const char *mnt, const char *path, bool json)
{
	char rel[PATH_MAX] = "", *canon_m = canonical_noleaf(mnt), tbuf[64], mbuf[64];
	char vrel[PATH_MAX] = "", shown[PATH_MAX + 2], v[PATH_MAX + 2];
	sqlite3 *db = canon_m ? pfs_hc_open_db(mnt) : NULL;
	sqlite3_stmt *q = NULL;
	json_t *arr = json_array();
	struct vname *names = NULL;
	struct pfs_hc_maps maps = {0};
	size_t nnames = 0;
	int ret = 1;

	if (!db || !arr)
		goto out;
	pfs_hc_relpath(canon_m, path, rel, sizeof(rel));
	snprintf(vrel, sizeof(vrel), "%s", rel);
	if (pfs_hc_maps_load(db, canon_m, &maps) < 0) {
		say("%s: cannot read the mapping tables of the history", mnt);
		goto out;
	}
	/* With a table: the view's path is the object's path in SOURCE
	 * through the table shown now (docs/HISTORY.md, "With a mapping
	 * table"); each version's name is shown through the table of its
	 * time. */
	if (maps.n) {
		snprintf(v, sizeof(v), "/%s", vrel);
		if (pfs_map_to_source(maps.m[maps.n - 1], v, maps.source, canon_m, rel, sizeof(rel),
				      NULL) < 0) {
			say("%s: %s is not shown by the mount (hidden by its table)", mnt, vrel);
			goto out;
		}
	}
	/* A version counts under a name up to the rename that took the
	 * object away from it (saved at that rename: seq <= hi). */
	if (names_of(db, rel, &names, &nnames) < 0 ||
	    sqlite3_exec(db, "CREATE TEMP TABLE vn(path TEXT, hi INTEGER)", NULL, NULL, NULL) !=
		    SQLITE_OK ||
	    sqlite3_prepare_v2(db, "INSERT INTO vn VALUES(?, ?)", -1, &q, NULL) != SQLITE_OK) {
		say("%s: %s", mnt, sqlite3_errmsg(db));
		goto out;
	}
	for (size_t i = 0; i < nnames; i++) {
		sqlite3_reset(q);
		sqlite3_bind_text(q, 1, names[i].path, -1, SQLITE_STATIC);
		sqlite3_bind_int64(q, 2, names[i].hi);
		if (sqlite3_step(q) != SQLITE_DONE) {
			say("%s: %s", mnt, sqlite3_errmsg(db));
			goto out;
		}
	}
	sqlite3_finalize(q);
	if (sqlite3_prepare_v2(db,
			       "SELECT s.id, s.name, s.t_ns, v.size, v.mtime_ns, v.mode, v.seq, v.path"
			       " FROM versions v JOIN snapshots s ON v.snap = s.id JOIN vn ON"
			       " v.path = vn.path AND v.seq <= vn.hi WHERE v.pruned = 0"
			       " ORDER BY v.seq, v.rowid",
			       -1, &q, NULL) != SQLITE_OK) {
		say("%s: %s", mnt, sqlite3_errmsg(db));
		goto out;
	}
	while (sqlite3_step(q) == SQLITE_ROW) {
		const char *as = pfs_hc_col(q, 7);

		if (maps.n && pfs_map_to_view(pfs_hc_map_at(&maps, sqlite3_column_int64(q, 6)), as,
					      maps.source, canon_m, shown, sizeof(shown)) == 1)
			as = shown + 1;
		pfs_hc_fmt_ns(sqlite3_column_int64(q, 2), tbuf, sizeof(tbuf));
		pfs_hc_fmt_ns(sqlite3_column_int64(q, 4), mbuf, sizeof(mbuf));
		if (json) {
			json_t *o = json_pack("{s:I, s:s, s:s, s:I, s:s, s:I, s:I, s:s}",
					      "snapshot_id", (json_int_t)sqlite3_column_int64(q, 0),
					      "snapshot", pfs_hc_col(q, 1), "time", tbuf,
					      "size", (json_int_t)sqlite3_column_int64(q, 3),
					      "mtime", mbuf,
					      "mode", (json_int_t)sqlite3_column_int64(q, 5),
					      "seq", (json_int_t)sqlite3_column_int64(q, 6),
					      "path", as);

			if (o && maps.n)
				json_object_set_new(o, "source_path", json_string(pfs_hc_col(q, 7)));
			if (o)
				json_array_append_new(arr, o);
		} else if (strcmp(as, vrel) != 0) {
			printf("%s %s size=%lld mtime=%s as=%s\n", pfs_hc_col(q, 1), tbuf,
			       sqlite3_column_int64(q, 3), mbuf, as);
		} else {
			printf("%s %s size=%lld mtime=%s\n", pfs_hc_col(q, 1), tbuf,
			       sqlite3_column_int64(q, 3), mbuf);
		}
	}
	if (json)
		pfs_hc_put_json(arr);
	ret = 0;
out:
	pfs_hc_maps_free(&maps);
	sqlite3_finalize(q);
	sqlite3_close(db);
	json_decref(arr);
	free(names);
	free(canon_m);
	return ret;
}

/* The journal position of snapshot name (a name, or an id), and its id. */
/* A line of diff on a mount whose history has a table: its paths as the
 * view showed them, sorted again (the view's order is not SOURCE's). */
struct dline {
	char t;
	char *p, *o;
};

static int dline_cmp(const void *x, const void *y)
{
	const struct dline *a = x, *b = y;
	int c = strcmp(a->p, b->p);

	return c ? c : a->t - b->t;
}

/* path (SOURCE's) through table m, relative to the mount; malloc'ed. */
static char *view_of(const struct pfs_hc_maps *maps, const struct pfs_map *m, const char *path,
		     const char *canon_m)
{
	char buf[PATH_MAX + 2];

	if (pfs_map_to_view(m, path, maps->source, canon_m, buf, sizeof(buf)) == 1)
		return strdup(buf + 1);
	return strdup(path);
}

/* The merged trees diff compares on a layered mount: .history/A, and
 * .history/B or the mount itself. 1 if mnt is layered, 0 if not, -1 after
 * saying why. */
static int layered_sides(sqlite3 *db, const char *mnt, const char *canon_m, long long ia,
			 const char *b, long long ib, char *sa, char *sb, size_t len, char *past,
			 size_t plen)
{
	char line[PATH_MAX];
	sqlite3_stmt *q = NULL;
	int ret = -1;

	if (pfs_hc_ask(mnt, "layered\n", line, sizeof(line)) < 0)
		return -1;
	if (strcmp(line, "yes") != 0)
		return 0;
	if (pfs_hc_ask(mnt, "browse\n", line, sizeof(line)) < 0)
		return -1;
	if (strncmp(line, "name ", 5) != 0 || !line[5]) {
		say("%s: the daemon did not say where its past tree is", mnt);
		return -1;
	}
	snprintf(past, plen, "%.*s", NAME_MAX, line + 5);
	if (sqlite3_prepare_v2(db, "SELECT name FROM snapshots WHERE id = ?", -1, &q, NULL) !=
	    SQLITE_OK)
		goto out;
	for (int s = 0; s < 2; s++) {
		char *side = s ? sb : sa;

		if (s && !b) {
			snprintf(side, len, "%s", canon_m);
			break;
		}
		sqlite3_reset(q);
		sqlite3_bind_int64(q, 1, s ? ib : ia);
		if (sqlite3_step(q) != SQLITE_ROW)
			goto out;
		if ((size_t)snprintf(side, len, "%s/%s/%s", canon_m, past, pfs_hc_col(q, 0)) >= len)
			goto out;
	}
	ret = 1;
out:
	if (ret < 0)
		say("%s: %s", mnt, sqlite3_errmsg(db));
	sqlite3_finalize(q);
	return ret;
}

static int cmd_diff(const char *mnt, const char *a, const char *b, bool stat)
{
	sqlite3 *db = pfs_hc_open_db(mnt);
	sqlite3_stmt *r = NULL;
	long long sa, sb = -1, ia, ib = 0, n[4] = {0, 0, 0, 0};
	char *canon_m = canonical_noleaf(mnt);
	struct pfs_hc_maps maps = {0};
	const struct pfs_map *ma = NULL, *mb = NULL;
	struct dline *lines = NULL;
	size_t nl = 0;
	char side_a[PATH_MAX], side_b[PATH_MAX], past[NAME_MAX + 1];
	int ret = 1, lay, e;

	if (!db || !canon_m) {
		free(canon_m);
		pfs_hq_close(db);
		return 1;
	}
	if (pfs_hc_maps_load(db, canon_m, &maps) < 0) {
		say("%s: cannot read the mapping tables of the history", mnt);
		goto out;
	}
	if (pfs_hq_snap(db, a, &sa, &ia) < 0 || (b && pfs_hq_snap(db, b, &sb, &ib) < 0)) {
		say("%s: no snapshot %s", mnt, pfs_hq_snap(db, a, &sa, &ia) < 0 ? a : b);
		goto out;
	}
	if (b && ib < ia) {
		say("%s: snapshot %s was taken before %s (the older one first)", mnt, b, a);
		goto out;
	}
	/* with a table: a path at A through A's table, one at B (or now)
	 * through B's (docs/HISTORY.md, "With a mapping table") */
	if (maps.n) {
		ma = pfs_hc_map_at(&maps, sa);
		mb = b ? pfs_hc_map_at(&maps, sb) : maps.m[maps.n - 1];
	}
	if (pfs_hq_replay(db, sa, sb) < 0) {
		say("%s: %s", mnt, sqlite3_errmsg(db));
		goto out;
	}
	if (pfs_hq_report(db) < 0) {
		say("%s: %s", mnt, sqlite3_errmsg(db));
		goto out;
	}
	/* a layered mount's journal is its upper's: diff speaks of the
	 * merged view (docs/HISTORY.md, Layered mounts) */
	lay = layered_sides(db, mnt, canon_m, ia, b, ib, side_a, side_b, sizeof(side_a), past,
			    sizeof(past));
	if (lay < 0)
		goto out;
	if (lay && (e = pfs_hq_layered(db, side_a, side_b, past)) < 0) {
		say("%s: cannot compare the merged trees: %s", mnt, strerror(-e));
		goto out;
	}
	if (sqlite3_prepare_v2(db, "SELECT t, p, o FROM out ORDER BY p, t", -1, &r, NULL) !=
		    SQLITE_OK) {
		say("%s: %s", mnt, sqlite3_errmsg(db));
		goto out;
	}
	while (sqlite3_step(r) == SQLITE_ROW) {
		const char *t = pfs_hc_col(r, 0);

		n[strchr("+-MR", t[0]) - "+-MR"]++;
		if (stat)
			continue;
		if (maps.n) {
			struct dline *nv = realloc(lines, (nl + 1) * sizeof(*lines));

			if (!nv)
				goto out;
			lines = nv;
			/* '-' and R's first path are A's; '+', 'M' and R's second B's */
			lines[nl].t = t[0];
			lines[nl].p = view_of(&maps, t[0] == '-' || t[0] == 'R' ? ma : mb,
					      pfs_hc_col(r, 1), canon_m);
			lines[nl].o = t[0] == 'R' ? view_of(&maps, mb, pfs_hc_col(r, 2), canon_m) : NULL;
			if (!lines[nl++].p)
				goto out;
			continue;
		}
		if (t[0] == 'R')
			printf("R\t%s -> %s\n", pfs_hc_col(r, 1), pfs_hc_col(r, 2));
		else
			printf("%s\t%s\n", t, pfs_hc_col(r, 1));
	}
	if (nl)
		qsort(lines, nl, sizeof(*lines), dline_cmp);
	for (size_t i = 0; i < nl; i++) {
		if (lines[i].t == 'R')
			printf("R\t%s -> %s\n", lines[i].p, lines[i].o ? lines[i].o : "");
		else
			printf("%c\t%s\n", lines[i].t, lines[i].p);
	}
	if (stat)
		printf("%lld created, %lld deleted, %lld modified, %lld renamed\n", n[0], n[1], n[2],
		       n[3]);
	ret = 0;
out:
	for (size_t i = 0; i < nl; i++) {
		free(lines[i].p);
		free(lines[i].o);
	}
	free(lines);
	pfs_hc_maps_free(&maps);
	free(canon_m);
	sqlite3_finalize(r);
	pfs_hq_close(db);
	return ret;
}

int pfs_history_query(int argc, char **argv)
{
	const char *cmd = argv[1], *pos[3] = {NULL, NULL, NULL};
	bool versions = strcmp(cmd, "versions") == 0, json = false, stat = false;
	bool restore = strcmp(cmd, "restore") == 0;
	int npos = 0, want = versions ? 2 : 3, need = 2;

	if (restore)
		return pfs_history_restore_cmd(argc, argv);

	for (int i = 2; i < argc; i++) {
		const char *a = argv[i];

		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			fputs(versions ? pfs_versions_usage : pfs_diff_usage, stdout);
			return 0;
		} else if (strcmp(a, "--json") == 0 && versions) {
			json = true;
		} else if (strcmp(a, "--stat") == 0 && !versions) {
			stat = true;
		} else if (a[0] == '-' && a[1]) {
			say("unknown option '%s' (see prismfs %s --help)", a, cmd);
			return 2;
		} else if (npos < want) {
			pos[npos++] = a;
		} else {
			say("unexpected argument '%s' (see prismfs %s --help)", a, cmd);
			return 2;
		}
	}
	if (npos < need) {
		say("missing %s (usage: prismfs %s MOUNTPOINT %s)",
		    npos ? (versions ? "PATH" : "SNAPSHOT") : "MOUNTPOINT", cmd,
		    versions ? "PATH" : "A [B]");
		return 2;
	}
	return versions ? cmd_versions(pos[0], pos[1], json) : cmd_diff(pos[0], pos[1], pos[2], stat);
}
