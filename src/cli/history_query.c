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

static int cmd_versions(const char *mnt, const char *path, bool json)
{
	char rel[PATH_MAX] = "", *canon_m = canonical_noleaf(mnt), tbuf[64], mbuf[64];
	sqlite3 *db = canon_m ? pfs_hc_open_db(mnt) : NULL;
	sqlite3_stmt *q = NULL;
	json_t *arr = json_array();
	int ret = 1;

	if (!db || !arr)
		goto out;
	pfs_hc_relpath(canon_m, path, rel, sizeof(rel));
	if (sqlite3_prepare_v2(db,
			       "SELECT s.id, s.name, s.t_ns, v.size, v.mtime_ns, v.mode, v.seq, v.file"
			       " FROM versions v JOIN snapshots s ON v.snap = s.id WHERE v.path = ? AND v.pruned = 0"
			       " ORDER BY v.seq, v.rowid",
			       -1, &q, NULL) != SQLITE_OK) {
		say("%s: %s", mnt, sqlite3_errmsg(db));
		goto out;
	}
	sqlite3_bind_text(q, 1, rel, -1, SQLITE_STATIC);
	while (sqlite3_step(q) == SQLITE_ROW) {
		pfs_hc_fmt_ns(sqlite3_column_int64(q, 2), tbuf, sizeof(tbuf));
		pfs_hc_fmt_ns(sqlite3_column_int64(q, 4), mbuf, sizeof(mbuf));
		if (json) {
			json_t *o = json_pack("{s:I, s:s, s:s, s:I, s:s, s:I, s:I}",
					      "snapshot_id", (json_int_t)sqlite3_column_int64(q, 0),
					      "snapshot", pfs_hc_col(q, 1), "time", tbuf,
					      "size", (json_int_t)sqlite3_column_int64(q, 3),
					      "mtime", mbuf,
					      "mode", (json_int_t)sqlite3_column_int64(q, 5),
					      "seq", (json_int_t)sqlite3_column_int64(q, 6));

			if (o)
				json_array_append_new(arr, o);
		} else {
			printf("%s %s size=%lld mtime=%s\n", pfs_hc_col(q, 1), tbuf,
			       sqlite3_column_int64(q, 3), mbuf);
		}
	}
	if (json)
		pfs_hc_put_json(arr);
	ret = 0;
out:
	sqlite3_finalize(q);
	sqlite3_close(db);
	json_decref(arr);
	free(canon_m);
	return ret;
}

/* The journal position of snapshot name (a name, or an id), and its id. */
static int cmd_diff(const char *mnt, const char *a, const char *b, bool stat)
{
	sqlite3 *db = pfs_hc_open_db(mnt);
	sqlite3_stmt *r = NULL;
	long long sa, sb = -1, ia, ib = 0, n[4] = {0, 0, 0, 0};
	int ret = 1;

	if (!db)
		return 1;
	if (pfs_hq_snap(db, a, &sa, &ia) < 0 || (b && pfs_hq_snap(db, b, &sb, &ib) < 0)) {
		say("%s: no snapshot %s", mnt, pfs_hq_snap(db, a, &sa, &ia) < 0 ? a : b);
		goto out;
	}
	if (b && ib < ia) {
		say("%s: snapshot %s was taken before %s (the older one first)", mnt, b, a);
		goto out;
	}
	if (pfs_hq_replay(db, sa, sb) < 0) {
		say("%s: %s", mnt, sqlite3_errmsg(db));
		goto out;
	}
	if (pfs_hq_report(db) < 0 ||
	    sqlite3_prepare_v2(db, "SELECT t, p, o FROM out ORDER BY p, t", -1, &r, NULL) !=
		    SQLITE_OK) {
		say("%s: %s", mnt, sqlite3_errmsg(db));
		goto out;
	}
	while (sqlite3_step(r) == SQLITE_ROW) {
		const char *t = pfs_hc_col(r, 0);

		n[strchr("+-MR", t[0]) - "+-MR"]++;
		if (stat)
			continue;
		if (t[0] == 'R')
			printf("R\t%s -> %s\n", pfs_hc_col(r, 1), pfs_hc_col(r, 2));
		else
			printf("%s\t%s\n", t, pfs_hc_col(r, 1));
	}
	if (stat)
		printf("%lld created, %lld deleted, %lld modified, %lld renamed\n", n[0], n[1], n[2],
		       n[3]);
	ret = 0;
out:
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
