/* layerops: the operations that make, remove and move names on a layered
 * mount, as kernel overlayfs does them: everything happens in the upper
 * (parents copied up first); a name a lower still shows is hidden by a
 * whiteout; a directory made where a lower one was hidden is opaque; a
 * directory with lower parts moves with an overlay.redirect to them
 * (redirect_dir=on, redirect.c), or not at all (EXDEV, as overlayfs
 * without redirect_dir: mv then copies, and no child is ever lost).
 * All of them hold the layers' lock, so each sees the upper whole. */
#include "layers/layer.h"
#include "layers/layer_int.h"
#include "view/view.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "layers/layermap.h"
#include "layers/ovlfmt.h"
#include "store/rmtree.h"
#include "util/util.h"

static int check_name(const char *name)
{
	if (strnlen(name, NAME_MAX + 1) > NAME_MAX)
		return -ENAMETOOLONG;
	/* `.wh.` names are whiteouts in a layer: one made here would hide
	 * its namesake instead of showing up. */
	if (strncmp(name, ".wh.", 4) == 0)
		return -EINVAL;
	return pfs_valid_name(name) ? 0 : -EINVAL;
}

int pfs_layer_lookup(struct pfs_fs *fs, struct pfs_node *parent, const char *name,
		     struct fuse_entry_param *e)
{
	struct pfs_lfound f;
	struct pfs_lnode *ln;
	struct pfs_node *n;
	struct stat key;
	bool made;
	int fd, ret;

	memset(e, 0, sizeof(*e));
	e->attr_timeout = e->entry_timeout = fs->timeout;
	if (strnlen(name, NAME_MAX + 1) > NAME_MAX)
		return -ENAMETOOLONG;
	ret = pfs_layer_find(fs, parent, name, &f);
	if (ret < 0)
		return ret;
	ln = f.ln;
	if (!ln) {
		ln = pfs_lnode_new(fs->layers);
		if (!ln) {
			pfs_lfound_put(fs, &f);
			return -ENOMEM;
		}
		ln->top = ln->bottom = (uint8_t)f.layer;
		ln->fd[f.layer] = f.fd;
	}
	/* Where the table put it, for a copy-up: now the node's. */
	ln->sdir = f.sdir;
	ln->sname = f.sname;
	fd = f.fd;
	key = f.st;
	key.st_dev = f.kdev;
	key.st_ino = f.kino;
	ret = pfs_node_intern_ln(fs, parent, name, fd, &key, f.ctx, ln, &n, &made);
	if (ret < 0)
		return ret;
	/* A node already known (a hard link copied up through another name)
	 * shows its own object. */
	if (!made || n == fs->root)
		ret = pfs_store_stat(fs, n, &f.st);
	if (ret < 0) {
		pfs_node_forget(fs, n, 1);
		return ret;
	}
	e->attr = f.st;
	pfs_view_fix_attr(fs, n, &e->attr);
	e->ino = pfs_ino_of(fs, n);
	/* Open by a writer the kernel may not hear of (file.c). */
	if (pfs_view_writing(fs, n))
		e->attr_timeout = 0;
	return 0;
}

/* Move the object tmp (in work) to name in the upper directory ud, over
 * the whiteout there. */
static int replace_whiteout(struct pfs_fs *fs, int ud, const char *name, const char *tmp,
			    bool dir, bool wh_file)
{
	struct pfs_store *s = fs->store;
	int wd = fs->layers->work_fd, ret;

	if (!dir || wh_file) /* over a device, or onto a free name */
		return pfs_st_rename(s, wd, tmp, ud, name, 0);
	/* A directory cannot be renamed over a device: swap, then drop it. */
	ret = pfs_st_rename(s, wd, tmp, ud, name, RENAME_EXCHANGE);
	if (ret < 0)
		return ret;
	pfs_st_unlink(s, wd, tmp, 0);
	return 0;
}

static int drop_wh_file(struct pfs_fs *fs, int ud, const char *name)
{
	char wh[NAME_MAX + 8];
	int ret;

	if (strlen(name) > NAME_MAX - 4)
		return 0;
	snprintf(wh, sizeof(wh), ".wh.%s", name);
	ret = pfs_st_unlink(fs->store, ud, wh, 0);
	return ret == -ENOENT ? 0 : ret;
}

/* Is the object at name in ud still the one made (lstat made; a file: by
 * its descriptor fd)? */
static bool still_made(struct pfs_store *s, int ud, const char *name, int fd,
		       struct stat *made)
{
	struct stat now;

	if (fd >= 0 && fstat(fd, made) < 0)
		return false;
	return pfs_st_stat(s, ud, name, &now, AT_SYMLINK_NOFOLLOW) == 0 &&
	       now.st_dev == made->st_dev && now.st_ino == made->st_ino;
}

int pfs_layer_make(struct pfs_fs *fs, const struct fuse_ctx *ctx, struct pfs_node *parent,
		   const char *name, mode_t mode, dev_t rdev, const char *target,
		   int open_flags, int *fdp, struct fuse_entry_param *e)
{
	struct pfs_layers *L = fs->layers;
	struct pfs_store *s = fs->store;
	struct pfs_lfound f;
	struct stat mst;
	char tmp[32];
	const char *wname = name;
	bool in_work, dir = S_ISDIR(mode), made = false, known;
	int where, ud, fd = -1, ret = check_name(name);

	if (ret < 0)
		return ret;
	if (fs->read_only)
		return -EROFS;
	if (S_ISCHR(mode) && rdev == makedev(0, 0))
		return -EPERM; /* it would read back as a whiteout */
	ret = pfs_lmap_may_change(fs, parent, name);
	if (ret < 0)
		return ret;
	pthread_mutex_lock(&L->lock);
	ret = pfs_layer_find(fs, parent, name, &f);
	if (ret == 0) {
		pfs_lfound_put(fs, &f);
		ret = -EEXIST;
		goto out;
	}
	if (ret != -ENOENT)
		goto out;
	ret = pfs_layer_copy_up_locked(fs, parent, false);
	if (ret < 0)
		goto out;
	ud = parent->ln->fd[0];
	mode = pfs_view_new_mode(fs, ctx, ud, mode);
	/* Over a whiteout device, or a directory that must be opaque before
	 * anyone sees it: build it in work and move it in whole. */
	in_work = (f.upper_wh && !f.upper_wh_file) || (dir && f.upper_wh);
	where = ud;
	if (in_work) {
		pfs_layer_tmpname(L, tmp);
		wname = tmp;
		where = L->work_fd;
	}
	if (fdp) {
		fd = pfs_st_openat(s, where, wname,
				   (open_flags | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW) & ~O_TRUNC,
				   mode & 07777);
		ret = fd < 0 ? fd : 0;
	} else if (dir) {
		ret = pfs_st_mkdir(s, where, wname, mode & 07777);
	} else if (target) {
		ret = pfs_st_symlink(s, target, where, wname);
	} else {
		ret = pfs_st_mknod(s, where, wname, mode, rdev);
	}
	if (ret < 0)
		goto out;
	made = true;
	if (ctx || in_work)
		ret = pfs_store_give(fs, ctx, ud, where, wname, target ? S_IFLNK | 0777 : mode);
	if (ret == 0 && dir && f.upper_wh)
		ret = pfs_layer_set_opaque(fs, where, wname);
	if (ret == 0 && in_work)
		ret = replace_whiteout(fs, ud, name, tmp, dir, f.upper_wh_file);
	if (ret < 0)
		goto out;
	where = ud;
	wname = name;
	if (f.upper_wh_file)
		drop_wh_file(fs, ud, name);
	/* What was made, to know it again once the lock has been let go (a
	 * file by its descriptor, later). */
	memset(&mst, 0, sizeof(mst));
	known = fd >= 0 || pfs_st_stat(s, ud, name, &mst, AT_SYMLINK_NOFOLLOW) == 0;
	pthread_mutex_unlock(&L->lock);
	ret = pfs_layer_lookup(fs, parent, name, e);
	if (ret == 0) {
		if (fdp)
			*fdp = fd;
		return 0;
	}
	pthread_mutex_lock(&L->lock);
	/* Meanwhile another request may have removed the name and made its
	 * own there: only ours is undone. */
	made = known && still_made(s, ud, name, fd, &mst);
out:
	if (made) {
		if (dir)
			pfs_rmtree_at(s, where, wname, NULL, 0);
		else
			pfs_st_unlink(s, where, wname, 0);
	}
	if (fd >= 0)
		close(fd);
	pthread_mutex_unlock(&L->lock);
	return ret;
}

static int link_object(struct pfs_fs *fs, struct pfs_node *n, int dirfd, const char *name)
{
	char p[24];
	int fd = pfs_node_fd(fs, n), ret;

	if (fd < 0)
		return fd;
	ret = pfs_st_link(fs->store, fd, "", dirfd, name, AT_EMPTY_PATH);
	if (ret != -ENOENT && ret != -EPERM)
		return ret;
	pfs_store_procname(fd, p);
	return pfs_st_link(fs->store, fs->proc_fd, p, dirfd, name, AT_SYMLINK_FOLLOW);
}

int pfs_layer_link(struct pfs_fs *fs, struct pfs_node *n, struct pfs_node *newparent,
		   const char *newname, struct fuse_entry_param *e)
{
	struct pfs_layers *L = fs->layers;
	struct pfs_lfound f;
	char tmp[32];
	int ud, ret = check_name(newname);

	if (ret < 0)
		return ret;
	if (fs->read_only)
		return -EROFS;
	ret = pfs_lmap_may_change(fs, newparent, newname);
	if (ret < 0)
		return ret;
	pthread_mutex_lock(&L->lock);
	ret = pfs_layer_find(fs, newparent, newname, &f);
	if (ret == 0) {
		pfs_lfound_put(fs, &f);
		ret = -EEXIST;
	}
	if (ret != -ENOENT)
		goto out;
	/* As the kernel: a link changes no data, so metacopy=on copies none. */
	ret = pfs_layer_copy_up_link_locked(fs, n);
	if (ret == 0)
		ret = pfs_layer_copy_up_locked(fs, newparent, false);
	if (ret < 0)
		goto out;
	ud = newparent->ln->fd[0];
	if (f.upper_wh && !f.upper_wh_file) {
		pfs_layer_tmpname(L, tmp);
		ret = link_object(fs, n, L->work_fd, tmp);
		if (ret == 0 && (ret = replace_whiteout(fs, ud, newname, tmp, false, false)) < 0)
			pfs_st_unlink(fs->store, L->work_fd, tmp, 0);
	} else {
		ret = link_object(fs, n, ud, newname);
		if (ret == 0 && f.upper_wh_file)
			drop_wh_file(fs, ud, newname);
	}
out:
	pthread_mutex_unlock(&L->lock);
	return ret < 0 ? ret : pfs_layer_lookup(fs, newparent, newname, e);
}

/* A directory to remove or replace must show nothing. */
static int dir_check(struct pfs_fs *fs, struct pfs_node *parent, const char *name,
		     const struct pfs_lfound *f)
{
	int ret = pfs_layer_dir_nonempty(fs, parent, name, f);

	return ret > 0 ? -ENOTEMPTY : ret;
}

static bool has_lower_part(const struct pfs_lfound *f)
{
	if (f->layer > 0)
		return true;
	for (int i = 1; f->ln && i <= f->ln->bottom; i++)
		if (f->ln->fd[i] >= 0)
			return true;
	return false;
}

/* Remove the upper-only name: a directory may still hold whiteouts of
 * names that are gone (its merged view is empty). */
static int remove_upper(struct pfs_fs *fs, int ud, const char *name, bool dir)
{
	struct pfs_store *s = fs->store;
	int d, ret = pfs_st_unlink(s, ud, name, dir ? AT_REMOVEDIR : 0);

	if (ret == 0 || !dir || (ret != -ENOTEMPTY && ret != -EEXIST))
		return ret;
	d = pfs_st_openat(s, ud, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, 0);
	if (d < 0)
		return d;
	ret = pfs_layer_clear_whiteouts(fs, d);
	close(d);
	if (ret == 0)
		ret = pfs_st_unlink(s, ud, name, AT_REMOVEDIR);
	return ret;
}

int pfs_layer_remove(struct pfs_fs *fs, struct pfs_node *parent, const char *name, bool dir)
{
	struct pfs_layers *L = fs->layers;
	struct pfs_lfound f;
	int ud, ret;

	if (fs->read_only)
		return -EROFS;
	ret = pfs_lmap_may_change(fs, parent, name);
	if (ret < 0)
		return ret;
	pthread_mutex_lock(&L->lock);
	ret = pfs_layer_find(fs, parent, name, &f);
	if (ret < 0)
		goto out_unlocked_f;
	if (dir && !S_ISDIR(f.st.st_mode))
		ret = -ENOTDIR;
	else if (!dir && S_ISDIR(f.st.st_mode))
		ret = -EISDIR;
	else if (dir)
		ret = dir_check(fs, parent, name, &f);
	if (ret == 0)
		ret = pfs_layer_copy_up_locked(fs, parent, false);
	if (ret < 0)
		goto out;
	ud = parent->ln->fd[0];
	if (f.below)
		ret = pfs_layer_whiteout(fs, ud, name);
	else
		ret = remove_upper(fs, ud, name, dir);
	if (ret == 0)
		pfs_node_unlinked(fs, f.kdev, f.kino, f.ctx, parent, name);
out:
	pfs_lfound_put(fs, &f);
out_unlocked_f:
	pthread_mutex_unlock(&L->lock);
	return ret;
}

/* Copy up the object found at (parent, name): the kernel holds its node. */
static int copy_up_found(struct pfs_fs *fs, const struct pfs_lfound *f)
{
	struct pfs_node *n;
	int ret;

	if (f->layer == 0)
		return 0;
	n = pfs_node_find(fs, f->kdev, f->kino, f->ctx);
	if (!n)
		return -ESTALE;
	/* A move changes no data: with metacopy=on a file keeps it below. */
	ret = pfs_layer_copy_up_meta_locked(fs, n);
	pfs_node_release(fs, n);
	return ret;
}

/* Is the upper file name in ud a metacopy (its data below, found by a
 * redirect once it moves)? */
static bool is_metacopy(struct pfs_fs *fs, int ud, const char *name, const struct pfs_lfound *f)
{
	return fs->layers->metacopy && S_ISREG(f->st.st_mode) &&
	       pfs_ovl_has(fs->store, pfs_ref_at(ud, name), "metacopy") > 0;
}

int pfs_layer_rename(struct pfs_fs *fs, struct pfs_node *parent, const char *name,
		     struct pfs_node *newparent, const char *newname, unsigned int flags)
{
	struct pfs_layers *L = fs->layers;
	struct pfs_lfound src, dst;
	bool have_dst, sdir, ddir, xchg = flags & RENAME_EXCHANGE, sredir, dredir;
	unsigned int rflags;
	int ud1, ud2, ret = check_name(newname);

	if (ret < 0)
		return ret;
	if (fs->read_only)
		return -EROFS;
	if (flags & RENAME_WHITEOUT)
		return -EINVAL; /* as overlayfs: the whiteouts here are its own */
	ret = pfs_lmap_may_change(fs, parent, name);
	if (ret == 0)
		ret = pfs_lmap_may_change(fs, newparent, newname);
	if (ret < 0)
		return ret;
	memset(&dst, 0, sizeof(dst));
	dst.fd = dst.sdir = -1;
	pthread_mutex_lock(&L->lock);
	ret = pfs_layer_find(fs, parent, name, &src);
	if (ret < 0) {
		pthread_mutex_unlock(&L->lock);
		return ret;
	}
	ret = pfs_layer_find(fs, newparent, newname, &dst);
	have_dst = ret == 0;
	if (ret == -ENOENT)
		ret = 0;
	if (ret < 0)
		goto out;
	sdir = S_ISDIR(src.st.st_mode);
	ddir = have_dst && S_ISDIR(dst.st.st_mode);
	if ((flags & RENAME_NOREPLACE) && have_dst) {
		ret = -EEXIST;
		goto out;
	}
	if (xchg && !have_dst) {
		ret = -ENOENT;
		goto out;
	}
	if (parent == newparent && strcmp(name, newname) == 0)
		goto out;
	if (!xchg && have_dst && src.kdev == dst.kdev && src.kino == dst.kino)
		goto out; /* two links of one file: rename does nothing */
	/* Before the target's emptiness, as overlayfs: a directory with lower
	 * parts cannot move at all, whatever it would replace, unless a
	 * redirect keeps them. */
	sredir = sdir && has_lower_part(&src);
	dredir = xchg && ddir && has_lower_part(&dst);
	if ((sredir || dredir) && !L->redir_make) {
		ret = -EXDEV;
		goto out;
	}
	if (!xchg && have_dst) {
		if (sdir && !ddir)
			ret = -ENOTDIR;
		else if (!sdir && ddir)
			ret = -EISDIR;
		else if (ddir)
			ret = dir_check(fs, newparent, newname, &dst);
		if (ret < 0)
			goto out;
	}
	ret = pfs_layer_copy_up_locked(fs, parent, false);
	if (ret == 0)
		ret = pfs_layer_copy_up_locked(fs, newparent, false);
	if (ret == 0)
		ret = copy_up_found(fs, &src);
	if (ret == 0 && xchg)
		ret = copy_up_found(fs, &dst);
	if (ret < 0)
		goto out;
	ud1 = parent->ln->fd[0];
	ud2 = newparent->ln->fd[0];
	if (sredir || is_metacopy(fs, ud1, name, &src))
		ret = pfs_redir_set_renamed(fs, parent, ud1, name, parent == newparent);
	if (ret == 0 && (dredir || (xchg && is_metacopy(fs, ud2, newname, &dst))))
		ret = pfs_redir_set_renamed(fs, newparent, ud2, newname, parent == newparent);
	if (ret < 0)
		goto out;
	if (!xchg) {
		/* The target's upper part is a whiteout device (a directory
		 * cannot replace it) or a directory of whiteouts only. */
		if (sdir && dst.upper_wh && !dst.upper_wh_file) {
			ret = pfs_st_unlink(fs->store, ud2, newname, 0);
			if (ret < 0)
				goto out;
		}
		if (ddir && dst.layer == 0) {
			ret = remove_upper(fs, ud2, newname, true);
			if (ret < 0)
				goto out;
		}
		/* A directory moved where a lower one is hidden must hide it
		 * (a redirected one is searched by its redirect there). */
		if (sdir && !sredir && (dst.below || dst.upper_wh)) {
			ret = pfs_layer_set_opaque(fs, ud1, name);
			if (ret < 0)
				goto out;
		}
	}
	rflags = xchg ? RENAME_EXCHANGE : 0;
	if (!xchg && src.below && !L->wh_file)
		rflags |= RENAME_WHITEOUT; /* the whiteout appears with the move */
	ret = pfs_st_rename(fs->store, ud1, name, ud2, newname, rflags);
	if (ret < 0) {
		if (!(rflags & RENAME_WHITEOUT) || (ret != -EINVAL && ret != -EPERM))
			goto out;
		rflags &= ~RENAME_WHITEOUT;
		ret = pfs_st_rename(fs->store, ud1, name, ud2, newname, rflags);
		if (ret < 0)
			goto out;
	}
	if (!xchg && src.below && !(rflags & RENAME_WHITEOUT)) {
		ret = pfs_layer_whiteout(fs, ud1, name);
		/* Without its whiteout the old name would show the lower object
		 * again: a failed rename changes nothing, so the move is undone
		 * where it replaced nothing in the upper. */
		if (ret < 0 && !(have_dst && dst.layer == 0) &&
		    !(dst.upper_wh && !dst.upper_wh_file) &&
		    pfs_st_rename(fs->store, ud2, newname, ud1, name, RENAME_NOREPLACE) == 0)
			goto out;
	}
	if (!xchg && dst.upper_wh_file)
		drop_wh_file(fs, ud2, newname);
	if (xchg && sdir && !sredir && dst.below)
		pfs_layer_set_opaque(fs, ud2, newname);
	if (xchg && ddir && !dredir && src.below)
		pfs_layer_set_opaque(fs, ud1, name);
	if (xchg)
		pfs_node_renamed(fs, dst.kdev, dst.kino, dst.ctx, newparent, newname, parent, name);
	else if (have_dst)
		pfs_node_unlinked(fs, dst.kdev, dst.kino, dst.ctx, newparent, newname);
	pfs_node_renamed(fs, src.kdev, src.kino, src.ctx, parent, name, newparent, newname);
out:
	pfs_lfound_put(fs, &src);
	pfs_lfound_put(fs, &dst);
	pthread_mutex_unlock(&L->lock);
	return ret;
}

int pfs_layer_prepare_change(struct pfs_fs *fs, struct pfs_node *n, int open_flags)
{
	int ret;

	if (fs->read_only)
		return -EROFS;
	if (!n->ln)
		return -ESTALE;
	/* A change of metadata only (open_flags -1) may leave the data below
	 * (metacopy=on); a write brings it up. */
	if (open_flags < 0)
		return pfs_layer_copy_up_meta(fs, n);
	ret = pfs_layer_copy_up(fs, n, (open_flags & O_TRUNC) && n->type == S_IFREG);
	if (ret == 0 && n->type == S_IFREG)
		ret = pfs_layer_copy_data_up(fs, n, (open_flags & O_TRUNC) != 0);
	return ret;
}
