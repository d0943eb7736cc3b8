/* cache_life: making a cache store, starting its write-back, syncing,
 * its status, and finishing it at unmount. */
#include "cache/cache_int.h"
#include "store/fcopy.h"
#include "store/walk.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/mount.h>
#include <sys/statfs.h>
#include <sys/syscall.h>

int pfs_cache_new(struct pfs_store **out, struct pfs_store *inner, int root,
		  const struct pfs_cache_opts *o, char *err, size_t errlen)
{
	struct pfs_cache *c = calloc(1, sizeof(*c));
	struct pfs_wbq_opts qo = {0};
	char proc[32];
	struct stat st;
	ssize_t n;
	int ret;

	if (!c) {
		close(root);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	c->base.ops = &pfs_cache_ops;
	c->base.name = "cache";
	c->in = inner;
	c->root = root;
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->spill_cv, NULL);
	pthread_mutex_init(&c->load_lock, NULL);
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", root);
	n = readlink(proc, c->rootpath, sizeof(c->rootpath) - 1);
	if (n < 0 || fstat(root, &st) < 0) {
		ret = -errno;
		snprintf(err, errlen, "cannot read the cache's root: %s", strerror(-ret));
		goto fail;
	}
	c->rootpath[n] = '\0';
	c->rootlen = (size_t)n;
	if (c->rootlen == 1) /* "/": a detached filesystem */
		c->rootlen = 0;
	c->dev = st.st_dev;
	ret = pfs_mirror_open(&c->mirror, o->mirror, inner, o->mirror_opts, err, errlen);
	if (ret < 0)
		goto fail;
	qo.apply = c->mirror->ops->apply;
	qo.apply_new = c->mirror->ops->apply_new;
	qo.flush = c->mirror->ops->flush;
	qo.arg = c->mirror;
	qo.delay_ns = o->delay_ns;
	qo.max_dirty = o->max_dirty;
	c->ttl_ns = o->ttl_ns;
	if (o->journal) { /* every op through the journal (cache/journal.h) */
		pfs_journal_use(o->journal, c->mirror);
		qo.apply = pfs_journal_apply;
		if (qo.apply_new)
			qo.apply_new = pfs_journal_apply_new;
		qo.done = pfs_journal_done;
		qo.flush = pfs_journal_flush;
		qo.record = pfs_journal_record;
		qo.cancel = pfs_journal_cancel;
		qo.arg = o->journal;
	}
	/* A file whose data would pass half the cache, or the dirty limit,
	 * leaves memory while it is written (cache_spill.c). */
	c->spill_at = o->size / 2;
	if (o->max_dirty && (!c->spill_at || o->max_dirty < c->spill_at))
		c->spill_at = o->max_dirty;
	/* Without a journal the spill file is an unnamed file on the mirror's
	 * filesystem: a mirror that is no local filesystem cannot take them
	 * (nor be read a large stub from), and a file larger than the cache
	 * gets ENOSPC. With one, it is a file named in the journal's DIR/spill
	 * instead (an unnamed file would go with a kill -9, where the journal
	 * promises nothing acknowledged is lost: cache/journal_spill.c), for
	 * any mirror. */
	if (!o->journal && (!c->mirror->ops->tmpfile || !c->mirror->ops->open))
		c->spill_at = 0;
	c->qo = qo; /* the worker starts in the serving process (pfs_cache_start) */
	if (o->size && (ret = pfs_evict_new(&c->ev, c, o->size)) < 0) {
		snprintf(err, errlen, "cannot make the cache's eviction: %s", strerror(-ret));
		goto fail;
	}
	/* The root's own metadata is the mirror's. */
	{
		struct stat mst;

		if (c->mirror->ops->stat(c->mirror, "", &mst) == 0)
			c->mirror->ops->meta(c->mirror, "", &mst, inner, pfs_ref_fd(root));
	}
	if (!o->lazy && (ret = pfs_cache_preload(c, o->max_dirty)) < 0) {
		snprintf(err, errlen, "cannot load the mirror %s: %s", o->mirror, strerror(-ret));
		goto fail;
	}
	c->j = o->journal; /* owned from now on */
	*out = &c->base;
	return 0;
fail:
	c->in = NULL; /* not made: the caller keeps the store it gave */
	pfs_cache_destroy(&c->base);
	return ret;
}

/* Where the root is now (the path the mirror's paths are relative to). */
static int root_path(struct pfs_cache *c)
{
	char proc[32];
	ssize_t n;

	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", c->root);
	n = readlink(proc, c->rootpath, sizeof(c->rootpath) - 1);
	if (n < 0)
		return -errno;
	c->rootpath[n] = '\0';
	c->rootlen = (size_t)n;
	if (c->rootlen == 1) /* "/": a detached filesystem */
		c->rootlen = 0;
	return 0;
}

int pfs_cache_start(struct pfs_store *st)
{
	struct pfs_cache *c = C(st);
	int ret;

	if (c->q)
		return 0;
	if (c->j && ((ret = pfs_journal_attach(c->j)) < 0 || (ret = root_path(c)) < 0))
		return ret;
	ret = pfs_wbq_start(&c->q, &c->qo);
	return ret < 0 ? ret : pfs_evict_start(c->ev);
}

int pfs_cache_sync(struct pfs_store *st)
{
	struct pfs_cache *c = C(st);
	int ret = pfs_wbq_wait(c->q, pfs_wbq_last(c->q));

	/* Every directory is listed again at its next use: what changed on
	 * the mirror shows from now on. */
	__atomic_add_fetch(&c->list_gen, 1, __ATOMIC_RELAXED);
	return ret;
}

void pfs_cache_stats(struct pfs_store *st, struct pfs_cache_stats *out)
{
	struct pfs_cache *c = C(st);
	struct pfs_wbq_stats q;
	struct statfs sf;

	memset(out, 0, sizeof(*out));
	memset(&q, 0, sizeof(q));
	if (c->q)
		pfs_wbq_stats(c->q, &q);
	out->pending_ops = q.pending_ops;
	out->pending_bytes = q.pending_bytes;
	out->applied = q.applied;
	out->failures = q.failures;
	out->last_err = q.last_err;
	snprintf(out->last_msg, sizeof(out->last_msg), "%s", q.last_msg);
	out->conflicts = c->mirror->ops->conflicts(c->mirror, out->last_conflict,
						    sizeof(out->last_conflict));
	if (c->j && !out->conflicts) /* the journal's replay at mount met them first */
		out->conflicts = pfs_journal_replay_conflicts(c->j, out->last_conflict,
							      sizeof(out->last_conflict));
	else if (c->j)
		out->conflicts += pfs_journal_replay_conflicts(c->j, NULL, 0);
	out->mirror_kind = c->mirror->ops->kind;
	c->mirror->ops->describe(c->mirror, out->guarantees, sizeof(out->guarantees));
	pthread_mutex_lock(&c->lock);
	out->dirs_filled = c->dirs_filled;
	out->files_loaded = c->files_loaded;
	out->bytes_loaded = c->bytes_loaded;
	out->hits = c->hits;
	pthread_mutex_unlock(&c->lock);
	if (fstatfs(c->root, &sf) == 0)
		out->used_bytes = (uint64_t)(sf.f_blocks - sf.f_bfree) * (uint64_t)sf.f_bsize;
	pfs_evict_counts(c->ev, &out->evictions, &out->bytes_evicted);
}

/* Keep what could not be written back in dir: each DATA op's file as
 * NNNNNN (its order), and a list of every op left, one per line. */
static int quarantine(struct pfs_wb_op *left, const char *dir, char *msg, size_t msglen)
{
	char name[32];
	FILE *list;
	int dfd, n = 0, ret = 0;

	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return -errno;
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	list = fdopen(openat(dfd, "PENDING", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600), "w");
	for (struct pfs_wb_op *op = left; op; op = op->next, n++) {
		if (list)
			fprintf(list, "%06d %s %s%s%s\n", n, pfs_wb_kind_name(op->kind), op->path,
				op->path2 ? " -> " : "", op->path2 ? op->path2 : "");
		if (op->kind == PFS_WB_DATA && op->fd >= 0) {
			struct stat st;
			int fd;

			snprintf(name, sizeof(name), "%06d", n);
			fd = openat(dfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
			if (fd < 0 || fstat(op->fd, &st) < 0 ||
			    pfs_fcopy_data(fd, op->datafd >= 0 ? op->datafd : op->fd, st.st_size,
					   NULL, NULL) < 0)
				ret = -EIO;
			if (fd >= 0)
				close(fd);
		}
	}
	if (!list || fclose(list) != 0)
		ret = -EIO;
	if (ret == 0 && syncfs(dfd) < 0)
		ret = -errno;
	close(dfd);
	if (ret == 0)
		snprintf(msg, msglen, "kept %d change%s that could not be written back in %s", n,
			 n == 1 ? "" : "s", dir);
	return ret;
}

int pfs_cache_finish(struct pfs_store *st, uint64_t timeout_ns, const char *qdir, char *msg,
		     size_t msglen)
{
	struct pfs_cache *c = C(st);
	struct pfs_wb_op *left = NULL;
	struct pfs_wbq_stats s;
	int ret;

	msg[0] = '\0';
	if (!c->q)
		return 0; /* never served: nothing was changed */
	pfs_wbq_stats(c->q, &s);
	ret = pfs_wbq_stop(c->q, true, timeout_ns, &left);
	c->q = NULL;
	if (ret == 0)
		return 0;
	if (qdir && left && quarantine(left, qdir, msg, msglen) == 0)
		ret = -EIO;
	else
		snprintf(msg, msglen, "%" PRIu64 " change%s (%" PRIu64 " bytes) not written back "
			 "to the mirror: %s", s.pending_ops, s.pending_ops == 1 ? "" : "s",
			 s.pending_bytes, s.last_msg[0] ? s.last_msg : "the mirror fails");
	while (left) {
		struct pfs_wb_op *nx = left->next;

		pfs_wb_op_free(left);
		left = nx;
	}
	return ret;
}

int pfs_memfs_make(uint64_t size, const char *source, int *mntp, char *err, size_t errlen)
{
	char opt[32];
	int fs, mnt, root, ret;

	fs = (int)syscall(SYS_fsopen, "tmpfs", FSOPEN_CLOEXEC);
	if (fs < 0) {
		ret = -errno;
		snprintf(err, errlen, "cannot make the cache's memory filesystem (fsopen tmpfs): %s",
			 strerror(-ret));
		return ret;
	}
	snprintf(opt, sizeof(opt), "%" PRIu64, size);
	if ((source && syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "source", source, 0) < 0) ||
	    syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "size", opt, 0) < 0 ||
	    syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "mode", "0755", 0) < 0 ||
	    syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0) {
		ret = -errno;
		close(fs);
		snprintf(err, errlen, "cannot make the cache's memory filesystem: %s",
			 strerror(-ret));
		return ret;
	}
	mnt = (int)syscall(SYS_fsmount, fs, FSMOUNT_CLOEXEC, 0);
	ret = -errno;
	close(fs);
	if (mnt < 0) {
		snprintf(err, errlen, "cannot make the cache's memory filesystem (fsmount): %s",
			 strerror(-ret));
		return ret;
	}
	root = openat(mnt, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ret = -errno;
	if (root < 0 || !mntp)
		close(mnt);
	if (root < 0) {
		snprintf(err, errlen, "cannot open the cache's memory filesystem: %s",
			 strerror(-ret));
		return ret;
	}
	if (mntp)
		*mntp = mnt;
	return root;
}

int pfs_memfs_open(uint64_t size, char *err, size_t errlen)
{
	return pfs_memfs_make(size, NULL, NULL, err, errlen);
}

