/* history_restore: prismfs restore MNT SNAPSHOT PATH... (issue 17; docs/
 * HISTORY.md). A snapshot first, through the daemon (so the restore can
 * be undone by restoring it); then for each file, its version at SNAPSHOT
 * is copied from DIR/versions (its xattrs and ACLs from the version's row)
 * into a temporary beside it *in the mount*
 * and renamed over it there: the restore is a change made through the
 * mount like any other, journaled with this process as its author (and
 * the rename saves what it replaces under the snapshot just taken), the
 * kernel's caches of the mount see it, and each path is replaced in one
 * rename or not at all. Anything else (a directory subtree, a symlink, a
 * path made since, everything): history_restore_tree.c. */
#include "cli/cli.h"
#include "cli/cmdutil.h"
#include "cli/history_cmd_int.h"
#include "cli/history_restore_int.h"
#include "util/util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct hver {
	char file[256];
	mode_t mode;
	uid_t uid;
	gid_t gid;
	long long mtime_ns;
	char *xa; /* its kept xattrs (versions.xattrs; NULL: none kept) */
	size_t xalen;
};

/* The version of rel at snapshot snap: the first saved under it or a
 * later one (a version is saved under the newest snapshot before the
 * change), unless the path named another object by then. 1 found, 0 not
 * (said why if loud), -1 error (said). */
static int find_version(sqlite3 *db, const char *snap, const char *rel, struct hver *v,
			bool loud)
{
	static const char SQL[] =
		"WITH s AS (SELECT id, seq FROM snapshots WHERE name = ?1 OR CAST(id AS TEXT) = ?1"
		" ORDER BY name = ?1 DESC LIMIT 1)"
		" SELECT v.file, v.mode, v.uid, v.gid, v.mtime_ns,"
		" (SELECT count(*) FROM changes c WHERE c.seq > s.seq AND c.seq <= v.seq"
		"  AND c.state = 1 AND ((c.kind IN ('create', 'mkdir', 'mknod', 'symlink')"
		"  AND c.path = ?2) OR (c.kind IN ('rename', 'link') AND c.path2 = ?2))),"
		" v.xattrs"
		" FROM s LEFT JOIN versions v ON v.path = ?2 AND v.snap >= s.id"
		" ORDER BY v.snap, v.seq LIMIT 1";
	sqlite3_stmt *q = NULL;
	int ret = -1;

	if (sqlite3_prepare_v2(db, SQL, -1, &q, NULL) != SQLITE_OK) {
		say("%s", sqlite3_errmsg(db));
		return -1;
	}
	sqlite3_bind_text(q, 1, snap, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 2, rel, -1, SQLITE_STATIC);
	if (sqlite3_step(q) != SQLITE_ROW) {
		say("no snapshot %s", snap);
		goto out;
	}
	ret = 0;
	if (sqlite3_column_type(q, 0) == SQLITE_NULL || sqlite3_column_int64(q, 5) > 0) {
		if (loud)
			say("%s: no saved version at %s (unchanged since, or made after it)", rel,
			    snap);
		goto out;
	}
	snprintf(v->file, sizeof(v->file), "%s", pfs_hc_col(q, 0));
	v->mode = (mode_t)sqlite3_column_int64(q, 1);
	v->uid = (uid_t)sqlite3_column_int64(q, 2);
	v->gid = (gid_t)sqlite3_column_int64(q, 3);
	v->mtime_ns = sqlite3_column_int64(q, 4);
	if (!S_ISREG(v->mode) || !v->file[0]) {
		if (loud)
			say("%s: not a regular file at %s", rel, snap);
		goto out;
	}
	/* the caller frees v->xa */
	v->xa = NULL;
	v->xalen = (size_t)sqlite3_column_bytes(q, 6);
	if (v->xalen && !(v->xa = malloc(v->xalen))) {
		say("%s", strerror(ENOMEM));
		ret = -1;
		goto out;
	}
	if (v->xalen)
		memcpy(v->xa, sqlite3_column_blob(q, 6), v->xalen);
	ret = 1;
out:
	sqlite3_finalize(q);
	return ret;
}

static int copy_data(int dst, int src)
{
	char buf[65536];
	ssize_t n;

	if (ioctl(dst, FICLONE, src) == 0)
		return 0;
	while ((n = read(src, buf, sizeof(buf))) > 0) {
		for (ssize_t off = 0; off < n;) {
			ssize_t w = write(dst, buf + off, (size_t)(n - off));

			if (w < 0)
				return -1;
			off += w;
		}
	}
	return n < 0 ? -1 : 0;
}

/* One file, from its saved version v: 0, or 1 after saying why (nothing
 * changed). */
static int restore_one(const char *hdir, const char *canon_m, const char *rel,
		       const struct hver *v)
{
	char target[PATH_MAX * 2], tmp[PATH_MAX * 2 + 64], vpath[PATH_MAX + 300];
	struct timespec ts[2] = {{.tv_nsec = UTIME_OMIT}, {0}};
	char *slash;
	int src = -1, fd = -1, ret = 1;

	snprintf(target, sizeof(target), "%s/%s", canon_m, rel);
	slash = strrchr(target, '/');
	snprintf(tmp, sizeof(tmp), "%.*s/.prismfs-restore.%d.%s", (int)(slash - target), target,
		 (int)getpid(), slash + 1);
	snprintf(vpath, sizeof(vpath), "%s/versions/%s", hdir, v->file);
	/* a killed restore's temporaries here first, as for trees */
	*slash = '\0';
	pfs_hr_sweep(target);
	*slash = '/';
	src = open(vpath, O_RDONLY | O_CLOEXEC);
	if (src < 0) {
		say("%s: %s", vpath, strerror(errno));
		return 1;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		say("%s: %s", tmp, strerror(errno));
		goto out;
	}
	ts[1].tv_sec = (time_t)(v->mtime_ns / 1000000000ll);
	ts[1].tv_nsec = (long)(v->mtime_ns % 1000000000ll);
	/* the owner where permitted (not permitted: the restorer's, as cp -p);
	 * the user.* xattrs before the mode, which may deny writing them, the
	 * others (ACLs, security.*, trusted.*) after the owner: the copy gets
	 * the version's set and no other */
	if (copy_data(fd, src) < 0 || pfs_hr_xattrs_put(fd, v->xa, v->xalen) < 0 ||
	    (fchown(fd, v->uid, v->gid) < 0 && errno != EPERM) ||
	    pfs_hr_xattrs_fix(tmp, v->xa, v->xalen) < 0 || fchmod(fd, v->mode & 07777) < 0 ||
	    futimens(fd, ts) < 0 || fsync(fd) < 0 || close(fd) < 0) {
		say("%s: %s", rel, strerror(errno));
		fd = -1;
		unlink(tmp);
		goto out;
	}
	fd = -1;
	pfs_crashpoint("restore-file-built");
	if (rename(tmp, target) < 0) {
		say("%s: %s", rel, strerror(errno));
		unlink(tmp);
		goto out;
	}
	printf("restored %s\n", rel);
	ret = 0;
out:
	if (fd >= 0) {
		close(fd);
		unlink(tmp);
	}
	close(src);
	return ret;
}

/* The name SNAPSHOT (a name or an id) has in the .history tree, in name;
 * false if there is no such snapshot. */
static bool snap_name(sqlite3 *db, const char *snap, char *name, size_t len)
{
	sqlite3_stmt *q = NULL;
	bool found;

	if (sqlite3_prepare_v2(db, "SELECT name FROM snapshots WHERE name = ?1 OR"
				   " CAST(id AS TEXT) = ?1 ORDER BY name = ?1 DESC LIMIT 1",
			       -1, &q, NULL) != SQLITE_OK)
		return false;
	sqlite3_bind_text(q, 1, snap, -1, SQLITE_STATIC);
	found = sqlite3_step(q) == SQLITE_ROW;
	if (found)
		snprintf(name, len, "%s", pfs_hc_col(q, 0));
	sqlite3_finalize(q);
	return found;
}

/* rel names its components plainly: no ".", ".." or empty one (the
 * temporary goes beside the last). */
static bool plain(const char *rel)
{
	for (const char *c = rel; *c;) {
		size_t n = strcspn(c, "/");

		if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
			return false;
		c += n + (c[n] == '/');
	}
	return true;
}

/* Do the files a (then) and b (now) hold the same, with the same mode,
 * owner, size and mtime? */
static bool same_file(const char *a, const struct stat *sa, const char *b,
		      const struct stat *sb)
{
	char x[65536], y[65536];
	bool same = false;
	int fa, fb;

	if (sa->st_mode != sb->st_mode || sa->st_uid != sb->st_uid ||
	    sa->st_gid != sb->st_gid || sa->st_size != sb->st_size ||
	    sa->st_mtim.tv_sec != sb->st_mtim.tv_sec || sa->st_mtim.tv_nsec != sb->st_mtim.tv_nsec)
		return false;
	fa = open(a, O_RDONLY | O_CLOEXEC);
	fb = fa < 0 ? -1 : open(b, O_RDONLY | O_CLOEXEC);
	if (fb >= 0)
		for (;;) {
			ssize_t n = read(fa, x, sizeof(x)), m = n > 0 ? read(fb, y, (size_t)n) : n;

			if (n < 0 || m != n || (n > 0 && memcmp(x, y, (size_t)n) != 0))
				break;
			if (n == 0) {
				same = true;
				break;
			}
		}
	if (fa >= 0)
		close(fa);
	if (fb >= 0)
		close(fb);
	return same;
}

/* What restoring one path of a mount whose history has a table needs. */
struct rctx {
	sqlite3 *db;
	const char *hdir, *canon_m, *bsnap, *past, *snap;
	const struct pfs_hc_maps *maps;
};

/* rel on a mount whose history has a table (docs/HISTORY.md, "With a
 * mapping table"). A name the table places now (a key, or a directory
 * holding keys) cannot be exchanged away (EBUSY, as a mount point): a
 * directory's entries are restored one by one, a file's copy renamed over
 * it. A file's saved version is found by its path in SOURCE, through the
 * table the snapshot was taken under: it has its own mode and owner (the
 * .history tree shows the table's, where it fixes them). */
static int restore_mapped(void *arg, const char *rel)
{
	const struct rctx *c = arg;
	const struct pfs_hc_maps *maps = c->maps;
	char p[PATH_MAX * 2 + 300], q[PATH_MAX * 2 + 300], v[PATH_MAX + 2], src[PATH_MAX];
	bool has_then, has_now, file;
	struct stat then, now;
	struct pfs_map_res r;
	long long seq, id;
	struct hver ver;

	snprintf(q, sizeof(q), "%s/%s", c->canon_m, rel);
	has_now = lstat(q, &now) == 0;
	snprintf(p, sizeof(p), "%s/%s", c->bsnap, rel);
	has_then = lstat(p, &then) == 0;
	snprintf(v, sizeof(v), "/%s", rel);
	pfs_map_resolve(maps->m[maps->n - 1], v, &r);
	if (!r.hidden && (r.exact || r.parent_of_keys) &&
	    ((has_then && S_ISDIR(then.st_mode)) || (has_now && S_ISDIR(now.st_mode))))
		return pfs_hr_restore_in(c->canon_m, c->bsnap, rel, "", restore_mapped, arg);
	file = has_then && S_ISREG(then.st_mode) && (!has_now || S_ISREG(now.st_mode));
	/* as it was: nothing to do (a file in a directory the table makes,
	 * read-only, could not have its copy built beside it) */
	if (file && has_now && same_file(p, &then, q, &now))
		return 0;
	if (file && pfs_hq_snap(c->db, c->snap, &seq, &id) == 0 &&
	    pfs_map_to_source(pfs_hc_map_at(maps, seq), v, maps->source, c->canon_m, src,
			      sizeof(src), NULL) == 1 &&
	    find_version(c->db, c->snap, src, &ver, false) > 0) {
		int ret = restore_one(c->hdir, c->canon_m, rel, &ver);

		free(ver.xa);
		return ret;
	}
	return pfs_hr_restore_path(c->canon_m, c->bsnap, c->snap, rel, file);
}

static int restore_all(const struct rctx *c)
{
	int ret;

	if (!c->maps->n)
		return pfs_hr_restore_all(c->canon_m, c->bsnap, c->snap, c->past);
	ret = pfs_hr_restore_in(c->canon_m, c->bsnap, "", c->past, restore_mapped, (void *)c);
	printf("restored everything from %s: each entry atomically, the root (and each"
	       " directory the table places) as a whole not\n", c->snap);
	return ret;
}

/* One PATH: a file whose saved version exists is copied from it (as
 * before trees were restored); anything else, from the .history tree. */
static int restore_path(const struct rctx *c, const char *path)
{
	sqlite3 *db = c->db;
	const char *hdir = c->hdir, *canon_m = c->canon_m, *bsnap = c->bsnap, *past = c->past,
		   *snap = c->snap;
	char rel[PATH_MAX], p[PATH_MAX * 2 + 300];
	struct stat then, now;
	bool now_file;

	pfs_hc_relpath(canon_m, path, rel, sizeof(rel));
	if (!*rel || strcmp(rel, ".") == 0)
		return restore_all(c);
	if (rel[0] == '/' || !plain(rel)) {
		say("%s: not a path inside %s (no '.', '..' or '//' in it)", path, canon_m);
		return 1;
	}
	if (strcmp(rel, past) == 0 || (strncmp(rel, past, strlen(past)) == 0 &&
				       rel[strlen(past)] == '/')) {
		say("%s: the past is read-only, nothing to restore there", path);
		return 1;
	}
	if (c->maps->n)
		return restore_mapped((void *)c, rel);
	snprintf(p, sizeof(p), "%s/%s", canon_m, rel);
	now_file = lstat(p, &now) < 0 || S_ISREG(now.st_mode);
	if (snprintf(p, sizeof(p), "%s/%s", bsnap, rel) >= (int)sizeof(p)) {
		say("%s: %s", path, strerror(ENAMETOOLONG));
		return 1;
	}
	if (lstat(p, &then) == 0 && S_ISREG(then.st_mode) && now_file) {
		struct hver v;
		int r;

		/* quiet probe: no saved version means unchanged since, or one
		 * this tree copy handles as well */
		r = find_version(db, snap, rel, &v, false);
		if (r < 0)
			return 1;
		if (r > 0) {
			r = restore_one(hdir, canon_m, rel, &v);
			free(v.xa);
			return r;
		}
	}
	return pfs_hr_restore_path(canon_m, bsnap, snap, rel, false);
}

static int cmd_restore(const char *mnt, const char *snap, char **paths, int n)
{
	char *canon_m = canonical_noleaf(mnt), req[400], line[PATH_MAX + 64], name[80],
	     hdir[PATH_MAX], sname[NAME_MAX + 1], past[NAME_MAX + 1], bsnap[PATH_MAX * 2 + 300];
	sqlite3 *db = canon_m ? pfs_hc_open_db(mnt) : NULL;
	struct timespec now;
	struct pfs_hc_maps maps = {0};
	struct rctx c;
	int ret = 1;

	if (!db)
		goto out;
	snprintf(hdir, sizeof(hdir), "%s", sqlite3_db_filename(db, "main"));
	*strrchr(hdir, '/') = '\0';
	/* nothing taken if the snapshot is unknown */
	if (!snap_name(db, snap, sname, sizeof(sname))) {
		say("%s: no snapshot %s", mnt, snap);
		goto out;
	}
	if (pfs_hc_ask(mnt, "browse\n", line, sizeof(line)) < 0)
		goto out;
	if (strncmp(line, "name ", 5) != 0 || !line[5]) {
		say("%s: the daemon did not say where its past tree is", mnt);
		goto out;
	}
	snprintf(past, sizeof(past), "%.*s", NAME_MAX, line + 5);
	snprintf(bsnap, sizeof(bsnap), "%s/%s/%s", canon_m, past, sname);
	clock_gettime(CLOCK_REALTIME, &now);
	snprintf(name, sizeof(name), "before-restore-%lld.%09ld", (long long)now.tv_sec,
		 now.tv_nsec);
	snprintf(req, sizeof(req), "snapshot 0 %s\n", name);
	if (pfs_hc_ask(mnt, req, line, sizeof(line)) < 0)
		goto out;
	printf("took snapshot %s (restore from it to undo)\n", name);
	fflush(stdout);
	ret = 0;
	if (pfs_hc_maps_load(db, canon_m, &maps) < 0) {
		say("%s: cannot read the mapping tables of the history", mnt);
		ret = 1;
		goto out;
	}
	c = (struct rctx){db, hdir, canon_m, bsnap, past, sname, &maps};
	if (n == 0)
		ret = restore_all(&c);
	for (int i = 0; i < n; i++) {
		ret |= restore_path(&c, paths[i]);
		fflush(stdout);
	}
out:
	pfs_hc_maps_free(&maps);
	pfs_hq_close(db); /* pfs_hq_snap prepared one of its statements */
	free(canon_m);
	return ret;
}

int pfs_history_restore_cmd(int argc, char **argv)
{
	int npos = 0;
	char **pos = calloc((size_t)argc, sizeof(char *));
	bool dashdash = false;
	int ret;

	if (!pos)
		return 1;
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i];

		if (!dashdash && (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)) {
			fputs(pfs_restore_usage, stdout);
			free(pos);
			return 0;
		} else if (!dashdash && strcmp(a, "--") == 0) {
			dashdash = true;
		} else if (!dashdash && a[0] == '-' && a[1]) {
			say("unknown option '%s' (see prismfs restore --help)", a);
			free(pos);
			return 2;
		} else {
			pos[npos++] = argv[i];
		}
	}
	if (npos < 2) {
		say("missing %s (usage: prismfs restore MOUNTPOINT SNAPSHOT [PATH...])",
		    npos == 0 ? "MOUNTPOINT" : "SNAPSHOT");
		free(pos);
		return 2;
	}
	ret = cmd_restore(pos[0], pos[1], pos + 2, npos - 2);
	free(pos);
	return ret;
}
