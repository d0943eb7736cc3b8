/* redirect: overlayfs's directory redirects (redirect_dir). A directory
 * with lower parts that is renamed keeps them: its upper directory holds
 * overlay.redirect, where the layers below find them — relative (a name
 * in the parent's lower directories, for a rename within one directory)
 * or absolute (a path from each lower layer's root, "/a/b"). A lookup
 * reads it on every directory it merges (lowers too: they may be former
 * uppers); layer_find.c follows it, layerops.c makes it. */
#include "layers/layer.h"
#include "layers/layer_int.h"
#include "view/view.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "layers/ovlfmt.h"

/* One name of a redirect: "." and ".." never (a redirect must not lead
 * out of the layer): -EACCES, as the kernel's lookup of one refuses it. */
static int check_comp(const char *p, size_t n)
{
	if (n == 0 || n > NAME_MAX)
		return -EINVAL;
	if ((n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
		return -EACCES;
	return 0;
}

/* 0, or why the kernel refuses r: -EINVAL (empty, an empty name in an
 * absolute one, a slash in a relative one), -EACCES ("." or ".."). */
static int check_redirect(const char *r)
{
	const char *p, *q;
	int ret;

	if (r[0] != '/')
		return strchr(r, '/') ? -EINVAL : check_comp(r, strlen(r));
	for (p = r + 1;; p = q + 1) {
		q = strchrnul(p, '/');
		ret = check_comp(p, (size_t)(q - p));
		if (ret < 0 || !*q)
			return ret;
	}
}

int pfs_redir_get(struct pfs_fs *fs, int dirfd, const char *name, char **out)
{
	char buf[PATH_MAX];
	ssize_t n = pfs_ovl_get(fs->store, pfs_layer_ref(fs, dirfd, name), "redirect", buf, sizeof(buf));
	int ret;

	*out = NULL;
	if (n == -ENODATA)
		return 0;
	if (n < 0)
		return n == -ERANGE ? -EINVAL : (int)n;
	/* As the kernel: an invalid redirect fails the lookup. */
	ret = n == 0 ? -EINVAL : check_redirect(buf);
	if (ret < 0)
		return ret;
	*out = strdup(buf);
	return *out ? 1 : -ENOMEM;
}

int pfs_redir_apply(const char *cur, size_t prelen, const char *r, const char *post, char **out)
{
	size_t pl = r[0] == '/' ? 0 : prelen, rl = strlen(r), tl = strlen(post);
	char *s;

	if (pl + rl + tl >= PATH_MAX)
		return -ENAMETOOLONG;
	s = malloc(pl + rl + tl + 1);
	if (!s)
		return -ENOMEM;
	memcpy(s, cur, pl);
	memcpy(s + pl, r, rl);
	memcpy(s + pl + rl, post, tl + 1);
	*out = s;
	return 0;
}

/* a + "/" + b, malloc'd; NULL when out of memory or too long. */
static char *join(const char *a, const char *b)
{
	size_t al = strlen(a), bl = strlen(b);
	char *s;

	if (al + bl + 1 >= PATH_MAX)
		return NULL;
	s = malloc(al + bl + 2);
	if (!s)
		return NULL;
	memcpy(s, a, al);
	s[al] = '/';
	memcpy(s + al + 1, b, bl + 1);
	return s;
}

/* The path the lowers know the directory parent by, from their roots
 * ("" for the root): its components, each replaced by the redirect of
 * its upper directory where it has one (an absolute one replacing all
 * before it), as the kernel builds it. parent is in the upper. */
static int lower_path(struct pfs_fs *fs, struct pfs_node *parent, char **out)
{
	char *vpath = pfs_node_path(fs, parent, NULL), *acc = strdup(""), *p, *save = NULL, *r;
	int dfd = fcntl(fs->layers->root[0], F_DUPFD_CLOEXEC, 0), nfd, ret = 0;
	size_t depth = 0;

	if (!vpath || !acc || dfd < 0) {
		ret = dfd < 0 ? -errno : -ENOMEM;
		goto out;
	}
	for (p = strtok_r(vpath, "/", &save); p; p = strtok_r(NULL, "/", &save)) {
		char *next;

		if (++depth >= 255) {
			ret = -EXDEV; /* deeper than a node's path is kept */
			goto out;
		}
		ret = pfs_redir_get(fs, dfd, p, &r);
		if (ret < 0)
			goto out;
		next = r && r[0] == '/' ? strdup(r) : join(acc, r ? r : p);
		free(r);
		if (!next) {
			ret = -EXDEV; /* too long to keep: the move cannot keep the lower parts */
			goto out;
		}
		free(acc);
		acc = next;
		nfd = pfs_st_openat(fs->store, dfd, p, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, 0);
		if (nfd < 0) {
			ret = nfd;
			goto out;
		}
		close(dfd);
		dfd = nfd;
	}
	ret = 0;
out:
	if (dfd >= 0)
		close(dfd);
	free(vpath);
	if (ret < 0) {
		free(acc);
		acc = NULL;
	}
	*out = acc;
	return ret;
}

int pfs_redir_set_renamed(struct pfs_fs *fs, struct pfs_node *parent, int ud, const char *name,
			  bool samedir)
{
	char *old = NULL, *path = NULL, *val;
	int ret = pfs_redir_get(fs, ud, name, &old);

	if (ret < 0)
		return ret;
	/* A relative redirect stays right in its directory, an absolute one
	 * anywhere. */
	if (old && (samedir || old[0] == '/')) {
		free(old);
		return 0;
	}
	if (samedir) {
		val = (char *)name;
	} else {
		ret = lower_path(fs, parent, &path);
		if (ret < 0)
			goto out;
		val = join(path, old ? old : name);
		if (!val) {
			ret = -EXDEV; /* too long to keep: as the kernel */
			goto out;
		}
		free(path);
		path = val;
	}
	ret = pfs_layer_setx(fs, ud, name, "redirect", val, strlen(val));
	/* Nowhere to keep it: the move cannot keep the lower parts. */
	if (ret == -ENOTSUP || ret == -EPERM || ret == -E2BIG || ret == -ERANGE)
		ret = -EXDEV;
out:
	free(old);
	free(path);
	return ret;
}
