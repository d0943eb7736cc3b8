/* The write-back queue and the local mirror (src/cache/, src/mirror/), on temporary
 * directories: the mirror must end up as the sequence of changes left the
 * cache, a replay must change nothing, a change behind the mount must be
 * kept, and a failure must keep the data and be told to whoever waits. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "cache/wbq.h"
#include "mirror/mirror.h"
#include "store/store.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

struct fix {
	char cache[64], mirror[64], outside[64];
	struct pfs_mirror *m;
	struct pfs_store *st;
};

static void sh(const char *fmt, ...)
{
	char cmd[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	assert_int_equal(system(cmd), 0);
}

static int setup(void **state)
{
	struct fix *f = calloc(1, sizeof(*f));
	char err[256];

	strcpy(f->cache, "/tmp/pfs-wb-cache.XXXXXX");
	strcpy(f->mirror, "/tmp/pfs-wb-mirror.XXXXXX");
	strcpy(f->outside, "/tmp/pfs-wb-outside.XXXXXX");
	if (!mkdtemp(f->cache) || !mkdtemp(f->mirror) || !mkdtemp(f->outside))
		return -1;
	f->st = pfs_store_local();
	if (pfs_mirror_open(&f->m, f->mirror, f->st, NULL, err, sizeof(err)) < 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fix *f = *state;

	pfs_mirror_close(f->m);
	sh("rm -rf %s %s %s", f->cache, f->mirror, f->outside);
	if (f->st != pfs_store_local())
		pfs_store_free(f->st);
	free(f);
	return 0;
}

static void put(const char *dir, const char *name, const char *text)
{
	char p[512];
	FILE *fp;

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	fp = fopen(p, "w");
	assert_non_null(fp);
	fputs(text, fp);
	fclose(fp);
}

/* The file's content ("" when missing, "<dir>" for a directory). */
static char *get(const char *dir, const char *name)
{
	static char buf[4][256];
	static int turn;
	char p[512], *b = buf[turn++ % 4];
	struct stat st;
	FILE *fp;
	size_t n;

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	if (lstat(p, &st) < 0)
		return strcpy(b, "");
	if (S_ISDIR(st.st_mode))
		return strcpy(b, "<dir>");
	fp = fopen(p, "r");
	assert_non_null(fp);
	n = fread(b, 1, 255, fp);
	b[n] = '\0';
	fclose(fp);
	return b;
}

static struct pfs_wb_op *op(enum pfs_wb_kind k, const char *path)
{
	struct pfs_wb_op *o = pfs_wb_op_new(k, path);

	assert_non_null(o);
	return o;
}

static struct pfs_wb_op *data(struct fix *f, const char *path, uint64_t key)
{
	struct pfs_wb_op *o = op(PFS_WB_DATA, path);
	char p[512];
	struct stat st;

	snprintf(p, sizeof(p), "%s/%s", f->cache, path);
	o->fd = open(p, O_RDONLY | O_CLOEXEC);
	assert_true(o->fd >= 0);
	assert_int_equal(fstat(o->fd, &st), 0);
	o->key = key;
	o->bytes = (uint64_t)st.st_size;
	return o;
}

static struct pfs_wb_op *two(enum pfs_wb_kind k, const char *a, const char *b)
{
	struct pfs_wb_op *o = op(k, a);

	o->path2 = strdup(b);
	return o;
}

static void apply(struct fix *f, struct pfs_wb_op *o)
{
	char err[512] = "";
	int ret = f->m->ops->apply(f->m, o, err, sizeof(err));

	if (ret < 0)
		fail_msg("apply %s %s: %s", pfs_wb_kind_name(o->kind), o->path, err);
}

static struct pfs_wbq *start(struct fix *f, uint64_t delay_ms, uint64_t max_dirty)
{
	struct pfs_wbq_opts o = {.apply = f->m->ops->apply,
				 .flush = f->m->ops->flush,
				 .arg = f->m,
				 .delay_ns = delay_ms * 1000000u,
				 .max_dirty = max_dirty,
				 .retry_min_ns = 1000000u,
				 .retry_max_ns = 10000000u};
	struct pfs_wbq *q;

	assert_int_equal(pfs_wbq_start(&q, &o), 0);
	return q;
}

/* A sequence of changes reaches the mirror in order and makes the same
 * tree; applied a second time (a journal replayed), it changes nothing. */
static void test_sequence_and_replay(void **state)
{
	struct fix *f = *state;
	struct pfs_wb_op *ops[16];
	size_t n = 0;
	struct pfs_wbq *q = start(f, 0, 0);
	struct stat st;
	char p[512], v[16];

	sh("mkdir %s/a && printf hello > %s/a/f", f->cache, f->cache);
	ops[n] = op(PFS_WB_MKDIR, "a");
	ops[n++]->mode = 0750;
	ops[n] = op(PFS_WB_CREATE, "a/f");
	ops[n++]->mode = 0640;
	ops[n++] = data(f, "a/f", 0);
	ops[n] = op(PFS_WB_SYMLINK, "a/l");
	ops[n++]->target = strdup("f");
	ops[n++] = two(PFS_WB_LINK, "a/f", "a/g");
	ops[n] = op(PFS_WB_SETXATTR, "a/f");
	ops[n]->xname = strdup("user.k");
	ops[n]->xval = strdup("v1");
	ops[n++]->xlen = 2;
	ops[n++] = two(PFS_WB_RENAME, "a", "b");
	ops[n] = op(PFS_WB_ATTR, "b/f");
	ops[n]->mask = PFS_WB_MODE;
	ops[n++]->mode = 0600;
	ops[n++] = op(PFS_WB_UNLINK, "b/g");
	ops[n] = op(PFS_WB_MKDIR, "b/sub");
	ops[n++]->mode = 0755;
	ops[n++] = op(PFS_WB_RMDIR, "b/sub");
	for (size_t i = 0; i < n; i++)
		pfs_wbq_push(q, ops[i]);
	assert_int_equal(pfs_wbq_wait(q, pfs_wbq_last(q)), 0);

	assert_string_equal(get(f->mirror, "a"), "");
	assert_string_equal(get(f->mirror, "b/f"), "hello");
	assert_string_equal(get(f->mirror, "b/g"), "");
	assert_string_equal(get(f->mirror, "b/sub"), "");
	snprintf(p, sizeof(p), "%s/b/f", f->mirror);
	assert_int_equal(lstat(p, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(st.st_nlink, 1);
	assert_int_equal(getxattr(p, "user.k", v, sizeof(v)), 2);
	snprintf(p, sizeof(p), "%s/b/l", f->mirror);
	assert_int_equal(lstat(p, &st), 0);
	assert_true(S_ISLNK(st.st_mode));
	snprintf(p, sizeof(p), "%s/b", f->mirror);
	assert_int_equal(lstat(p, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0750);
	assert_int_equal(pfs_wbq_stop(q, true, 0, NULL), 0);

	/* Replayed: the same ops again, each done already. */
	{
		struct pfs_wb_op *again[] = {
			op(PFS_WB_MKDIR, "b"), op(PFS_WB_CREATE, "b/f"),
			two(PFS_WB_RENAME, "a", "b"), op(PFS_WB_UNLINK, "b/g"),
			op(PFS_WB_RMDIR, "b/sub"), two(PFS_WB_LINK, "b/f", "b/f"),
		};

		struct statx sx;

		again[0]->mode = 0750;
		again[1]->mode = 0640;
		/* A create replayed knows the file it made (the journal's
		 * mark): here, the one b/f holds. */
		snprintf(p, sizeof(p), "%s/b/f", f->mirror);
		assert_int_equal(statx(AT_FDCWD, p, AT_SYMLINK_NOFOLLOW, STATX_INO | STATX_BTIME,
				       &sx), 0);
		again[1]->made_ino = (int64_t)sx.stx_ino;
		if (sx.stx_mask & STATX_BTIME)
			again[1]->made_bt = (int64_t)sx.stx_btime.tv_sec * 1000000000 +
					    sx.stx_btime.tv_nsec;
		again[1]->key = 7;
		for (size_t i = 0; i < sizeof(again) / sizeof(again[0]); i++) {
			apply(f, again[i]);
			pfs_wb_op_free(again[i]);
		}
	}
	assert_string_equal(get(f->mirror, "b/f"), "hello");
	assert_int_equal(f->m->ops->conflicts(f->m, NULL, 0), 0);
}

/* A create whose name was made on the mirror meanwhile, by someone else
 * (not the file an attempt of it made): that file stays; the cache's goes
 * beside it, and so does its data. */
static void test_create_over_a_file_made_behind_is_a_conflict(void **state)
{
	struct fix *f = *state;
	struct pfs_wb_op *o;
	char msg[512];

	put(f->mirror, "n", "theirs");
	put(f->cache, "n", "ours");
	o = op(PFS_WB_CREATE, "n");
	o->mode = 0644;
	o->key = 9;
	apply(f, o);
	pfs_wb_op_free(o);
	o = data(f, "n", 9);
	apply(f, o);
	pfs_wb_op_free(o);
	assert_string_equal(get(f->mirror, "n"), "theirs");
	assert_int_equal(f->m->ops->conflicts(f->m, msg, sizeof(msg)), 1);
	assert_non_null(strstr(msg, "n.prismfs-conflict-"));
	assert_string_equal(get(f->mirror, strstr(msg, "n.prismfs-conflict-")), "ours");
}

/* A file changed on the mirror after the cache loaded it is never
 * overwritten: the cache's version goes beside it, and stays there. */
static void test_conflict_keeps_both(void **state)
{
	struct fix *f = *state;
	struct pfs_wbq *q = start(f, 0, 0);
	char msg[512];
	struct pfs_wb_op *o;

	put(f->mirror, "doc", "original");
	put(f->cache, "doc", "ours");
	assert_int_equal(f->m->ops->remember(f->m, 42, "doc"), 0);
	sh("sleep 0.01; printf 'theirs, longer' > %s/doc", f->mirror);
	pfs_wbq_push(q, data(f, "doc", 42));
	assert_int_equal(pfs_wbq_wait(q, pfs_wbq_last(q)), 0);
	assert_string_equal(get(f->mirror, "doc"), "theirs, longer");
	assert_int_equal(f->m->ops->conflicts(f->m, msg, sizeof(msg)), 1);
	assert_non_null(strstr(msg, "doc.prismfs-conflict-"));
	sh("test \"$(cat %s/doc.prismfs-conflict-*)\" = ours", f->mirror);

	/* Written again: to the same conflict name, the mirror's untouched. */
	put(f->cache, "doc", "ours again");
	o = data(f, "doc", 42);
	pfs_wbq_push(q, o);
	assert_int_equal(pfs_wbq_wait(q, pfs_wbq_last(q)), 0);
	assert_string_equal(get(f->mirror, "doc"), "theirs, longer");
	sh("test $(ls %s | grep -c prismfs-conflict) = 1", f->mirror);
	sh("test \"$(cat %s/doc.prismfs-conflict-*)\" = 'ours again'", f->mirror);
	assert_int_equal(f->m->ops->conflicts(f->m, NULL, 0), 1);
	assert_int_equal(pfs_wbq_stop(q, true, 0, NULL), 0);
}

/* Unchanged on the mirror since it was loaded: replaced, and the next
 * write-back (the base moved with it) is not a conflict either. */
static void test_no_conflict_when_unchanged(void **state)
{
	struct fix *f = *state;
	struct pfs_wbq *q = start(f, 0, 0);

	put(f->mirror, "doc", "v0");
	put(f->cache, "doc", "v1");
	assert_int_equal(f->m->ops->remember(f->m, 7, "doc"), 0);
	pfs_wbq_push(q, data(f, "doc", 7));
	assert_int_equal(pfs_wbq_wait(q, pfs_wbq_last(q)), 0);
	put(f->cache, "doc", "v2, longer");
	pfs_wbq_push(q, data(f, "doc", 7));
	assert_int_equal(pfs_wbq_wait(q, pfs_wbq_last(q)), 0);
	assert_string_equal(get(f->mirror, "doc"), "v2, longer");
	assert_int_equal(f->m->ops->conflicts(f->m, NULL, 0), 0);
	sh("test $(ls -A %s | wc -l) = 1", f->mirror); /* no temporary left */
	assert_int_equal(pfs_wbq_stop(q, true, 0, NULL), 0);
}

/* A file with two names on the mirror is rewritten where it is: both
 * names see the new data. */
static void test_hard_link_rewritten_in_place(void **state)
{
	struct fix *f = *state;
	struct pfs_wbq *q = start(f, 0, 0);

	put(f->mirror, "one", "old");
	sh("ln %s/one %s/two", f->mirror, f->mirror);
	put(f->cache, "one", "new data");
	pfs_wbq_push(q, data(f, "one", 0));
	assert_int_equal(pfs_wbq_wait(q, pfs_wbq_last(q)), 0);
	assert_string_equal(get(f->mirror, "one"), "new data");
	assert_string_equal(get(f->mirror, "two"), "new data");
	assert_int_equal(pfs_wbq_stop(q, true, 0, NULL), 0);
}

/* The mirror fails: whoever waits hears the error, the op stays queued,
 * and it is applied once the mirror works again. */
static void test_failure_is_told_and_retried(void **state)
{
	struct fix *f = *state;
	char err[256];
	struct pfs_store *faulty = pfs_store_fault_new(pfs_store_local(), "rename:1:ENOSPC", err,
						       sizeof(err));
	struct pfs_wbq_stats s;
	struct pfs_wbq *q;
	uint64_t seq;

	assert_non_null(faulty);
	pfs_mirror_close(f->m);
	f->st = faulty;
	assert_int_equal(pfs_mirror_open(&f->m, f->mirror, f->st, NULL, err, sizeof(err)), 0);
	q = start(f, 0, 0);
	put(f->cache, "file", "precious");
	seq = pfs_wbq_push(q, data(f, "file", 0));
	/* The first try fails and is told; the retry (1 ms later) succeeds. */
	{
		int r = pfs_wbq_wait(q, seq);

		assert_true(r == -ENOSPC || r == 0);
		if (r == -ENOSPC)
			assert_int_equal(pfs_wbq_wait(q, seq), 0);
	}
	assert_string_equal(get(f->mirror, "file"), "precious");
	pfs_wbq_stats(q, &s);
	assert_int_equal(s.failures, 1);
	assert_int_equal(s.pending_ops, 0);
	assert_int_equal(s.last_err, 0);
	sh("test $(ls -A %s | wc -l) = 1", f->mirror); /* the failed temporary is gone */
	assert_int_equal(pfs_wbq_stop(q, true, 0, NULL), 0);
}

/* Stopped without draining while the mirror fails: the ops come back to
 * the caller, none lost. */
static void test_stop_hands_back_what_is_left(void **state)
{
	struct fix *f = *state;
	char err[256];
	struct pfs_wb_op *left = NULL;
	struct pfs_wbq *q;
	int n = 0;

	pfs_mirror_close(f->m);
	f->st = pfs_store_fault_new(pfs_store_local(), "mkdir:1-:EIO", err, sizeof(err));
	assert_non_null(f->st);
	assert_int_equal(pfs_mirror_open(&f->m, f->mirror, f->st, NULL, err, sizeof(err)), 0);
	q = start(f, 0, 0);
	pfs_wbq_push(q, op(PFS_WB_MKDIR, "d"));
	pfs_wbq_push(q, op(PFS_WB_CREATE, "d/x"));
	assert_int_equal(pfs_wbq_wait(q, pfs_wbq_last(q)), -EIO);
	assert_int_equal(pfs_wbq_stop(q, true, 20000000u, &left), -EIO);
	for (struct pfs_wb_op *p = left, *nx; p; p = nx, n++) {
		nx = p->next;
		pfs_wb_op_free(p);
	}
	assert_int_equal(n, 2);
	assert_string_equal(get(f->mirror, "d"), "");
}

/* A delay batches: nothing reaches the mirror before it, unless someone
 * waits (fsync), which needs no delay. */
static void test_delay_and_wait(void **state)
{
	struct fix *f = *state;
	struct pfs_wbq *q = start(f, 60000, 0);
	struct pfs_wbq_stats s;

	pfs_wbq_push(q, op(PFS_WB_MKDIR, "later"));
	usleep(50000);
	pfs_wbq_stats(q, &s);
	assert_int_equal(s.pending_ops, 1);
	assert_string_equal(get(f->mirror, "later"), "");
	assert_int_equal(pfs_wbq_wait(q, pfs_wbq_last(q)), 0);
	assert_string_equal(get(f->mirror, "later"), "<dir>");
	assert_int_equal(pfs_wbq_stop(q, true, 0, NULL), 0);
}

struct writer {
	struct pfs_wbq *q;
	int done;
};

static void *room_thread(void *arg)
{
	struct writer *w = arg;

	pfs_wbq_room(w->q, 50);
	__atomic_store_n(&w->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

/* Over the dirty limit a writer waits until write-back makes room, even
 * with a long delay; one write larger than the limit is let through. */
static void test_dirty_limit(void **state)
{
	struct fix *f = *state;
	struct pfs_wbq *q = start(f, 60000, 100);
	struct writer w = {.q = q};
	struct pfs_wbq_stats s;
	struct pfs_wb_op *o;
	pthread_t t;

	put(f->cache, "big", "0123456789012345678901234567890123456789012345678901234567890123456789"
			     "0123456789");
	o = data(f, "big", 0);
	assert_int_equal(o->bytes, 80);
	pfs_wbq_push(q, o);
	pthread_create(&t, NULL, room_thread, &w);
	pthread_join(t, NULL);
	assert_int_equal(__atomic_load_n(&w.done, __ATOMIC_ACQUIRE), 1);
	pfs_wbq_stats(q, &s);
	assert_int_equal(s.pending_bytes, 0);
	assert_string_equal(get(f->mirror, "big"), get(f->cache, "big"));
	pfs_wbq_room(q, 1000); /* nothing pending: larger than the limit goes */
	assert_int_equal(pfs_wbq_stop(q, true, 0, NULL), 0);
}

/* Repeated writes of one file queue one write-back. */
static void test_repeated_writes_merge(void **state)
{
	struct fix *f = *state;
	struct pfs_wbq *q = start(f, 60000, 0);
	struct pfs_wbq_stats s;
	uint64_t a, b;

	put(f->cache, "f", "1");
	a = pfs_wbq_push(q, data(f, "f", 9));
	put(f->cache, "f", "22");
	b = pfs_wbq_push(q, data(f, "f", 9));
	assert_int_equal(a, b);
	pfs_wbq_stats(q, &s);
	assert_int_equal(s.pending_ops, 1);
	assert_int_equal(pfs_wbq_wait(q, b), 0);
	assert_string_equal(get(f->mirror, "f"), "22");
	assert_int_equal(pfs_wbq_stop(q, true, 0, NULL), 0);
}

static void to_moved(struct pfs_wb_op *o, void *arg)
{
	o->datafd = open(arg, O_RDONLY | O_CLOEXEC);
	assert_true(o->datafd >= 0);
}

/* A file's data moved out of the cache file (cache_spill.c) after its
 * write-back was queued: the queued op is made to read it where it is
 * now, and so is an op merged into by a later one that reads it there
 * (the cache file keeps only the size). Ops of other keys are left. */
static void test_queued_data_follows_its_data_when_it_moves(void **state)
{
	struct fix *f = *state;
	struct pfs_wbq *q = start(f, 60000, 0);
	struct pfs_wb_op *o;
	char moved[600];
	uint64_t a, b, c;

	snprintf(moved, sizeof(moved), "%s/moved", f->mirror);
	put(f->cache, "f", "stub!!");
	put(f->cache, "g", "ggg");
	put(f->cache, "h", "......");
	a = pfs_wbq_push(q, data(f, "f", 5));
	b = pfs_wbq_push(q, data(f, "g", 6));
	put(f->mirror, "moved", "moved!");
	assert_int_equal(pfs_wbq_data_each(q, 5, to_moved, moved), 0);
	c = pfs_wbq_push(q, data(f, "h", 7));
	o = data(f, "h", 7);
	o->datafd = open(moved, O_RDONLY | O_CLOEXEC);
	assert_int_equal(pfs_wbq_push(q, o), c);
	assert_int_equal(pfs_wbq_wait(q, c), 0);
	assert_true(a < b && b < c);
	assert_string_equal(get(f->mirror, "f"), "moved!");
	assert_string_equal(get(f->mirror, "g"), "ggg");
	assert_string_equal(get(f->mirror, "h"), "moved!");
	assert_int_equal(pfs_wbq_stop(q, true, 0, NULL), 0);
}

/* Many files written twice each: every second write merges into the first
 * (the queue finds it by key, also when keys share a bucket); a rename of
 * any name in between keeps the writes around it apart, in order. */
static void test_merge_by_key_and_rename_orders(void **state)
{
	struct fix *f = *state;
	struct pfs_wbq *q = start(f, 60000, 0);
	struct pfs_wbq_stats s;
	enum { N = 600 }; /* in 1,024 buckets: some keys share one */
	static uint64_t first[N];
	char name[32];
	uint64_t seq;

	for (int i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "f%d", i);
		put(f->cache, name, "1");
		first[i] = pfs_wbq_push(q, data(f, name, (uint64_t)i + 1));
	}
	for (int i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "f%d", i);
		put(f->cache, name, "22");
		assert_int_equal(pfs_wbq_push(q, data(f, name, (uint64_t)i + 1)), first[i]);
	}
	pfs_wbq_stats(q, &s);
	assert_int_equal(s.pending_ops, N);
	sh("mv %s/f0 %s/g0", f->cache, f->cache);
	pfs_wbq_push(q, two(PFS_WB_RENAME, "f0", "g0"));
	put(f->cache, "f1", "333");
	seq = pfs_wbq_push(q, data(f, "f1", 2));
	assert_true(seq > first[1]);
	pfs_wbq_stats(q, &s);
	assert_int_equal(s.pending_ops, N + 2);
	assert_int_equal(pfs_wbq_wait(q, seq), 0);
	assert_string_equal(get(f->mirror, "g0"), "22");
	assert_string_equal(get(f->mirror, "f1"), "333");
	assert_string_equal(get(f->mirror, "f599"), "22");
	assert_int_equal(pfs_wbq_stop(q, true, 0, NULL), 0);
}

/* A symlink planted in the mirror never leads a write-back out of it. */
static void test_no_escape_through_symlink(void **state)
{
	struct fix *f = *state;
	struct pfs_wb_op *o;
	char err[512];

	sh("ln -s %s %s/a", f->outside, f->mirror);
	o = op(PFS_WB_CREATE, "a/x");
	o->mode = 0644;
	assert_true(f->m->ops->apply(f->m, o, err, sizeof(err)) < 0);
	assert_non_null(strstr(err, "a/x"));
	pfs_wb_op_free(o);
	sh("test -z \"$(ls -A %s)\"", f->outside);
}

/* The mirror is chosen by its address: a directory or file:// is local,
 * the remote kinds go to their server (here a port nobody listens on: the
 * open fails, naming it), anything else is bad input. */
static void test_open_by_address(void **state)
{
	static const char *const remote[] = {"http://127.0.0.1:1/x", "dav://127.0.0.1:1/x",
					     "s3://bucket/p"};
	struct pfs_mirror_opts mo = {.s3_endpoint = "http://127.0.0.1:1"};
	struct fix *f = *state;
	struct pfs_mirror *m = NULL;
	char err[256], addr[128];

	setenv("AWS_ACCESS_KEY_ID", "k", 1); /* S3 reads its keys before it connects */
	setenv("AWS_SECRET_ACCESS_KEY", "s", 1);
	for (size_t i = 0; i < sizeof(remote) / sizeof(remote[0]); i++) {
		err[0] = '\0';
		assert_int_equal(pfs_mirror_open(&m, remote[i], f->st, &mo, err, sizeof(err)),
				 -ECONNREFUSED);
		assert_non_null(strstr(err, "127.0.0.1"));
	}
	assert_int_equal(pfs_mirror_open(&m, "ftp://h/x", f->st, NULL, err, sizeof(err)), -EINVAL);
	snprintf(addr, sizeof(addr), "file://%s", f->mirror);
	assert_int_equal(pfs_mirror_open(&m, addr, f->st, NULL, err, sizeof(err)), 0);
	assert_string_equal(m->ops->kind, "local");
	assert_non_null(m->ops->open);
	assert_non_null(m->ops->tmpfile);
	assert_non_null(m->ops->ino);
	pfs_mirror_close(m);
}

/* list gives names, their stat and symlink targets, not the write-back's
 * temporaries; fetch streams a file's data and remembers it as the base
 * (a change behind the mount after it is a conflict). */
static void test_list_and_fetch(void **state)
{
	struct fix *f = *state;
	struct pfs_wbq *q;
	struct pfs_mirror_dir d = {0};
	struct stat st;
	char p[512];
	bool seen[3] = {false, false, false};
	int fd;

	put(f->mirror, "f", "hello");
	put(f->mirror, ".prismfs-wb.1.2", "half");
	sh("mkdir %s/d && ln -s somewhere %s/l", f->mirror, f->mirror);
	assert_int_equal(f->m->ops->list(f->m, "", &d), 0);
	assert_int_equal(d.n, 3);
	for (size_t i = 0; i < d.n; i++) {
		const struct pfs_mirror_ent *e = &d.v[i];

		if (strcmp(e->name, "f") == 0) {
			seen[0] = S_ISREG(e->st.st_mode) && e->st.st_size == 5 && !e->target;
		} else if (strcmp(e->name, "d") == 0) {
			seen[1] = S_ISDIR(e->st.st_mode) && !e->target;
		} else if (strcmp(e->name, "l") == 0) {
			seen[2] = S_ISLNK(e->st.st_mode) && e->target &&
				  strcmp(e->target, "somewhere") == 0;
		}
	}
	pfs_mirror_dir_free(&d);
	assert_true(seen[0] && seen[1] && seen[2]);
	assert_int_equal(f->m->ops->list(f->m, "nope", &d), -ENOENT);
	assert_int_equal(f->m->ops->list(f->m, "f", &d), -ENOTDIR);
	assert_int_equal(f->m->ops->stat(f->m, "d/nope", &st), -ENOENT);

	snprintf(p, sizeof(p), "%s/f", f->cache);
	fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(f->m->ops->fetch(f->m, "f", 5, fd, &st), 0);
	close(fd);
	assert_int_equal(st.st_size, 5);
	assert_string_equal(get(f->cache, "f"), "hello");
	sh("sleep 0.01; printf 'theirs' > %s/f", f->mirror);
	q = start(f, 0, 0);
	pfs_wbq_push(q, data(f, "f", 5));
	assert_int_equal(pfs_wbq_wait(q, pfs_wbq_last(q)), 0);
	assert_string_equal(get(f->mirror, "f"), "theirs");
	assert_int_equal(f->m->ops->conflicts(f->m, NULL, 0), 1);
	assert_int_equal(pfs_wbq_stop(q, true, 0, NULL), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_sequence_and_replay, setup, teardown),
		cmocka_unit_test_setup_teardown(test_conflict_keeps_both, setup, teardown),
		cmocka_unit_test_setup_teardown(test_create_over_a_file_made_behind_is_a_conflict,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_conflict_when_unchanged, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hard_link_rewritten_in_place, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failure_is_told_and_retried, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stop_hands_back_what_is_left, setup, teardown),
		cmocka_unit_test_setup_teardown(test_delay_and_wait, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dirty_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_repeated_writes_merge, setup, teardown),
		cmocka_unit_test_setup_teardown(test_merge_by_key_and_rename_orders, setup, teardown),
		cmocka_unit_test_setup_teardown(test_queued_data_follows_its_data_when_it_moves,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_escape_through_symlink, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_by_address, setup, teardown),
		cmocka_unit_test_setup_teardown(test_list_and_fetch, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
