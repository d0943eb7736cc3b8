/* history_cmd: the history's commands, and its part of the daemon.
 *
 * prismfs log and prismfs snapshots read DIR/history.db themselves
 * (read-only; SQLite's WAL lets them read while the daemon writes): a long
 * log streams from the database without holding the daemon's journal lock
 * or its control thread, which answers one client at a time. They ask the
 * daemon only where DIR is. prismfs snapshot asks the daemon, which must
 * know at once that versions are to be saved from now on. */
#include "cli/cache_mount.h"
#include "cli/cmdutil.h"
#include "cli/history_cmd.h"
#include "cli/history_cmd_int.h"
#include "ctl/ctl.h"
#include "history/history.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

bool pfs_history_cmd_is(const char *w)
{
	return pfs_history_query_is(w) || strcmp(w, "log") == 0 || strcmp(w, "snapshot") == 0 ||
	       strcmp(w, "snapshots") == 0 || strcmp(w, "prune") == 0 ||
	       strcmp(w, "export") == 0;
}

int pfs_history_mount_open(const struct pfs_config *cfg, struct pfs_fs *fs)
{
	struct pfs_store *st;
	char err[PATH_MAX + 256], *dir, *root;
	size_t n = strlen(fs->mountpoint);

	if (!cfg->history)
		return 0;
	dir = canonical_noleaf(cfg->history);
	if (dir && strncmp(dir, fs->mountpoint, n) == 0 && (dir[n] == '/' || dir[n] == '\0')) {
		say("history %s cannot be inside the mount point", cfg->history);
		free(dir);
		return -1;
	}
	/* nor in a layer that never changes, nor in the work directory */
	for (size_t i = 0; dir && cfg->upper && i <= cfg->nlowers + 1; i++) {
		const char *l = i == 0 ? fs->source : i == 1 ? cfg->work : cfg->lowers[i - 2];
		char *c = l ? realpath(l, NULL) : NULL;
		size_t cl = c ? strlen(c) : 0;

		if (c && strncmp(dir, c, cl) == 0 && (dir[cl] == '/' || dir[cl] == '\0')) {
			say("history %s cannot be inside the %s %s", cfg->history,
			    i == 1 ? "work directory" : "lower layer", l);
			free(c);
			free(dir);
			return -1;
		}
		free(c);
	}
	free(dir);
	/* A layered mount's changes all land in the upper: its journal is the
	 * upper's, the lowers never change (docs/HISTORY.md, Layered mounts). */
	root = cfg->upper ? realpath(cfg->upper, NULL) : NULL;
	if (cfg->upper && !root) {
		say("upper directory %s: %s", cfg->upper, strerror(errno));
		return -1;
	}
	/* Over the memory cache (history over cache: the journal records the
	 * view's changes, the mirror gets them by write-back), the tree is
	 * the cache's memory filesystem, which no path reaches. */
	if (pfs_history_new(&st, fs->store, root ? root : fs->source,
			    fs->cache ? fs->root_fd : -1, cfg->history, err, sizeof(err)) < 0) {
		say("%s", err);
		free(root);
		return -1;
	}
	free(root);
	if (cfg->upper)
		pfs_history_temps_outside(st);
	fs->store = st; /* it owns the store it wraps now */
	fs->past = pfs_history_past(st);
	fs->past_name = cfg->history_dir_name ? cfg->history_dir_name : ".history";
	pfs_view_past_watch(fs);
	/* The .history tree's nodes hold an fd on a removed empty directory,
	 * as the mapping table's synthetic directories do (map/mapwatch.c). */
	if (fs->empty_fd < 0) {
		char tmpl[] = "/tmp/.prismfs-empty-XXXXXX";

		if (!mkdtemp(tmpl) ||
		    (fs->empty_fd = open(tmpl, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0) {
			say("history: cannot make an empty directory: %s", strerror(errno));
			rmdir(tmpl);
			return -1;
		}
		rmdir(tmpl);
	}
	{
		struct pfs_hist_policy pol;

		/* checked when parsed */
		pfs_hist_policy_init(&pol);
		if (cfg->checkpoint_every)
			pfs_hist_parse_duration(cfg->checkpoint_every, &pol.every_ns);
		if (cfg->keep)
			pfs_hist_parse_keep(cfg->keep, &pol, err, sizeof(err));
		if (cfg->history_max)
			pfs_hist_parse_size(cfg->history_max, &pol.max_bytes);
		pfs_history_set_policy(st, &pol);
	}
	return 0;
}

int pfs_stores_start(struct pfs_fs *fs)
{
	int r = 0;

	/* The cache first: its journal's replay and its tree's place come
	 * before the history settles its rows by that tree. */
	if (fs->cache)
		r = pfs_cache_start(fs->cache);
	if (r == 0 && pfs_history_is(fs->store)) {
		r = pfs_history_start(fs->store);
		/* The history keeps the table each snapshot is browsed through
		 * (or that there is none now, after one). */
		if (r == 0)
			pfs_view_past_table(fs);
	}
	return r;
}

/* Send req to the daemon of mnt; its one-line answer in buf. 0 or -1
 * after saying why. */
int pfs_hc_ask(const char *mnt, const char *req, char *buf, size_t len)
{
	char *canon = canonical_noleaf(mnt);
	const char *why = "does not exist";
	int fd = canon ? pfs_ctl_connect(canon, &why) : -1;
	size_t used = 0;
	ssize_t n;

	free(canon);
	if (fd < 0) {
		say("%s: %s", mnt, fd == -ENOTCONN ? "its daemon is gone" : why);
		return -1;
	}
	if (send(fd, req, strlen(req), MSG_NOSIGNAL) != (ssize_t)strlen(req)) {
		say("%s: cannot ask the daemon", mnt);
		close(fd);
		return -1;
	}
	while (used < len - 1 && (n = recv(fd, buf + used, len - 1 - used, 0)) > 0)
		used += (size_t)n;
	close(fd);
	buf[used] = '\0';
	if (!strchr(buf, '\n')) { /* every answer is a line: the daemon ended first */
		say("%s: the daemon ended without an answer (it may have died)", mnt);
		return -1;
	}
	buf[strcspn(buf, "\n")] = '\0';
	if (strncmp(buf, "error ", 6) == 0) {
		say("%s: %s", mnt, buf + 6);
		return -1;
	}
	return 0;
}

/* The history database of the mount mnt, opened read-only. */
sqlite3 *pfs_hc_open_db(const char *mnt)
{
	char line[PATH_MAX + 64], path[PATH_MAX + 128];
	sqlite3 *db = NULL;

	if (pfs_hc_ask(mnt, "history\n", line, sizeof(line)) < 0)
		return NULL;
	if (strncmp(line, "dir ", 4) != 0) {
		say("%s: the daemon did not say where its history is", mnt);
		return NULL;
	}
	snprintf(path, sizeof(path), "%s/history.db", line + 4);
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
		say("%s: %s", path, db ? sqlite3_errmsg(db) : "cannot open");
		sqlite3_close(db);
		return NULL;
	}
	sqlite3_busy_timeout(db, 10000);
	return db;
}

void pfs_hc_fmt_ns(long long ns, char *buf, size_t len)
{
	time_t s = (time_t)(ns / 1000000000ll);
	struct tm tm;

	gmtime_r(&s, &tm);
	snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%06lldZ", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		 (ns % 1000000000ll) / 1000);
}

void pfs_hc_put_json(const json_t *arr)
{
	char *s = json_dumps(arr, JSON_INDENT(2) | JSON_PRESERVE_ORDER);

	if (s)
		puts(s);
	free(s);
}

const char *pfs_hc_col(sqlite3_stmt *q, int i)
{
	const unsigned char *t = sqlite3_column_text(q, i);

	return t ? (const char *)t : "";
}

/* --since T as a condition on (t_ns, seq): "t_ns > X" or "seq > X". */
static int since_of(sqlite3 *db, const char *t, long long *t_ns, long long *seq)
{
	struct tm tm = {0};
	char *end;
	double d = strtod(t, &end);
	sqlite3_stmt *q;

	if (*t && !*end) {
		*t_ns = (long long)(d * 1e9);
		return 0;
	}
	end = strptime(t, "%Y-%m-%dT%H:%M:%S", &tm);
	if (end && (!*end || strcmp(end, "Z") == 0)) {
		*t_ns = (long long)timegm(&tm) * 1000000000ll;
		return 0;
	}
	if (sqlite3_prepare_v2(db, "SELECT seq FROM snapshots WHERE name=?", -1, &q, NULL) !=
	    SQLITE_OK)
		return -1;
	sqlite3_bind_text(q, 1, t, -1, SQLITE_STATIC);
	if (sqlite3_step(q) == SQLITE_ROW) {
		*seq = sqlite3_column_int64(q, 0);
		sqlite3_finalize(q);
		return 0;
	}
	sqlite3_finalize(q);
	return -1;
}

static const char *state_of(long long s, char *buf, size_t len)
{
	if (s == 1)
		return "done";
	if (s == 0)
		return "unknown";
	if (s == 2)
		return "interrupted";
	snprintf(buf, len, "failed: %s", strerror((int)-s));
	return buf;
}

/* PATH as the journal names it: relative to the mount's root (canon_m). */
void pfs_hc_relpath(const char *canon_m, const char *path, char *rel, size_t len)
{
	char *p = path[0] == '/' ? canonical_noleaf(path) : NULL;
	size_t n = strlen(canon_m);
	const char *r = path;

	if (p && strncmp(p, canon_m, n) == 0 && (p[n] == '/' || p[n] == '\0'))
		r = p + n;
	else if (p)
		r = p; /* outside the mount: matches nothing, as asked */
	while (*r == '/' && r != p)
		r++;
	snprintf(rel, len, "%s", r);
	rel[strcspn(rel, "\0")] = '\0';
	while (*rel && rel[strlen(rel) - 1] == '/')
		rel[strlen(rel) - 1] = '\0';
	free(p);
}

void pfs_hc_maps_free(struct pfs_hc_maps *t)
{
	for (size_t i = 0; i < t->n; i++)
		pfs_map_unref(t->m[i]);
	free(t->m);
	free(t->seq);
	free(t->source);
	memset(t, 0, sizeof(*t));
}

int pfs_hc_maps_load(sqlite3 *db, const char *canon_m, struct pfs_hc_maps *t)
{
	sqlite3_stmt *q = NULL;
	char err[PFS_MAP_ERRLEN];
	int ret = 0;

	memset(t, 0, sizeof(*t));
	t->mnt = canon_m;
	/* an older DIR has no maps table: no table ever */
	if (sqlite3_prepare_v2(db, "SELECT seq, json FROM maps ORDER BY seq", -1, &q, NULL) !=
	    SQLITE_OK)
		return 0;
	while (ret == 0 && sqlite3_step(q) == SQLITE_ROW) {
		const char *j = pfs_hc_col(q, 1);
		struct pfs_map *m = NULL;
		void *a = realloc(t->m, (t->n + 1) * sizeof(*t->m)),
		     *b = a ? realloc(t->seq, (t->n + 1) * sizeof(*t->seq)) : NULL;

		if (a)
			t->m = a;
		if (b)
			t->seq = b;
		if (!a || !b || (*j && pfs_map_parse(j, strlen(j), &m, err) < 0)) {
			ret = -1;
			break;
		}
		t->m[t->n] = m;
		t->seq[t->n++] = sqlite3_column_int64(q, 0);
	}
	sqlite3_finalize(q);
	if (ret == 0 && t->n &&
	    sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = 'source'", -1, &q, NULL) ==
		    SQLITE_OK) {
		if (sqlite3_step(q) == SQLITE_ROW)
			t->source = strdup(pfs_hc_col(q, 0));
		sqlite3_finalize(q);
	}
	if (ret < 0)
		pfs_hc_maps_free(t);
	return ret;
}

bool pfs_hc_mapped(sqlite3 *db)
{
	sqlite3_stmt *q = NULL;
	bool mapped = false;

	if (sqlite3_prepare_v2(db, "SELECT EXISTS(SELECT 1 FROM maps WHERE json != '')", -1, &q,
			       NULL) == SQLITE_OK &&
	    sqlite3_step(q) == SQLITE_ROW)
		mapped = sqlite3_column_int(q, 0) != 0;
	sqlite3_finalize(q);
	return mapped;
}

const struct pfs_map *pfs_hc_map_at(const struct pfs_hc_maps *t, long long seq)
{
	const struct pfs_map *m = NULL;

	for (size_t i = 0; i < t->n && t->seq[i] <= seq; i++)
		m = t->m[i];
	return m;
}

/* A journal path (relative to SOURCE, or absolute outside it) as the view
 * showed it at seq, relative to the mount ("" its root). */
static const char *view_rel(const struct pfs_hc_maps *t, long long seq, const char *p, char *buf,
			    size_t len)
{
	if (!t->n || !p)
		return p;
	if (pfs_map_to_view(pfs_hc_map_at(t, seq), p, t->source, t->mnt, buf, len) == 1)
		return buf + (buf[0] == '/');
	return p;
}

/* Is p (relative) rel or beneath it ("" everything)? */
static bool at_or_under(const char *p, const char *rel)
{
	size_t n = strlen(rel);

	return !*rel || (strncmp(p, rel, n) == 0 && (p[n] == '\0' || p[n] == '/'));
}

static int cmd_log(const char *mnt, const char *path, const char *since, bool json)
{
	char rel[PATH_MAX] = "", *canon_m = canonical_noleaf(mnt), tbuf[64], sbuf[128];
	char v1[PATH_MAX + 2], v2[PATH_MAX + 2];
	struct pfs_hc_maps maps = {0};
	long long t_ns = -1, seq = -1;
	sqlite3 *db = pfs_hc_open_db(mnt);
	sqlite3_stmt *q = NULL;
	json_t *arr = json_array();
	char lbuf[64];
	bool layered;
	int ret = 1;

	if (!db || !canon_m || !arr)
		goto out;
	layered = !json && pfs_hc_ask(mnt, "layered\n", lbuf, sizeof(lbuf)) == 0 &&
		  strcmp(lbuf, "yes") == 0;
	if (path)
		pfs_hc_relpath(canon_m, path, rel, sizeof(rel));
	if (pfs_hc_maps_load(db, canon_m, &maps) < 0) {
		say("%s: cannot read the mapping tables of the history", mnt);
		goto out;
	}
	if (since && since_of(db, since, &t_ns, &seq) < 0) {
		say("--since %s: neither a time (seconds, or YYYY-MM-DDTHH:MM:SS UTC) nor a "
		    "snapshot of %s", since, mnt);
		goto out;
	}
	if (sqlite3_prepare_v2(db,
			       "SELECT seq, t_ns, uid, gid, pid, comm, kind, path, path2, arg, state"
			       " FROM changes WHERE t_ns > ?1 AND seq > ?2 AND (?3 = '' OR ?4 OR path = ?3"
			       " OR substr(path, 1, length(?3) + 1) = ?3 || '/' OR path2 = ?3"
			       " OR substr(path2, 1, length(?3) + 1) = ?3 || '/') ORDER BY seq",
			       -1, &q, NULL) != SQLITE_OK) {
		say("%s: %s", mnt, sqlite3_errmsg(db));
		goto out;
	}
	sqlite3_bind_int64(q, 1, t_ns);
	sqlite3_bind_int64(q, 2, seq);
	sqlite3_bind_text(q, 3, rel, -1, SQLITE_STATIC);
	sqlite3_bind_int(q, 4, maps.n > 0); /* view paths: matched below */
	while (sqlite3_step(q) == SQLITE_ROW) {
		long long st = sqlite3_column_int64(q, 10), sq = sqlite3_column_int64(q, 0);
		bool two = sqlite3_column_type(q, 8) != SQLITE_NULL;
		const char *p1 = view_rel(&maps, sq, pfs_hc_col(q, 7), v1, sizeof(v1));
		const char *p2 = two ? view_rel(&maps, sq, pfs_hc_col(q, 8), v2, sizeof(v2)) : NULL;

		if (maps.n && *rel && !at_or_under(p1, rel) && !(p2 && at_or_under(p2, rel)))
			continue;

		pfs_hc_fmt_ns(sqlite3_column_int64(q, 1), tbuf, sizeof(tbuf));
		if (json) {
			json_t *o = json_pack("{s:I, s:s, s:I, s:I, s:I, s:I, s:s, s:s, s:s, s:o,"
					      " s:I, s:s}",
					      "seq", (json_int_t)sqlite3_column_int64(q, 0),
					      "time", tbuf,
					      "t_ns", (json_int_t)sqlite3_column_int64(q, 1),
					      "uid", (json_int_t)sqlite3_column_int64(q, 2),
					      "gid", (json_int_t)sqlite3_column_int64(q, 3),
					      "pid", (json_int_t)sqlite3_column_int64(q, 4),
					      "comm", pfs_hc_col(q, 5), "kind", pfs_hc_col(q, 6), "path", p1,
					      "path2", two ? json_string(p2) : json_null(),
					      "arg", (json_int_t)sqlite3_column_int64(q, 9),
					      "state", state_of(st, sbuf, sizeof(sbuf)));

			if (o && maps.n) { /* the paths the history knows them by */
				json_object_set_new(o, "source_path", json_string(pfs_hc_col(q, 7)));
				json_object_set_new(o, "source_path2", two ? json_string(pfs_hc_col(q, 8))
									  : json_null());
			}
			if (o)
				json_array_append_new(arr, o);
		} else {
			const char *kind = pfs_hc_col(q, 6);

			/* a layered mount's rename in from its work directory
			 * (docs/HISTORY.md, Layered mounts): the temporary's
			 * path says nothing to the user; RENAME_NOREPLACE is
			 * the copy-up's, the others put a new object or a
			 * whiteout in the name's place */
			if (layered && two && p1[0] == '/' && strcmp(kind, "rename") == 0) {
				kind = (sqlite3_column_int64(q, 9) & 1) ? "copy-up" : "replace";
				p1 = p2;
				two = false;
			}
			printf("%s %-11s %s%s%s uid=%lld pid=%lld comm=%s%s%s\n", tbuf, kind,
			       p1, two ? " -> " : "", two ? p2 : "",
			       sqlite3_column_int64(q, 2), sqlite3_column_int64(q, 4), pfs_hc_col(q, 5),
			       st == 1 ? "" : " ", st == 1 ? "" : state_of(st, sbuf, sizeof(sbuf)));
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
	free(canon_m);
	return ret;
}

static int cmd_snapshots(const char *mnt, bool json)
{
	sqlite3 *db = pfs_hc_open_db(mnt);
	sqlite3_stmt *q = NULL;
	json_t *arr = json_array();
	char tbuf[64];
	int ret = 1;

	if (!db || !arr)
		goto out;
	if (sqlite3_prepare_v2(db,
			       "SELECT id, name, t_ns, seq, pinned, (SELECT count(*) FROM versions"
			       " v WHERE v.snap = s.id AND v.pruned = 0), kind FROM snapshots s"
			       " ORDER BY id",
			       -1, &q, NULL) != SQLITE_OK) {
		say("%s: %s", mnt, sqlite3_errmsg(db));
		goto out;
	}
	while (sqlite3_step(q) == SQLITE_ROW) {
		pfs_hc_fmt_ns(sqlite3_column_int64(q, 2), tbuf, sizeof(tbuf));
		if (json) {
			json_t *o = json_pack("{s:I, s:s, s:s, s:s, s:I, s:b, s:I}",
					      "id", (json_int_t)sqlite3_column_int64(q, 0),
					      "name", pfs_hc_col(q, 1), "kind", pfs_hc_col(q, 6),
					      "time", tbuf,
					      "seq", (json_int_t)sqlite3_column_int64(q, 3),
					      "pinned", sqlite3_column_int(q, 4),
					      "versions", (json_int_t)sqlite3_column_int64(q, 5));

			if (o)
				json_array_append_new(arr, o);
		} else {
			printf("%lld %s %s %s seq=%lld%s versions=%lld\n",
			       sqlite3_column_int64(q, 0), pfs_hc_col(q, 1), pfs_hc_col(q, 6), tbuf,
			       sqlite3_column_int64(q, 3),
			       sqlite3_column_int(q, 4) ? " pinned" : "",
			       sqlite3_column_int64(q, 5));
		}
	}
	if (json)
		pfs_hc_put_json(arr);
	ret = 0;
out:
	sqlite3_finalize(q);
	sqlite3_close(db);
	json_decref(arr);
	return ret;
}

static int cmd_snapshot(const char *mnt, const char *name, bool pin)
{
	char req[400], line[300];

	if (name && (strlen(name) > 255 || strchr(name, '\n') || !*name)) {
		say("--name: 1 to 255 characters, no newline");
		return 2;
	}
	snprintf(req, sizeof(req), "snapshot %d %s\n", pin, name ? name : "");
	if (pfs_hc_ask(mnt, req, line, sizeof(line)) < 0)
		return 1;
	printf("%s\n", strncmp(line, "ok ", 3) == 0 ? line + 3 : line);
	return 0;
}

int pfs_history_cmd(int argc, char **argv)
{
	if (pfs_history_query_is(argv[1]))
		return pfs_history_query(argc, argv);
	if (strcmp(argv[1], "prune") == 0)
		return pfs_history_prune_cmd(argc, argv);
	if (strcmp(argv[1], "export") == 0)
		return pfs_history_export_cmd(argc, argv);
	const char *cmd = argv[1], *pos[2] = {NULL, NULL}, *since = NULL, *name = NULL;
	const char *usage = strcmp(cmd, "log") == 0 ? pfs_log_usage : pfs_snapshot_usage;
	bool json = false, pin = false, log = strcmp(cmd, "log") == 0;
	bool snap = strcmp(cmd, "snapshot") == 0;
	int npos = 0;

	for (int i = 2; i < argc; i++) {
		const char *a = argv[i];

		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			fputs(usage, stdout);
			return 0;
		} else if (strcmp(a, "--json") == 0 && !snap) {
			json = true;
		} else if (strcmp(a, "--pin") == 0 && snap) {
			pin = true;
		} else if ((strcmp(a, "--since") == 0 && log) || (strcmp(a, "--name") == 0 && snap)) {
			if (i + 1 >= argc) {
				say("%s needs a value (see prismfs %s --help)", a, cmd);
				return 2;
			}
			*(log ? &since : &name) = argv[++i];
		} else if (a[0] == '-' && a[1]) {
			say("unknown option '%s' (see prismfs %s --help)", a, cmd);
			return 2;
		} else if (npos < (log ? 2 : 1)) {
			pos[npos++] = a;
		} else {
			say("unexpected argument '%s' (see prismfs %s --help)", a, cmd);
			return 2;
		}
	}
	if (!npos) {
		say("missing MOUNTPOINT (usage: prismfs %s MOUNTPOINT ...)", cmd);
		return 2;
	}
	if (log)
		return cmd_log(pos[0], pos[1], since, json);
	return snap ? cmd_snapshot(pos[0], name, pin) : cmd_snapshots(pos[0], json);
}
