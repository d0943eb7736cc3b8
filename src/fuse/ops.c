/* ops: the FUSE low-level handler table. Each handler unpacks, calls the
 * view, logs (when asked) and replies. Logging happens before the reply:
 * once replied, the kernel may forget the nodes the record names. */
#include "view/view.h"
#include "fuse/shim.h"
#include "fuse/xport.h"
#include "ctl/oplog.h"
#include "util/util.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#define FS(req) ((struct pfs_fs *)fuse_req_userdata(req))
#define NODE(ino) pfs_node_of(fs, (ino))
#define PFS_ACL_GROUPS 256 /* a setter's groups looked at, its primary one included */

static uint64_t t0_of(struct pfs_fs *fs)
{
	return fs->log ? pfs_now_ns() : 0;
}

static void log_op(struct pfs_fs *fs, const char *op, struct pfs_node *n, const char *name,
		   struct pfs_node *n2, const char *name2, const struct pfs_logarg *args,
		   int64_t result, uint64_t t0)
{
	struct pfs_oprec r = {.op = op, .args = args, .result = result, .t0_ns = t0};
	char *p1 = n ? pfs_node_path(fs, n, name) : NULL;
	char *p2 = n2 ? pfs_node_path(fs, n2, name2) : NULL;

	r.path = p1;
	r.path2 = p2;
	r.t1_ns = pfs_now_ns();
	pfs_oplog_op(fs->log, &r);
	free(p1);
	free(p2);
}

/* LOG(op, node, name, node2, name2, result, args...): args end the list
 * themselves when there are none (pass PFS_LA_END). */
#define LOG(op, n, name, n2, name2, res, ...)                                              \
	do {                                                                                \
		if (t0) {                                                                   \
			const struct pfs_logarg la_[] = {__VA_ARGS__, PFS_LA_END};          \
			log_op(fs, op, n, name, n2, name2, la_, (int64_t)(res), t0);        \
		}                                                                           \
	} while (0)

/* What the view needs of the request being handled on this thread. */
static struct pfs_req req_of(struct pfs_fs *fs)
{
	return (struct pfs_req){.killpriv = fs->xport->killpriv_v2,
				.kill_suidgid = pfs_shim_kill_suidgid()};
}

static void reply_entry(struct pfs_fs *fs, fuse_req_t req, int ret,
			const struct fuse_entry_param *e)
{
	if (ret < 0) {
		fuse_reply_err(req, -ret);
		return;
	}
	/* The kernel never got the reference if the reply did not arrive. */
	if (fuse_reply_entry(req, e) != 0 && e->ino)
		pfs_node_forget(fs, NODE(e->ino), 1);
}

static void reply_create(struct pfs_fs *fs, fuse_req_t req, int ret,
			 const struct fuse_entry_param *e, struct fuse_file_info *fi)
{
	if (ret < 0) {
		fuse_reply_err(req, -ret);
		return;
	}
	if (fuse_reply_create(req, e, fi) != 0) {
		pfs_view_release(fs, NODE(e->ino), fi);
		pfs_node_forget(fs, NODE(e->ino), 1);
	}
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	struct pfs_fs *fs = userdata;

	if (conn->capable & FUSE_CAP_PARALLEL_DIROPS)
		conn->want |= FUSE_CAP_PARALLEL_DIROPS;
	if (conn->capable & FUSE_CAP_SPLICE_WRITE)
		conn->want |= FUSE_CAP_SPLICE_WRITE;
	/* A directory's default ACL replaces the caller's umask (acl(5)),
	 * and only the view knows whether the directory has one: the kernel
	 * passes the umask along (fuse_req_ctx()->umask) instead of applying
	 * it, and the view applies it where no default ACL does (view/acl.c). */
	if (conn->capable & FUSE_CAP_DONT_MASK)
		conn->want |= FUSE_CAP_DONT_MASK;
	/* The daemon writes with CAP_FSETID, so it would never clear set-ID
	 * bits; let the kernel do it for the caller, as natively. */
	conn->want &= ~FUSE_CAP_HANDLE_KILLPRIV;
	/* Writes go through to the backing file at once: the size and mtime
	 * the kernel shows are the backing file's. */
	conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
	/* The kernel's permission checks (default_permissions) read only the
	 * mode unless told that the filesystem has POSIX ACLs: a user an ACL
	 * denies would read through the mount what the source refuses him. */
	if (fs->acl && (conn->capable & FUSE_CAP_POSIX_ACL))
		conn->want |= FUSE_CAP_POSIX_ACL;
	if (fs->keep_cache && (conn->capable & FUSE_CAP_CACHE_SYMLINKS))
		conn->want |= FUSE_CAP_CACHE_SYMLINKS;
	/* Locks are left to the kernel (no getlk/setlk/flock handlers): every
	 * program using the mount sees every other's locks. */
	fs->xport->init_done(fs);
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct pfs_fs *fs = FS(req);
	uint64_t t0 = t0_of(fs);
	struct fuse_entry_param e;
	int ret;

	ret = pfs_view_lookup(fs, NODE(parent), name, &e);
	LOG("lookup", NODE(parent), name, NULL, NULL, ret, PFS_LA_END);
	if (ret == -ENOENT && fs->timeout > 0) {
		/* Cache the absence too: compilers and git stat many names
		 * that do not exist. */
		e.ino = 0;
		ret = 0;
	}
	reply_entry(fs, req, ret, &e);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	struct pfs_fs *fs = FS(req);
	uint64_t t0 = t0_of(fs);

	LOG("forget", NODE(ino), NULL, NULL, NULL, 0, PFS_LA_INT("nlookup", nlookup));
	pfs_node_forget(fs, NODE(ino), nlookup);
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	struct pfs_fs *fs = FS(req);

	for (size_t i = 0; i < count; i++) {
		uint64_t t0 = t0_of(fs);

		LOG("forget", NODE(forgets[i].ino), NULL, NULL, NULL, 0,
		    PFS_LA_INT("nlookup", forgets[i].nlookup));
		pfs_node_forget(fs, NODE(forgets[i].ino), forgets[i].nlookup);
	}
	pfs_nodes_maybe_trim(fs, count);
	fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct pfs_fs *fs = FS(req);
	uint64_t t0 = t0_of(fs);
	struct stat st;
	int ret = pfs_view_getattr(fs, NODE(ino), fi, &st);

	LOG("getattr", NODE(ino), NULL, NULL, NULL, ret, PFS_LA_INT("fh", fi ? pfs_fh_fd(fi) : -1));
	if (ret < 0)
		fuse_reply_err(req, -ret);
	else
		fuse_reply_attr(req, &st, pfs_view_attr_timeout(fs, NODE(ino)));
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int valid,
		       struct fuse_file_info *fi)
{
	struct pfs_fs *fs = FS(req);
	uint64_t t0 = t0_of(fs);
	struct pfs_req rq = req_of(fs);
	struct stat st;
	int ret = pfs_view_setattr(fs, &rq, fuse_req_ctx(req), NODE(ino), attr, valid, fi, &st);

	if (t0) {
		struct pfs_logarg a[8];
		int i = 0;

		a[i++] = (struct pfs_logarg)PFS_LA_HEX("valid", valid);
		if (valid & FUSE_SET_ATTR_MODE)
			a[i++] = (struct pfs_logarg)PFS_LA_OCT("mode", attr->st_mode & 07777);
		if (valid & FUSE_SET_ATTR_UID)
			a[i++] = (struct pfs_logarg)PFS_LA_INT("uid", attr->st_uid);
		if (valid & FUSE_SET_ATTR_GID)
			a[i++] = (struct pfs_logarg)PFS_LA_INT("gid", attr->st_gid);
		if (valid & FUSE_SET_ATTR_SIZE)
			a[i++] = (struct pfs_logarg)PFS_LA_INT("size", attr->st_size);
		if ((valid & FUSE_SET_ATTR_ATIME) && !(valid & FUSE_SET_ATTR_ATIME_NOW))
			a[i++] = (struct pfs_logarg)PFS_LA_INT("atime_ns",
				attr->st_atim.tv_sec * 1000000000LL + attr->st_atim.tv_nsec);
		if ((valid & FUSE_SET_ATTR_MTIME) && !(valid & FUSE_SET_ATTR_MTIME_NOW))
			a[i++] = (struct pfs_logarg)PFS_LA_INT("mtime_ns",
				attr->st_mtim.tv_sec * 1000000000LL + attr->st_mtim.tv_nsec);
		a[i] = (struct pfs_logarg)PFS_LA_END;
		log_op(fs, "setattr", NODE(ino), NULL, NULL, NULL, a, ret, t0);
	}
	if (ret < 0)
		fuse_reply_err(req, -ret);
	else
		fuse_reply_attr(req, &st, pfs_view_attr_timeout(fs, NODE(ino)));
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct pfs_fs *fs = FS(req);
	uint64_t t0 = t0_of(fs);
	char buf[PATH_MAX + 1];
	int ret = pfs_view_readlink(fs, NODE(ino), buf, sizeof(buf));

	LOG("readlink", NODE(ino), NULL, NULL, NULL, ret ? ret : (int)strlen(buf),
	    PFS_LA_STR("target", ret ? NULL : buf));
	if (ret < 0)
		fuse_reply_err(req, -ret);
	else
		fuse_reply_readlink(req, buf);
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		     dev_t rdev)
{
	struct pfs_fs *fs = FS(req);
	uint64_t t0 = t0_of(fs);
	struct fuse_entry_param e;
	int ret = pfs_view_mknod(fs, fuse_req_ctx(req), NODE(parent), name, mode, rdev, &e);

	LOG("mknod", NODE(parent), name, NULL, NULL, ret, PFS_LA_OCT("mode", mode),
	    PFS_LA_INT("rdev", rdev));
	reply_entry(fs, req, ret, &e);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	struct pfs_fs *fs = FS(req);
	uint64_t t0 = t0_of(fs);
	struct fuse_entry_param e;
	int ret = pfs_view_mkdir(fs, fuse_req_ctx(req), NODE(parent), name, mode, &e);

	LOG("mkdir", NODE(parent), name, NULL, NULL, ret, PFS_LA_OCT("mode", mode));
	reply_entry(fs, req, ret, &e);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct pfs_fs *fs = FS(req);
	uint64_t t0 = t0_of(fs);
	int ret = pfs_view_unlink(fs, NODE(parent), name);

	LOG("unlink", NODE(parent), name, NULL, NULL, ret, PFS_LA_END);
	fuse_reply_err(req, -ret);
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct pfs_fs *fs = FS(req);
	uint64_t t0 = t0_of(fs);
	int ret = pfs_view_rmdir(fs, NODE(parent), name);

	LOG("rmdir", NODE(parent), name, NULL, NULL, ret, PFS_LA_END);
	fuse_reply_err(req, -ret);
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	struct pfs_fs *fs = FS(req);
	uint64_t t0 = t0_of(fs);
	struct fuse_entry_param e;
	int ret = pfs_view_symlink(fs, fuse_req_ctx(req), link, NODE(parent), name, &e);

	LOG("symlink", NODE(parent), name, NULL, NULL, ret, PFS_LA_STR("target", link));
	reply_entry(fs, req, ret, &e);
}

/* Two-path ops are logged with the source path as it was before the call
 * (taken by the caller), and the target as it is after. Frees `from`. */
static void log_moved(struct pfs_fs *fs, const char *op, char *from, struct pfs_node *n2,
		      const char *name2, const struct pfs_logarg *args, int ret, uint64_t t0)
{
	struct pfs_oprec r = {.op = op, .path = from, .args = args, .result = ret, .t0_ns = t0};
	char *to = pfs_node_path(fs, n2, name2);

	r.path2 = to;
	r.t1_ns = pfs_now_ns();
	pfs_oplog_op(fs->log, &r);
	free(to);
	free(from);
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		      const char *newname, unsigned int flags)
{
	struct pfs_fs *fs = FS(req);
	uint64_t t0 = t0_of(fs);
	char *from = t0 ? pfs_node_path(fs, NODE(parent), name) : NULL;
	int ret = pfs_view_rename(fs, NODE(parent), name, NODE(newparent), newname, flags);

	if (t0) {
		const struct pfs_logarg a[] = {PFS_LA_HEX("flags", flags), PFS_LA_END};

		log_moved(fs, "rename", from, NODE(newparent), newname, a, ret, t0);
	}
	fuse_reply_err(req, -ret);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	struct pfs_fs *fs = FS(req);
	uint64_t t0 = t0_of(fs);
	struct fuse_entry_param e;
	char *from = t0 ? pfs_node_path(fs, NODE(ino), NULL) : NULL;
	int ret = pfs_view_link(fs, NODE(ino), NODE(newparent), newname, &e);

	if (t0)
		log_moved(fs, "link", from, NODE(newparent), newname, NULL, ret, t0);
	reply_entry(fs, req, ret, &e);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct pfs_fs *fs = FS(req);
	uint64_t t0 = t0_of(fs);
	struct pfs_req rq = req_of(fs);
	int ret = pfs_view_open(fs, &rq, NODE(ino), fi);

	LOG("open", NODE(ino), NULL, NULL, NULL, ret ? ret : (int64_t)pfs_fh_fd(fi),
	    PFS_LA_OCT("flags", fi->flags));
	if (ret < 0) {
		fuse_reply_err(req, -ret);
		return;
	}
	pfs_shim_set_backing(rq.backing_id);
	if (fuse_reply_open(req, fi) != 0)
		pfs_view_release(fs, NODE(ino), fi);
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      struct fuse_file_info *fi)
{
	struct pfs_fs *fs = FS(req);
	uint64_t t0 = t0_of(fs);
	struct pfs_req rq = req_of(fs);
	struct fuse_entry_param e;
	int ret = pfs_view_create(fs, &rq, fuse_req_ctx(req), NODE(parent), name, mode, fi, &e);

	LOG("create", NODE(parent), name, NULL, NULL, ret ? ret : (int64_t)pfs_fh_fd(fi),
	    PFS_LA_OCT("mode", mode), PFS_LA_OCT("flags", fi->flags));
	if (ret == 0)
		pfs_shim_set_backing(rq.backing_id);
	reply_create(fs, req, ret, &e, fi);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct pfs_fs *fs = FS(req);
	uint64_t t0 = t0_of(fs);
	struct fuse_bufvec buf;
	char *mem;
	ssize_t n;

	if (!t0) {
		pfs_view_read_buf(fs, fi, size, off, &buf);
		fuse_reply_data(req, &buf, FUSE_BUF_SPLICE_MOVE);
		return;
	}
	/* Logged reads are copied so the record can carry the result. */
	mem = malloc(size ? size : 1);
	n = mem ? pfs_view_read(fs, fi, mem, size, off) : -ENOMEM;
	LOG("read", NODE(ino), NULL, NULL, NULL, n, PFS_LA_INT("size", size),
	    PFS_LA_INT("offset", off), PFS_LA_INT("fh", pfs_fh_fd(fi)));
	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else
		fuse_reply_buf(req, mem, (size_t)n);
	free(mem);
}

static void op_write_buf(fuse_req_t req, fuse_ino_t ino, struct fuse_bufvec *in, off_t off,
			 struct fuse_file_info *fi)
{
	struct pfs_fs *fs = FS(req);
	uint64_t t0 = t0_of(fs);
	struct pfs_req rq = req_of(fs);
	size_t size = fuse_buf_size(in);
	ssize_t n = pfs_view_write(fs, &rq, fi, in, off);

	LOG("write", NODE(ino), NULL, NULL, NULL, n, PFS_LA_INT("size", size),
	    PFS_LA_INT("offset", off), PFS_LA_INT("fh", pfs_fh_fd(fi)));
	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else
		fuse_reply_write(req, (size_t)n);
}

static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct pfs_fs *fs = FS(req);
	uint64_t t0 = t0_of(fs);
	int ret = pfs_view_flush(fs, NODE(ino), fi);

	LOG("flush", NODE(ino), NULL, NULL, NULL, ret, PFS_LA_INT("fh", pfs_fh_fd(fi)));
	fuse_reply_err(req, -ret);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct pfs_fs *fs = FS(req);
	uint64_t t0 = t0_of(fs);
	bool writer = fi->fh & PFS_FH_WRITER;
	int ret;

	if (writer) /* past the reply, which may let the kernel forget it */
		pfs_node_hold(fs, NODE(ino));
	ret = pfs_view_release(fs, NODE(ino), fi);
	LOG("release", NODE(ino), NULL, NULL, NULL, ret, PFS_LA_INT("fh", pfs_fh_fd(fi)));
	fuse_reply_err(req, -ret);
	if (writer) {
		pfs_view_settle(fs, NODE(ino));
		pfs_node_release(fs, NODE(ino));
	}
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	struct pfs_fs *fs = FS(req);
	uint64_t t0 = t0_of(fs);
	int ret = pfs_view_fsync(fs, datasync, fi);

	LOG("fsync", NODE(ino), NULL, NULL, NULL, ret, PFS_LA_INT("datasync", datasync));
	fuse_reply_err(req, -ret);
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct pfs_fs *fs = FS(req);
	uint64_t t0 = t0_of(fs);
	int ret;

	if (fs->stateless_dirs) {
		fuse_reply_err(req, ENOSYS); /* the kernel asks no more */
		return;
	}
	ret = pfs_view_opendir(fs, NODE(ino), fi);
	LOG("opendir", NODE(ino), NULL, NULL, NULL, ret, PFS_LA_END);
	if (ret < 0)
		fuse_reply_err(req, -ret);
	else if (fuse_reply_open(req, fi) != 0)
		pfs_view_releasedir(fs, fi);
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi, bool plus)
{
	struct pfs_fs *fs = FS(req);
	uint64_t t0 = t0_of(fs);
	char *buf = malloc(size);
	ssize_t n = buf ? pfs_view_readdir(fs, req, NODE(ino), buf, size, off, fi, plus) : -ENOMEM;

	LOG(plus ? "readdirplus" : "readdir", NODE(ino), NULL, NULL, NULL, n,
	    PFS_LA_INT("size", size), PFS_LA_INT("offset", off));
	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else
		fuse_reply_buf(req, buf, (size_t)n);
	free(buf);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, false);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			   struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, true);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct pfs_fs *fs = FS(req);
	uint64_t t0 = t0_of(fs);
	int ret = pfs_view_releasedir(fs, fi);

	LOG("releasedir", NODE(ino), NULL, NULL, NULL, ret, PFS_LA_END);
	fuse_reply_err(req, -ret);
}

static void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	struct pfs_fs *fs = FS(req);
	uint64_t t0 = t0_of(fs);
	int ret = pfs_view_fsyncdir(fs, NODE(ino), datasync, fi);

	LOG("fsyncdir", NODE(ino), NULL, NULL, NULL, ret, PFS_LA_INT("datasync", datasync));
	fuse_reply_err(req, -ret);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct pfs_fs *fs = FS(req);
	uint64_t t0 = t0_of(fs);
	struct statvfs st;
	int ret = pfs_view_statfs(fs, NODE(ino), &st);

	LOG("statfs", NODE(ino), NULL, NULL, NULL, ret, PFS_LA_END);
	if (ret < 0)
		fuse_reply_err(req, -ret);
	else
		fuse_reply_statfs(req, &st);
}

static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
			size_t size, int flags)
{
	struct pfs_fs *fs = FS(req);
	uint64_t t0 = t0_of(fs);
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	gid_t groups[PFS_ACL_GROUPS];
	struct pfs_acl_caller who = {.uid = ctx->uid, .gid = ctx->gid, .pid = ctx->pid,
				     .groups = groups};
	bool acl = strcmp(name, "system.posix_acl_access") == 0;
	int ret;

	/* A caller in more groups than fit (or whose groups cannot be read)
	 * is taken to be in the file's: the SGID bit stays. */
	if (acl) {
		groups[0] = ctx->gid;
		ret = fuse_req_getgroups(req, PFS_ACL_GROUPS - 1, groups + 1);
		who.ngroups = ret >= 0 && ret < PFS_ACL_GROUPS ? ret + 1 : 0;
	}
	ret = pfs_view_setxattr(fs, NODE(ino), name, value, size, flags, acl ? &who : NULL);

	LOG("setxattr", NODE(ino), NULL, NULL, NULL, ret, PFS_LA_STR("name", name),
	    PFS_LA_INT("size", size), PFS_LA_HEX("flags", flags));
	fuse_reply_err(req, -ret);
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	struct pfs_fs *fs = FS(req);
	uint64_t t0 = t0_of(fs);
	char *buf = size ? malloc(size) : NULL;
	ssize_t n = (size && !buf) ? -ENOMEM : pfs_view_getxattr(fs, NODE(ino), name, buf, size);

	LOG("getxattr", NODE(ino), NULL, NULL, NULL, n, PFS_LA_STR("name", name),
	    PFS_LA_INT("size", size));
	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else if (size == 0)
		fuse_reply_xattr(req, (size_t)n);
	else
		fuse_reply_buf(req, buf, (size_t)n);
	free(buf);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	struct pfs_fs *fs = FS(req);
	uint64_t t0 = t0_of(fs);
	char *buf = size ? malloc(size) : NULL;
	ssize_t n = (size && !buf) ? -ENOMEM : pfs_view_listxattr(fs, NODE(ino), buf, size);

	LOG("listxattr", NODE(ino), NULL, NULL, NULL, n, PFS_LA_INT("size", size));
	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else if (size == 0)
		fuse_reply_xattr(req, (size_t)n);
	else
		fuse_reply_buf(req, buf, (size_t)n);
	free(buf);
}

static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	struct pfs_fs *fs = FS(req);
	uint64_t t0 = t0_of(fs);
	int ret = pfs_view_removexattr(fs, NODE(ino), name);

	LOG("removexattr", NODE(ino), NULL, NULL, NULL, ret, PFS_LA_STR("name", name));
	fuse_reply_err(req, -ret);
}

static void op_access(fuse_req_t req, fuse_ino_t ino, int mask)
{
	struct pfs_fs *fs = FS(req);
	uint64_t t0 = t0_of(fs);
	int ret = pfs_view_access(fs, NODE(ino), mask);

	LOG("access", NODE(ino), NULL, NULL, NULL, ret, PFS_LA_OCT("mask", mask));
	fuse_reply_err(req, -ret);
}

static void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
			 struct fuse_file_info *fi)
{
	struct pfs_fs *fs = FS(req);
	uint64_t t0 = t0_of(fs);
	int ret = pfs_view_fallocate(fs, mode, off, len, fi);

	LOG("fallocate", NODE(ino), NULL, NULL, NULL, ret, PFS_LA_HEX("mode", mode),
	    PFS_LA_INT("offset", off), PFS_LA_INT("length", len));
	fuse_reply_err(req, -ret);
}

static void op_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in,
			       struct fuse_file_info *fi_in, fuse_ino_t ino_out, off_t off_out,
			       struct fuse_file_info *fi_out, size_t len, int flags)
{
	struct pfs_fs *fs = FS(req);
	uint64_t t0 = t0_of(fs);
	ssize_t n = pfs_view_copy_file_range(fs, fi_in, off_in, fi_out, off_out, len, flags);

	LOG("copy_file_range", NODE(ino_in), NULL, NODE(ino_out), NULL, n,
	    PFS_LA_INT("offset_in", off_in), PFS_LA_INT("offset_out", off_out),
	    PFS_LA_INT("length", len));
	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else
		fuse_reply_write(req, (size_t)n);
}

static void op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
		     struct fuse_file_info *fi)
{
	struct pfs_fs *fs = FS(req);
	uint64_t t0 = t0_of(fs);
	off_t r = pfs_view_lseek(fs, off, whence, fi);

	LOG("lseek", NODE(ino), NULL, NULL, NULL, r, PFS_LA_INT("offset", off),
	    PFS_LA_INT("whence", whence));
	if (r < 0)
		fuse_reply_err(req, (int)-r);
	else
		fuse_reply_lseek(req, r);
}

const struct fuse_lowlevel_ops pfs_ops = {
	.init = op_init,
	.lookup = op_lookup,
	.forget = op_forget,
	.forget_multi = op_forget_multi,
	.getattr = op_getattr,
	.setattr = op_setattr,
	.readlink = op_readlink,
	.mknod = op_mknod,
	.mkdir = op_mkdir,
	.unlink = op_unlink,
	.rmdir = op_rmdir,
	.symlink = op_symlink,
	.rename = op_rename,
	.link = op_link,
	.open = op_open,
	.create = op_create,
	.read = op_read,
	.write_buf = op_write_buf,
	.flush = op_flush,
	.release = op_release,
	.fsync = op_fsync,
	.opendir = op_opendir,
	.readdir = op_readdir,
	.readdirplus = op_readdirplus,
	.releasedir = op_releasedir,
	.fsyncdir = op_fsyncdir,
	.statfs = op_statfs,
	.setxattr = op_setxattr,
	.getxattr = op_getxattr,
	.listxattr = op_listxattr,
	.removexattr = op_removexattr,
	.access = op_access,
	.fallocate = op_fallocate,
	.copy_file_range = op_copy_file_range,
	.lseek = op_lseek,
};
