/* file: open files. The daemon holds one backing fd per open; reads and
 * writes go straight to it (ops.c), the rest is here. */
#include "view/view.h"
#include "view/ns.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static bool writes(int flags)
{
	return (flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC);
}

/* A file whose set-ID bits a write by an unprivileged caller must clear
 * (set-group-ID only with group execute, as the kernel's FUSE rule says). */
static mode_t setid_bits(mode_t mode)
{
	mode_t kill = 0;

	if (!S_ISREG(mode))
		return 0;
	if (mode & S_ISUID)
		kill |= S_ISUID;
	if ((mode & (S_ISGID | S_IXGRP)) == (S_ISGID | S_IXGRP))
		kill |= S_ISGID;
	return kill;
}

int pfs_view_kill_suidgid(struct pfs_fs *fs, int fd, bool opath)
{
	struct stat st;
	mode_t kill;
	char name[24];

	if (fstat(fd, &st) < 0)
		return -errno;
	kill = setid_bits(st.st_mode);
	if (!kill)
		return 0;
	if (!opath)
		return pfs_st_chmod(fs->store, pfs_ref_fd(fd), st.st_mode & 07777 & ~kill);
	pfs_backing_procname(fd, name);
	return pfs_st_chmod(fs->store, pfs_ref_at(fs->proc_fd, name), st.st_mode & 07777 & ~kill);
}

/* The daemon writes with CAP_FSETID, so the backing filesystem keeps set-ID
 * bits that a write by the caller would have cleared: clear them here when
 * the kernel says the caller could not keep them. */
int pfs_file_kill_for_caller(struct pfs_fs *fs, const struct pfs_req *rq, int fd)
{
	if (!rq->killpriv || !rq->kill_suidgid)
		return 0;
	return pfs_view_kill_suidgid(fs, fd, false);
}

/* The kernel already enforced O_DIRECT's intent (no page cache for this
 * open); the backing fd must not keep it, or libfuse's unaligned request
 * buffers would make every transfer fail with EINVAL. Opening with it first
 * still reports a backing filesystem that refuses O_DIRECT, as natively. */
int pfs_file_nodirect(int fd, int flags)
{
	int fl;

	if (!(flags & O_DIRECT))
		return 0;
	fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_DIRECT) < 0)
		return -errno;
	return 0;
}

static int set_open_flags(struct pfs_fs *fs, struct pfs_req *rq, struct pfs_node *n,
			  struct fuse_file_info *fi, int flags)
{
	int id;

	/* A file shown at several places through its own nodes: no copy of its
	 * data may outlive a write through another of them. */
	fi->keep_cache = fs->keep_cache && !(flags & O_DIRECT) && !(fs->watch && n->ctx);
	fi->direct_io = 0;
	/* A local backing file reports nothing at close, and the kernel drops
	 * POSIX locks itself: skip the synchronous FLUSH round trip on every
	 * close(). With the op log on, closes stay visible as flush records; a
	 * store that orders a writer's data before the caller's next call
	 * (a cache) hears of it at FLUSH, which close(2) waits for. */
	fi->noflush = !fs->log && !(writes(flags) && pfs_st_flush_wanted(fs->store));
	/* The namespace may serve it itself (a layered mount's lower file). */
	id = fs->ns->serve_open(fs, n, fi);
	if (id != 0)
		return id < 0 ? id : 0;
	if (!fs->passthrough || n->type != S_IFREG)
		return 0;
	id = pfs_node_backing_get_or_daemon(fs, n, pfs_fh_fd(fi),
					    !pfs_st_direct_ok(fs->store, pfs_fh_fd(fi), flags));
	if (id == PFS_BACKING_DAEMON) {
		fi->fh |= PFS_FH_DAEMON; /* the store sees its writes */
		return 0;
	}
	if (id == -ESTALE || id == -EAGAIN)
		return id; /* the kernel must look the name up again; open the copy */
	if (id < 0)
		return 0; /* this open is served by the daemon instead */
	rq->backing_id = id; /* the handler gives it to the kernel */
	fi->fh |= PFS_FH_PASSTHROUGH;
	/* Where the store serves writers itself, a passthrough reader's close
	 * tells a writer opening next that the reader's RELEASE is only late
	 * (pfs_node_backing_get_or_daemon). Every reader's, small files' too:
	 * a writer may grow the file it just read past the cache, and over
	 * io_uring a RELEASE often comes after the next OPEN (the CI's random
	 * cache test: a 13 KiB file read, then 7 MiB written to it by
	 * passthrough into a 4 MiB cache, a short write). The round trip
	 * costs 10-30 us per open+read+close of a small file (measured). */
	if (pfs_st_serves_writers(fs->store))
		fi->noflush = 0;
	/* The kernel keeps no page cache of its own for passthrough files. */
	fi->keep_cache = 0;
	return 0;
}

/* An open that may change the file behind the back of a kernel inode that
 * shows it: by kernel passthrough (no request at all; through a shared
 * mapping not even at msync), or at one place of an object the table shows
 * at several (the other places' inodes hear of no write). While it is open
 * the object's attributes are given uncached (pfs_view_writing), and what
 * the kernel held before is dropped.
 *
 * A passthrough mapping outlives the open: the kernel maps the backing file
 * itself, sends the RELEASE at close(2) however long the mapping still
 * writes, and neither msync nor munmap reaches the daemon. So a writer's
 * RELEASE leaves the node lingering, uncached, until its backing file is
 * found open for writing no more: once the RELEASE is answered (the kernel
 * lets go of the open's own hold on it as it takes the answer), and else at
 * each answer about its attributes. Each end of writing drops what the
 * kernel was given meanwhile: an answer made before it, arriving after, is
 * then older than the invalidation, and the kernel ignores it. */
static bool count_writer(struct pfs_fs *fs, struct pfs_node *n, struct fuse_file_info *fi)
{
	if (!writes(fi->flags) || n->type != S_IFREG)
		return false;
	if (!(fi->fh & PFS_FH_PASSTHROUGH) && !fs->watch)
		return false; /* the kernel invalidates after its own requests */
	pfs_node_writer_get(fs, n);
	fi->fh |= PFS_FH_WRITER;
	return true;
}

/* ... and what the kernel was given for long before it is dropped (n's own
 * inode hears of writes by the daemon: only its other places). */
static void drop_cached_attrs(struct pfs_fs *fs, struct pfs_node *n, struct fuse_file_info *fi)
{
	pfs_inval_attrs(fs, n, (fi->fh & PFS_FH_PASSTHROUGH) != 0);
}

static void uncount_writer(struct pfs_fs *fs, struct pfs_node *n, struct fuse_file_info *fi)
{
	if (pfs_node_writer_put(fs, n, (fi->fh & PFS_FH_PASSTHROUGH) != 0))
		pfs_inval_attrs(fs, n, true);
}

void pfs_view_settle(struct pfs_fs *fs, struct pfs_node *n)
{
	if (__atomic_load_n(&n->lingering, __ATOMIC_ACQUIRE) && !pfs_backing_written(fs, n) &&
	    pfs_node_settle(fs, n))
		pfs_inval_attrs(fs, n, true);
}

bool pfs_view_writing(struct pfs_fs *fs, struct pfs_node *n)
{
	struct pfs_node *sib[16];
	size_t count;

	if (!pfs_node_writing(fs, n))
		return false;
	/* Settled now, this answer's attributes were read before (and the
	 * kernel ignores them): the next answer may be cached. */
	pfs_view_settle(fs, n);
	if (!fs->watch || __atomic_load_n(&n->writers, __ATOMIC_ACQUIRE))
		return true;
	/* Written at another place, which may linger unasked. */
	count = pfs_node_siblings(fs, n, sib, 16);
	for (size_t i = 0; i < count; i++) {
		pfs_view_settle(fs, sib[i]);
		pfs_node_release(fs, sib[i]);
	}
	return true;
}

/* An open file keeps its node's fd open: once unlinked, a closed one could
 * not be reopened, and the kernel still asks about the file by its node. */
static void pin_open(struct pfs_fs *fs, struct pfs_node *n, struct fuse_file_info *fi)
{
	pfs_node_pin(fs, n);
	fi->fh |= PFS_FH_PINNED;
	__atomic_add_fetch(&fs->files_open, 1, __ATOMIC_RELAXED);
}

int pfs_view_open(struct pfs_fs *fs, struct pfs_req *rq, struct pfs_node *n,
		  struct fuse_file_info *fi)
{
	int fd, ret;

	if (writes(fi->flags)) {
		ret = pfs_view_writable(fs, n);
		if (ret == 0 && n->type == S_IFREG)
			ret = fs->ns->prepare_change(fs, n, fi->flags);
		if (ret < 0)
			return ret;
	}
	fd = pfs_backing_reopen(fs, n, fi->flags);
	if (fd < 0)
		return fd;
	ret = pfs_file_nodirect(fd, fi->flags);
	if (ret < 0) {
		close(fd);
		return ret;
	}
	fi->fh = (uint64_t)fd;
	ret = (fi->flags & O_TRUNC) ? pfs_file_kill_for_caller(fs, rq, fd) : 0;
	if (ret == 0)
		ret = set_open_flags(fs, rq, n, fi, fi->flags);
	if (ret < 0)
		close(fd);
	if (ret == -EAGAIN) /* copied up while we opened: open the copy */
		return pfs_view_open(fs, rq, n, fi);
	if (ret < 0)
		return ret;
	pin_open(fs, n, fi);
	if (count_writer(fs, n, fi))
		drop_cached_attrs(fs, n, fi);
	return 0;
}

int pfs_file_serve(struct pfs_fs *fs, struct pfs_req *rq, struct pfs_node *n,
		   struct fuse_file_info *fi, struct fuse_entry_param *e, bool fresh)
{
	int ret = set_open_flags(fs, rq, n, fi, fi->flags);

	if (ret < 0)
		return ret;
	pin_open(fs, n, fi);
	if (count_writer(fs, n, fi)) {
		e->attr_timeout = 0;
		if (!fresh) /* an object the kernel may hold already */
			drop_cached_attrs(fs, n, fi);
	}
	return 0;
}

int pfs_view_create(struct pfs_fs *fs, struct pfs_req *rq, const struct fuse_ctx *ctx,
		    struct pfs_node *parent, const char *name, mode_t mode,
		    struct fuse_file_info *fi, struct fuse_entry_param *e)
{
	int ret = pfs_view_creator_mapped(fs, ctx);

	if (ret < 0)
		return ret;
	if (strnlen(name, NAME_MAX + 1) > NAME_MAX)
		return -ENAMETOOLONG;
	return fs->ns->create(fs, rq, ctx, parent, name, mode, fi, e);
}

int pfs_view_release(struct pfs_fs *fs, struct pfs_node *n, struct fuse_file_info *fi)
{
	/* The store hears of it first: a cache writes back what was written. */
	pfs_st_release(fs->store, pfs_fh_fd(fi));
	close(pfs_fh_fd(fi));
	/* Its size and times may have changed for its other places too. */
	if (writes(fi->flags))
		pfs_view_changed(fs, n, NULL);
	if (fi->fh & PFS_FH_WRITER)
		uncount_writer(fs, n, fi);
	if (fi->fh & PFS_FH_PASSTHROUGH)
		pfs_node_backing_put(fs, n);
	if (fi->fh & PFS_FH_DAEMON)
		pfs_node_daemon_put(fs, n);
	if (fi->fh & PFS_FH_TRACKED)
		pfs_node_open_untrack(fs, n, pfs_fh_fd(fi));
	if (fi->fh & PFS_FH_PINNED) {
		pfs_node_unpin(fs, n);
		__atomic_sub_fetch(&fs->files_open, 1, __ATOMIC_RELAXED);
	}
	return 0;
}

int pfs_view_flush(struct pfs_fs *fs, struct pfs_node *n, struct fuse_file_info *fi)
{
	/* close() of a duplicate reports what a close of the file would (NFS
	 * and other backings report deferred write errors there). */
	int fd, ret;

	if (fi->fh & PFS_FH_PASSTHROUGH)
		pfs_node_backing_closing(fs, n);
	/* (FLUSH carries no open flags: the store knows its writers) */
	ret = pfs_st_flush(fs->store, pfs_fh_fd(fi));
	fd = dup(pfs_fh_fd(fi));
	if (fd < 0)
		return -errno;
	if (close(fd) < 0)
		return -errno;
	return ret;
}

int pfs_view_fsync(struct pfs_fs *fs, int datasync, struct fuse_file_info *fi)
{
	return pfs_st_sync(fs->store, pfs_fh_fd(fi), datasync != 0);
}

int pfs_view_fallocate(struct pfs_fs *fs, int mode, off_t off, off_t len,
		       struct fuse_file_info *fi)
{
	int ret;

	if (fs->read_only)
		return -EROFS;
	/* Growing it is writing, as the store sees it (room, or a move). */
	ret = mode == 0 ? pfs_st_write_prep(fs->store, pfs_fh_fd(fi), off, (size_t)len, 0) : 0;
	if (ret == 0)
		ret = pfs_st_fallocate(fs->store, pfs_fh_fd(fi), mode, off, len);
	if (ret == -ENOSPC && mode == 0 &&
	    pfs_st_write_prep(fs->store, pfs_fh_fd(fi), off, (size_t)len, ret) == 0)
		ret = pfs_st_fallocate(fs->store, pfs_fh_fd(fi), mode, off, len);
	/* Allocating without growing the file (KEEP_SIZE) needs room too: the
	 * store may move the file for it, its size left alone (nothing past
	 * the end is written: an empty write at 0). */
	else if (ret == -ENOSPC && mode == FALLOC_FL_KEEP_SIZE &&
		 pfs_st_write_prep(fs->store, pfs_fh_fd(fi), 0, 0, ret) == 0)
		ret = pfs_st_fallocate(fs->store, pfs_fh_fd(fi), mode, off, len);
	return ret;
}

ssize_t pfs_view_copy_file_range(struct pfs_fs *fs, struct fuse_file_info *fi_in, off_t off_in,
				 struct fuse_file_info *fi_out, off_t off_out, size_t len,
				 int flags)
{
	off_t in0 = off_in, out0 = off_out;
	struct stat sin;
	ssize_t n;

	if (fs->read_only)
		return -EROFS;
	/* What it will write: len is often far more than the source has. */
	if (fstat(pfs_fh_fd(fi_in), &sin) == 0)
		len = off_in >= sin.st_size ? 0 : (size_t)(sin.st_size - off_in) < len ?
		      (size_t)(sin.st_size - off_in) : len;
	n = pfs_st_write_prep(fs->store, pfs_fh_fd(fi_out), off_out, len, 0);
	if (n < 0)
		return n;
	n = copy_file_range(pfs_fh_fd(fi_in), &off_in, pfs_fh_fd(fi_out), &off_out, len,
			    (unsigned int)flags);
	if (n < 0 && errno == ENOSPC &&
	    pfs_st_write_prep(fs->store, pfs_fh_fd(fi_out), out0, len, -ENOSPC) == 0) {
		off_in = in0;
		off_out = out0;
		n = copy_file_range(pfs_fh_fd(fi_in), &off_in, pfs_fh_fd(fi_out), &off_out, len,
				    (unsigned int)flags);
	}
	return n < 0 ? -errno : n;
}

off_t pfs_view_lseek(struct pfs_fs *fs, off_t off, int whence, struct fuse_file_info *fi)
{
	off_t r = lseek(pfs_fh_fd(fi), off, whence);

	return r < 0 ? -errno : r;
}

void pfs_view_read_buf(struct pfs_fs *fs, struct fuse_file_info *fi, size_t size, off_t off,
		       struct fuse_bufvec *out)
{
	/* Described, not copied: libfuse splices from the fd into the reply. */
	*out = (struct fuse_bufvec)FUSE_BUFVEC_INIT(size);
	out->buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
	out->buf[0].fd = pfs_fh_fd(fi);
	out->buf[0].pos = off;
}

ssize_t pfs_view_read(struct pfs_fs *fs, struct fuse_file_info *fi, char *buf, size_t size,
		      off_t off)
{
	ssize_t n = pread(pfs_fh_fd(fi), buf, size, off);

	return n < 0 ? -errno : n;
}

ssize_t pfs_view_write(struct pfs_fs *fs, struct pfs_req *rq, struct fuse_file_info *fi,
		       struct fuse_bufvec *in, off_t off)
{
	struct fuse_bufvec out = FUSE_BUFVEC_INIT(fuse_buf_size(in));

	ssize_t ret;

	if (fs->read_only)
		return -EROFS;
	ret = pfs_file_kill_for_caller(fs, rq, pfs_fh_fd(fi));
	if (ret < 0)
		return ret;
	out.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
	out.buf[0].fd = pfs_fh_fd(fi);
	out.buf[0].pos = off;
	/* The store may hold the writer back, make room, or move the file
	 * (same descriptor number): asked first, and again once after a
	 * failure. The kernel sends one write of an inode at a time (its
	 * inode lock), so nothing writes to the old place meanwhile. */
	ret = pfs_st_write_prep(fs->store, pfs_fh_fd(fi), off, fuse_buf_size(in), 0);
	if (ret < 0)
		return ret;
	ret = fuse_buf_copy(&out, in, 0);
	/* A filesystem that runs out of room part-way (tmpfs, the cache's
	 * memory) answers with the part it wrote, not ENOSPC: the rest is
	 * asked for again as well. fuse_buf_copy advanced both vectors past
	 * what it copied, so a second call writes the rest, in its place. */
	if ((ret == -ENOSPC || ret == -EFBIG ||
	     (ret >= 0 && (size_t)ret < fuse_buf_size(in))) &&
	    !(in->buf[0].flags & FUSE_BUF_IS_FD)) {
		ssize_t done = ret > 0 ? ret : 0, more;
		int again = pfs_st_write_prep(fs->store, pfs_fh_fd(fi), off + done,
					      fuse_buf_size(in) - (size_t)done,
					      ret < 0 ? (int)ret : -ENOSPC);

		if (again == 0) {
			more = fuse_buf_copy(&out, in, 0);
			ret = more < 0 ? (done ? done : more) : done + more;
		}
	}
	return ret;
}
