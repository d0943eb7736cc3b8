/* journal_spill: the data of files too large for memory, kept in DIR/spill
 * (see journal.h).
 *
 * Without a journal a file that leaves memory (cache_spill.c) goes to an
 * unnamed file on the mirror's filesystem: a kill -9 takes it with the
 * daemon, and the cache file left in the tree is a stub with its memory
 * punched out — a replay would write holes over the mirror's file. With a
 * journal the spill file is made here instead, on the disk the user gave
 * for the journal, and named by the tree file it stands for (its inode and
 * birth time, as the journal's rows name it) before that file's memory
 * is punched out: from then on the named file holds every acknowledged
 * write of it (a write to it is in the page cache before the reply, which
 * a kill of the daemon does not take), and the replay reads a file's data
 * from here when it is here (pfs_journal_spill_use).
 *
 * Its life: made unnamed (O_TMPFILE) and filled from the cache file, then
 * named (linked under a temporary name and renamed over any older one), so
 * a kill during the copy leaves no half file under the name while the
 * tree still holds the data; dropped when the DATA op of its last writer's
 * release is applied and counted (pfs_journal_spill_done: a kill between
 * the apply and the count replays that op, which needs it); anything left
 * by a kill is removed once a replay has applied everything
 * (pfs_journal_spill_clear). It is never linked into the mirror
 * (PFS_WB_DATA_MOVE): a mirror file sharing its inode would be truncated
 * by a replay copying it over itself. */
#include "cache/journal_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* DIR/spill, made if missing: a descriptor, or -errno. */
static int spill_dir(struct pfs_journal *j)
{
	int fd;

	if (mkdirat(j->dirfd, "spill", 0700) < 0 && errno != EEXIST)
		return -errno;
	fd = openat(j->dirfd, "spill", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

static void spill_name(char *buf, size_t len, int64_t ino, int64_t bs, int64_t bns)
{
	snprintf(buf, len, "%" PRId64 ".%" PRId64 ".%" PRId64, ino, bs, bns);
}

/* The name of the tree file fd's spill file. 0 or -errno. */
static int name_of(int fd, char *buf, size_t len)
{
	struct statx sx;

	if (statx(fd, "", AT_EMPTY_PATH, STATX_INO | STATX_BTIME, &sx) < 0)
		return -errno;
	spill_name(buf, len, (int64_t)sx.stx_ino,
		   (sx.stx_mask & STATX_BTIME) ? sx.stx_btime.tv_sec : 0,
		   (sx.stx_mask & STATX_BTIME) ? sx.stx_btime.tv_nsec : 0);
	return 0;
}

int pfs_journal_spill_new(struct pfs_journal *j)
{
	int dfd = spill_dir(j), fd;

	if (dfd < 0)
		return dfd;
	fd = openat(dfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	fd = fd < 0 ? -errno : fd;
	close(dfd);
	return fd;
}

int pfs_journal_spill_keep(struct pfs_journal *j, int cfd, int sfd)
{
	char name[96], tmp[104], proc[32];
	int dfd, ret;

	ret = name_of(cfd, name, sizeof(name));
	if (ret < 0)
		return ret;
	dfd = spill_dir(j);
	if (dfd < 0)
		return dfd;
	snprintf(tmp, sizeof(tmp), "new.%s", name);
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", sfd);
	unlinkat(dfd, tmp, 0); /* a kill's leftover */
	ret = linkat(AT_FDCWD, proc, dfd, tmp, AT_SYMLINK_FOLLOW) < 0 ||
	      renameat(dfd, tmp, dfd, name) < 0 ? -errno : 0;
	if (ret < 0)
		unlinkat(dfd, tmp, 0);
	close(dfd);
	return ret;
}

void pfs_journal_spill_done(struct pfs_journal *j, const struct pfs_wb_op *op)
{
	if (op->kind == PFS_WB_DATA && (op->flags & PFS_WB_DATA_SPILLED))
		pfs_journal_spill_drop(j, op->fd, op->datafd);
}

void pfs_journal_spill_drop(struct pfs_journal *j, int cfd, int sfd)
{
	struct stat ds, ns;
	char name[96];
	int dfd;

	if (cfd < 0 || sfd < 0 || name_of(cfd, name, sizeof(name)) < 0 || fstat(sfd, &ds) < 0)
		return;
	dfd = openat(j->dirfd, "spill", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0)
		return;
	/* Only its own: a file spilled again since has a new one there. */
	if (fstatat(dfd, name, &ns, AT_SYMLINK_NOFOLLOW) == 0 && ns.st_ino == ds.st_ino &&
	    ns.st_dev == ds.st_dev)
		unlinkat(dfd, name, 0);
	close(dfd);
}

int pfs_journal_spill_use(struct pfs_journal *j, struct pfs_wb_op *op, int64_t ino, int64_t bs,
			  int64_t bns)
{
	struct stat ss, ts;
	char name[96], proc[32];
	int dfd, sfd, wfd, ret = 0;

	dfd = openat(j->dirfd, "spill", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0)
		return 0; /* nothing ever spilled */
	spill_name(name, sizeof(name), ino, bs, bns);
	sfd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	close(dfd);
	if (sfd < 0)
		return errno == ENOENT ? 0 : -errno;
	if (fstat(sfd, &ss) < 0 || fstat(op->fd, &ts) < 0) {
		ret = -errno;
		goto fail;
	}
	/* The spill file's size is the acknowledged one: the stub is grown
	 * before a write reaches the spill file, and truncated after it. The
	 * mirror takes the size from the tree's file (op->fd): set it there,
	 * its times kept (the old tree is dropped after the replay). */
	if (ss.st_size != ts.st_size) {
		struct timespec t[2] = {ts.st_atim, ts.st_mtim};

		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", op->fd);
		wfd = open(proc, O_WRONLY | O_CLOEXEC);
		if (wfd < 0 || ftruncate(wfd, ss.st_size) < 0 || futimens(wfd, t) < 0)
			ret = -errno;
		if (wfd >= 0)
			close(wfd);
		if (ret < 0)
			goto fail;
	}
	if (op->datafd >= 0)
		close(op->datafd);
	op->datafd = sfd;
	return 1;
fail:
	close(sfd);
	return ret;
}

void pfs_journal_spill_clear(struct pfs_journal *j)
{
	int dfd = openat(j->dirfd, "spill", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
	struct dirent *e;

	if (!d) {
		if (dfd >= 0)
			close(dfd);
		return;
	}
	while ((e = readdir(d)))
		if (e->d_type != DT_DIR)
			unlinkat(dfd, e->d_name, 0);
	closedir(d);
}
