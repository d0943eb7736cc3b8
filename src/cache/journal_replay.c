/* journal_replay: applying what a crashed daemon left in its journal to the
 * mirror, before a new mount serves (see journal.h). */
#include "cache/journal_int.h"
#include "store/walk.h"
#include "util/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

/* A file of the old tree that a pending op needs: its inode, birth time
 * and one of its paths (a file with several names has several entries). */
struct found {
	uint64_t ino;
	int64_t bs, bns;
	char *path;
};

struct finder {
	uint64_t *want; /* sorted */
	size_t nwant, wcap;
	struct found *v;
	size_t n, cap;
};

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Walk the directory dfd (path rel) of the old tree, keeping the files
 * whose inode is wanted. 0 or -errno. */
static int walk(struct finder *f, int dfd, char *rel, size_t len)
{
	int fd = dup(dfd), ret = 0;
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *e;

	if (!d) {
		if (fd >= 0)
			close(fd);
		return -errno;
	}
	while (ret == 0 && (e = readdir(d))) {
		size_t nl = strlen(e->d_name);
		uint64_t ino = e->d_ino;

		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if (len + nl + 2 > PATH_MAX)
			continue;
		if (len)
			rel[len] = '/';
		memcpy(rel + len + (len ? 1 : 0), e->d_name, nl + 1);
		if (e->d_type == DT_DIR) {
			int sub = openat(dfd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
							 O_CLOEXEC);

			if (sub >= 0) {
				ret = walk(f, sub, rel, len + nl + (len ? 1 : 0));
				close(sub);
			}
		} else if (bsearch(&ino, f->want, f->nwant, sizeof(*f->want), cmp_u64)) {
			struct statx sx;

			if (statx(dfd, e->d_name, AT_SYMLINK_NOFOLLOW, STATX_INO | STATX_BTIME |
				  STATX_TYPE, &sx) == 0 && S_ISREG(sx.stx_mode)) {
				if (pfs_grow(&f->v, &f->cap, f->n, sizeof(*f->v)) < 0 ||
				    !(f->v[f->n].path = strdup(rel))) {
					ret = -ENOMEM;
				} else {
					f->v[f->n].ino = sx.stx_ino;
					f->v[f->n].bs = (sx.stx_mask & STATX_BTIME) ? sx.stx_btime.tv_sec : 0;
					f->v[f->n].bns = (sx.stx_mask & STATX_BTIME)
								? sx.stx_btime.tv_nsec : 0;
					f->n++;
				}
			}
		}
		rel[len] = '\0';
	}
	closedir(d);
	return ret;
}

/* The i-th path of the file (ino, birth time) in the old tree, or NULL. A
 * birth time of 0 on either side (a filesystem without one) matches. */
static const char *find(const struct finder *f, int64_t ino, int64_t bs, int64_t bns, size_t i)
{
	for (size_t k = 0; k < f->n; k++)
		if ((int64_t)f->v[k].ino == ino &&
		    (!bs || !f->v[k].bs || (f->v[k].bs == bs && f->v[k].bns == bns)) && i-- == 0)
			return f->v[k].path;
	return NULL;
}

static void finder_free(struct finder *f)
{
	for (size_t k = 0; k < f->n; k++)
		free(f->v[k].path);
	free(f->v);
	free(f->want);
}

static int want_inodes(struct pfs_journal *j, struct finder *f)
{
	sqlite3_stmt *s;
	int ret = 0;

	if (pfs_journal_stmt(j, "SELECT ino FROM ops WHERE kind=? AND ino<>0 UNION "
			     "SELECT ino FROM open", &s) < 0)
		return -EIO;
	sqlite3_bind_int(s, 1, PFS_WB_DATA);
	while (ret == 0 && sqlite3_step(s) == SQLITE_ROW) {
		if (pfs_grow(&f->want, &f->wcap, f->nwant, sizeof(*f->want)) < 0)
			ret = -ENOMEM;
		else
			f->want[f->nwant++] = (uint64_t)sqlite3_column_int64(s, 0);
	}
	sqlite3_finalize(s);
	if (f->nwant)
		qsort(f->want, f->nwant, sizeof(*f->want), cmp_u64);
	return ret;
}

static char *col_dup(sqlite3_stmt *s, int i)
{
	const unsigned char *t = sqlite3_column_text(s, i);

	return t ? strdup((const char *)t) : NULL;
}

/* The op of the current row of s (see ins_sql's columns, then x1, x2). */
static struct pfs_wb_op *row_op(sqlite3_stmt *s, int64_t *ino, int64_t *bs, int64_t *bns,
				int64_t *x1, int64_t *x2)
{
	const unsigned char *path = sqlite3_column_text(s, 2);
	struct pfs_wb_op *op;

	if (!path || !(op = pfs_wb_op_new((enum pfs_wb_kind)sqlite3_column_int(s, 1),
					  (const char *)path)))
		return NULL;
	op->seq = (uint64_t)sqlite3_column_int64(s, 0);
	op->path2 = col_dup(s, 3);
	op->target = col_dup(s, 4);
	op->mode = (mode_t)sqlite3_column_int64(s, 5);
	op->uid = (uid_t)sqlite3_column_int64(s, 6);
	op->gid = (gid_t)sqlite3_column_int64(s, 7);
	op->rdev = (dev_t)sqlite3_column_int64(s, 8);
	op->flags = (unsigned)sqlite3_column_int64(s, 9);
	op->mask = (unsigned)sqlite3_column_int64(s, 10);
	op->atime.tv_sec = sqlite3_column_int64(s, 11);
	op->atime.tv_nsec = sqlite3_column_int64(s, 12);
	op->mtime.tv_sec = sqlite3_column_int64(s, 13);
	op->mtime.tv_nsec = sqlite3_column_int64(s, 14);
	op->xname = col_dup(s, 15);
	if (sqlite3_column_type(s, 16) == SQLITE_BLOB) {
		op->xlen = (size_t)sqlite3_column_bytes(s, 16);
		op->xval = malloc(op->xlen ? op->xlen : 1);
		if (op->xval && op->xlen)
			memcpy(op->xval, sqlite3_column_blob(s, 16), op->xlen);
	}
	*ino = sqlite3_column_int64(s, 17);
	*bs = sqlite3_column_int64(s, 18);
	*bns = sqlite3_column_int64(s, 19);
	*x1 = sqlite3_column_int64(s, 20);
	*x2 = sqlite3_column_int64(s, 21);
	if ((op->path2 == NULL && (op->kind == PFS_WB_LINK || op->kind == PFS_WB_RENAME)) ||
	    (op->target == NULL && op->kind == PFS_WB_SYMLINK) ||
	    (op->xname == NULL && (op->kind == PFS_WB_SETXATTR || op->kind == PFS_WB_RMXATTR)) ||
	    (op->xval == NULL && op->kind == PFS_WB_SETXATTR) || op->kind >= PFS_WB_NKINDS) {
		pfs_wb_op_free(op);
		return NULL;
	}
	return op;
}

/* The write-back that was cut off by the crash may have left its
 * temporary in the directory of path: remove it. */
static void sweep(struct pfs_mirror *m, const char *path)
{
	const char *slash = strrchr(path, '/');
	char dir[PATH_MAX];
	struct dirent *e;
	DIR *d;
	int fd;

	if (!m->ops->open)
		return; /* not a local directory: its own business */
	snprintf(dir, sizeof(dir), "%.*s", slash ? (int)(slash - path) : 0, slash ? path : "");
	fd = m->ops->open(m, dir, O_RDONLY | O_DIRECTORY);
	if (fd < 0 || !(d = fdopendir(fd))) {
		if (fd >= 0)
			close(fd);
		return;
	}
	while ((e = readdir(d)))
		if (strncmp(e->d_name, ".prismfs-wb.", 12) == 0)
			unlinkat(dirfd(d), e->d_name, 0);
	closedir(d);
}

static int del_row(struct pfs_journal *j, const char *sql, int64_t id)
{
	sqlite3_stmt *s;
	int rc;

	if (pfs_journal_stmt(j, sql, &s) < 0)
		return -EIO;
	sqlite3_bind_int64(s, 1, id);
	rc = sqlite3_step(s);
	sqlite3_finalize(s);
	return rc == SQLITE_DONE ? 0 : -EIO;
}

/* A file as the cache listed it (journal.c: listed_line) into op->base. */
static bool listed(struct pfs_wb_op *op, const char *line)
{
	intmax_t size, sec;
	long nsec;

	if (sscanf(line, "l %jd %jd %ld", &size, &sec, &nsec) != 3)
		return false;
	op->base.valid = true;
	op->base.size = (off_t)size;
	op->base.mtime.tv_sec = (time_t)sec;
	op->base.mtime.tv_nsec = nsec;
	return true;
}

/* A row read for the replay: its op, and the ops held when it was
 * recorded (journal.c: "SEQ SEQ ..." or NULL). */
struct row {
	struct pfs_wb_op *op;
	char *held;
};

#define MAXHELD 64

/* The seqs of a row's held list into v (at most MAXHELD): how many. */
static size_t parse_held(const char *held, uint64_t *v)
{
	size_t n = 0;

	for (const char *p = held; p && *p && n < MAXHELD;) {
		char *end;
		unsigned long long x = strtoull(p, &end, 10);

		if (end == p)
			break;
		if (*end == '=') /* a key, not a held op (fix_keys) */
			strtoull(end + 1, &end, 10);
		else
			v[n++] = x;
		p = end;
	}
	return n;
}

/* The keys later rows carry for held ops whose record lacked it
 * ("SEQ=KEY", journal.c). rows are in seq order. */
static void fix_keys(struct row *rows, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		for (const char *p = rows[i].held; p && *p;) {
			char *end;
			unsigned long long seq = strtoull(p, &end, 10), key;
			size_t lo = 0, hi = i;

			if (end == p)
				break;
			if (*end != '=') {
				p = end;
				continue;
			}
			key = strtoull(end + 1, &end, 10);
			p = end;
			while (lo < hi) {
				size_t mid = (lo + hi) / 2;

				if (rows[mid].op->seq < seq)
					lo = mid + 1;
				else
					hi = mid;
			}
			if (lo < i && rows[lo].op->seq == seq && !rows[lo].op->key)
				rows[lo].op->key = key;
		}
	}
}

/* Did the cache's tree make the change of held op (recorded before it,
 * cache/wbq.h: pfs_wbq_push_held)? A new object of its type at path
 * (MKDIR, SYMLINK, MKNOD, CREATE); its object (tino) where the change puts
 * it: at path2 for a RENAME or LINK, no longer at path for an UNLINK or
 * RMDIR. Unknown (no tree, no inode recorded): made, as a journal without
 * held ops had it. */
static bool made_in_tree(struct pfs_wb_op *op, int tree)
{
	struct stat st;

	if (tree < 0)
		return true;
	switch (op->kind) {
	case PFS_WB_MKDIR:
	case PFS_WB_SYMLINK:
	case PFS_WB_MKNOD:
	case PFS_WB_CREATE:
		/* (a CREATE's mode may lack its type: an older record) */
		if (fstatat(tree, op->path, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    (op->kind == PFS_WB_CREATE ? !S_ISREG(st.st_mode)
					       : (st.st_mode & S_IFMT) != (op->mode & S_IFMT)))
			return false;
		if (op->kind == PFS_WB_CREATE && !op->key) /* its key: the file made */
			op->key = st.st_ino;
		return true;
	default:
		break;
	}
	if (!op->tino)
		return true;
	switch (op->kind) {
	case PFS_WB_RENAME:
	case PFS_WB_LINK:
		return fstatat(tree, op->path2, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		       (uint64_t)st.st_ino == op->tino;
	case PFS_WB_UNLINK:
	case PFS_WB_RMDIR:
		return fstatat(tree, op->path, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		       (uint64_t)st.st_ino != op->tino;
	default:
		return true;
	}
}

/* A change of attributes or xattrs the kill may have caught (held op):
 * the op takes what the tree has now — made or not, the mirror then
 * ends as the tree is. false: the tree has no object at its path (or
 * cannot tell the xattr): not to be applied. */
static bool adopt_tree(struct pfs_wb_op *op, int tree)
{
	char proc[PATH_MAX + 32];
	struct stat st;
	ssize_t n;

	if (tree < 0)
		return true;
	if (fstatat(tree, op->path, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return false;
	if (op->kind == PFS_WB_ATTR) {
		op->mode = st.st_mode;
		op->uid = st.st_uid;
		op->gid = st.st_gid;
		op->atime = st.st_atim;
		op->mtime = st.st_mtim;
		return true;
	}
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d/%s", tree, op->path);
	n = lgetxattr(proc, op->xname, NULL, 0);
	if (n < 0)
		return errno == ENODATA && (op->kind = PFS_WB_RMXATTR, true);
	free(op->xval);
	op->xval = malloc(n ? (size_t)n : 1);
	if (!op->xval)
		return false;
	n = lgetxattr(proc, op->xname, op->xval, (size_t)n);
	if (n < 0)
		return false; /* (changed meanwhile: nobody changes the old tree) */
	op->xlen = (size_t)n;
	op->kind = PFS_WB_SETXATTR;
	return true;
}

/* The ops the crash may have caught between their record and the tree's
 * change: those every later row lists as held (none later: the last).
 * Any other was released before some later record, so the tree made it
 * (one the tree refused had its row deleted before its release). Such an
 * op's object had no later change (the kernel keeps the names and the
 * inode an op works on locked until it is answered, which comes after its
 * release), so the tree shows whether it was made: one not made is
 * dropped (never applied), and the mirror ends as the tree is. */
static void settle_held(struct row *rows, size_t n, int tree)
{
	uint64_t in[MAXHELD], tmp[MAXHELD]; /* listed by every row after i */
	size_t nin = 0;
	bool later = false;

	for (size_t i = n; i-- > 0;) {
		struct pfs_wb_op *op = rows[i].op;
		bool maybe = !later;
		size_t nt = parse_held(rows[i].held, tmp), k = 0;

		for (size_t x = 0; x < nin && !maybe; x++)
			maybe = in[x] == op->seq;
		if (maybe && (op->kind == PFS_WB_ATTR || op->kind == PFS_WB_SETXATTR ||
			      op->kind == PFS_WB_RMXATTR ? !adopt_tree(op, tree)
							 : !made_in_tree(op, tree)))
			op->kind = PFS_WB_NKINDS; /* not made: only to be deleted */
		for (size_t x = 0; x < (later ? nin : nt); x++) {
			uint64_t v = later ? in[x] : tmp[x];
			bool both = !later;

			for (size_t y = 0; y < nt && !both; y++)
				both = tmp[y] == v;
			if (both)
				in[k++] = v;
		}
		nin = k;
		later = true;
		if (!nin)
			break; /* every op before row i was released before it */
	}
}

/* Apply the pending ops in order, each deleted once applied. */
static int replay_ops(struct pfs_journal *j, struct pfs_mirror *m, int tree,
		      const struct finder *f, char *err, size_t errlen)
{
	struct pfs_wb_op *head = NULL, **tail = &head;
	struct row *rows = NULL;
	size_t nrows = 0, cap = 0;
	sqlite3_stmt *s;
	bool first = true;
	unsigned long lost = 0;
	int ret = 0;

	if (pfs_journal_stmt(j, "SELECT seq, kind, path, path2, target, mode, uid, gid, rdev,"
			     " flags, mask, at_s, at_ns, mt_s, mt_ns, xname, xval, ino, bt_s,"
			     " bt_ns, x1, x2, held, tino FROM ops WHERE seq>? ORDER BY seq", &s) < 0)
		return -EIO;
	sqlite3_bind_int64(s, 1, j->applied);
	/* Read first, apply after: the rows are deleted as they are applied. */
	while (sqlite3_step(s) == SQLITE_ROW) {
		int64_t ino, bs, bns, x1, x2;
		struct pfs_wb_op *op = row_op(s, &ino, &bs, &bns, &x1, &x2);

		if (!op) {
			snprintf(err, errlen, "journal %s: an unreadable record (%lld)", j->dir,
				 (long long)sqlite3_column_int64(s, 0));
			ret = -EIO;
			break;
		}
		/* The key a mirror keeps a file's base by: what a CREATE
		 * made is what its DATA ops write over, what later ops by
		 * path act on. */
		op->key = (uint64_t)ino;
		op->tino = (uint64_t)sqlite3_column_int64(s, 23);
		if (pfs_grow(&rows, &cap, nrows, sizeof(*rows)) < 0) {
			pfs_wb_op_free(op);
			ret = -ENOMEM;
			break;
		}
		rows[nrows].op = op;
		rows[nrows].held = col_dup(s, 22); /* (NULL: none held, or no memory) */
		nrows++;
		if (op->kind == PFS_WB_RENAME && op->target) {
			/* the file it replaces, and that file's base */
			char *rest;

			op->key2 = strtoull(op->target, &rest, 10);
			if (*rest == ' ' && rest[1] && !listed(op, rest + 1) && m->ops->base_load &&
			    op->key2)
				m->ops->base_load(m, op->key2, rest + 1);
			free(op->target);
			op->target = NULL;
		}
		if (op->kind != PFS_WB_SETXATTR && op->kind != PFS_WB_RMXATTR && op->xname &&
		    listed(op, op->xname)) {
			free(op->xname);
			op->xname = NULL;
		}
		if (op->kind != PFS_WB_SETXATTR && op->kind != PFS_WB_RMXATTR && op->xname) {
			/* its base, as the mirror had it when it was recorded
			 * (an earlier op of the file replayed first sets a
			 * newer one: that is kept) */
			if (m->ops->base_load && op->key)
				m->ops->base_load(m, op->key, op->xname);
			free(op->xname);
			op->xname = NULL;
		}
		if (op->kind == PFS_WB_DATA) {
			const char *p = find(f, ino, bs, bns, 0);

			/* Gone from the tree: no name has it in the end. */
			op->fd = p && tree >= 0 ? openat(tree, p, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
						: -1;
			/* A file too large for memory: its data is the spill file's. */
			if (op->fd >= 0 && (ret = pfs_journal_spill_use(j, op, ino, bs, bns)) < 0) {
				snprintf(err, errlen, "journal %s: cannot read the spill file of %s: "
					 "%s", j->dir, op->path, strerror(-ret));
				*tail = op; /* (freed below with the others) */
				break;
			}
			ret = 0;
			if (tree < 0)
				lost++;
		}
		/* What an attempt before the crash made, if any (mark_made). */
		if (op->kind == PFS_WB_CREATE) {
			op->made_ino = x1;
			op->made_bt = x2;
			op->made_fn = pfs_journal_replay_made; /* a kill in the replay too */
			op->made_arg = j;
		}
		/* Exchanged already (the crash came before its row went)? */
		if (op->kind == PFS_WB_RENAME && (op->flags & RENAME_EXCHANGE) && x1 && x2 &&
		    pfs_journal_mirror_ino(m, op->path) == x2 &&
		    pfs_journal_mirror_ino(m, op->path2) == x1)
			op->kind = PFS_WB_NKINDS; /* done: only to be deleted */
		*tail = op;
		tail = &op->next;
	}
	sqlite3_finalize(s);
	if (ret == 0) {
		fix_keys(rows, nrows);
		settle_held(rows, nrows, tree);
	}
	for (size_t i = 0; i < nrows; i++)
		free(rows[i].held);
	free(rows);
	if (lost) /* the tree went with the machine: said, not hidden */
		fprintf(stderr, "prismfs: journal %s: %s is gone (the machine restarted?): the "
			"data of %lu pending write%s is lost, the other changes are replayed\n",
			j->dir, j->treepath, lost, lost == 1 ? "" : "s");
	while (head) {
		struct pfs_wb_op *op = head;

		head = op->next;
		/* (a file gone from the tree since is not written, but its
		 * write-back may be the one the crash cut off) */
		if (ret == 0 && first && op->kind == PFS_WB_DATA)
			sweep(m, op->path);
		if (ret == 0 && !(op->kind == PFS_WB_DATA && op->fd < 0) &&
		    op->kind != PFS_WB_NKINDS) {
			char msg[PATH_MAX + 128];

			msg[0] = '\0';
			ret = m->ops->apply(m, op, msg, sizeof(msg));
			if (ret < 0)
				snprintf(err, errlen, "cannot replay the journal %s onto the mirror: %s",
					 j->dir, msg);
		}
		first = false;
		if (ret == 0) {
			pfs_crashpoint("replay-applied");
			ret = pfs_journal_set_applied(j, (int64_t)op->seq);
			if (ret < 0)
				snprintf(err, errlen, "cannot write %s/applied", j->dir);
		}
		pfs_wb_op_free(op);
	}
	return ret;
}

/* Files that were open for writing: their data as the old tree has it,
 * under their first name there that the mirror has as a file. */
static int replay_open(struct pfs_journal *j, struct pfs_mirror *m, int tree,
		       const struct finder *f, char *err, size_t errlen)
{
	sqlite3_stmt *s;
	int64_t *ids = NULL;
	size_t n = 0, cap = 0;
	int ret = 0;

	if (pfs_journal_stmt(j, "SELECT id, ino, bt_s, bt_ns, base FROM open ORDER BY id", &s) < 0)
		return -EIO;
	while (ret == 0 && sqlite3_step(s) == SQLITE_ROW) {
		int64_t ino = sqlite3_column_int64(s, 1), bs = sqlite3_column_int64(s, 2),
			bns = sqlite3_column_int64(s, 3);
		const char *p;

		for (size_t i = 0; tree >= 0 && (p = find(f, ino, bs, bns, i)); i++) {
			struct pfs_wb_op *op;
			struct stat st;
			char msg[PATH_MAX + 128] = "cannot open the cache's copy";

			if (m->ops->stat(m, p, &st) < 0 ||
			    !S_ISREG(st.st_mode))
				continue;
			op = pfs_wb_op_new(PFS_WB_DATA, p);
			if (!op) {
				ret = -ENOMEM;
				break;
			}
			op->fd = openat(tree, p, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
			op->key = (uint64_t)ino;
			/* its base as its last write-back left it (a pending op
			 * of it replayed before has set a newer one: kept) */
			if (sqlite3_column_text(s, 4) && m->ops->base_load && ino)
				m->ops->base_load(m, op->key, (const char *)sqlite3_column_text(s, 4));
			ret = op->fd < 0 ? -errno : pfs_journal_spill_use(j, op, ino, bs, bns);
			if (ret < 0)
				snprintf(msg, sizeof(msg), "cannot read its spill file: %s",
					 strerror(-ret));
			else
				ret = m->ops->apply(m, op, msg, sizeof(msg));
			pfs_wb_op_free(op);
			if (ret < 0)
				snprintf(err, errlen, "cannot replay the journal %s onto the mirror: "
					 "%s", j->dir, msg);
			break;
		}
		if (ret == 0 && pfs_grow(&ids, &cap, n, sizeof(*ids)) == 0)
			ids[n++] = sqlite3_column_int64(s, 0);
	}
	sqlite3_finalize(s);
	if (tree < 0 && n)
		fprintf(stderr, "prismfs: journal %s: %s is gone (the machine restarted?): the "
			"data of %zu file%s open for writing is lost\n", j->dir, j->treepath, n,
			n == 1 ? "" : "s");
	for (size_t i = 0; ret == 0 && i < n; i++)
		ret = del_row(j, "DELETE FROM open WHERE id=?", ids[i]);
	free(ids);
	return ret;
}

int pfs_journal_replay(struct pfs_journal *j, struct pfs_store *st, const char *mirror,
		       const struct pfs_mirror_opts *mo, char *err, size_t errlen)
{
	struct pfs_mirror *m = NULL;
	struct finder f = {0};
	char rel[PATH_MAX] = "";
	int tree = -1, ret;

	if (pfs_journal_pending(j, "ops") == 0 && pfs_journal_pending(j, "open") == 0)
		goto done;
	ret = pfs_mirror_open(&m, mirror, st, mo, err, errlen);
	if (ret < 0)
		return ret;
	if (pfs_journal_tree_mounted(j))
		tree = openat(j->dirfd, "tree", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	ret = want_inodes(j, &f);
	if (ret == 0 && tree >= 0 && f.nwant)
		ret = walk(&f, tree, rel, 0);
	if (ret < 0)
		snprintf(err, errlen, "cannot read the journal's tree %s: %s", j->treepath,
			 strerror(-ret));
	if (ret == 0)
		ret = replay_ops(j, m, tree, &f, err, errlen);
	if (ret == 0)
		ret = replay_open(j, m, tree, &f, err, errlen);
	if (ret == 0)
		ret = m->ops->flush(m, err, errlen);
	if (ret == 0 && del_row(j, "DELETE FROM ops WHERE seq<=?", j->applied) < 0) {
		snprintf(err, errlen, "journal %s: %s", j->dir, sqlite3_errmsg(j->db));
		ret = -EIO;
	}
	j->replay_conflicts = m->ops->conflicts(m, j->replay_conflict, sizeof(j->replay_conflict));
	finder_free(&f);
	if (tree >= 0)
		close(tree);
	pfs_mirror_close(m);
	if (ret < 0)
		return ret;
done:
	pfs_journal_unmount_tree(j);
	pfs_journal_spill_clear(j); /* everything is on the mirror */
	return 0;
}

unsigned long pfs_journal_replay_conflicts(struct pfs_journal *j, char *buf, size_t len)
{
	if (buf && len)
		snprintf(buf, len, "%s", j->replay_conflicts ? j->replay_conflict : "");
	return j->replay_conflicts;
}
