/* journal: recording the write-back queue in DIR/journal.db, the files
 * open for writing, and the cache's tree mounted at DIR/tree (see
 * journal.h; the replay is journal_replay.c). */
#include "cache/cache.h"
#include "cache/journal_int.h"
#include "util/util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/mount.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>

static const char schema[] =
	"PRAGMA journal_mode=WAL;"
	"PRAGMA synchronous=NORMAL;"
	"CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v TEXT NOT NULL);"
	"CREATE TABLE IF NOT EXISTS ops(seq INTEGER PRIMARY KEY, kind INTEGER NOT NULL,"
	" path TEXT NOT NULL, path2 TEXT, target TEXT, mode INTEGER, uid INTEGER,"
	" gid INTEGER, rdev INTEGER, flags INTEGER, mask INTEGER, at_s INTEGER,"
	" at_ns INTEGER, mt_s INTEGER, mt_ns INTEGER, xname TEXT, xval BLOB,"
	" ino INTEGER, bt_s INTEGER, bt_ns INTEGER, x1 INTEGER, x2 INTEGER, held TEXT,"
	" tino INTEGER);"
	"CREATE TABLE IF NOT EXISTS open(id INTEGER PRIMARY KEY, ino INTEGER NOT NULL,"
	" bt_s INTEGER, bt_ns INTEGER);";

static const char ins_sql[] =
	"INSERT OR REPLACE INTO ops(seq, kind, path, path2, target, mode, uid, gid, rdev,"
	" flags, mask, at_s, at_ns, mt_s, mt_ns, xname, xval, ino, bt_s, bt_ns, held, tino)"
	" VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)";

int pfs_journal_stmt(struct pfs_journal *j, const char *sql, sqlite3_stmt **out)
{
	return sqlite3_prepare_v2(j->db, sql, -1, out, NULL) == SQLITE_OK ? 0 : -EIO;
}

/* Step a statement to its end and reset it (under j->lock). 0 or -EIO. */
static int run(struct pfs_journal *j, sqlite3_stmt *s)
{
	int rc = sqlite3_step(s);

	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
		fprintf(stderr, "prismfs: journal %s: %s\n", j->dir, sqlite3_errmsg(j->db));
		return -EIO;
	}
	return 0;
}

bool pfs_journal_tree_mounted(struct pfs_journal *j)
{
	struct stat d, t;

	return fstat(j->dirfd, &d) == 0 && fstatat(j->dirfd, "tree", &t, AT_SYMLINK_NOFOLLOW) == 0 &&
	       S_ISDIR(t.st_mode) && t.st_dev != d.st_dev;
}

void pfs_journal_unmount_tree(struct pfs_journal *j)
{
	if (pfs_journal_tree_mounted(j) && umount2(j->treepath, MNT_DETACH) < 0)
		fprintf(stderr, "prismfs: cannot unmount the journal's tree %s: %s\n", j->treepath,
			strerror(errno));
}

/* The mirror recorded in the journal, or NULL (malloc'd). */
static char *recorded_mirror(struct pfs_journal *j)
{
	sqlite3_stmt *s;
	char *v = NULL;

	if (pfs_journal_stmt(j, "SELECT v FROM meta WHERE k='mirror'", &s) < 0)
		return NULL;
	if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_text(s, 0))
		v = strdup((const char *)sqlite3_column_text(s, 0));
	sqlite3_finalize(s);
	return v;
}

/* The columns a journal of an older prismfs lacks (held, tino): added
 * (an error only says one is there already). */
static bool columns_added(struct pfs_journal *j)
{
	sqlite3_exec(j->db, "ALTER TABLE ops ADD COLUMN held TEXT", NULL, NULL, NULL);
	sqlite3_exec(j->db, "ALTER TABLE ops ADD COLUMN tino INTEGER", NULL, NULL, NULL);
	sqlite3_exec(j->db, "ALTER TABLE open ADD COLUMN base TEXT", NULL, NULL, NULL);
	return true;
}

/* Open DIR/journal.db and prepare what the daemon runs. 0 or -EIO. */
static int open_db(struct pfs_journal *j, char *err, size_t errlen)
{
	char *db = NULL;

	if (asprintf(&db, "%s/journal.db", j->dir) < 0) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	if (sqlite3_open_v2(db, &j->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
				SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK ||
	    sqlite3_exec(j->db, schema, NULL, NULL, NULL) != SQLITE_OK ||
	    !columns_added(j) ||
	    pfs_journal_stmt(j, ins_sql, &j->ins) < 0 ||
	    pfs_journal_stmt(j, "DELETE FROM ops WHERE seq<=?", &j->del) < 0 ||
	    pfs_journal_stmt(j, "DELETE FROM ops WHERE seq=?", &j->cancel) < 0 ||
	    pfs_journal_stmt(j, "UPDATE ops SET x1=?, x2=? WHERE seq=?", &j->mark) < 0 ||
	    pfs_journal_stmt(j, "INSERT INTO open(ino, bt_s, bt_ns) VALUES(?,?,?)",
			     &j->ins_open) < 0 ||
	    pfs_journal_stmt(j, "DELETE FROM open WHERE id=?", &j->del_open) < 0 ||
	    pfs_journal_stmt(j, "UPDATE open SET base=? WHERE ino=? AND bt_s=? AND bt_ns=?",
			     &j->open_base) < 0) {
		snprintf(err, errlen, "cannot open the journal %s: %s", db,
			 j->db ? sqlite3_errmsg(j->db) : "out of memory");
		free(db);
		return -EIO;
	}
	free(db);
	return 0;
}

static void close_db(struct pfs_journal *j)
{
	sqlite3_finalize(j->ins);
	sqlite3_finalize(j->del);
	sqlite3_finalize(j->cancel);
	sqlite3_finalize(j->mark);
	sqlite3_finalize(j->ins_open);
	sqlite3_finalize(j->del_open);
	sqlite3_finalize(j->open_base);
	j->ins = j->del = j->cancel = j->mark = j->ins_open = j->del_open = j->open_base = NULL;
	if (j->db)
		sqlite3_close(j->db);
	j->db = NULL;
}

int pfs_journal_open(struct pfs_journal **out, const char *dir, const char *mirror, char *err,
		     size_t errlen)
{
	struct pfs_journal *j = calloc(1, sizeof(*j));
	char *db = NULL, *had = NULL;
	sqlite3_stmt *s = NULL;
	int ret = -ENOMEM;

	if (!j) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	j->dirfd = j->lockfd = j->mnt = j->appliedfd = -1;
	j->crash = pfs_crash_enabled();
	pthread_mutex_init(&j->lock, NULL);
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		ret = -errno;
		snprintf(err, errlen, "cannot make the journal directory %s: %s", dir,
			 strerror(-ret));
		goto fail;
	}
	j->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (j->dirfd < 0) {
		ret = -errno;
		snprintf(err, errlen, "journal %s: %s", dir,
			 ret == -ENOTDIR ? "not a directory" : strerror(-ret));
		goto fail;
	}
	j->dir = realpath(dir, NULL);
	if (!j->dir || asprintf(&j->treepath, "%s/tree", j->dir) < 0 ||
	    asprintf(&db, "%s/journal.db", j->dir) < 0) {
		j->treepath = NULL;
		snprintf(err, errlen, "journal %s: out of memory", dir);
		goto fail;
	}
	j->lockfd = openat(j->dirfd, "lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (j->lockfd < 0 || flock(j->lockfd, LOCK_EX | LOCK_NB) < 0) {
		ret = -errno;
		if (ret == -EWOULDBLOCK)
			snprintf(err, errlen, "journal %s is in use by a running prismfs daemon",
				 j->dir);
		else
			snprintf(err, errlen, "cannot lock the journal %s: %s", j->dir,
				 strerror(-ret));
		goto fail;
	}
	ret = open_db(j, err, errlen);
	if (ret < 0)
		goto fail;
	ret = -EIO;
	had = recorded_mirror(j);
	if (had && strcmp(had, mirror) != 0) {
		ret = -EINVAL;
		snprintf(err, errlen, "journal %s belongs to the mirror %s, not %s", j->dir, had,
			 mirror);
		goto fail;
	}
	if (!had) {
		if (pfs_journal_stmt(j, "INSERT INTO meta(k, v) VALUES('mirror', ?)", &s) < 0)
			goto dberr;
		sqlite3_bind_text(s, 1, mirror, -1, SQLITE_STATIC);
		if (sqlite3_step(s) != SQLITE_DONE)
			goto dberr;
		sqlite3_finalize(s);
		s = NULL;
	}
	j->appliedfd = openat(j->dirfd, "applied", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (j->appliedfd < 0) {
		ret = -errno;
		snprintf(err, errlen, "journal %s/applied: %s", j->dir, strerror(-ret));
		goto fail;
	}
	if (pread(j->appliedfd, &j->applied, sizeof(j->applied), 0) != sizeof(j->applied))
		j->applied = 0;
	j->base = j->gc_at = j->applied;
	if (pfs_journal_stmt(j, "SELECT max(seq) FROM ops", &s) < 0)
		goto dberr;
	if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_int64(s, 0) > j->base)
		j->base = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	s = NULL;
	free(had);
	free(db);
	*out = j;
	return 0;
dberr:
	snprintf(err, errlen, "journal %s: %s", db, sqlite3_errmsg(j->db));
	sqlite3_finalize(s);
fail:
	free(had);
	free(db);
	pfs_journal_close(j);
	return ret;
}

int pfs_journal_memfs(struct pfs_journal *j, uint64_t size, char *err, size_t errlen)
{
	int root, ret;

	pfs_journal_unmount_tree(j);
	if (mkdirat(j->dirfd, "tree", 0700) < 0 && errno != EEXIST) {
		ret = -errno;
		snprintf(err, errlen, "cannot make %s: %s", j->treepath, strerror(-ret));
		return ret;
	}
	/* kept mounted (j->mnt): attached by the process that serves (pfs_journal_attach) */
	root = pfs_memfs_make(size, "prismfs-journal", &j->mnt, err, errlen);
	if (root < 0)
		return root;
	/* A connection must not cross a fork (the parent's close would take
	 * the WAL away from the child): the process that serves opens its own. */
	close_db(j);
	return root;
}

int pfs_journal_attach(struct pfs_journal *j)
{
	int ret = 0;

	char err[PATH_MAX + 128];

	if (j->serving)
		return 0;
	ret = open_db(j, err, sizeof(err));
	if (ret < 0) {
		fprintf(stderr, "prismfs: %s\n", err);
		return ret;
	}
	/* Attached, not detached: it must outlive the daemon. */
	if (syscall(SYS_move_mount, j->mnt, "", j->dirfd, "tree", MOVE_MOUNT_F_EMPTY_PATH) < 0) {
		ret = -errno;
		fprintf(stderr, "prismfs: cannot mount the cache's memory filesystem on %s: %s\n",
			j->treepath, strerror(-ret));
		return ret;
	}
	close(j->mnt);
	j->mnt = -1;
	j->serving = true;
	return 0;
}

void pfs_journal_use(struct pfs_journal *j, struct pfs_mirror *m)
{
	j->m = m;
}

/* The inode and birth time of the open file fd. */
static void identity(int fd, int64_t *ino, int64_t *bs, int64_t *bns)
{
	struct statx sx;

	*ino = *bs = *bns = 0;
	if (statx(fd, "", AT_EMPTY_PATH, STATX_INO | STATX_BTIME, &sx) < 0)
		return;
	*ino = (int64_t)sx.stx_ino;
	if (sx.stx_mask & STATX_BTIME) {
		*bs = sx.stx_btime.tv_sec;
		*bns = sx.stx_btime.tv_nsec;
	}
}

static void bind_text(sqlite3_stmt *s, int i, const char *v)
{
	if (v)
		sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(s, i);
}

struct pend {
	struct pfs_basetab_ent h;
	uint64_t seq; /* the newest recorded op on the file */
};

/* Is the mirror's base of key as it will be when op is applied — no op on
 * it recorded and not applied yet? Then op is that file's newest (j->lock
 * held). A base left out only costs the replay its check for that op. */
static bool base_settled(struct pfs_journal *j, uint64_t key, const struct pfs_wb_op *op)
{
	struct pend *p;
	bool settled;

	if (!key)
		return false;
	settled = !pfs_basetab_get(&j->pending, key);
	p = pfs_basetab_make(&j->pending, key, sizeof(*p));
	if (p)
		p->seq = op->seq;
	return settled;
}

static void base_applied(struct pfs_journal *j, uint64_t key, const struct pfs_wb_op *op)
{
	struct pend *p = key ? pfs_basetab_get(&j->pending, key) : NULL;

	if (p && op->seq >= p->seq)
		pfs_basetab_forget(&j->pending, key);
}

/* op->base as the cache listed the file (wbop.h), "l SIZE MTIME_S
 * MTIME_NS", or "" (false) when it has none. */
static bool listed_line(const struct pfs_wb_op *op, char *buf, size_t len)
{
	if (!op->base.valid || op->kind == PFS_WB_DATA) {
		*buf = '\0';
		return false;
	}
	snprintf(buf, len, "l %jd %jd %ld", (intmax_t)op->base.size,
		 (intmax_t)op->base.mtime.tv_sec, op->base.mtime.tv_nsec);
	return true;
}

int pfs_journal_record(void *arg, const struct pfs_wb_op *op)
{
	struct pfs_journal *j = arg;
	sqlite3_stmt *s = j->ins;
	int64_t ino = 0, bs = 0, bns = 0;
	char step[64], bline[256], key2[320], held[1536];
	size_t hl = 0;
	int ret;

	bool settled, settled2;

	if (op->kind == PFS_WB_DATA && op->fd >= 0)
		identity(op->fd, &ino, &bs, &bns);
	else
		ino = (int64_t)op->key; /* a mirror's base is by key (0: none) */
	pthread_mutex_lock(&j->lock);
	settled = base_settled(j, op->key, op);
	settled2 = op->kind == PFS_WB_RENAME && base_settled(j, op->key2, op);
	sqlite3_bind_int64(s, 1, j->base + (int64_t)op->seq);
	sqlite3_bind_int(s, 2, (int)op->kind);
	bind_text(s, 3, op->path);
	bind_text(s, 4, op->path2);
	/* A RENAME's target column (no other use): the key of the file it
	 * replaces and that file's base, "KEY2 [LINE]", for the replay to
	 * keep a file changed behind the mount from being replaced. */
	if (op->kind == PFS_WB_RENAME && op->key2) {
		int n = snprintf(key2, sizeof(key2), "%" PRIu64 " ", op->key2);

		if (!settled2)
			listed_line(op, key2 + n, sizeof(key2) - (size_t)n);
		else if (!j->m || !j->m->ops->base_save ||
		    j->m->ops->base_save(j->m, op->key2, key2 + n, sizeof(key2) - (size_t)n) < 0)
			listed_line(op, key2 + n, sizeof(key2) - (size_t)n);
		bind_text(s, 5, key2);
	} else {
		bind_text(s, 5, op->target);
	}
	sqlite3_bind_int64(s, 6, op->mode);
	sqlite3_bind_int64(s, 7, op->uid);
	sqlite3_bind_int64(s, 8, op->gid);
	sqlite3_bind_int64(s, 9, (int64_t)op->rdev);
	sqlite3_bind_int64(s, 10, op->flags);
	sqlite3_bind_int64(s, 11, op->mask);
	sqlite3_bind_int64(s, 12, op->atime.tv_sec);
	sqlite3_bind_int64(s, 13, op->atime.tv_nsec);
	sqlite3_bind_int64(s, 14, op->mtime.tv_sec);
	sqlite3_bind_int64(s, 15, op->mtime.tv_nsec);
	/* A mirror's base of the file (what it was on the mirror when the
	 * cache had it, or the conflict copy the file went to) lives in
	 * memory: kept with an op on the file, in the column only xattr ops
	 * use, so a replay after a crash still writes on the condition it was
	 * changed on, and to the same copy. */
	if (op->kind != PFS_WB_SETXATTR && op->kind != PFS_WB_RMXATTR && !op->xname && settled &&
	    j->m && j->m->ops->base_save &&
	    j->m->ops->base_save(j->m, op->key, bline, sizeof(bline)) == 0)
		bind_text(s, 16, bline);
	else if (op->kind == PFS_WB_UNLINK && listed_line(op, bline, sizeof(bline)))
		bind_text(s, 16, bline);
	else
		bind_text(s, 16, op->xname);
	if (op->xval)
		sqlite3_bind_blob(s, 17, op->xval, (int)op->xlen, SQLITE_STATIC);
	else
		sqlite3_bind_null(s, 17);
	sqlite3_bind_int64(s, 18, ino);
	sqlite3_bind_int64(s, 19, bs);
	sqlite3_bind_int64(s, 20, bns);
	/* The ops recorded before their change in the tree and not yet
	 * released (wbq.h: pfs_wbq_push_held): one not listed in a later row
	 * was settled by then, so a replay looks at the tree only for the
	 * ones every later row lists (journal.h). Usually none: NULL. */
	held[0] = '\0';
	for (const struct pfs_wb_op *h = op->held_ops; h && hl + 24 < sizeof(held); h = h->hnext)
		hl += (size_t)snprintf(held + hl, sizeof(held) - hl, "%s%" PRId64, hl ? " " : "",
				       j->base + (int64_t)h->seq);
	/* ... and "SEQ=KEY": the key of a held op its record lacked (a
	 * CREATE of open(2): the inode is the tree's answer). */
	for (unsigned i = 0; i < op->nfixes && hl + 48 < sizeof(held); i++)
		hl += (size_t)snprintf(held + hl, sizeof(held) - hl, "%s%" PRId64 "=%" PRIu64,
				       hl ? " " : "", j->base + (int64_t)op->fixes[2 * i],
				       op->fixes[2 * i + 1]);
	bind_text(s, 21, hl ? held : NULL);
	sqlite3_bind_int64(s, 22, (int64_t)op->tino);
	ret = run(j, s);
	pthread_mutex_unlock(&j->lock);
	if (j->crash) { /* tests: recorded, not yet applied (nor answered) */
		snprintf(step, sizeof(step), "journal-recorded-%s", pfs_wb_kind_name(op->kind));
		pfs_crashpoint(step);
	}
	return ret;
}

/* A held op the tree refused: its row goes (under the queue's lock, so
 * before any later record can say it is not held). */
void pfs_journal_cancel(void *arg, const struct pfs_wb_op *op)
{
	struct pfs_journal *j = arg;

	pthread_mutex_lock(&j->lock);
	sqlite3_bind_int64(j->cancel, 1, j->base + (int64_t)op->seq);
	run(j, j->cancel);
	pthread_mutex_unlock(&j->lock);
}

/* A mirror path's inode, looked at without following symlinks (0: none,
 * or a mirror without inodes: the exchange is not marked, and a replay
 * applies it again). */
int64_t pfs_journal_mirror_ino(struct pfs_mirror *m, const char *path)
{
	return m->ops->ino ? m->ops->ino(m, path) : 0;
}

/* op's mirror made the file of a CREATE (op->made_*), not yet named: kept
 * in the op's row, so a replay tells its own file from one made behind the
 * mount meanwhile (mirror/wbop.h). */
void pfs_journal_mark(struct pfs_journal *j, int64_t seq, int64_t x1, int64_t x2)
{
	pthread_mutex_lock(&j->lock);
	sqlite3_bind_int64(j->mark, 1, x1);
	sqlite3_bind_int64(j->mark, 2, x2);
	sqlite3_bind_int64(j->mark, 3, seq);
	run(j, j->mark);
	pthread_mutex_unlock(&j->lock);
}

static void mark_made(void *arg, const struct pfs_wb_op *op)
{
	struct pfs_journal *j = arg;

	pfs_journal_mark(j, j->base + (int64_t)op->seq, op->made_ino, op->made_bt);
}

void pfs_journal_replay_made(void *arg, const struct pfs_wb_op *op)
{
	pfs_journal_mark(arg, (int64_t)op->seq, op->made_ino, op->made_bt);
}

int pfs_journal_apply(void *arg, struct pfs_wb_op *op, char *err, size_t errlen)
{
	struct pfs_journal *j = arg;

	if (op->kind == PFS_WB_CREATE) {
		op->made_fn = mark_made;
		op->made_arg = j;
	}

	if (op->kind == PFS_WB_RENAME && (op->flags & RENAME_EXCHANGE)) {
		/* Not idempotent: say what the mirror held before, so a replay
		 * can tell whether it is done already. */
		pfs_journal_mark(j, j->base + (int64_t)op->seq,
				 pfs_journal_mirror_ino(j->m, op->path),
				 pfs_journal_mirror_ino(j->m, op->path2));
	}
	return j->m->ops->apply(j->m, op, err, errlen);
}

int pfs_journal_apply_new(void *arg, struct pfs_wb_op *const *ops, unsigned n, char *err,
			  size_t errlen)
{
	struct pfs_journal *j = arg;

	ops[0]->made_fn = mark_made; /* the run's CREATE */
	ops[0]->made_arg = j;
	return j->m->ops->apply_new(j->m, ops, n, err, errlen);
}

int pfs_journal_set_applied(struct pfs_journal *j, int64_t seq)
{
	if (pwrite(j->appliedfd, &seq, sizeof(seq), 0) != sizeof(seq)) {
		fprintf(stderr, "prismfs: journal %s/applied: %s\n", j->dir, strerror(errno));
		return -EIO;
	}
	j->applied = seq;
	return 0;
}

/* A file open for writing is replayed from the tree as a whole (no op of
 * its own): the mirror's base of it is the one its last applied write-back
 * left, kept in its open row, else a mirror that checks (a server) would
 * take the mount's own write-back for a change behind it. */
static void open_based(struct pfs_journal *j, const struct pfs_wb_op *op)
{
	int64_t ino, bs, bns;
	char line[256];

	if (op->fd < 0 || !op->key || !j->m || !j->m->ops->base_save ||
	    j->m->ops->base_save(j->m, op->key, line, sizeof(line)) < 0)
		return;
	identity(op->fd, &ino, &bs, &bns);
	pthread_mutex_lock(&j->lock);
	sqlite3_bind_text(j->open_base, 1, line, -1, SQLITE_STATIC);
	sqlite3_bind_int64(j->open_base, 2, ino);
	sqlite3_bind_int64(j->open_base, 3, bs);
	sqlite3_bind_int64(j->open_base, 4, bns);
	run(j, j->open_base);
	pthread_mutex_unlock(&j->lock);
}

/* The worker's, after each apply. */
void pfs_journal_done(void *arg, const struct pfs_wb_op *op)
{
	struct pfs_journal *j = arg;
	int64_t seq = j->base + (int64_t)op->seq;

	pthread_mutex_lock(&j->lock);
	base_applied(j, op->key, op);
	if (op->kind == PFS_WB_RENAME)
		base_applied(j, op->key2, op);
	pthread_mutex_unlock(&j->lock);
	if (op->kind == PFS_WB_DATA)
		open_based(j, op);
	if (pfs_journal_set_applied(j, seq) < 0)
		return;
	pfs_journal_spill_done(j, op); /* counted: no replay needs it now */
	if (seq - j->gc_at < 256)
		return;
	pthread_mutex_lock(&j->lock);
	sqlite3_bind_int64(j->del, 1, seq);
	run(j, j->del);
	pthread_mutex_unlock(&j->lock);
	j->gc_at = seq;
}

int pfs_journal_flush(void *arg, char *err, size_t errlen)
{
	struct pfs_journal *j = arg;

	return j->m->ops->flush(j->m, err, errlen);
}

void pfs_journal_opened(struct pfs_journal *j, int fd)
{
	int64_t ino, bs, bns, *grown;

	if (fd < 0)
		return;
	identity(fd, &ino, &bs, &bns);
	pthread_mutex_lock(&j->lock);
	if ((size_t)fd >= j->nfd) {
		size_t n = (size_t)fd * 2 + 16;

		grown = realloc(j->byfd, n * sizeof(*grown));
		if (!grown)
			goto out;
		memset(grown + j->nfd, 0, (n - j->nfd) * sizeof(*grown));
		j->byfd = grown;
		j->nfd = n;
	}
	if (j->byfd[fd]) { /* a number reused: the old one was closed unseen */
		sqlite3_bind_int64(j->del_open, 1, j->byfd[fd]);
		run(j, j->del_open);
		j->byfd[fd] = 0;
	}
	sqlite3_bind_int64(j->ins_open, 1, ino);
	sqlite3_bind_int64(j->ins_open, 2, bs);
	sqlite3_bind_int64(j->ins_open, 3, bns);
	if (run(j, j->ins_open) == 0)
		j->byfd[fd] = sqlite3_last_insert_rowid(j->db);
out:
	pthread_mutex_unlock(&j->lock);
}

void pfs_journal_closed(struct pfs_journal *j, int fd)
{
	pthread_mutex_lock(&j->lock);
	if (fd >= 0 && (size_t)fd < j->nfd && j->byfd[fd]) {
		sqlite3_bind_int64(j->del_open, 1, j->byfd[fd]);
		run(j, j->del_open);
		j->byfd[fd] = 0;
	}
	pthread_mutex_unlock(&j->lock);
}

/* How many ops are pending in the journal (-1: cannot tell). */
int64_t pfs_journal_pending(struct pfs_journal *j, const char *table)
{
	char sql[64];
	sqlite3_stmt *s;
	int64_t n = -1;

	snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s%s", table,
		 strcmp(table, "ops") == 0 ? " WHERE seq>?" : "");
	if (pfs_journal_stmt(j, sql, &s) < 0)
		return -1;
	if (strcmp(table, "ops") == 0)
		sqlite3_bind_int64(s, 1, j->applied);
	if (sqlite3_step(s) == SQLITE_ROW)
		n = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return n;
}

void pfs_journal_close(struct pfs_journal *j)
{
	if (!j)
		return;
	if (j->serving && pfs_journal_pending(j, "ops") == 0) {
		/* Everything is on the mirror: nothing to keep for a replay. */
		sqlite3_exec(j->db, "DELETE FROM ops; DELETE FROM open", NULL, NULL, NULL);
		pfs_journal_unmount_tree(j);
		pfs_journal_spill_clear(j);
	}
	close_db(j);
	if (j->lockfd >= 0)
		close(j->lockfd);
	if (j->appliedfd >= 0)
		close(j->appliedfd);
	if (j->mnt >= 0)
		close(j->mnt);
	if (j->dirfd >= 0)
		close(j->dirfd);
	pthread_mutex_destroy(&j->lock);
	pfs_basetab_clear(&j->pending);
	free(j->byfd);
	free(j->treepath);
	free(j->dir);
	free(j);
}
