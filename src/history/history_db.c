/* history_db: the journal's database, DIR/history.db (see history.h). */
#include "history/history_int.h"
#include "store/caller.h"
#include "util/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char SCHEMA[] =
	"CREATE TABLE IF NOT EXISTS changes(seq INTEGER PRIMARY KEY, t_ns INTEGER NOT NULL,"
	" uid INTEGER, gid INTEGER, pid INTEGER, comm TEXT, kind TEXT NOT NULL,"
	" path TEXT NOT NULL, path2 TEXT, arg INTEGER, state INTEGER NOT NULL);"
	"CREATE TABLE IF NOT EXISTS snapshots(id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL,"
	" t_ns INTEGER NOT NULL, seq INTEGER NOT NULL, pinned INTEGER NOT NULL);"
	"CREATE TABLE IF NOT EXISTS versions(snap INTEGER NOT NULL, seq INTEGER NOT NULL,"
	" path TEXT NOT NULL, mode INTEGER, uid INTEGER, gid INTEGER, size INTEGER,"
	" mtime_ns INTEGER, file TEXT);"
	"CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);"
	"CREATE TABLE IF NOT EXISTS maps(seq INTEGER PRIMARY KEY, json TEXT NOT NULL);"
	"CREATE INDEX IF NOT EXISTS versions_file ON versions(file);";

/* Columns later slices added (an older DIR gets them; "duplicate column"
 * on a newer one is expected): a snapshot's kind (manual, auto); a
 * version whose data a prune removed. The index of changes by path went:
 * no query used it (log's matches path2 and prefixes too; diff, export
 * and browse read by seq), and it was a second page in every commit. */
static const char *const UPGRADE[] = {
	"ALTER TABLE snapshots ADD COLUMN kind TEXT NOT NULL DEFAULT 'manual'",
	"ALTER TABLE versions ADD COLUMN pruned INTEGER NOT NULL DEFAULT 0",
	"DROP INDEX IF EXISTS changes_path",
	/* a device node's number (its version had none: .history showed 0/0) */
	"ALTER TABLE versions ADD COLUMN rdev INTEGER NOT NULL DEFAULT 0",
	/* the inode of a file with hard links (NULL: one name), so that each
	 * name's past finds the version a change through another one saved */
	"ALTER TABLE versions ADD COLUMN dev INTEGER",
	"ALTER TABLE versions ADD COLUMN ino INTEGER",
	"CREATE INDEX IF NOT EXISTS versions_ino ON versions(ino) WHERE ino IS NOT NULL",
	/* its user.* xattrs (pfs_hist_xattrs' blob; NULL: not kept) */
	"ALTER TABLE versions ADD COLUMN xattrs BLOB",
};

/* SQLite's result as an -errno: what a writer is told. */
static int db_errno(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_FULL:
		return -ENOSPC;
	case SQLITE_NOMEM:
		return -ENOMEM;
	case SQLITE_READONLY:
	case SQLITE_PERM:
		return -EROFS;
	default:
		return -EIO;
	}
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int step_reset(sqlite3_stmt *q)
{
	int rc = sqlite3_step(q);

	sqlite3_reset(q);
	return rc;
}

/* Under h->lock: bind r to the insert and step it; r->seq is its seq. */
static int insert_row(struct pfs_history *h, struct hrow *r)
{
	sqlite3_stmt *q = h->ins;
	int rc;

	sqlite3_bind_int64(q, 1, r->t ? (sqlite3_int64)r->t : (sqlite3_int64)now_ns());
	sqlite3_bind_int64(q, 2, r->uid);
	sqlite3_bind_int64(q, 3, r->gid);
	sqlite3_bind_int64(q, 4, r->pid);
	sqlite3_bind_text(q, 5, r->comm, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 6, r->kind, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 7, r->path, -1, SQLITE_STATIC);
	if (r->path2)
		sqlite3_bind_text(q, 8, r->path2, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(q, 8);
	sqlite3_bind_int64(q, 9, r->arg);
	sqlite3_bind_int(q, 10, r->state);
	rc = sqlite3_step(q);
	r->seq = rc == SQLITE_DONE ? (long long)sqlite3_last_insert_rowid(h->db) : db_errno(rc);
	sqlite3_reset(q);
	sqlite3_clear_bindings(q);
	return rc;
}

/* Under h->lock, in the transaction that is open: the notes and the
 * outcomes held since the last commit. */
static void apply_pending(struct pfs_history *h)
{
	/* A failure here loses a note (its change has an earlier row) or
	 * leaves an outcome at 0, "not known to have happened": still true. */
	for (struct hrow *n = h->notes; n; n = n->next)
		insert_row(h, n);
	for (size_t i = 0; i < h->npend; i++) {
		sqlite3_bind_int(h->upd, 1, h->pend[i].ret < 0 ? h->pend[i].ret : 1);
		sqlite3_bind_int64(h->upd, 2, h->pend[i].seq);
		step_reset(h->upd);
	}
}

static void notes_free(struct pfs_history *h)
{
	while (h->notes) {
		struct hrow *n = h->notes;

		h->notes = n->next;
		free(n);
	}
	h->notes_tail = &h->notes;
}

/* SQLite checkpoints the WAL into the database once it has this many
 * pages (its default), fsync'ing both: done by the checkpoint thread.
 * While commits keep coming, its checkpoints never catch up with the last
 * (the WAL starts over only after a whole one): past CK_MAX pages the
 * commit does one itself, so the WAL stays bounded (~40 MB). */
#define CK_PAGES 1000
#define CK_MAX 10000

/* After each commit on db (all under h->lock): the WAL's size, acted on
 * once the commit is over (ck_after): a checkpoint cannot be made while
 * the connection holds its read transaction, and holding it would stop
 * the thread's at its read mark. */
static int wal_hook(void *arg, sqlite3 *db, const char *name, int pages)
{
	struct pfs_history *h = arg;

	(void)db;
	(void)name;
	h->wal_pages = pages;
	return SQLITE_OK;
}

/* Under h->lock, after a commit: a checkpoint if the WAL asks for one. */
static void ck_after(struct pfs_history *h)
{
	int pages = h->wal_pages;
	bool thread, want;

	h->wal_pages = 0;
	if (pages < CK_PAGES)
		return;
	pthread_mutex_lock(&h->ck_mu);
	thread = h->ck_running;
	if (pages < h->ck_done) /* the WAL started over */
		h->ck_done = 0;
	/* one checkpoint per CK_PAGES new pages, as SQLite's own */
	want = thread && pages - h->ck_done >= CK_PAGES;
	pthread_mutex_unlock(&h->ck_mu);
	if (!want && thread && pages < CK_MAX)
		return;
	/* a checkpoint copies no frame past a reader's mark, ours included */
	pfs_hist_db_unhold(h);
	if (want) {
		pthread_mutex_lock(&h->ck_mu);
		h->ck_want = true;
		pthread_cond_signal(&h->ck_cv);
		pthread_mutex_unlock(&h->ck_mu);
	}
	if (!thread || pages >= CK_MAX) /* no thread (yet): as SQLite would */
		sqlite3_wal_checkpoint(h->db, NULL);
}

/* Under h->lock: the read transaction kept open between commits (see
 * hold in history_int.h). Only this connection writes the database, so
 * its snapshot is always the newest: each commit then takes only the
 * WAL's write lock (2 fcntl instead of 6). If another writer came in
 * between all the same, the commit fails with SQLITE_BUSY_SNAPSHOT and
 * is made again without it. Readers (prismfs log, the browse) see every
 * commit as before; a kill -9 drops the lock with the process. */
static void hold_begin(struct pfs_history *h)
{
	if (h->holding || !h->hold)
		return;
	h->holding = sqlite3_step(h->hold) == SQLITE_ROW;
	if (!h->holding)
		sqlite3_reset(h->hold);
}

void pfs_hist_db_unhold(struct pfs_history *h)
{
	if (h->holding)
		sqlite3_reset(h->hold);
	h->holding = false;
}

/* Under h->lock: one transaction of what is pending and the rows of batch
 * (each gets its seq). 0, or -errno and none of it was written. */
static int commit_locked(struct pfs_history *h, struct hrow *batch)
{
	int rc;

	if (!h->db)
		return -EIO;
	hold_begin(h);
	for (int again = 1;; again--) {
		rc = step_reset(h->sbegin);
		if (rc != SQLITE_DONE)
			return db_errno(rc);
		apply_pending(h);
		for (struct hrow *r = batch; r && rc == SQLITE_DONE; r = r->next)
			rc = insert_row(h, r);
		if (rc == SQLITE_DONE)
			rc = step_reset(h->scommit);
		if (rc == SQLITE_DONE)
			break;
		step_reset(h->sroll);
		if (!again || !h->holding || (rc & 0xff) != SQLITE_BUSY)
			return db_errno(rc);
		pfs_hist_db_unhold(h); /* a snapshot not the newest: again without it */
	}
	h->npend = 0;
	notes_free(h);
	ck_after(h);
	return 0;
}

/* Under h->lock: commit what is pending on its own. */
static void flush_locked(struct pfs_history *h)
{
	if (h->db && (h->npend || h->notes))
		commit_locked(h, NULL);
}

static void *ck_thread(void *arg)
{
	struct pfs_history *h = arg;
	int log, done;

	pthread_mutex_lock(&h->ck_mu);
	while (!h->ck_stop) {
		if (!h->ck_want) {
			pthread_cond_wait(&h->ck_cv, &h->ck_mu);
			continue;
		}
		h->ck_want = false;
		pthread_mutex_unlock(&h->ck_mu);
		/* PASSIVE: copies what it can without waiting for anyone;
		 * commits go on meanwhile (the WAL is appended to), and the
		 * first commit after a whole checkpoint starts it over. */
		if (sqlite3_wal_checkpoint_v2(h->ckdb, NULL, SQLITE_CHECKPOINT_PASSIVE, &log,
					      &done) != SQLITE_OK)
			done = -1;
		pthread_mutex_lock(&h->ck_mu);
		if (done >= 0)
			h->ck_done = done;
	}
	pthread_mutex_unlock(&h->ck_mu);
	return NULL;
}

int pfs_hist_db_ck_start(struct pfs_history *h)
{
	char path[PATH_MAX + 16];
	int rc;

	snprintf(path, sizeof(path), "%s/history.db", h->dir);
	rc = sqlite3_open_v2(path, &h->ckdb, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_busy_timeout(h->ckdb, 10000);
		rc = sqlite3_exec(h->ckdb, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL);
	}
	if (rc != SQLITE_OK) {
		fprintf(stderr, "prismfs: history: %s\n",
			h->ckdb ? sqlite3_errmsg(h->ckdb) : sqlite3_errstr(rc));
		sqlite3_close(h->ckdb);
		h->ckdb = NULL;
		return db_errno(rc);
	}
	pthread_mutex_lock(&h->ck_mu);
	h->ck_stop = false;
	rc = pthread_create(&h->ck_thread, NULL, ck_thread, h);
	h->ck_running = rc == 0;
	pthread_mutex_unlock(&h->ck_mu);
	if (rc != 0) {
		sqlite3_close(h->ckdb);
		h->ckdb = NULL;
		return -rc;
	}
	return 0;
}

void pfs_hist_db_ck_stop(struct pfs_history *h)
{
	pthread_mutex_lock(&h->ck_mu);
	if (!h->ck_running) {
		pthread_mutex_unlock(&h->ck_mu);
		return;
	}
	h->ck_stop = true;
	pthread_cond_signal(&h->ck_cv);
	pthread_mutex_unlock(&h->ck_mu);
	pthread_join(h->ck_thread, NULL);
	pthread_mutex_lock(&h->ck_mu);
	h->ck_running = false;
	pthread_mutex_unlock(&h->ck_mu);
	sqlite3_close(h->ckdb);
	h->ckdb = NULL;
}

/* DIR is the history of one source: recorded at its first use, checked
 * after. SQLITE_MISMATCH (and one line in err) for another's. */
static int same_source(struct pfs_history *h, char *err, size_t errlen)
{
	sqlite3_stmt *q = NULL;
	int rc = sqlite3_prepare_v2(h->db, "INSERT OR IGNORE INTO meta VALUES('source', ?);"
				    , -1, &q, NULL);

	if (rc != SQLITE_OK)
		return rc;
	sqlite3_bind_text(q, 1, h->root, -1, SQLITE_STATIC);
	rc = sqlite3_step(q);
	sqlite3_finalize(q);
	if (rc != SQLITE_DONE)
		return rc;
	rc = sqlite3_prepare_v2(h->db, "SELECT value FROM meta WHERE key='source'", -1, &q, NULL);
	if (rc != SQLITE_OK)
		return rc;
	rc = sqlite3_step(q) == SQLITE_ROW ? SQLITE_OK : SQLITE_CORRUPT;
	if (rc == SQLITE_OK && strcmp((const char *)sqlite3_column_text(q, 0), h->root) != 0) {
		snprintf(err, errlen, "history %s is the history of %s, not of %s", h->dir,
			 (const char *)sqlite3_column_text(q, 0), h->root);
		rc = SQLITE_MISMATCH;
	}
	sqlite3_finalize(q);
	return rc;
}

int pfs_hist_db_open(struct pfs_history *h, char *err, size_t errlen)
{
	char path[PATH_MAX + 16];
	sqlite3_stmt *q = NULL;
	int rc;

	snprintf(path, sizeof(path), "%s/history.db", h->dir);
	rc = sqlite3_open_v2(path, &h->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
					   SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK)
		goto fail;
	sqlite3_busy_timeout(h->db, 10000);
	/* WAL: a commit is one append, readers (prismfs log) never block the
	 * daemon. synchronous=NORMAL: a commit survives the daemon's death
	 * (it is in the kernel's page cache), not the machine's. */
	rc = sqlite3_exec(h->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", NULL,
			  NULL, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(h->db, SCHEMA, NULL, NULL, NULL);
	if (rc == SQLITE_OK) /* instead of SQLite's checkpoint in the commit */
		sqlite3_wal_hook(h->db, wal_hook, h);
	for (size_t i = 0; rc == SQLITE_OK && i < sizeof(UPGRADE) / sizeof(UPGRADE[0]); i++)
		sqlite3_exec(h->db, UPGRADE[i], NULL, NULL, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(h->db,
					"INSERT INTO changes(t_ns, uid, gid, pid, comm, kind, path,"
					" path2, arg, state) VALUES(?,?,?,?,?,?,?,?,?,?)",
					-1, &h->ins, NULL);
	if (rc == SQLITE_OK) /* a table that always has rows: a step holds */
		rc = sqlite3_prepare_v2(h->db, "SELECT 1 FROM sqlite_master LIMIT 1", -1, &h->hold,
					NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(h->db, "BEGIN", -1, &h->sbegin, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(h->db, "COMMIT", -1, &h->scommit, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(h->db, "ROLLBACK", -1, &h->sroll, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(h->db, "UPDATE changes SET state=? WHERE seq=?", -1,
					&h->upd, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(h->db,
					"INSERT INTO versions(snap, seq, path, mode, uid, gid, size,"
					" mtime_ns, file, rdev, dev, ino, xattrs) VALUES(?1, (SELECT"
					" coalesce(max(seq), 0) FROM changes), ?3, ?4, ?5, ?6, ?7,"
					" ?8, ?9, ?10, ?11, ?12, ?13)",
					-1, &h->sav, NULL);
	if (rc == SQLITE_OK)
		rc = same_source(h, err, errlen);
	if (rc == SQLITE_MISMATCH) {
		pfs_hist_db_close(h);
		return -EINVAL;
	}
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(h->db, "SELECT coalesce(max(id), 0) FROM snapshots", -1,
					&q, NULL);
	if (rc == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW)
		h->snap = sqlite3_column_int64(q, 0);
	sqlite3_finalize(q);
	q = NULL;
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(h->db, "SELECT EXISTS(SELECT 1 FROM maps)", -1, &q, NULL);
	if (rc == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW)
		h->mapped = sqlite3_column_int(q, 0) != 0;
	sqlite3_finalize(q);
	if (rc == SQLITE_OK)
		return 0;
fail:
	snprintf(err, errlen, "history %s: %s", path,
			h->db ? sqlite3_errmsg(h->db) : sqlite3_errstr(rc));
	pfs_hist_db_close(h);
	return db_errno(rc);
}

void pfs_hist_db_close(struct pfs_history *h)
{
	if (h->db)
		flush_locked(h);
	pfs_hist_db_unhold(h);
	sqlite3_finalize(h->hold);
	h->hold = NULL;
	free(h->pend);
	h->pend = NULL;
	h->npend = h->cpend = 0;
	notes_free(h);
	sqlite3_finalize(h->ins);
	sqlite3_finalize(h->upd);
	sqlite3_finalize(h->sav);
	sqlite3_finalize(h->sbegin);
	sqlite3_finalize(h->scommit);
	sqlite3_finalize(h->sroll);
	h->ins = h->upd = h->sav = h->sbegin = h->scommit = h->sroll = NULL;
	sqlite3_close(h->db);
	h->db = NULL;
}

void pfs_hist_db_init(struct pfs_history *h)
{
	pthread_mutex_init(&h->qmu, NULL);
	pthread_cond_init(&h->qcv, NULL);
	h->qtail = &h->qhead;
	h->notes_tail = &h->notes;
	pthread_mutex_init(&h->ck_mu, NULL);
	pthread_cond_init(&h->ck_cv, NULL);
	for (unsigned i = 0; i < PFS_HIST_NCOMM; i++) {
		pthread_mutex_init(&h->comm[i].mu, NULL);
		h->comm[i].fd = -1;
	}
}

void pfs_hist_db_fini(struct pfs_history *h)
{
	for (unsigned i = 0; i < PFS_HIST_NCOMM; i++) {
		if (h->comm[i].fd >= 0)
			close(h->comm[i].fd);
		pthread_mutex_destroy(&h->comm[i].mu);
	}
	pthread_cond_destroy(&h->qcv);
	pthread_mutex_destroy(&h->qmu);
	pthread_cond_destroy(&h->ck_cv);
	pthread_mutex_destroy(&h->ck_mu);
}

/* The requester's command name now (it waits for its system call); ""
 * once it is gone. */
static void comm_of(struct pfs_history *h, pid_t pid, char *buf, size_t len)
{
	struct hcomm *c = &h->comm[(unsigned)pid % PFS_HIST_NCOMM];
	char p[40];
	ssize_t n = -1;

	buf[0] = '\0';
	if (pid <= 0)
		return;
	pthread_mutex_lock(&c->mu);
	if (c->fd >= 0 && c->pid == pid)
		n = pread(c->fd, buf, len - 1, 0);
	if (n < 0) { /* not this pid's, or its process is gone (ESRCH) */
		if (c->fd >= 0)
			close(c->fd);
		snprintf(p, sizeof(p), "/proc/%d/comm", (int)pid);
		c->fd = open(p, O_RDONLY | O_CLOEXEC);
		c->pid = pid;
		if (c->fd >= 0)
			n = pread(c->fd, buf, len - 1, 0);
	}
	pthread_mutex_unlock(&c->mu);
	buf[n > 0 ? n : 0] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
}

/* Who did it, into r. */
static void row_who(struct pfs_history *h, struct hrow *r, const struct pfs_caller *who)
{
	struct pfs_caller c = who ? *who : pfs_caller_get();

	if (c.pid) {
		r->uid = c.uid;
		r->gid = c.gid;
		r->pid = c.pid;
		comm_of(h, c.pid, r->comm, sizeof(r->comm));
	} else { /* the daemon's own */
		r->uid = getuid();
		r->gid = getgid();
		r->pid = getpid();
		snprintf(r->comm, sizeof(r->comm), "prismfs");
	}
}

long long pfs_hist_db_record(struct pfs_history *h, const struct pfs_caller *who,
			     const char *kind, const char *path, const char *path2, long long arg,
			     char *comm)
{
	struct hrow row = { .kind = kind, .path = path, .path2 = path2, .arg = arg };

	row_who(h, &row, who);
	if (comm)
		memcpy(comm, row.comm, sizeof(row.comm));
	/* Group commit: queue the row; if no one is committing, commit all
	 * that is queued (this row and whatever others queued meanwhile) in
	 * one transaction, then hand over; else wait until a commit has it. */
	pthread_mutex_lock(&h->qmu);
	*h->qtail = &row;
	h->qtail = &row.next;
	while (!row.done) {
		struct hrow *batch, *r, *next;
		int err;

		if (h->qleader) {
			pthread_cond_wait(&h->qcv, &h->qmu);
			continue;
		}
		h->qleader = true;
		batch = h->qhead;
		h->qhead = NULL;
		h->qtail = &h->qhead;
		pthread_mutex_unlock(&h->qmu);
		pthread_mutex_lock(&h->lock);
		err = commit_locked(h, batch);
		pthread_mutex_unlock(&h->lock);
		pthread_mutex_lock(&h->qmu);
		for (r = batch; r; r = next) { /* a waiter may go once done */
			next = r->next;
			if (err < 0)
				r->seq = err;
			r->done = true;
		}
		h->qleader = false;
		pthread_cond_broadcast(&h->qcv);
	}
	pthread_mutex_unlock(&h->qmu);
	if (row.seq < 0)
		fprintf(stderr, "prismfs: history: cannot record %s %s: %s\n", kind, path,
			strerror((int)-row.seq));
	return row.seq;
}

void pfs_hist_db_note(struct pfs_history *h, const struct pfs_caller *who, const char *kind,
		      const char *path, long long arg)
{
	pfs_hist_db_note_as(h, who, NULL, kind, path, arg);
}

void pfs_hist_db_note_as(struct pfs_history *h, const struct pfs_caller *who, const char *comm,
			 const char *kind, const char *path, long long arg)
{
	size_t pl = strlen(path) + 1;
	struct hrow *n = calloc(1, sizeof(*n) + pl);

	if (!n)
		return; /* a note, after the fact: the change's own row is there */
	memcpy(n + 1, path, pl);
	n->path = (const char *)(n + 1);
	n->kind = kind;
	n->arg = arg;
	n->state = 1;
	n->t = (long long)now_ns();
	if (comm && who && who->pid) {
		n->uid = who->uid;
		n->gid = who->gid;
		n->pid = who->pid;
		snprintf(n->comm, sizeof(n->comm), "%s", comm);
	} else {
		row_who(h, n, who);
	}
	pthread_mutex_lock(&h->lock);
	*h->notes_tail = n;
	h->notes_tail = &n->next;
	pthread_mutex_unlock(&h->lock);
}

/* Outcomes wait for the next commit (no commit of their own): until
 * then, or a crash, their rows say "not known" — true. */
void pfs_hist_db_done(struct pfs_history *h, long long seq, int ret)
{
	if (seq <= 0)
		return;
	pthread_mutex_lock(&h->lock);
	if (h->npend == h->cpend) {
		size_t c = h->cpend ? h->cpend * 2 : 64;
		void *p = realloc(h->pend, c * sizeof(*h->pend));

		if (p) {
			h->pend = p;
			h->cpend = c;
		}
	}
	if (h->npend < h->cpend) {
		h->pend[h->npend].seq = seq;
		h->pend[h->npend++].ret = ret;
	}
	pthread_mutex_unlock(&h->lock);
}

void pfs_history_flush(struct pfs_store *st)
{
	struct pfs_history *h = H(st);

	pthread_mutex_lock(&h->lock);
	flush_locked(h);
	pthread_mutex_unlock(&h->lock);
}

long long pfs_history_snapshot(struct pfs_store *st, const char *name, bool pin, char *err,
			       size_t errlen)
{
	return pfs_history_snapshot_kind(st, name, pin, false, err, errlen);
}

/* The mapping table the view shows the tree through from now on (its
 * text; "" none): a journal row of its own ('map', state 1) so that it is
 * ordered with the changes and the snapshots (a snapshot's table is the
 * last with a seq at or before the snapshot's), and its text in maps
 * under that seq, in one transaction. Nothing when the last one recorded
 * is the same (a remount with the same table). */
int pfs_hist_db_table(struct pfs_history *h, const char *json)
{
	struct hrow row = {.kind = "map", .path = "", .state = 1};
	sqlite3_stmt *q = NULL;
	int rc, ret = -EIO;

	row_who(h, &row, NULL);
	pthread_mutex_lock(&h->lock);
	if (!h->db)
		goto out;
	flush_locked(h);
	if (sqlite3_prepare_v2(h->db, "SELECT json FROM maps ORDER BY seq DESC LIMIT 1", -1, &q,
			       NULL) != SQLITE_OK)
		goto out;
	rc = sqlite3_step(q);
	if (rc == SQLITE_ROW ? strcmp((const char *)sqlite3_column_text(q, 0), json) == 0
			     : rc == SQLITE_DONE && !*json) {
		ret = 0; /* the same table (or still none) */
		goto out;
	}
	sqlite3_finalize(q);
	q = NULL;
	if (step_reset(h->sbegin) != SQLITE_DONE)
		goto out;
	rc = insert_row(h, &row);
	if (rc == SQLITE_DONE &&
	    sqlite3_prepare_v2(h->db, "INSERT INTO maps(seq, json) VALUES(?, ?)", -1, &q, NULL) ==
		    SQLITE_OK) {
		sqlite3_bind_int64(q, 1, row.seq);
		sqlite3_bind_text(q, 2, json, -1, SQLITE_STATIC);
		rc = sqlite3_step(q);
	}
	if (rc == SQLITE_DONE && step_reset(h->scommit) == SQLITE_DONE) {
		__atomic_store_n(&h->mapped, true, __ATOMIC_RELAXED);
		ret = 0;
	} else {
		step_reset(h->sroll);
	}
out:
	sqlite3_finalize(q);
	pthread_mutex_unlock(&h->lock);
	if (ret < 0)
		fprintf(stderr, "prismfs: history: cannot record the mapping table: %s\n",
			h->db ? sqlite3_errmsg(h->db) : "no database");
	return ret;
}

/* Under h->lock, in the snapshot's transaction: files open for writing
 * change with no call of ours (kernel passthrough writes reach them
 * directly, even after a kill -9 of the daemon), so the first change after
 * the snapshot cannot save them: they are saved with the snapshot, in its
 * transaction (a reflink where the filesystem has them, else a copy, which
 * holds every change back meanwhile). Found by killing a writer's daemon:
 * a file created and not yet written at the snapshot was missing from it. */
static int save_open_writers(struct pfs_history *h, long long snap)
{
	for (unsigned i = 0; i < PFS_HIST_NB; i++)
		for (struct hwfd *w = h->wfds[i]; w; w = w->next) {
			int r = pfs_hist_save_open(h, w->fd, snap);

			if (r < 0)
				return r;
		}
	return 0;
}

long long pfs_history_snapshot_kind(struct pfs_store *st, const char *name, bool pin,
				    bool automatic, char *err, size_t errlen)
{
	struct pfs_history *h = H(st);
	sqlite3_stmt *q = NULL;
	char def[64];
	uint64_t t = now_ns();
	long long id = -EIO;
	int rc;

	if (!name || !*name) {
		time_t s = (time_t)(t / 1000000000ull);
		struct tm tm;

		gmtime_r(&s, &tm);
		snprintf(def, sizeof(def), "%s%04d-%02d-%02dT%02d:%02d:%02d.%09lluZ",
			 automatic ? "auto-" : "", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
			 tm.tm_sec, (unsigned long long)(t % 1000000000ull));
		name = def;
	}
	pthread_mutex_lock(&h->lock);
	flush_locked(h);
	pfs_crashpoint("snapshot-before-insert");
	if (h->db && sqlite3_exec(h->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) {
		snprintf(err, errlen, "cannot record the snapshot: %s", sqlite3_errmsg(h->db));
		pthread_mutex_unlock(&h->lock);
		return -EIO;
	}
	rc = h->db ? sqlite3_prepare_v2(h->db,
					"INSERT INTO snapshots(name, t_ns, seq, pinned, kind) VALUES(?, ?,"
					" (SELECT coalesce(max(seq), 0) FROM changes), ?, ?)",
					-1, &q, NULL)
		   : SQLITE_MISUSE;
	if (rc == SQLITE_OK) {
		sqlite3_bind_text(q, 1, name, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(q, 2, (sqlite3_int64)t);
		sqlite3_bind_int(q, 3, pin);
		sqlite3_bind_text(q, 4, automatic ? "auto" : "manual", -1, SQLITE_STATIC);
		rc = sqlite3_step(q);
	}
	if (rc == SQLITE_DONE) {
		long long was = h->snap;

		id = (long long)sqlite3_last_insert_rowid(h->db);
		h->snap = id;
		pfs_hist_saved_clear(h);
		rc = save_open_writers(h, id);
		pfs_crashpoint("snapshot-inserted"); /* not yet committed */
		if (rc == 0 && sqlite3_exec(h->db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK) {
			pfs_crashpoint("snapshot-committed"); /* not yet answered */
		} else {
			snprintf(err, errlen, "cannot record the snapshot: %s",
				 rc < 0 ? strerror(-rc) : sqlite3_errmsg(h->db));
			h->snap = was;
			pfs_hist_saved_clear(h);
			id = rc < 0 ? rc : -EIO;
		}
	} else if ((rc & 0xff) == SQLITE_CONSTRAINT) {
		id = -EEXIST;
		snprintf(err, errlen, "a snapshot named %s exists", name);
	} else {
		id = db_errno(rc);
		snprintf(err, errlen, "cannot record the snapshot: %s",
				h->db ? sqlite3_errmsg(h->db) : "no database");
	}
	sqlite3_finalize(q);
	if (id <= 0 && h->db)
		sqlite3_exec(h->db, "ROLLBACK", NULL, NULL, NULL);
	pthread_mutex_unlock(&h->lock);
	if (id > 0)
		pfs_hist_snaps_changed(h);
	return id;
}
