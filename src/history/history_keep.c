/* history_keep: automatic checkpoints and retention (history.h).
 *
 * A saved version belongs to the snapshot it was saved under (the newest
 * before the change) and is what its path held at every snapshot from the
 * one its previous version (same path, in (snap, seq) order) belongs to,
 * exclusive, up to its own: restore takes the first version saved under
 * the snapshot asked for or a later one. A version that keeps its inode
 * (a file with hard links) is also what the object held, through every
 * name, from its inode's previous version on (PV_SQL). So a version is
 * needed while a kept snapshot falls in either span; its row stays (the
 * catalogue is small, and diff reads it), its data goes when none does.
 *
 * A prune is one SQLite transaction (snapshots deleted, versions marked
 * pruned or moved under the newest kept snapshot of their span), then the
 * data files are removed after the commit. A crash before the commit
 * changes nothing; after it, the files left behind are named by no row,
 * and the next start removes them (pfs_hist_sweep). */
#include "history/history_int.h"
#include "util/util.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void pfs_history_set_policy(struct pfs_store *st, const struct pfs_hist_policy *pol)
{
	H(st)->pol = *pol;
}

int pfs_hist_sweep(struct pfs_history *h)
{
	int fd = dup(h->vdir);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	sqlite3_stmt *q = NULL;
	struct dirent *e;
	unsigned long removed = 0;

	if (!d) {
		if (fd >= 0)
			close(fd);
		return -errno;
	}
	if (sqlite3_prepare_v2(h->db, "SELECT 1 FROM versions WHERE file = ?", -1, &q, NULL) !=
	    SQLITE_OK) {
		closedir(d);
		return -EIO;
	}
	while ((e = readdir(d))) {
		const char *dash = strchr(e->d_name, '-');
		unsigned long long n;
		bool named;

		if (e->d_name[0] == '.')
			continue;
		/* the next name past every one there: a name is never reused */
		n = dash ? strtoull(dash + 1, NULL, 10) : 0;
		if (n > h->vseq)
			h->vseq = n;
		sqlite3_bind_text(q, 1, e->d_name, -1, SQLITE_STATIC);
		named = sqlite3_step(q) == SQLITE_ROW;
		sqlite3_reset(q);
		if (!named && unlinkat(h->vdir, e->d_name, 0) == 0)
			removed++;
	}
	sqlite3_finalize(q);
	closedir(d);
	if (removed)
		fprintf(stderr, "prismfs: history: removed %lu saved version%s no snapshot "
			"names (a prune or a save cut short)\n", removed, removed == 1 ? "" : "s");
	return 0;
}

struct ksnap {
	long long id, t_ns;
	char *name;
	bool pinned, automatic, keep;
};

/* Which snapshots pol keeps (s: oldest first). The newest always stays
 * (saves go under it); pinned ones always; manual ones unless manual=N
 * says how many; automatic ones by the timeline rules, all of them when
 * --keep was not given. */
static void choose(struct ksnap *s, size_t n, const struct pfs_hist_policy *pol)
{
	long long last[PFS_KEEP_N];
	int taken[PFS_KEEP_N] = {0};

	for (int k = 0; k < PFS_KEEP_N; k++)
		last[k] = -1;
	for (size_t j = n; j-- > 0;) {
		struct ksnap *x = &s[j];
		time_t t = (time_t)(x->t_ns / 1000000000ll);
		struct tm tm;
		long long b[PFS_KEEP_N];

		x->keep = x->pinned || j == n - 1;
		if (!x->automatic) {
			if (pol->keep[PFS_KEEP_MANUAL] < 0 || taken[PFS_KEEP_MANUAL]++ <
								     pol->keep[PFS_KEEP_MANUAL])
				x->keep = true;
			continue;
		}
		if (!pol->has_keep) {
			x->keep = true;
			continue;
		}
		gmtime_r(&t, &tm);
		b[PFS_KEEP_LAST] = (long long)j; /* each its own period */
		b[PFS_KEEP_HOURLY] = (long long)t / 3600;
		b[PFS_KEEP_DAILY] = (long long)t / 86400;
		b[PFS_KEEP_WEEKLY] = ((long long)t / 86400 + 3) / 7; /* weeks from Monday */
		b[PFS_KEEP_MONTHLY] = (long long)tm.tm_year * 12 + tm.tm_mon;
		for (int k = 0; k < PFS_KEEP_MANUAL; k++) {
			/* newest first: the first of a period is its newest */
			if (pol->keep[k] <= 0 || b[k] == last[k] || taken[k] >= pol->keep[k])
				continue;
			last[k] = b[k];
			taken[k]++;
			x->keep = true;
		}
	}
}

/* Who needs a version: restore and the browse by path take, for
 * snapshot S, the first version of the path saved under S or a later
 * snapshot, so it is what its path held in (prev.snap, snap] (prev: the
 * path's version before it). The browse of a file with hard links (its
 * versions keep its dev and inode) takes, for every name, the first
 * version of the inode saved since S, whichever name it was saved under:
 * so it is also what the object held in (iprev.snap, snap] (iprev: the
 * inode's version before it, in seq order as the browse reads them). A
 * name the path's rows never saw (the change went through another name,
 * or the name was another object's before) needs the second span. The
 * newest kept snapshot of either span (NULL: none needs it), into TEMP
 * pv; the row moves under it, which keeps it at or after every kept
 * snapshot it serves (both lookups ask snap >= S) and no kept snapshot
 * lies between it and its old place, so later spans stay the same. */
static const char PV_SQL[] =
	"DROP TABLE IF EXISTS temp.pv;"
	"CREATE TEMP TABLE pv AS WITH v AS (SELECT rowid AS r, snap, size, file, pruned,"
	" lag(snap, 1, 0) OVER (PARTITION BY path ORDER BY snap, seq, rowid) AS prev,"
	" CASE WHEN ino IS NULL THEN NULL ELSE lag(snap, 1, 0) OVER (PARTITION BY dev, ino"
	" ORDER BY seq, rowid) END AS iprev FROM versions),"
	" w AS (SELECT r, snap, size, file, (SELECT max(k.id) FROM temp.pkeep k WHERE"
	" k.id > v.prev AND k.id <= v.snap) AS kp, (SELECT max(k.id) FROM temp.pkeep k"
	" WHERE v.iprev IS NOT NULL AND k.id > v.iprev AND k.id <= v.snap) AS ki FROM v"
	" WHERE pruned = 0 AND file IS NOT NULL)"
	" SELECT r, snap, size, file, CASE WHEN kp IS NULL THEN ki WHEN ki IS NULL THEN kp"
	" ELSE max(kp, ki) END AS ks FROM w;";

static int fill_keep(sqlite3 *db, const struct ksnap *s, size_t n)
{
	sqlite3_stmt *q = NULL;
	int rc = sqlite3_exec(db, "CREATE TEMP TABLE IF NOT EXISTS pkeep(id INTEGER PRIMARY KEY);"
			      "DELETE FROM temp.pkeep;", NULL, NULL, NULL);

	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(db, "INSERT INTO temp.pkeep VALUES(?)", -1, &q, NULL);
	for (size_t i = 0; rc == SQLITE_OK && i < n; i++) {
		if (!s[i].keep)
			continue;
		sqlite3_bind_int64(q, 1, s[i].id);
		rc = sqlite3_step(q) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
		sqlite3_reset(q);
	}
	sqlite3_finalize(q);
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(db, PV_SQL, NULL, NULL, NULL);
	return rc;
}

static long long one_int(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *q = NULL;
	long long v = -1;

	if (sqlite3_prepare_v2(db, sql, -1, &q, NULL) == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW)
		v = sqlite3_column_int64(q, 0);
	sqlite3_finalize(q);
	return v;
}

static int load(sqlite3 *db, struct ksnap **out, size_t *n)
{
	sqlite3_stmt *q = NULL;
	struct ksnap *s = NULL;
	size_t c = 0;

	*n = 0;
	if (sqlite3_prepare_v2(db, "SELECT id, t_ns, name, pinned, kind = 'auto' FROM snapshots"
			       " ORDER BY id", -1, &q, NULL) != SQLITE_OK)
		return -EIO;
	while (sqlite3_step(q) == SQLITE_ROW) {
		if (*n == c) {
			void *p = realloc(s, (c = c ? c * 2 : 64) * sizeof(*s));

			if (!p)
				break;
			s = p;
		}
		s[*n].id = sqlite3_column_int64(q, 0);
		s[*n].t_ns = sqlite3_column_int64(q, 1);
		s[*n].name = strdup((const char *)sqlite3_column_text(q, 2));
		s[*n].pinned = sqlite3_column_int(q, 3);
		s[*n].automatic = sqlite3_column_int(q, 4);
		s[*n].keep = true;
		(*n)++;
	}
	sqlite3_finalize(q);
	*out = s;
	return 0;
}

/* Under h->lock, in a transaction: decide, and write the catalogue's part.
 * The data files to remove go to *files (NULL-terminated). */
static int plan(struct pfs_history *h, const struct pfs_hist_policy *pol, json_t *rep,
		char ***files)
{
	struct ksnap *s = NULL;
	size_t n = 0, nf = 0;
	json_t *gone = json_array();
	long long need = 0, freed = 0;
	bool over = false;
	sqlite3_stmt *q = NULL;
	int r = load(h->db, &s, &n);

	*files = NULL;
	if (r < 0 || !gone)
		goto out;
	choose(s, n, pol);
	r = -EIO;
	for (;;) {
		if (fill_keep(h->db, s, n) != SQLITE_OK)
			goto out;
		need = one_int(h->db, "SELECT coalesce(sum(size), 0) FROM temp.pv WHERE ks IS NOT"
			       " NULL");
		if (!pol->max_bytes || (unsigned long long)need <= pol->max_bytes)
			break;
		/* over --history-max: the oldest kept one that may go */
		size_t j;

		for (j = 0; j + 1 < n && (!s[j].keep || s[j].pinned); j++)
			;
		if (j + 1 >= n) {
			over = true;
			break;
		}
		s[j].keep = false;
	}
	for (size_t i = 0; i < n; i++)
		if (!s[i].keep)
			json_array_append_new(gone, json_pack("{s:I, s:s, s:s}", "id",
							      (json_int_t)s[i].id, "name", s[i].name,
							      "kind", s[i].automatic ? "auto" : "manual"));
	if (sqlite3_prepare_v2(h->db, "SELECT file, size FROM temp.pv WHERE ks IS NULL", -1, &q,
			       NULL) != SQLITE_OK)
		goto out;
	*files = calloc(1, sizeof(char *));
	while (*files && sqlite3_step(q) == SQLITE_ROW) {
		char **p = realloc(*files, (nf + 2) * sizeof(char *));

		if (!p)
			break;
		*files = p;
		p[nf++] = strdup((const char *)sqlite3_column_text(q, 0));
		p[nf] = NULL;
		freed += sqlite3_column_int64(q, 1);
	}
	sqlite3_finalize(q);
	if (!*files)
		goto out;
	if (sqlite3_exec(h->db,
			 "UPDATE versions SET pruned = 1, file = NULL WHERE rowid IN"
			 " (SELECT r FROM temp.pv WHERE ks IS NULL);"
			 "UPDATE versions SET snap = (SELECT ks FROM temp.pv WHERE r = versions.rowid)"
			 " WHERE rowid IN (SELECT r FROM temp.pv WHERE ks IS NOT NULL AND ks != snap);"
			 "DELETE FROM snapshots WHERE id NOT IN (SELECT id FROM temp.pkeep);",
			 NULL, NULL, NULL) != SQLITE_OK)
		goto out;
	json_object_set_new(rep, "pruned", gone);
	gone = NULL;
	json_object_set_new(rep, "versions_removed", json_integer((json_int_t)nf));
	json_object_set_new(rep, "bytes_freed", json_integer(freed));
	json_object_set_new(rep, "history_bytes", json_integer(need));
	json_object_set_new(rep, "history_max", json_integer((json_int_t)pol->max_bytes));
	json_object_set_new(rep, "over_max", json_boolean(over));
	r = 0;
out:
	json_decref(gone);
	for (size_t i = 0; i < n; i++)
		free(s[i].name);
	free(s);
	return r;
}

int pfs_history_prune(struct pfs_store *st, const struct pfs_hist_policy *pol, bool dry,
		      char **json)
{
	struct pfs_history *h = H(st);
	json_t *rep = json_object();
	char **files = NULL;
	int r;

	*json = NULL;
	if (!rep)
		return -ENOMEM;
	if (!pol)
		pol = &h->pol;
	json_object_set_new(rep, "dry_run", json_boolean(dry));
	pthread_mutex_lock(&h->lock);
	pfs_hist_db_unhold(h); /* a pending statement forbids the DROP TABLE of plan */
	if (!h->db || sqlite3_exec(h->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
		pthread_mutex_unlock(&h->lock);
		json_decref(rep);
		return -EIO;
	}
	r = plan(h, pol, rep, &files);
	if (r == 0 && !dry) {
		pfs_crashpoint("prune-before-commit");
		if (sqlite3_exec(h->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
			r = -EIO;
	}
	if (r < 0 || dry)
		sqlite3_exec(h->db, "ROLLBACK", NULL, NULL, NULL);
	pthread_mutex_unlock(&h->lock);
	if (r == 0 && !dry)
		pfs_hist_snaps_changed(h);
	/* After the commit: no row names these now; a crash leaves them to
	 * the next start's sweep. */
	for (size_t i = 0; files && files[i]; i++) {
		if (r == 0 && !dry) {
			pfs_crashpoint("prune-committed");
			if (unlinkat(h->vdir, files[i], 0) < 0 && errno != ENOENT)
				fprintf(stderr, "prismfs: history: cannot remove versions/%s: %s\n",
					files[i], strerror(errno));
		}
		free(files[i]);
	}
	free(files);
	if (r == 0)
		*json = json_dumps(rep, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(rep);
	return r == 0 && !*json ? -ENOMEM : r;
}

/* Something changed since the newest snapshot (or none was taken)? A
 * change that failed changed nothing; one in flight may have. */
static bool changed_since(struct pfs_history *h)
{
	bool ch;

	pfs_history_flush(&h->base); /* the outcomes so far */
	pthread_mutex_lock(&h->lock);
	ch = h->db && one_int(h->db, "SELECT EXISTS(SELECT 1 FROM changes WHERE seq >"
			      " coalesce((SELECT seq FROM snapshots ORDER BY id DESC LIMIT 1), 0)"
			      " AND state >= 0)") == 1;
	pthread_mutex_unlock(&h->lock);
	return ch;
}

static void *checkpoint_thread(void *arg)
{
	struct pfs_history *h = arg;
	struct timespec due;

	clock_gettime(CLOCK_MONOTONIC, &due);
	pthread_mutex_lock(&h->cp_mu);
	while (!h->cp_stop) {
		char err[256], *rep = NULL;

		due.tv_sec += (time_t)(h->pol.every_ns / 1000000000ll);
		due.tv_nsec += (long)(h->pol.every_ns % 1000000000ll);
		if (due.tv_nsec >= 1000000000l) {
			due.tv_sec++;
			due.tv_nsec -= 1000000000l;
		}
		while (!h->cp_stop && pthread_cond_timedwait(&h->cp_cv, &h->cp_mu, &due) == 0)
			;
		if (h->cp_stop)
			break;
		pthread_mutex_unlock(&h->cp_mu);
		if (changed_since(h)) {
			if (pfs_history_snapshot_kind(&h->base, NULL, false, true, err,
						      sizeof(err)) < 0)
				fprintf(stderr, "prismfs: history: checkpoint: %s\n", err);
			else if ((h->pol.has_keep || h->pol.max_bytes) &&
				 pfs_history_prune(&h->base, NULL, false, &rep) < 0)
				fprintf(stderr, "prismfs: history: cannot prune after a "
					"checkpoint\n");
			else if (rep && strstr(rep, "\"over_max\":true"))
				fprintf(stderr, "prismfs: history: the pinned snapshots and the "
					"newest alone are over --history-max\n");
			free(rep);
		}
		/* counted once its work is done: status shows a whole check */
		__atomic_add_fetch(&h->cp_checks, 1, __ATOMIC_SEQ_CST);
		pthread_mutex_lock(&h->cp_mu);
	}
	pthread_mutex_unlock(&h->cp_mu);
	return NULL;
}

unsigned long long pfs_history_checks(const struct pfs_store *st)
{
	return __atomic_load_n(&H(st)->cp_checks, __ATOMIC_SEQ_CST);
}

int pfs_hist_keep_start(struct pfs_history *h)
{
	pthread_condattr_t a;
	int r;

	if (!h->pol.every_ns)
		return 0;
	pthread_condattr_init(&a);
	pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	pthread_cond_destroy(&h->cp_cv);
	pthread_cond_init(&h->cp_cv, &a);
	pthread_condattr_destroy(&a);
	r = pthread_create(&h->cp_thread, NULL, checkpoint_thread, h);
	if (r)
		return -r;
	h->cp_running = true;
	return 0;
}

void pfs_hist_keep_stop(struct pfs_history *h)
{
	if (!h->cp_running)
		return;
	pthread_mutex_lock(&h->cp_mu);
	h->cp_stop = true;
	pthread_cond_signal(&h->cp_cv);
	pthread_mutex_unlock(&h->cp_mu);
	pthread_join(h->cp_thread, NULL);
	h->cp_running = false;
}
