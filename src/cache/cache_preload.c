/* cache_preload: --lazy-load off — every directory of the mirror read at
 * mount, and file data loaded while the cache has room for it. */
#include "cache/cache_int.h"
#include "store/walk.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/statfs.h>

/* Directories still to read, as paths from the cache root: a queue of
 * strings rather than of descriptors, so a wide tree cannot run the daemon
 * out of them. */
struct dirq {
	char **v;
	size_t head, n, cap;
};

static int dirq_push(struct dirq *q, const char *dir, const char *name)
{
	char *p;

	if (pfs_grow(&q->v, &q->cap, q->n, sizeof(*q->v)) < 0)
		return -ENOMEM;
	if (asprintf(&p, "%s%s%s", dir, *dir ? "/" : "", name) < 0)
		return -ENOMEM;
	q->v[q->n++] = p;
	return 0;
}

/* Room left for preloaded data: the cache's size less what it holds and
 * less the reserve kept for writes, in bytes (0 when full). */
static uint64_t room(struct pfs_cache *c, uint64_t reserve, uint64_t *bsize)
{
	struct statfs sf;
	uint64_t size, used;

	if (fstatfs(c->root, &sf) < 0)
		return 0;
	*bsize = sf.f_bsize ? (uint64_t)sf.f_bsize : 4096;
	size = (uint64_t)sf.f_blocks * *bsize;
	used = (uint64_t)(sf.f_blocks - sf.f_bfree) * *bsize;
	return used + reserve < size ? size - used - reserve : 0;
}

/* Load the stub name in dirfd if its data fits in what is left; *full
 * once nothing more can. A file that cannot be loaded stays a stub: it
 * loads when used, and the mount does not fail for it. */
static void preload_file(struct pfs_cache *c, int dirfd, const char *name, uint64_t reserve,
			 bool *full)
{
	uint64_t bsize = 4096, left = room(c, reserve, &bsize), need;
	struct stat st;
	int fd;

	if (left < bsize) {
		*full = true;
		return;
	}
	if (pfs_st_stat(c->in, dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
	    !S_ISREG(st.st_mode) || !(pfs_cache_state(c, st.st_ino) & STUB))
		return;
	need = ((uint64_t)st.st_size + bsize - 1) / bsize * bsize;
	if (need > left)
		return; /* too big for what is left: a smaller one may fit */
	fd = pfs_st_openat(c->in, dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC, 0);
	if (fd < 0)
		return;
	pfs_cache_load(c, fd, &st); /* failed: still a stub, loaded when used */
	close(fd);
}

int pfs_cache_preload(struct pfs_cache *c, uint64_t reserve)
{
	struct open_how how = {.flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC,
			       .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
					  RESOLVE_NO_MAGICLINKS};
	struct dirq q = {0};
	bool full = false;
	int ret = dirq_push(&q, "", "");

	while (ret == 0 && q.head < q.n) {
		struct pfs_names names = {0};
		char *dir = q.v[q.head];
		int fd = pfs_st_open(c->in, c->root, *dir ? dir : ".", &how);

		q.v[q.head++] = NULL;
		if (fd < 0) { /* a name that is no directory in the cache */
			free(dir);
			continue;
		}
		ret = pfs_cache_fill(c, fd);
		if (ret == 0)
			ret = pfs_names_read(fd, &names);
		for (size_t i = 0; ret == 0 && i < names.n; i++) {
			if (names.v[i].type == DT_DIR)
				ret = dirq_push(&q, dir, names.v[i].name);
			else if (names.v[i].type == DT_REG && !full)
				preload_file(c, fd, names.v[i].name, reserve, &full);
		}
		pfs_names_free(&names);
		close(fd);
		free(dir);
	}
	while (q.head < q.n)
		free(q.v[q.head++]);
	free(q.v);
	return ret;
}
