#include "store/walk.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

static int cmp_name(const void *a, const void *b)
{
	return strcmp(((const struct pfs_name *)a)->name, ((const struct pfs_name *)b)->name);
}

int pfs_names_read(int dirfd, struct pfs_names *out)
{
	size_t cap = 0, used = 0, pcap = 0;
	struct dirent *de;
	DIR *d;
	int fd, ret = 0;

	memset(out, 0, sizeof(*out));
	/* A fresh open file description: dirfd's own offset stays untouched. */
	fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		ret = -errno;
		close(fd);
		return ret;
	}
	for (;;) {
		size_t len;

		errno = 0;
		de = readdir(d);
		if (!de) {
			ret = -errno;
			break;
		}
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		len = strlen(de->d_name) + 1;
		if (out->n == cap) {
			size_t ncap = cap ? cap * 2 : 32;
			struct pfs_name *v = realloc(out->v, ncap * sizeof(*v));

			if (!v) {
				ret = -ENOMEM;
				break;
			}
			out->v = v;
			cap = ncap;
		}
		if (used + len > pcap) {
			size_t npcap = pcap ? pcap * 2 : 1024;
			char *p;

			while (npcap < used + len)
				npcap *= 2;
			p = realloc(out->pool, npcap);
			if (!p) {
				ret = -ENOMEM;
				break;
			}
			out->pool = p;
			pcap = npcap;
		}
		memcpy(out->pool + used, de->d_name, len);
		/* The pool may still move: keep the offset until it is final. */
		out->v[out->n].name = (const char *)(uintptr_t)used;
		out->v[out->n].type = de->d_type;
		out->n++;
		used += len;
	}
	closedir(d);
	if (ret < 0) {
		pfs_names_free(out);
		return ret;
	}
	for (size_t i = 0; i < out->n; i++)
		out->v[i].name = out->pool + (uintptr_t)out->v[i].name;
	if (out->n > 1)
		qsort(out->v, out->n, sizeof(*out->v), cmp_name);
	return 0;
}

const struct pfs_name *pfs_names_find(const struct pfs_names *n, const char *name)
{
	struct pfs_name key = {.name = name};

	if (!n->n)
		return NULL;
	return bsearch(&key, n->v, n->n, sizeof(*n->v), cmp_name);
}

void pfs_names_free(struct pfs_names *n)
{
	free(n->v);
	free(n->pool);
	memset(n, 0, sizeof(*n));
}

int pfs_dstack_push(struct pfs_dstack *s, int fd, bool child)
{
	struct pfs_dslevel *l;
	struct stat st;

	if (s->n == s->cap) {
		size_t ncap = s->cap ? s->cap * 2 : 16;
		struct pfs_dslevel *v = realloc(s->lv, ncap * sizeof(*v));

		if (!v) {
			if (fd >= 0)
				close(fd);
			return -ENOMEM;
		}
		s->lv = v;
		s->cap = ncap;
	}
	l = &s->lv[s->n];
	memset(l, 0, sizeof(*l));
	l->fd = fd;
	l->child = child;
	if (fd >= 0) {
		if (fstat(fd, &st) < 0) {
			int ret = -errno;

			close(fd);
			return ret;
		}
		l->dev = st.st_dev;
		l->ino = st.st_ino;
	}
	s->n++;
	/* Close the level that just left the window if the one below it can
	 * find it again; the root is kept. */
	if (s->n > PFS_DSTACK_WINDOW + 1) {
		size_t k = s->n - 1 - PFS_DSTACK_WINDOW;
		struct pfs_dslevel *a = &s->lv[k], *b = &s->lv[k + 1];

		if (k > 0 && a->fd >= 0 && b->child && (b->fd >= 0 || b->closed)) {
			close(a->fd);
			a->fd = PFS_DSTACK_ABSENT;
			a->closed = true;
		}
	}
	return 0;
}

int pfs_dstack_top(const struct pfs_dstack *s)
{
	return s->n ? s->lv[s->n - 1].fd : PFS_DSTACK_ABSENT;
}

int pfs_dstack_pop(struct pfs_dstack *s)
{
	struct pfs_dslevel *top, *up;
	struct stat st;
	int ret = 0;

	if (!s->n)
		return 0;
	top = &s->lv[s->n - 1];
	up = s->n >= 2 ? &s->lv[s->n - 2] : NULL;
	if (up && up->closed) {
		int fd = -1;

		if (top->fd >= 0)
			fd = openat(top->fd, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0) {
			ret = top->fd >= 0 ? -errno : -ESTALE;
		} else if (fstat(fd, &st) < 0 || st.st_dev != up->dev || st.st_ino != up->ino) {
			/* Moved or replaced while we were below it. */
			close(fd);
			ret = -ESTALE;
		} else {
			up->fd = fd;
			up->closed = false;
		}
	}
	if (top->fd >= 0)
		close(top->fd);
	s->n--;
	return ret;
}

void pfs_dstack_free(struct pfs_dstack *s)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->lv[i].fd >= 0)
			close(s->lv[i].fd);
	free(s->lv);
	memset(s, 0, sizeof(*s));
}

int pfs_open_subdir(struct pfs_store *s, int dirfd, const char *name, int *out)
{
	struct statx stx;
	struct stat pst;
	int fd, ret;

	fd = pfs_st_openat(s, dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, 0);
	if (fd < 0)
		return fd;
	if (statx(fd, "", AT_EMPTY_PATH, STATX_TYPE, &stx) < 0) {
		ret = -errno;
		goto fail;
	}
	if (stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) {
		if (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT) {
			ret = -EXDEV;
			goto fail;
		}
	} else {
		/* Older kernels: another filesystem at least has another device. */
		if (fstat(dirfd, &pst) < 0) {
			ret = -errno;
			goto fail;
		}
		if (makedev(stx.stx_dev_major, stx.stx_dev_minor) != pst.st_dev) {
			ret = -EXDEV;
			goto fail;
		}
	}
	*out = fd;
	return 0;
fail:
	close(fd);
	return ret;
}

size_t pfs_pathbuf_push(struct pfs_pathbuf *p, const char *name)
{
	size_t old = p->len, n = strlen(name), need = old + n + 2;

	if (need > p->cap) {
		size_t ncap = p->cap ? p->cap : 256;
		char *s;

		while (ncap < need)
			ncap *= 2;
		s = realloc(p->s, ncap);
		if (!s)
			return (size_t)-1;
		p->s = s;
		p->cap = ncap;
	}
	if (old)
		p->s[p->len++] = '/';
	memcpy(p->s + p->len, name, n + 1);
	p->len += n;
	return old;
}

void pfs_pathbuf_cut(struct pfs_pathbuf *p, size_t len)
{
	if (p->s && len <= p->len) {
		p->len = len;
		p->s[len] = '\0';
	}
}

const char *pfs_pathbuf_str(const struct pfs_pathbuf *p)
{
	return p->len ? p->s : ".";
}

void pfs_pathbuf_free(struct pfs_pathbuf *p)
{
	free(p->s);
	memset(p, 0, sizeof(*p));
}

int pfs_grow(void *arrp, size_t *cap, size_t n, size_t sz)
{
	void **arr = arrp;
	size_t ncap = *cap ? *cap * 2 : 16;
	void *v;

	if (n < *cap)
		return 0;
	v = realloc(*arr, ncap * sz);
	if (!v)
		return -ENOMEM;
	*arr = v;
	*cap = ncap;
	return 0;
}
