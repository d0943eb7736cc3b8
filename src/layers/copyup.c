/* copyup: bringing an object from a lower layer into the upper before it
 * changes. The copy is made in the work directory — data, then owner,
 * xattrs, mode and times — made durable, and renamed into place, so the
 * upper never holds half a copy; parents are copied first. */
#include "layers/layer.h"
#include "layers/layer_int.h"
#include "view/view.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "layers/layermap.h"
#include "layers/ovlfmt.h"
#include "store/meta.h"
#include "store/rmtree.h"

void pfs_layer_tmpname(struct pfs_layers *L, char buf[32])
{
	snprintf(buf, 32, "#pfs.%d.%lu", (int)getpid(), ++L->tmpseq);
}

/* The data of the regular file src (lstat st) into the new file dst:
 * shared blocks where the filesystem can, else a copy. */
static int copy_data(struct pfs_store *s, int dst, int src, const struct stat *st)
{
	int ret = pfs_st_copy(s, dst, src, st->st_size, true, NULL, NULL);

	if (ret == 0)
		return 0;
	if (ret != -EXDEV && ret != -EOPNOTSUPP && ret != -EINVAL)
		return ret;
	return pfs_st_copy(s, dst, src, st->st_size, false, NULL, NULL);
}

/* What a copy-up brings: all, the object without its data (a truncating
 * open), or a metacopy (overlay.metacopy: metadata only, data below). */
enum cu_mode { CU_ALL, CU_NO_DATA, CU_META };

/* Make a copy of the object `name` in the lower directory ldir (whose
 * O_PATH fd is obj, lstat st; its data dobj's) as tmp in the work
 * directory. */
static int make_copy(struct pfs_fs *fs, int ldir, const char *name, int obj, int dobj,
		     const struct stat *st, const char *tmp, enum cu_mode mode)
{
	struct pfs_store *s = fs->store;
	int wd = fs->layers->work_fd, fd = -1, src = -1, ret = 0;
	const char *op = NULL;

	switch (st->st_mode & S_IFMT) {
	case S_IFDIR:
		ret = pfs_st_mkdir(s, wd, tmp, 0700);
		if (ret < 0)
			return ret;
		break;
	case S_IFREG: {
		char p[24];

		fd = pfs_st_openat(s, wd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd < 0)
			return fd;
		if (mode == CU_META) {
			/* As the kernel's: sparse, of the lower's size; the data
			 * stays below until the first write. */
			ret = pfs_st_truncate(s, fd, st->st_size);
		} else if (mode == CU_ALL && st->st_size > 0) {
			pfs_store_procname(dobj, p);
			src = pfs_st_openat(s, fs->proc_fd, p, O_RDONLY | O_CLOEXEC, 0);
			ret = src < 0 ? src : copy_data(s, fd, src, st);
		}
		break;
	}
	case S_IFLNK: {
		char target[PATH_MAX];
		ssize_t l = pfs_st_readlink(s, obj, "", target, sizeof(target) - 1);

		if (l < 0)
			return (int)l;
		target[l] = '\0';
		ret = pfs_st_symlink(s, target, wd, tmp);
		if (ret < 0)
			return ret;
		break;
	}
	default:
		ret = pfs_st_mknod(s, wd, tmp, st->st_mode, st->st_rdev);
		if (ret < 0)
			return ret;
	}
	if (ret == 0)
		ret = pfs_meta_copy(s, fd >= 0 ? pfs_ref_fd(fd) : pfs_ref_at(wd, tmp),
				    pfs_layer_ref(fs, ldir, name), st, PFS_META_NO_PRIVATE, &op);
	if (ret == 0 && mode == CU_META)
		ret = pfs_layer_setx(fs, wd, tmp, "metacopy", "", 0);
	/* Durable before it is renamed into place: a crash must not leave an
	 * upper file that hides the lower one with less than its data. */
	if (ret == 0 && fd >= 0)
		ret = pfs_st_sync(s, fd, false);
	if (src >= 0)
		close(src);
	if (fd >= 0) { /* opened for writing through the store: it hears of the close */
		pfs_st_release(s, fd);
		close(fd);
	}
	if (ret < 0)
		pfs_rmtree_at(fs->store, wd, tmp, NULL, 0);
	return ret;
}

/* The first name of n: its parent (held) and name. */
static int node_first_name(struct pfs_fs *fs, struct pfs_node *n, struct pfs_node **parent,
			   char name[NAME_MAX + 1])
{
	int ret = -ENOENT;

	pthread_rwlock_rdlock(&fs->names_lock);
	if (n->alias) {
		*parent = n->alias->parent;
		pfs_node_hold(fs, *parent);
		snprintf(name, NAME_MAX + 1, "%s", n->alias->name);
		ret = 0;
	}
	pthread_rwlock_unlock(&fs->names_lock);
	return ret;
}

int pfs_layer_node_name(struct pfs_fs *fs, struct pfs_node *n, int *dirfd, char *name,
			size_t len)
{
	struct pfs_node *parent = NULL;
	int ret = -ENOENT;

	pthread_rwlock_rdlock(&fs->names_lock);
	if (n->ln && n->ln->top && n->ln->sdir >= 0 && strlen(n->ln->sname) < len) {
		*dirfd = n->ln->sdir; /* where the table put it */
		strcpy(name, n->ln->sname);
		ret = 0;
	} else if (n->alias && n->ln && n->alias->parent->ln && strlen(n->alias->name) < len) {
		parent = n->alias->parent;
		pfs_node_hold(fs, parent);
		strcpy(name, n->alias->name);
	}
	pthread_rwlock_unlock(&fs->names_lock);
	if (parent) {
		/* Pinned to the request's end: its fds stay open until then. */
		ret = pfs_node_fd(fs, parent);
		if (ret >= 0) {
			*dirfd = __atomic_load_n(&parent->ln->fd[n->ln->top], __ATOMIC_ACQUIRE);
			ret = *dirfd >= 0 ? 0 : -ENOENT;
		}
		pfs_node_release(fs, parent);
	}
	return ret;
}

/* A synthetic directory of the mapping table as tmp in work: made as the
 * view shows it (pfs_lmap_syn_attr), so the copy-up changes nothing seen. */
static int make_synthetic(struct pfs_fs *fs, struct pfs_node *n, const char *tmp)
{
	struct pfs_store *s = fs->store;
	int wd = fs->layers->work_fd, ret;
	struct stat st;

	pfs_lmap_syn_attr(fs, n->ino, &st);
	ret = pfs_st_mkdir(s, wd, tmp, st.st_mode & 07777);
	if (ret < 0)
		return ret;
	ret = pfs_st_chown(s, pfs_ref_at(wd, tmp), st.st_uid, st.st_gid);
	if (ret == 0)
		ret = pfs_st_chmod(s, pfs_ref_at(wd, tmp), st.st_mode & 07777);
	if (ret == 0)
		ret = pfs_meta_times(s, pfs_ref_at(wd, tmp), &st);
	if (ret < 0)
		pfs_st_unlink(s, wd, tmp, AT_REMOVEDIR);
	return ret;
}

static int copy_up_one(struct pfs_fs *fs, struct pfs_node *n, struct pfs_node *parent,
		       const char *name, enum cu_mode mode)
{
	struct pfs_layers *L = fs->layers;
	struct pfs_store *s = fs->store;
	/* Both pinned (their fds open) until the request ends. */
	int pfd = pfs_node_fd(fs, parent), nfd = pfs_node_fd(fs, n);
	int t = n->ln->top, ud, ldir, fd, dobj, ret;
	bool syn = t == 1 && n->ln->syn, split, whole;
	const char *lname = name;
	struct stat st, pst;
	char tmp[32];

	if (pfd < 0 || nfd < 0)
		return pfd < 0 ? pfd : nfd;
	ud = __atomic_load_n(&parent->ln->fd[0], __ATOMIC_ACQUIRE);
	ldir = __atomic_load_n(&parent->ln->fd[t], __ATOMIC_ACQUIRE);
	if (n->ln->sdir >= 0) { /* the table put it elsewhere than its parent's part */
		ldir = n->ln->sdir;
		lname = n->ln->sname;
	}
	if (ud < 0 || (ldir < 0 && !syn))
		return -ESTALE;
	ret = pfs_st_stat(s, nfd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
	if (ret == 0)
		ret = pfs_st_stat(s, ud, "", &pst, AT_EMPTY_PATH);
	if (ret < 0)
		return ret;
	/* A lower file with several links loses them in the upper (as on
	 * overlayfs without index): the copy is a file of its own, with its
	 * own number, and the other names keep the lower one. */
	split = !S_ISDIR(st.st_mode) && st.st_nlink > 1;
	/* Nothing to leave below: an empty file, or no xattr to say so. */
	if (mode == CU_META && (!S_ISREG(st.st_mode) || st.st_size == 0 || !L->xattrs || syn))
		mode = CU_ALL;
	/* A lower metacopy file's data is its data file's (a data-only
	 * layer's): a copy brings that. */
	dobj = nfd;
	if (n->ln->meta && n->ln->nodata)
		return -n->ln->nodata; /* as the kernel's, whatever the copy-up */
	if (n->ln->meta && mode == CU_ALL)
		dobj = __atomic_load_n(&n->ln->fd[n->ln->bottom], __ATOMIC_ACQUIRE);
	pfs_layer_tmpname(L, tmp);
	ret = syn ? make_synthetic(fs, n, tmp)
		  : make_copy(fs, ldir, lname, nfd, dobj, &st, tmp, mode);
	if (ret < 0)
		return ret;
	if (!S_ISDIR(st.st_mode) && !split)
		pfs_layer_set_origin(fs, L->work_fd, tmp, t, n->dev, n->ino);
	ret = pfs_st_rename(s, L->work_fd, tmp, ud, name, RENAME_NOREPLACE);
	if (ret < 0) {
		pfs_rmtree_at(s, L->work_fd, tmp, NULL, 0);
		return ret;
	}
	/* A copy-up is no change to the parent the view shows. */
	pfs_st_utimes(s, pfs_ref_at(ud, "."), (struct timespec[2]){pst.st_atim, pst.st_mtim});
	fd = pfs_st_openat(s, ud, name, O_PATH | O_NOFOLLOW | O_CLOEXEC, 0);
	if (fd < 0)
		return fd;
	/* The lower object (fd[t], kept) still holds the data: its opens
	 * stay on it (pfs_node_moved_up leaves them). */
	whole = mode != CU_META && n->ln->meta; /* a lower metacopy file */
	if (mode == CU_META)
		__atomic_store_n(&n->ln->meta, true, __ATOMIC_RELEASE);
	if (pfs_node_moved_up(fs, n, fd) || split) {
		pfs_node_retire(fs, n);
		pfs_inval_entry(fs, parent, name);
	} else if (S_ISDIR(st.st_mode)) {
		/* Its ctime is the new upper directory's from now on (it cannot
		 * be set): the kernel must not keep showing the lower one's. */
		pfs_inval_entry(fs, n, NULL);
	}
	/* Its data now the upper's too: the opens reading the data file
	 * move to the copy (until here they read the data file still). */
	if (whole && pfs_node_data_up(fs, n))
		pfs_inval_entry(fs, parent, name);
	return 0;
}

static int copy_up_mode(struct pfs_fs *fs, struct pfs_node *n, enum cu_mode mode)
{
	struct pfs_node *parent;
	char name[NAME_MAX + 1];
	int ret;

	if (!n->ln)
		return -ESTALE;
	if (n->ln->top == 0)
		return 0;
	ret = node_first_name(fs, n, &parent, name);
	if (ret < 0)
		return ret; /* an unlinked lower object: nowhere to put it */
	ret = pfs_layer_copy_up_locked(fs, parent, false);
	if (ret == 0)
		ret = copy_up_one(fs, n, parent, name, mode);
	pfs_node_release(fs, parent);
	return ret;
}

int pfs_layer_copy_up_locked(struct pfs_fs *fs, struct pfs_node *n, bool no_data)
{
	return copy_up_mode(fs, n, no_data ? CU_NO_DATA : CU_ALL);
}

int pfs_layer_copy_up_meta_locked(struct pfs_fs *fs, struct pfs_node *n)
{
	return copy_up_mode(fs, n, fs->layers->metacopy && n->type == S_IFREG ? CU_META : CU_ALL);
}

int pfs_layer_copy_up_link_locked(struct pfs_fs *fs, struct pfs_node *n)
{
	char name[NAME_MAX + 1];
	struct pfs_node *parent;
	int ud, ret;

	if (!fs->layers->metacopy || n->type != S_IFREG)
		return copy_up_mode(fs, n, CU_ALL);
	ret = copy_up_mode(fs, n, CU_META);
	if (ret < 0)
		return ret;
	ret = node_first_name(fs, n, &parent, name);
	if (ret < 0)
		return ret;
	/* The kernel's ovl_set_link_redirect: the new name finds the data by
	 * an absolute redirect, which serves every name of the inode. */
	ud = parent->ln->fd[0];
	if (pfs_ovl_has(fs->store, pfs_ref_at(ud, name), "metacopy") > 0)
		ret = pfs_redir_set_renamed(fs, parent, ud, name, false);
	pfs_node_release(fs, parent);
	return ret;
}

int pfs_layer_copy_up_meta(struct pfs_fs *fs, struct pfs_node *n)
{
	int ret;

	if (!n->ln)
		return -ESTALE;
	if (__atomic_load_n(&n->ln->top, __ATOMIC_ACQUIRE) == 0)
		return 0;
	pthread_mutex_lock(&fs->layers->lock);
	ret = copy_up_mode(fs, n, fs->layers->metacopy && n->type == S_IFREG ? CU_META : CU_ALL);
	pthread_mutex_unlock(&fs->layers->lock);
	return ret;
}

/* overlay.metacopy off the upper file w, under both prefixes (a kernel
 * may have made it under the other). */
static int drop_metacopy(struct pfs_fs *fs, int w)
{
	static const char *const pre[] = {"trusted.overlay.metacopy", "user.overlay.metacopy"};
	int ret = 0;

	for (size_t i = 0; i < 2 && ret == 0; i++) {
		ret = pfs_st_removexattr(fs->store, pfs_ref_fd(w), pre[i]);
		if (ret == -ENODATA || ret == -EPERM || ret == -ENOTSUP || ret == -EOPNOTSUPP)
			ret = 0;
	}
	return ret;
}

int pfs_layer_copy_data_up(struct pfs_fs *fs, struct pfs_node *n, bool no_data)
{
	struct pfs_store *s = fs->store;
	int nfd, ufd, dfd, w = -1, r = -1, ret;
	char p[24];
	struct stat st;

	if (!n->ln || !__atomic_load_n(&n->ln->meta, __ATOMIC_ACQUIRE))
		return 0;
	nfd = pfs_node_fd(fs, n); /* pinned: its fds open until the request ends */
	if (nfd < 0)
		return nfd;
	pthread_mutex_lock(&fs->layers->lock);
	if (!n->ln->meta) { /* another writer did it meanwhile */
		pthread_mutex_unlock(&fs->layers->lock);
		return 0;
	}
	if (n->ln->nodata) { /* no data to bring: as the kernel's open */
		pthread_mutex_unlock(&fs->layers->lock);
		return -n->ln->nodata;
	}
	ufd = __atomic_load_n(&n->ln->fd[0], __ATOMIC_ACQUIRE);
	dfd = __atomic_load_n(&n->ln->fd[n->ln->bottom], __ATOMIC_ACQUIRE);
	pfs_store_procname(ufd, p);
	w = pfs_st_openat(s, fs->proc_fd, p, O_WRONLY | O_CLOEXEC, 0);
	ret = w < 0 ? w : 0;
	/* In place, as the kernel: until overlay.metacopy goes, a crash leaves
	 * the upper reading its data from below still. */
	if (ret == 0 && no_data)
		ret = pfs_st_truncate(s, w, 0);
	if (ret == 0 && !no_data) {
		pfs_store_procname(dfd, p);
		r = pfs_st_openat(s, fs->proc_fd, p, O_RDONLY | O_CLOEXEC, 0);
		ret = r < 0 ? r : fstat(r, &st) < 0 ? -errno : 0;
		if (ret == 0)
			ret = copy_data(s, w, r, &st);
	}
	if (ret == 0)
		ret = pfs_st_sync(s, w, false);
	if (ret == 0)
		ret = drop_metacopy(fs, w);
	if (ret == 0)
		pfs_node_data_up(fs, n);
	if (r >= 0)
		close(r);
	if (w >= 0) {
		pfs_st_release(s, w);
		close(w);
	}
	pthread_mutex_unlock(&fs->layers->lock);
	return ret;
}

int pfs_layer_copy_up(struct pfs_fs *fs, struct pfs_node *n, bool no_data)
{
	int ret;

	if (!n->ln)
		return -ESTALE;
	if (__atomic_load_n(&n->ln->top, __ATOMIC_ACQUIRE) == 0)
		return 0;
	pthread_mutex_lock(&fs->layers->lock);
	ret = pfs_layer_copy_up_locked(fs, n, no_data);
	pthread_mutex_unlock(&fs->layers->lock);
	return ret;
}

/* ---- whiteouts and opaque directories ---- */

static int wh_file_name(char buf[NAME_MAX + 8], const char *name)
{
	if (strlen(name) > NAME_MAX - 4)
		return -ENAMETOOLONG; /* no room for the `.wh.` form */
	snprintf(buf, NAME_MAX + 8, ".wh.%s", name);
	return 0;
}

/* A whiteout device made as tmp in work. */
static int make_wh_dev(struct pfs_fs *fs, const char *tmp)
{
	return pfs_st_mknod(fs->store, fs->layers->work_fd, tmp, S_IFCHR | 0, makedev(0, 0));
}

int pfs_layer_whiteout(struct pfs_fs *fs, int dirfd, const char *name)
{
	struct pfs_layers *L = fs->layers;
	struct pfs_store *s = fs->store;
	struct stat st;
	char tmp[32], wh[NAME_MAX + 8];
	bool exists = pfs_st_stat(s, dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
	int ret;

	if (L->wh_file) {
		int fd;

		ret = wh_file_name(wh, name);
		if (ret < 0)
			return ret;
		fd = pfs_st_openat(s, dirfd, wh, O_WRONLY | O_CREAT | O_CLOEXEC, 0);
		if (fd < 0)
			return fd;
		pfs_st_release(s, fd);
		close(fd);
		if (exists && S_ISDIR(st.st_mode))
			ret = pfs_rmtree_at(s, dirfd, name, NULL, 0);
		else if (exists)
			ret = pfs_st_unlink(s, dirfd, name, 0);
		if (ret < 0)
			pfs_st_unlink(s, dirfd, wh, 0);
		return ret;
	}
	/* Nothing there: making the device in place is atomic already. */
	if (!exists)
		return pfs_st_mknod(s, dirfd, name, S_IFCHR | 0, makedev(0, 0));
	pfs_layer_tmpname(L, tmp);
	ret = make_wh_dev(fs, tmp);
	if (ret < 0)
		return ret;
	/* A directory (whiteouts only) is swapped out in one step, then
	 * cleared out of sight in work. */
	ret = pfs_st_rename(s, L->work_fd, tmp, dirfd, name,
			    S_ISDIR(st.st_mode) ? RENAME_EXCHANGE : 0);
	if (ret < 0) {
		pfs_st_unlink(s, L->work_fd, tmp, 0);
		return ret;
	}
	if (S_ISDIR(st.st_mode))
		pfs_rmtree_at(s, L->work_fd, tmp, NULL, 0);
	return 0;
}

int pfs_layer_clear_whiteouts(struct pfs_fs *fs, int dirfd)
{
	(void)fs;
	/* Called only on a directory whose merged view is empty: what it
	 * holds are whiteouts and markers. */
	return pfs_rmtree_contents(fs->store, dirfd, NULL, 0);
}

int pfs_layer_set_opaque(struct pfs_fs *fs, int dirfd, const char *name)
{
	int ret = pfs_layer_setx(fs, dirfd, name, "opaque", "y", 1);

	if (ret == -EPERM || ret == -ENOTSUP || ret == -EOPNOTSUPP) {
		/* No overlay xattrs here: the marker file says the same. */
		struct pfs_store *s = fs->store;
		int d = pfs_st_openat(s, dirfd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC,
				      0), fd;

		if (d < 0)
			return d;
		fd = pfs_st_openat(s, d, PFS_OVL_OPAQUE_MARKER, O_WRONLY | O_CREAT | O_CLOEXEC, 0);
		ret = fd < 0 ? fd : 0;
		if (fd >= 0) {
			pfs_st_release(s, fd);
			close(fd);
		}
		close(d);
	}
	return ret;
}
