/* history_export: prismfs export MNT SNAPSHOT [-o FILE|-] (issue 17 item
 * 8): the tree as it was at SNAPSHOT, as a POSIX pax tar stream
 * (libarchive).
 *
 * The tree at S is rebuilt from the live tree and the journal: the rows
 * since S replayed as diff does (history_query.c) map each path now to
 * the path its object had at S (none: made since), and list S's paths
 * removed since. Each object's content and metadata at S is the version
 * saved at its first change after S (the replay knows where and when
 * that was, even beneath a directory renamed before it), or, if it has
 * not changed, what the live tree holds. Read through the mount, from
 * this process: nothing of it is journaled (reads are not changes). */
#include "cli/cli.h"
#include "cli/cmdutil.h"
#include "cli/history_cmd_int.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct xctx {
	sqlite3 *db;
	const char *mnt;
	size_t mntlen;
	int err;
};

static struct xctx *g_x; /* nftw's callback takes no argument */

static int add(sqlite3 *db, const char *path, const char *live)
{
	sqlite3_stmt *q;
	int rc;

	if (sqlite3_prepare_v2(db, "INSERT OR IGNORE INTO temp.exp(path, live) VALUES(?, ?)", -1,
			       &q, NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_text(q, 1, path, -1, SQLITE_TRANSIENT);
	if (live)
		sqlite3_bind_text(q, 2, live, -1, SQLITE_TRANSIENT);
	rc = sqlite3_step(q);
	sqlite3_finalize(q);
	return rc == SQLITE_DONE ? 0 : -1;
}

static int walk_one(const char *fpath, const struct stat *sb, int type, struct FTW *ftw)
{
	const char *rel = fpath + g_x->mntlen;
	char orig[PATH_MAX];

	(void)sb;
	(void)type;
	(void)ftw;
	while (*rel == '/')
		rel++;
	if (!*rel)
		return 0;
	pfs_hq_orig(g_x->db, rel, orig, sizeof(orig));
	if (orig[0] && add(g_x->db, orig, rel) < 0) {
		g_x->err = -1;
		return 1;
	}
	return 0;
}

static int put_data(struct archive *a, int fd)
{
	char buf[65536];
	ssize_t n;

	while ((n = read(fd, buf, sizeof(buf))) > 0)
		if (archive_write_data(a, buf, (size_t)n) != n)
			return -1;
	return n < 0 ? -1 : 0;
}

/* Write e as name with st's metadata and the object at src: its data, or
 * its target (in_file: a saved symlink, whose target is the file's
 * content). 0, or -1 after saying why. */
static int put_object(struct archive *a, struct archive_entry *e, const char *name,
		      const char *src, const struct stat *st, bool in_file)
{
	char target[PATH_MAX];
	struct stat fst;
	int fd = -1, ret = -1;

	archive_entry_set_pathname(e, name);
	archive_entry_set_mode(e, st->st_mode);
	archive_entry_set_uid(e, st->st_uid);
	archive_entry_set_gid(e, st->st_gid);
	archive_entry_set_mtime(e, st->st_mtim.tv_sec, st->st_mtim.tv_nsec);
	if (S_ISLNK(st->st_mode)) {
		ssize_t n;

		if (in_file) {
			fd = open(src, O_RDONLY | O_CLOEXEC);
			n = fd < 0 ? -1 : read(fd, target, sizeof(target) - 1);
		} else {
			n = readlink(src, target, sizeof(target) - 1);
		}
		if (n < 0) {
			say("%s: %s", src, strerror(errno));
			goto out;
		}
		target[n] = '\0';
		archive_entry_set_symlink(e, target);
	} else if (S_ISREG(st->st_mode)) {
		/* the size of what is read: a saved version's row has none */
		fd = open(src, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		if (fd < 0 || fstat(fd, &fst) < 0) {
			say("%s: %s", src, strerror(errno));
			goto out;
		}
		archive_entry_set_size(e, fst.st_size);
	} else if (!S_ISDIR(st->st_mode)) {
		archive_entry_set_rdev(e, st->st_rdev);
	}
	if (archive_write_header(a, e) != ARCHIVE_OK ||
	    (S_ISREG(st->st_mode) && put_data(a, fd) < 0)) {
		say("%s: %s", name, archive_error_string(a) ? archive_error_string(a)
							    : strerror(errno));
		goto out;
	}
	ret = 0;
out:
	if (fd >= 0)
		close(fd);
	return ret;
}

/* One entry: from the saved version vfile (with its row's metadata), or
 * from the live path. 0, or -1 after saying why. */
/* A file with hard links (its version keeps its inode): its first version
 * saved since the snapshot (seq, id) with that inode (dev < 0: any dev;
 * the mount shows SOURCE's inode numbers, not its device), whichever name
 * the change went through (docs/HISTORY.md, Saved versions). 1 (st and
 * vfile filled), 0 none. */
static int by_inode(long long seq, long long id, long long dev, long long ino, struct stat *st,
		    char *vfile, size_t len)
{
	sqlite3_stmt *q;
	int found = 0;

	if (sqlite3_prepare_v2(g_x->db, "SELECT coalesce(file, ''), mode, uid, gid, mtime_ns,"
				       " rdev FROM versions WHERE ino = ?1 AND (?2 < 0 OR dev = ?2)"
				       " AND seq >= ?3 AND snap >= ?4 AND pruned = 0"
				       " ORDER BY seq, rowid LIMIT 1", -1, &q, NULL) != SQLITE_OK)
		return 0;
	sqlite3_bind_int64(q, 1, ino);
	sqlite3_bind_int64(q, 2, dev);
	sqlite3_bind_int64(q, 3, seq);
	sqlite3_bind_int64(q, 4, id);
	if (sqlite3_step(q) == SQLITE_ROW) {
		long long mt = sqlite3_column_int64(q, 4);

		snprintf(vfile, len, "%s", pfs_hc_col(q, 0));
		memset(st, 0, sizeof(*st));
		st->st_mode = (mode_t)sqlite3_column_int64(q, 1);
		st->st_uid = (uid_t)sqlite3_column_int64(q, 2);
		st->st_gid = (gid_t)sqlite3_column_int64(q, 3);
		st->st_mtim.tv_sec = (time_t)(mt / 1000000000ll);
		st->st_mtim.tv_nsec = (long)(mt % 1000000000ll);
		st->st_rdev = (dev_t)sqlite3_column_int64(q, 5);
		found = 1;
	}
	sqlite3_finalize(q);
	return found;
}

static int put_entry(struct archive *a, const char *dir, sqlite3_stmt *q, long long seq,
		     long long id)
{
	const char *path = pfs_hc_col(q, 0), *live = pfs_hc_col(q, 1);
	bool saved = sqlite3_column_type(q, 3) != SQLITE_NULL;
	struct archive_entry *e = archive_entry_new();
	char src[PATH_MAX * 2], vfile[64];
	struct stat st;
	int ret = -1;

	if (!e)
		return -1;
	snprintf(vfile, sizeof(vfile), "%s", pfs_hc_col(q, 2));
	if (saved) {
		long long mt = sqlite3_column_int64(q, 6);

		memset(&st, 0, sizeof(st));
		st.st_mode = (mode_t)sqlite3_column_int64(q, 3);
		st.st_uid = (uid_t)sqlite3_column_int64(q, 4);
		st.st_gid = (gid_t)sqlite3_column_int64(q, 5);
		st.st_mtim.tv_sec = (time_t)(mt / 1000000000ll);
		st.st_mtim.tv_nsec = (long)(mt % 1000000000ll);
		st.st_rdev = (dev_t)sqlite3_column_int64(q, 7);
		if (sqlite3_column_type(q, 8) != SQLITE_NULL)
			by_inode(seq, id, sqlite3_column_int64(q, 9), sqlite3_column_int64(q, 8),
				 &st, vfile, sizeof(vfile));
	} else {
		snprintf(src, sizeof(src), "%s/%s", g_x->mnt, live);
		if (lstat(src, &st) < 0) {
			say("%s: %s", src, strerror(errno));
			goto out;
		}
		if (!S_ISDIR(st.st_mode))
			saved = by_inode(seq, id, -1, (long long)st.st_ino, &st, vfile,
					 sizeof(vfile));
	}
	if (saved) {
		snprintf(src, sizeof(src), "%s/versions/%s", dir, vfile);
		if ((S_ISREG(st.st_mode) || S_ISLNK(st.st_mode)) && !vfile[0]) {
			say("%s: its saved version has no data (pruned, or saved before symlink "
			    "targets were): left out", path);
			ret = 1;
			goto out;
		}
	}
	ret = put_object(a, e, path, src, &st, saved);
out:
	archive_entry_free(e);
	return ret;
}

/* With a mapping table (docs/HISTORY.md, "With a mapping table"): the
 * paths of the view at SNAP are what MNT/.history/SNAP shows (through the
 * table SNAP was taken under, hidden ones left out), so the tree is read
 * from there, in path order. */
struct vlist {
	char **v;
	size_t n;
	size_t baselen;
	int err;
};

static struct vlist *g_v;

static int walk_past(const char *fpath, const struct stat *sb, int type, struct FTW *ftw)
{
	const char *rel = fpath + g_v->baselen;
	char **nv;

	(void)sb;
	(void)type;
	(void)ftw;
	while (*rel == '/')
		rel++;
	if (!*rel)
		return 0;
	nv = realloc(g_v->v, (g_v->n + 1) * sizeof(*nv));
	if (!nv || !(nv[g_v->n] = strdup(rel))) {
		if (nv)
			g_v->v = nv;
		g_v->err = ENOMEM;
		return 1;
	}
	g_v->v = nv;
	g_v->n++;
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* One entry read from base/rel. 0, or -1 after saying why. */
static int put_past(struct archive *a, const char *base, const char *rel)
{
	struct archive_entry *e = archive_entry_new();
	char src[PATH_MAX * 2];
	struct stat st;
	int ret = -1;

	snprintf(src, sizeof(src), "%s/%s", base, rel);
	if (!e || lstat(src, &st) < 0) {
		say("%s: %s", src, strerror(e ? errno : ENOMEM));
		goto out;
	}
	ret = put_object(a, e, rel, src, &st, false);
out:
	archive_entry_free(e);
	return ret;
}

static int export_past(const char *mnt, const char *canon, sqlite3 *db, const char *snap,
		       const char *outpath)
{
	char line[PATH_MAX + 64], base[PATH_MAX * 2 + 2];
	struct vlist v = {0};
	struct archive *a = NULL;
	sqlite3_stmt *q = NULL;
	int ret = 1;

	if (sqlite3_prepare_v2(db, "SELECT name FROM snapshots WHERE name = ?1 OR"
				   " CAST(id AS TEXT) = ?1 ORDER BY name = ?1 DESC LIMIT 1",
			       -1, &q, NULL) != SQLITE_OK)
		goto out;
	sqlite3_bind_text(q, 1, snap, -1, SQLITE_STATIC);
	if (sqlite3_step(q) != SQLITE_ROW) {
		say("%s: no snapshot %s", mnt, snap);
		goto out;
	}
	if (pfs_hc_ask(mnt, "browse\n", line, sizeof(line)) < 0)
		goto out;
	if (strncmp(line, "name ", 5) != 0 || !line[5]) {
		say("%s: the daemon did not say where its past tree is", mnt);
		goto out;
	}
	snprintf(base, sizeof(base), "%s/%s/%s", canon, line + 5, pfs_hc_col(q, 0));
	v.baselen = strlen(base);
	g_v = &v;
	if (nftw(base, walk_past, 32, FTW_PHYS | FTW_MOUNT) != 0 || v.err) {
		say("%s: cannot read the tree: %s", base, strerror(v.err ? v.err : errno));
		goto out;
	}
	qsort(v.v, v.n, sizeof(*v.v), cmp_str);
	a = archive_write_new();
	if (!a || archive_write_set_format_pax(a) != ARCHIVE_OK ||
	    (strcmp(outpath, "-") == 0 ? archive_write_open_fd(a, 1)
				       : archive_write_open_filename(a, outpath)) != ARCHIVE_OK) {
		say("%s: %s", outpath, a ? archive_error_string(a) : "out of memory");
		goto out;
	}
	for (size_t i = 0; i < v.n; i++)
		if (put_past(a, base, v.v[i]) < 0)
			goto out;
	if (archive_write_close(a) != ARCHIVE_OK) {
		say("%s: %s", outpath, archive_error_string(a));
		goto out;
	}
	ret = 0;
out:
	if (a)
		archive_write_free(a);
	sqlite3_finalize(q);
	for (size_t i = 0; i < v.n; i++)
		free(v.v[i]);
	free(v.v);
	return ret;
}

static int export(const char *mnt, const char *snap, const char *outpath)
{
	/* An object's version at SNAP: the one SNAP saved itself at its path
	 * (open for writing then), else the last saved at the path of its
	 * first change since, before that change's row (it was saved just
	 * before the row was written), not before SNAP. SNAP's own first: the
	 * window may also hold later snapshots' saves of a file still open for
	 * writing, as the browse (history_browse.c, locate). */
	static const char PLAN[] =
		"SELECT e.path, e.live, coalesce(v.file, ''), v.mode, v.uid, v.gid, v.mtime_ns,"
		" v.rdev, v.ino, v.dev"
		" FROM temp.exp e LEFT JOIN temp.cur c ON c.path = e.live"
		" LEFT JOIN versions v ON v.rowid = coalesce((SELECT rowid FROM versions s"
		"  WHERE s.path = e.path AND s.snap = ?2 AND s.seq = ?1 ORDER BY s.rowid LIMIT 1),"
		"  (SELECT rowid FROM versions w"
		"  WHERE w.path = coalesce(c.fpath, e.dpath) AND w.seq >= ?1"
		"  AND w.seq < coalesce(c.fseq, e.dseq) ORDER BY w.seq DESC, w.rowid DESC LIMIT 1))"
		" ORDER BY e.path";
	char *canon = canonical_noleaf(mnt), line[PATH_MAX + 64], dir[PATH_MAX + 64];
	sqlite3 *db = canon ? pfs_hc_open_db(mnt) : NULL;
	sqlite3_stmt *q = NULL;
	struct archive *a = NULL;
	struct xctx x = {0};
	long long seq, id;
	int ret = 1, skipped = 0;

	if (!db)
		goto out;
	if (pfs_hc_mapped(db)) {
		ret = export_past(mnt, canon, db, snap, outpath);
		goto out;
	}
	if (pfs_hc_ask(mnt, "history\n", line, sizeof(line)) < 0 || strncmp(line, "dir ", 4))
		goto out;
	snprintf(dir, sizeof(dir), "%s", line + 4);
	if (pfs_hq_snap(db, snap, &seq, &id) < 0) {
		say("%s: no snapshot %s", mnt, snap);
		goto out;
	}
	if (pfs_hq_replay(db, seq, -1) < 0 ||
	    sqlite3_exec(db, "CREATE TEMP TABLE exp(path TEXT PRIMARY KEY, live TEXT, dpath TEXT,"
			 " dseq INTEGER)", NULL,
			 NULL, NULL) != SQLITE_OK) {
		say("%s: %s", mnt, sqlite3_errmsg(db));
		goto out;
	}
	x.db = db;
	x.mnt = canon;
	x.mntlen = strlen(canon);
	g_x = &x;
	/* what is there now, by its path at the snapshot; then what went */
	if (nftw(canon, walk_one, 32, FTW_PHYS | FTW_MOUNT) != 0 || x.err) {
		say("%s: cannot read the tree: %s", mnt, x.err ? sqlite3_errmsg(db) : strerror(errno));
		goto out;
	}
	if (sqlite3_exec(db, "INSERT OR IGNORE INTO temp.exp(path, dpath, dseq) SELECT orig, fpath,"
			 " fseq FROM temp.del",
			 NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, PLAN, -1, &q, NULL) != SQLITE_OK) {
		say("%s: %s", mnt, sqlite3_errmsg(db));
		goto out;
	}
	sqlite3_bind_int64(q, 1, seq);
	sqlite3_bind_int64(q, 2, id);
	a = archive_write_new();
	if (!a || archive_write_set_format_pax(a) != ARCHIVE_OK ||
	    (strcmp(outpath, "-") == 0 ? archive_write_open_fd(a, 1)
				       : archive_write_open_filename(a, outpath)) != ARCHIVE_OK) {
		say("%s: %s", outpath, a ? archive_error_string(a) : "out of memory");
		goto out;
	}
	while (sqlite3_step(q) == SQLITE_ROW) {
		int r;

		/* a path at S the live walk did not see and no version names:
		 * removed by a change the journal could not place */
		if (sqlite3_column_type(q, 1) == SQLITE_NULL &&
		    sqlite3_column_type(q, 3) == SQLITE_NULL) {
			say("%s: removed since %s, and no version of it was saved: left out",
			    pfs_hc_col(q, 0), snap);
			skipped++;
			continue;
		}
		r = put_entry(a, dir, q, seq, id);
		if (r < 0)
			goto out;
		skipped += r;
	}
	if (archive_write_close(a) != ARCHIVE_OK) {
		say("%s: %s", outpath, archive_error_string(a));
		goto out;
	}
	ret = skipped ? 1 : 0;
out:
	if (a)
		archive_write_free(a);
	sqlite3_finalize(q);
	pfs_hq_close(db);
	free(canon);
	return ret;
}

/* --layer DIR: the daemon writes the upper as it was at snap into the new
 * directory DIR (layers/layer_past.c): a layer kernel overlayfs lays over
 * the mount's lowers. */
static int export_layer(const char *mnt, const char *snap, const char *dir)
{
	char *abs = NULL, *req = NULL, ans[PATH_MAX + 300];
	int ret = 1;

	if (strchr(snap, '\t') || strchr(snap, '\n') || strchr(dir, '\t') ||
	    strchr(dir, '\n')) {
		say("a snapshot or directory name with a tab or newline cannot be asked for");
		return 2;
	}
	abs = canonical_noleaf(dir);
	if (!abs) {
		say("%s: its parent directory does not exist", dir);
		return 1;
	}
	if (asprintf(&req, "export-layer %s\t%s\n", snap, abs) < 0 || strlen(req) > 500) {
		say("%s: the snapshot's name and the path are too long to ask for", dir);
		goto out;
	}
	if (pfs_hc_ask(mnt, req, ans, sizeof(ans)) == 0)
		ret = 0;
out:
	free(req);
	free(abs);
	return ret;
}

int pfs_history_export_cmd(int argc, char **argv)
{
	const char *pos[2] = {NULL, NULL}, *out = "-", *layer = NULL;
	bool out_given = false;
	char ans[64];
	int npos = 0;

	for (int i = 2; i < argc; i++) {
		const char *a = argv[i];

		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			fputs(pfs_export_usage, stdout);
			return 0;
		} else if (strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0) {
			if (i + 1 >= argc) {
				say("%s needs a file, or - for stdout (see prismfs export --help)", a);
				return 2;
			}
			out = argv[++i];
			out_given = true;
		} else if (strcmp(a, "--layer") == 0) {
			if (i + 1 >= argc) {
				say("%s needs a directory (see prismfs export --help)", a);
				return 2;
			}
			layer = argv[++i];
		} else if (a[0] == '-' && a[1]) {
			say("unknown option '%s' (see prismfs export --help)", a);
			return 2;
		} else if (npos < 2) {
			pos[npos++] = a;
		} else {
			say("unexpected argument '%s' (see prismfs export --help)", a);
			return 2;
		}
	}
	if (npos < 2) {
		say("missing %s (usage: prismfs export MOUNTPOINT SNAPSHOT [-o FILE|-])",
		    npos ? "SNAPSHOT" : "MOUNTPOINT");
		return 2;
	}
	if (layer && out_given) {
		say("--layer and -o contradict each other: a layer is a directory, not a stream");
		return 2;
	}
	if (layer)
		return export_layer(pos[0], pos[1], layer);
	/* On a layered mount the journal is the upper's: the tar stream would
	 * miss what the lowers held (docs/HISTORY.md, Layered mounts). */
	if (pfs_hc_ask(pos[0], "layered\n", ans, sizeof(ans)) == 0 && strcmp(ans, "yes") == 0) {
		say("%s is a layered mount: export a snapshot as a layer (--layer DIR), or its "
		    "tree as a tar stream with tar -C %s/.history/%s (its .history name)", pos[0],
		    pos[0], pos[1]);
		return 2;
	}
	if (strcmp(out, "-") == 0 && isatty(1)) {
		say("refusing to write a tar stream to a terminal (-o FILE, or a pipe)");
		return 2;
	}
	return export(pos[0], pos[1], out);
}
