#include "cache/wbq.h"
#include "util/util.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define KEY_BUCKETS 1024u

struct pfs_wbq {
	struct pfs_wbq_opts o;
	pthread_t worker;
	pthread_mutex_t lock;
	pthread_cond_t work;   /* the worker: something to do, or sooner */
	pthread_cond_t moved;  /* waiters and writers: the queue moved on */
	/* All below under lock. */
	struct pfs_wb_op *head, *tail;
	struct pfs_wb_op *busy; /* the head while the worker applies it */
	uint64_t busy_last;     /* ... with the ops up to this seq (a new file's
				 * run, applied as one: apply_new) */
	uint64_t next_seq;
	uint64_t applied_seq;   /* every op up to it is applied */
	uint64_t flushed_seq;   /* ... and durable (flush) */
	uint64_t want;          /* someone waits for ops up to it: no delay */
	unsigned room_waiters;  /* writers held back: no delay either */
	uint64_t fail_gen;      /* counts failures, so a wait sees a new one */
	uint64_t retry_at;      /* after a failure: not before (monotonic ns) */
	uint64_t pause;         /* the next pause after a failure */
	bool stopping, drain;
	/* The newest queued DATA op of each key, so that a push finds the op
	 * it may merge into without walking the queue: an untar pushes one
	 * per file, and a walk under q->lock made pushes quadratic in the
	 * queue's length and held the worker back (27% of the daemon's CPU). */
	struct pfs_wb_op *bykey[KEY_BUCKETS];
	struct pfs_wb_op *held; /* ops held (pfs_wbq_push_held), oldest first */
	uint64_t fixes[2 * 16]; /* (seq, key) of held ops released with a key
				 * their record lacks: for the next record */
	unsigned nfixes;
	uint64_t name_seq;      /* the newest RENAME, UNLINK or LINK pushed */
	uint64_t move_seq;      /* the newest RENAME or LINK pushed */
	bool crash;             /* PRISMFS_TEST_CRASH is set: crash points on */
	uint64_t deadline;      /* drain: give up after it (0: never) */
	struct pfs_wbq_stats st;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Wait on c until the monotonic time t (the conds use CLOCK_MONOTONIC). */
static void wait_until(pthread_cond_t *c, pthread_mutex_t *m, uint64_t t)
{
	struct timespec ts = {.tv_sec = (time_t)(t / 1000000000u),
			      .tv_nsec = (long)(t % 1000000000u)};

	pthread_cond_timedwait(c, m, &ts);
}

/* Is the head due now? Else *until says when it will be (0: on a signal). */
static bool due(struct pfs_wbq *q, uint64_t now, uint64_t *until)
{
	const struct pfs_wb_op *h = q->head;

	*until = 0;
	if (h->held) /* the cache's tree has not said yet: on a signal */
		return false;
	if (q->retry_at > now && !(q->stopping && !q->drain)) {
		*until = q->retry_at;
		return false;
	}
	if (q->stopping || q->want >= h->seq || q->room_waiters ||
	    (q->o.max_dirty && q->st.pending_bytes > q->o.max_dirty))
		return true;
	if (now - h->when_ns >= q->o.delay_ns)
		return true;
	*until = h->when_ns + q->o.delay_ns;
	return false;
}

static void index_pop(struct pfs_wbq *q, struct pfs_wb_op *op);

static void pop_head(struct pfs_wbq *q)
{
	struct pfs_wb_op *h = q->head;

	index_pop(q, h);
	q->head = h->next;
	if (!q->head)
		q->tail = NULL;
	q->applied_seq = h->seq;
	q->st.pending_ops--;
	q->st.pending_bytes -= h->bytes;
	q->st.applied++;
}

/* Someone waits and every op they wait for is applied: make it durable
 * (under q->lock, dropped around the callback). 0 or -errno. */
static int flush(struct pfs_wbq *q, char *msg, size_t len)
{
	uint64_t upto = q->applied_seq;
	int ret = 0;

	if (q->o.flush) {
		pthread_mutex_unlock(&q->lock);
		msg[0] = '\0';
		ret = q->o.flush(q->o.arg, msg, len);
		pthread_mutex_lock(&q->lock);
	}
	if (ret == 0 && upto > q->flushed_seq)
		q->flushed_seq = upto;
	return ret;
}

static void failed(struct pfs_wbq *q, int ret, const char *msg)
{
	q->st.failures++;
	q->st.last_err = ret;
	snprintf(q->st.last_msg, sizeof(q->st.last_msg), "%s", msg);
	q->fail_gen++;
	q->retry_at = now_ns() + q->pause;
	q->pause = q->pause * 2 > q->o.retry_max_ns ? q->o.retry_max_ns : q->pause * 2;
}

static void succeeded(struct pfs_wbq *q)
{
	q->st.last_err = 0;
	q->st.last_msg[0] = '\0';
	q->pause = q->o.retry_min_ns;
	q->retry_at = 0;
}

/* Tests kill the daemon before (wb-apply-KIND) and after (wb-applied-KIND)
 * an op of a kind is applied. */
static void crashpoint(struct pfs_wbq *q, const char *when, const struct pfs_wb_op *op)
{
	char step[64];

	if (!q->crash)
		return;
	snprintf(step, sizeof(step), "%s%s", when, pfs_wb_kind_name(op->kind));
	pfs_crashpoint(step);
}

/* Is op being applied (the head, or one of its run)? Under q->lock. */
static bool is_busy(const struct pfs_wbq *q, const struct pfs_wb_op *op)
{
	return q->busy && op->seq >= q->busy->seq && op->seq <= q->busy_last;
}

/* Ops pushed this close after a new file's CREATE join its run even if not
 * due yet: a file copied in is created, written and closed within moments,
 * and its DATA a few microseconds younger than its CREATE would otherwise
 * miss the run whenever the delay, not a sync, made the CREATE due. */
#define RUN_SLACK_NS 100000000u /* 0.1 s */
#define RUN_MAX 64u

/* How many ops from the head h are a new file's run that apply_new may
 * apply as one (1: h alone). A run is a CREATE with its key, then only
 * ATTR, SETXATTR or RMXATTR of the same path, ending with that file's DATA
 * (its data in memory, no datafd). Nothing else of any path comes between
 * (the queue is not reordered: the run's ops are consecutive, so applying
 * them together skips only the file's own intermediate states — empty,
 * then without its mode — and the mirror stays a state the view went
 * through). Under q->lock.
 *
 * Why (issue 15, `wbsync` at 0.60 of cp -a + sync -f): cp -a of
 * /usr/include into the cache queues four ops per file (CREATE, ATTR of
 * the times, SETXATTR of its ACL, DATA at close); applied one by one each
 * reopened the parent, the CREATE made the file on ext4 and the DATA a
 * second one under a temporary name renamed over it: 36 system calls per
 * entry (strace -c of the daemon during prismfs sync, 8,916 entries),
 * two ext4 creates (225 us each under strace) and a rename per file. */
static unsigned new_file_run(struct pfs_wbq *q, const struct pfs_wb_op *h, uint64_t now)
{
	unsigned n = 1;

	if (!q->o.apply_new || h->kind != PFS_WB_CREATE || !h->key)
		return 1;
	for (const struct pfs_wb_op *op = h->next; op && n < RUN_MAX; op = op->next) {
		bool due_too = q->stopping || q->want >= op->seq || q->room_waiters ||
			       (q->o.max_dirty && q->st.pending_bytes > q->o.max_dirty) ||
			       now - op->when_ns >= q->o.delay_ns ||
			       op->when_ns - h->when_ns <= RUN_SLACK_NS;

		if (!due_too || strcmp(op->path, h->path) != 0)
			return 1;
		n++;
		if (op->kind == PFS_WB_DATA)
			return op->key == h->key && op->fd >= 0 && op->datafd < 0 ? n : 1;
		if (op->kind != PFS_WB_ATTR && op->kind != PFS_WB_SETXATTR &&
		    op->kind != PFS_WB_RMXATTR)
			return 1;
	}
	return 1;
}

static void *worker(void *arg)
{
	struct pfs_wbq *q = arg;
	char msg[sizeof(q->st.last_msg)];

	pthread_mutex_lock(&q->lock);
	for (;;) {
		uint64_t now = now_ns(), until;
		struct pfs_wb_op *h, *run[RUN_MAX];
		unsigned n;
		int ret;

		if (q->stopping && (!q->drain || !q->head ||
				    (q->deadline && now >= q->deadline)))
			break;
		if (q->want > q->flushed_seq && (!q->head || q->applied_seq >= q->want) &&
		    q->retry_at <= now) {
			ret = flush(q, msg, sizeof(msg));
			if (ret < 0)
				failed(q, ret, msg);
			else
				succeeded(q);
			pthread_cond_broadcast(&q->moved);
			continue;
		}
		if (!q->head) {
			if (q->want > q->flushed_seq && q->retry_at > now)
				wait_until(&q->work, &q->lock, q->retry_at);
			else
				pthread_cond_wait(&q->work, &q->lock);
			continue;
		}
		if (!due(q, now, &until)) {
			if (q->stopping && q->deadline && (!until || until > q->deadline))
				until = q->deadline;
			if (until)
				wait_until(&q->work, &q->lock, until);
			else
				pthread_cond_wait(&q->work, &q->lock);
			continue;
		}
		h = q->busy = q->head;
		if (h->cancelled) { /* the tree refused it: its record is gone */
			q->busy = NULL;
			pop_head(q);
			pthread_mutex_unlock(&q->lock);
			pfs_wb_op_free(h);
			pthread_mutex_lock(&q->lock);
			if (q->room_waiters)
				pthread_cond_broadcast(&q->moved);
			continue;
		}
		n = new_file_run(q, h, now);
		/* (taken under the lock: a push may link a new op after the
		 * run's last one meanwhile) */
		run[0] = h;
		for (unsigned i = 1; i < n; i++)
			run[i] = run[i - 1]->next;
		q->busy_last = run[n - 1]->seq;
		pthread_mutex_unlock(&q->lock);
		msg[0] = '\0';
		/* Each op's crash points, as if applied one by one (a run is
		 * applied all at once: killed before it, none is; after, all). */
		for (unsigned i = 0; i < n; i++)
			crashpoint(q, "wb-apply-", run[i]);
		ret = 1;
		if (n > 1)
			ret = q->o.apply_new(q->o.arg, run, n, msg, sizeof(msg));
		if (ret == 1) { /* h alone: the rest when each is the head */
			n = 1;
			ret = q->o.apply(q->o.arg, h, msg, sizeof(msg));
		}
		for (unsigned i = 0; ret == 0 && i < n; i++) {
			crashpoint(q, "wb-applied-", run[i]);
			if (q->o.done)
				q->o.done(q->o.arg, run[i]);
		}
		pthread_mutex_lock(&q->lock);
		q->busy = NULL;
		if (ret == 0) {
			for (unsigned i = 0; i < n; i++)
				pop_head(q);
			succeeded(q);
			pthread_mutex_unlock(&q->lock);
			for (unsigned i = 0; i < n; i++)
				pfs_wb_op_free(run[i]);
			pthread_mutex_lock(&q->lock);
		} else {
			failed(q, ret, msg);
		}
		/* Waiters for a flush wake at the flush or a failure; only
		 * writers held back for room care about each op. */
		if (ret < 0 || q->room_waiters)
			pthread_cond_broadcast(&q->moved);
	}
	pthread_mutex_unlock(&q->lock);
	return NULL;
}

int pfs_wbq_start(struct pfs_wbq **out, const struct pfs_wbq_opts *o)
{
	struct pfs_wbq *q = calloc(1, sizeof(*q));
	pthread_condattr_t ca;
	int ret;

	if (!q)
		return -ENOMEM;
	q->o = *o;
	if (!q->o.retry_min_ns)
		q->o.retry_min_ns = 100000000u; /* 0.1 s */
	if (q->o.retry_max_ns < q->o.retry_min_ns)
		q->o.retry_max_ns = 30 * 1000000000ull;
	q->pause = q->o.retry_min_ns;
	q->next_seq = 1;
	q->crash = pfs_crash_enabled();
	pthread_mutex_init(&q->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&q->work, &ca);
	pthread_cond_init(&q->moved, &ca);
	pthread_condattr_destroy(&ca);
	ret = -pthread_create(&q->worker, NULL, worker, q);
	if (ret < 0) {
		pthread_cond_destroy(&q->work);
		pthread_cond_destroy(&q->moved);
		pthread_mutex_destroy(&q->lock);
		free(q);
		return ret;
	}
	*out = q;
	return 0;
}

static struct pfs_wb_op **key_slot(struct pfs_wbq *q, uint64_t key)
{
	struct pfs_wb_op **p = &q->bykey[(key * 0x9E3779B97F4A7C15ull) >> 54];

	while (*p && (*p)->key != key)
		p = &(*p)->knext;
	return p;
}

static bool is_indexed(const struct pfs_wb_op *op)
{
	return op->kind == PFS_WB_DATA && op->key;
}

/* The newest queued DATA op of key that a new one may merge into, or NULL:
 * none once a name changed since (a rename, unlink or link of any path
 * orders the two writes around it). The queue is applied in order, so an
 * op older than a name change still queued means that change is too. */
static struct pfs_wb_op *newest_of(struct pfs_wbq *q, uint64_t key)
{
	struct pfs_wb_op *found = *key_slot(q, key);

	return found && found->seq > q->name_seq ? found : NULL;
}

static void index_push(struct pfs_wbq *q, struct pfs_wb_op *op)
{
	struct pfs_wb_op **p;

	if (op->kind == PFS_WB_RENAME || op->kind == PFS_WB_UNLINK || op->kind == PFS_WB_LINK)
		q->name_seq = op->seq;
	if (op->kind == PFS_WB_RENAME || op->kind == PFS_WB_LINK)
		q->move_seq = op->seq;
	if (!is_indexed(op))
		return;
	p = key_slot(q, op->key);
	op->knext = *p ? (*p)->knext : NULL;
	*p = op; /* replaces the older op of the key, which stays queued */
}

static void index_pop(struct pfs_wbq *q, struct pfs_wb_op *op)
{
	struct pfs_wb_op **p;

	if (!is_indexed(op))
		return;
	p = key_slot(q, op->key);
	if (*p == op)
		*p = op->knext;
}

/* Record op (under q->lock), with the ops held now and the keys learnt
 * since the last record. */
static void record(struct pfs_wbq *q, struct pfs_wb_op *op)
{
	if (!q->o.record)
		return;
	op->held_ops = q->held;
	op->fixes = q->fixes;
	op->nfixes = q->nfixes;
	if (q->o.record(q->o.arg, op) < 0)
		fprintf(stderr, "prismfs: cache: cannot record a %s of %s in the journal\n",
			pfs_wb_kind_name(op->kind), op->path);
	else
		q->nfixes = 0;
	op->held_ops = NULL;
	op->fixes = NULL;
	op->nfixes = 0;
}

static uint64_t push(struct pfs_wbq *q, struct pfs_wb_op *op, bool held)
{
	struct pfs_wb_op *old;
	uint64_t seq;

	pthread_mutex_lock(&q->lock);
	if (!held && op->kind == PFS_WB_DATA && op->key && (old = newest_of(q, op->key)) && !is_busy(q, old) &&
	    strcmp(old->path, op->path) == 0) {
		/* The queued op reads the file when it is applied: it will
		 * carry this write too. Only the dirty count may grow. */
		if (op->bytes > old->bytes) {
			q->st.pending_bytes += op->bytes - old->bytes;
			old->bytes = op->bytes;
		}
		/* Where the data is now: the file may have left memory since
		 * (cache_spill.c), and its last writer's op may hand the mirror
		 * the data file itself (PFS_WB_DATA_MOVE); never the cache
		 * file's place for a spill file's. */
		if (op->fd >= 0 && (op->datafd >= 0 || old->datafd < 0)) {
			int fd = old->fd, datafd = old->datafd;

			old->fd = op->fd;
			old->datafd = op->datafd;
			old->flags = op->flags;
			op->fd = fd;
			op->datafd = datafd;
		}
		seq = old->seq;
		pthread_mutex_unlock(&q->lock);
		pfs_wb_op_free(op);
		return seq;
	}
	op->seq = seq = q->next_seq++;
	op->when_ns = now_ns();
	record(q, op);
	if (held) {
		struct pfs_wb_op **p = &q->held;

		while (*p)
			p = &(*p)->hnext;
		op->held = true;
		op->hnext = NULL;
		*p = op;
	}
	op->next = NULL;
	if (q->tail)
		q->tail->next = op;
	else
		q->head = op;
	q->tail = op;
	index_push(q, op);
	q->st.pending_ops++;
	q->st.pending_bytes += op->bytes;
	/* The worker waits for the head (its delay, a retry) or for work:
	 * only a new head or the dirty limit passed changes what it waits
	 * for. A wake per op cost a thread switch per op. A held op is
	 * not due before its release, which wakes the worker then. */
	if ((q->head == op && !held) || (q->o.max_dirty && q->st.pending_bytes > q->o.max_dirty))
		pthread_cond_signal(&q->work);
	pthread_mutex_unlock(&q->lock);
	return seq;
}

uint64_t pfs_wbq_push(struct pfs_wbq *q, struct pfs_wb_op *op)
{
	return push(q, op, false);
}

uint64_t pfs_wbq_push_held(struct pfs_wbq *q, struct pfs_wb_op *op)
{
	return push(q, op, true);
}

void pfs_wbq_release(struct pfs_wbq *q, struct pfs_wb_op *op, bool done)
{
	struct pfs_wb_op **p;

	pthread_mutex_lock(&q->lock);
	/* Undone before it stops being held: a record made after this one
	 * says it is not held, which a replay takes for "made in the tree". */
	if (!done && q->o.cancel)
		q->o.cancel(q->o.arg, op);
	if (done && op->fix_key && !op->amend) {
		if (q->nfixes < sizeof(q->fixes) / sizeof(q->fixes[0]) / 2) {
			q->fixes[2 * q->nfixes] = op->seq;
			q->fixes[2 * q->nfixes + 1] = op->key;
			q->nfixes++;
		} else {
			op->amend = true; /* (no room: its own record again) */
		}
	}
	if (done && op->amend)
		record(q, op);
	op->amend = op->fix_key = false;
	for (p = &q->held; *p && *p != op; p = &(*p)->hnext)
		;
	if (*p)
		*p = op->hnext;
	op->hnext = NULL;
	op->held = false;
	op->cancelled = !done;
	if (q->head == op)
		pthread_cond_signal(&q->work);
	pthread_mutex_unlock(&q->lock);
}

uint64_t pfs_wbq_data_each(struct pfs_wbq *q, uint64_t key,
			   void (*fn)(struct pfs_wb_op *op, void *arg), void *arg)
{
	uint64_t busy = 0;

	pthread_mutex_lock(&q->lock);
	for (struct pfs_wb_op *op = q->head; op; op = op->next) {
		if (op->kind != PFS_WB_DATA || op->key != key)
			continue;
		if (is_busy(q, op))
			busy = op->seq;
		else
			fn(op, arg);
	}
	pthread_mutex_unlock(&q->lock);
	return busy;
}

uint64_t pfs_wbq_last_move(struct pfs_wbq *q)
{
	uint64_t seq;

	pthread_mutex_lock(&q->lock);
	seq = q->move_seq;
	pthread_mutex_unlock(&q->lock);
	return seq;
}

uint64_t pfs_wbq_last(struct pfs_wbq *q)
{
	uint64_t seq;

	pthread_mutex_lock(&q->lock);
	seq = q->next_seq - 1;
	pthread_mutex_unlock(&q->lock);
	return seq;
}

int pfs_wbq_wait(struct pfs_wbq *q, uint64_t seq)
{
	uint64_t gen;
	int ret = 0;

	pthread_mutex_lock(&q->lock);
	gen = q->fail_gen;
	if (seq > q->want)
		q->want = seq;
	pthread_cond_signal(&q->work);
	while (q->flushed_seq < seq) {
		if (q->fail_gen != gen) {
			ret = q->st.last_err;
			break;
		}
		pthread_cond_wait(&q->moved, &q->lock);
	}
	pthread_mutex_unlock(&q->lock);
	return ret;
}

void pfs_wbq_room(struct pfs_wbq *q, uint64_t bytes)
{
	pthread_mutex_lock(&q->lock);
	/* Counted (and the worker told: no delay now) only when held back:
	 * a writer with room to spare must not hurry the queue. */
	if (q->o.max_dirty && q->st.pending_bytes &&
	    q->st.pending_bytes + bytes > q->o.max_dirty && !q->stopping) {
		q->room_waiters++;
		pthread_cond_signal(&q->work);
		while (q->st.pending_bytes && q->st.pending_bytes + bytes > q->o.max_dirty &&
		       !q->stopping)
			pthread_cond_wait(&q->moved, &q->lock);
		q->room_waiters--;
	}
	pthread_mutex_unlock(&q->lock);
}

void pfs_wbq_stats(struct pfs_wbq *q, struct pfs_wbq_stats *st)
{
	pthread_mutex_lock(&q->lock);
	*st = q->st;
	pthread_mutex_unlock(&q->lock);
}

int pfs_wbq_stop(struct pfs_wbq *q, bool drain, uint64_t timeout_ns, struct pfs_wb_op **left)
{
	struct pfs_wb_op *rest;
	bool any;

	pthread_mutex_lock(&q->lock);
	q->stopping = true;
	q->drain = drain;
	q->deadline = timeout_ns ? now_ns() + timeout_ns : 0;
	pthread_cond_broadcast(&q->work);
	pthread_cond_broadcast(&q->moved);
	pthread_mutex_unlock(&q->lock);
	pthread_join(q->worker, NULL);
	/* An op the cache's tree refused is no change to keep. */
	for (struct pfs_wb_op **p = &q->head; *p;) {
		struct pfs_wb_op *op = *p;

		if (op->cancelled) {
			*p = op->next;
			pfs_wb_op_free(op);
		} else {
			p = &op->next;
		}
	}
	rest = q->head;
	any = rest != NULL;
	if (drain && !any && q->o.flush) {
		char msg[sizeof(q->st.last_msg)];

		if (q->o.flush(q->o.arg, msg, sizeof(msg)) < 0)
			any = true; /* applied, but not known to be durable */
	}
	pthread_cond_destroy(&q->work);
	pthread_cond_destroy(&q->moved);
	pthread_mutex_destroy(&q->lock);
	free(q);
	if (left)
		*left = rest;
	else
		while (rest) {
			struct pfs_wb_op *n = rest->next;

			pfs_wb_op_free(rest);
			rest = n;
		}
	return any ? -EIO : 0;
}
