#include "store/rmtree.h"
#include "store/walk.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct rmlevel {
	struct pfs_names names;
	size_t next;
	size_t plen; /* path length before this level's name */
};

static void set_where(char *where, size_t wlen, const struct pfs_pathbuf *p, const char *name)
{
	if (!where || !wlen)
		return;
	if (name && p->len)
		snprintf(where, wlen, "%s/%s", p->s, name);
	else
		snprintf(where, wlen, "%s", name ? name : pfs_pathbuf_str(p));
}

static int is_dir(struct pfs_store *s, int dirfd, const struct pfs_name *e, bool *dir)
{
	struct stat st;
	int ret;

	if (e->type != DT_UNKNOWN) {
		*dir = e->type == DT_DIR;
		return 0;
	}
	ret = pfs_st_stat(s, dirfd, e->name, &st, AT_SYMLINK_NOFOLLOW);
	if (ret < 0)
		return ret;
	*dir = S_ISDIR(st.st_mode);
	return 0;
}

/* Empties the directory fd (owned). prefix: the path of fd for messages;
 * each (or NULL) is called after every removal. */
static int rm_contents(struct pfs_store *s, int fd, const char *prefix, char *where, size_t wlen,
		       void (*each)(void *), void *arg)
{
	struct pfs_dstack ds = {0};
	struct pfs_pathbuf path = {0};
	struct rmlevel *lv = NULL;
	size_t n = 0, cap = 0;
	int ret;

	ret = pfs_dstack_push(&ds, fd, false);
	if (ret < 0)
		return ret;
	if (prefix && pfs_pathbuf_push(&path, prefix) == (size_t)-1) {
		ret = -ENOMEM;
		goto out;
	}
	lv = calloc(16, sizeof(*lv));
	if (!lv) {
		ret = -ENOMEM;
		goto out;
	}
	cap = 16;
	ret = pfs_names_read(fd, &lv[0].names);
	if (ret < 0) {
		set_where(where, wlen, &path, NULL);
		goto out;
	}
	n = 1;
	while (n) {
		struct rmlevel *l = &lv[n - 1];
		int dfd = pfs_dstack_top(&ds), cfd;
		const struct pfs_name *e;
		bool dir = false;

		if (l->next == l->names.n) {
			struct rmlevel *up;

			if (n == 1)
				break;
			pfs_names_free(&l->names);
			n--;
			up = &lv[n - 1];
			ret = pfs_dstack_pop(&ds);
			pfs_pathbuf_cut(&path, l->plen);
			e = &up->names.v[up->next - 1];
			if (ret == 0) {
				ret = pfs_st_unlink(s, pfs_dstack_top(&ds), e->name, AT_REMOVEDIR);
				if (ret == -ENOENT)
					ret = 0;
			}
			if (ret < 0) {
				set_where(where, wlen, &path, e->name);
				goto out;
			}
			if (each)
				each(arg);
			continue;
		}
		e = &l->names.v[l->next++];
		ret = is_dir(s, dfd, e, &dir);
		if (ret == -ENOENT)
			continue;
		if (ret == 0 && !dir) {
			ret = pfs_st_unlink(s, dfd, e->name, 0);
			if (ret == 0) {
				if (each)
					each(arg);
				continue;
			}
			if (ret == -ENOENT)
				continue;
			if (ret == -EISDIR) /* replaced by a directory meanwhile */
				ret = 0;
		}
		if (ret == 0)
			ret = pfs_open_subdir(s, dfd, e->name, &cfd);
		if (ret == -ENOENT)
			continue;
		if (ret < 0) {
			set_where(where, wlen, &path, e->name);
			goto out;
		}
		if (pfs_grow(&lv, &cap, n, sizeof(*lv)) < 0) {
			close(cfd);
			ret = -ENOMEM;
			goto out;
		}
		ret = pfs_dstack_push(&ds, cfd, true);
		if (ret < 0)
			goto out;
		memset(&lv[n], 0, sizeof(lv[n]));
		lv[n].plen = pfs_pathbuf_push(&path, e->name);
		if (lv[n].plen == (size_t)-1) {
			ret = -ENOMEM;
			goto out;
		}
		n++;
		ret = pfs_names_read(cfd, &lv[n - 1].names);
		if (ret < 0) {
			set_where(where, wlen, &path, NULL);
			goto out;
		}
	}
	ret = 0;
out:
	for (size_t i = 0; i < n; i++)
		pfs_names_free(&lv[i].names);
	free(lv);
	pfs_pathbuf_free(&path);
	pfs_dstack_free(&ds);
	return ret;
}

int pfs_rmtree_contents(struct pfs_store *s, int dirfd, char *where, size_t wlen)
{
	return pfs_rmtree_contents_each(s, dirfd, where, wlen, NULL, NULL);
}

int pfs_rmtree_contents_each(struct pfs_store *s, int dirfd, char *where, size_t wlen,
			     void (*each)(void *), void *arg)
{
	int fd = pfs_st_openat(s, dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);

	if (fd < 0) {
		if (where && wlen)
			snprintf(where, wlen, ".");
		return fd;
	}
	return rm_contents(s, fd, NULL, where, wlen, each, arg);
}

int pfs_rmtree_at(struct pfs_store *s, int dirfd, const char *name, char *where, size_t wlen)
{
	struct stat st;
	int fd, ret;

	if (where && wlen)
		snprintf(where, wlen, "%s", name);
	ret = pfs_st_stat(s, dirfd, name, &st, AT_SYMLINK_NOFOLLOW);
	if (ret < 0)
		return ret == -ENOENT ? 0 : ret;
	if (!S_ISDIR(st.st_mode)) {
		ret = pfs_st_unlink(s, dirfd, name, 0);
		return ret == -ENOENT ? 0 : ret;
	}
	ret = pfs_open_subdir(s, dirfd, name, &fd);
	if (ret < 0)
		return ret == -ENOENT ? 0 : ret;
	ret = rm_contents(s, fd, name, where, wlen, NULL, NULL);
	if (ret < 0)
		return ret;
	ret = pfs_st_unlink(s, dirfd, name, AT_REMOVEDIR);
	if (ret < 0 && ret != -ENOENT) {
		if (where && wlen)
			snprintf(where, wlen, "%s", name);
		return ret;
	}
	return 0;
}
