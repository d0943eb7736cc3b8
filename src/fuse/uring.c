/* uring: FUSE requests over io_uring.
 *
 * Why: on these VMs a FUSE round trip costs about 11 us when the caller and
 * the daemon run on the same CPU and about 59 us when they do not, and
 * read(2) on /dev/fuse gives a request to whichever reader waited longest,
 * wherever it runs. Metadata workloads (create, untar, rm -rf) are nothing
 * but round trips. With FUSE-over-io_uring the kernel keeps one queue per
 * possible CPU and puts each request on the queue of the CPU its caller
 * runs on; here every queue is served by threads pinned to that CPU, so the
 * caller and the daemon take turns on one CPU.
 *
 * libfuse 3.14 knows nothing of it. A request is rebuilt in /dev/fuse's
 * wire format (in header, op header, payload: laid out so the payload is
 * not copied) and given to fuse_session_process_buf; the reply libfuse
 * writes goes through the shim, which hands it here (pfs_uring_claims) to
 * be put in the ring entry, and the entry is committed when the handler
 * returns. The handlers reply on the thread that called them: that is
 * what ties a reply to its entry.
 *
 * FORGET and INTERRUPT still come through /dev/fuse (the kernel sends them
 * there), as do requests before every queue has an entry: the /dev/fuse
 * loop keeps running beside this.
 *
 * Each thread has a ring of its own with one entry: it takes one request at
 * a time. The kernel gives a queue's next request to the entry freed last,
 * so one warm thread per CPU does most of the work. Each queue starts with
 * two, so that one slow call (a large copy-up, say) does not hold up the
 * CPU's other callers: a request that finds no free entry waits for a
 * commit, and an entry registered later does not take it. A monitor adds a
 * thread to a queue whose threads are all stuck (as loop.c does) and
 * kicks it (see kick()). Ring entries cannot be unregistered, so added
 * threads stay until the end. */
#include "fuse/uring.h"
#include "fuse/uring_kick.h"
#include "fuse/fuse_kabi.h"
#include "fuse/shim.h"
#include "fuse/xport.h"
#include "util/util.h"
#include "view/view.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <liburing.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Kernel ABI (linux/fuse.h 7.42+); Debian 12's headers are older. */
#define K_URING_CMD_REGISTER 1u
#define K_URING_CMD_COMMIT_AND_FETCH 2u
#define K_URING_IN_OUT_SZ 128
#define K_URING_OP_SZ 128

struct k_ent_in_out {
	uint64_t flags;
	uint64_t commit_id;
	uint32_t payload_sz;
	uint32_t padding;
	uint64_t reserved;
};

struct k_req_header {
	char in_out[K_URING_IN_OUT_SZ]; /* fuse_in_header in, fuse_out_header out */
	char op_in[K_URING_OP_SZ];      /* the request's first (op) argument */
	struct k_ent_in_out ent;
};

struct k_cmd_req { /* in the SQE's 80-byte command area */
	uint64_t flags;
	uint64_t commit_id;
	uint16_t qid;
	uint8_t padding[6];
};

/* Room before the payload for the in header and the op header, so that a
 * request is contiguous without moving its payload. */
#define PRE 256
#define STOP_TAG 1
#define TICK_NS 1000000L
#define START_PER_QUEUE 2

struct uworker {
	struct uworker *next;
	struct pfs_uring *u;
	unsigned qid;
	pthread_t tid;
	struct io_uring ring;
	bool ring_made;
	struct k_req_header hdr; /* iov[0]: stays put while the entry lives */
	char *buf;               /* PRE bytes, then the payload (iov[1]) */
	struct iovec iov[2];
	uint64_t unique;         /* request being handled */
	bool replied;
	pid_t ktid;              /* the kernel's id of the thread */
	int reg;                 /* entry handed to the kernel: 0 not yet, 1 yes,
				  * -1 never will be (under lock) */
	uint64_t hint_since;     /* in the SCHED_IDLE window since (ns), or 0 */
};

struct uqueue {
	unsigned nthreads; /* under lock */
	unsigned busy;     /* handling a request (atomic) */
	unsigned long started; /* requests taken up (atomic) */
};

enum ustate { U_SETUP, U_RUN, U_STOP };

struct pfs_uring {
	struct pfs_fs *fs;
	struct fuse_session *se;
	int fuse_fd;
	int stop_fd;            /* eventfd: written once, at stop */
	unsigned nq;
	unsigned max_per_queue;
	size_t payload;
	bool idle_hint;         /* commits are made as SCHED_IDLE (see commit()) */
	struct uqueue *q;
	pthread_mutex_t lock;
	pthread_cond_t cond;    /* state changes, setups finish, monitor wakes */
	enum ustate state;
	unsigned set_up, failed; /* threads done with setup; how many failed */
	int setup_err;
	unsigned threads;       /* started and not yet joined */
	struct uworker *workers;
	pthread_t monitor;
	bool monitor_started;
	bool monitor_asleep;
	char kick[48];          /* the root name a kick looks up (see kick()) */
};

static _Thread_local struct uworker *tl_w;

static unsigned possible_cpus(void)
{
	FILE *f = fopen("/sys/devices/system/cpu/possible", "re");
	unsigned lo, hi, n = 0;
	char sep;

	if (!f)
		return 0;
	/* "0-N" or "0", possibly "0-3,8-11": the kernel counts them all. */
	while (fscanf(f, "%u", &lo) == 1) {
		hi = lo;
		if (fscanf(f, "%c", &sep) == 1 && sep == '-') {
			if (fscanf(f, "%u", &hi) != 1)
				break;
			if (fscanf(f, "%c", &sep) != 1)
				sep = '\n';
		}
		n += hi - lo + 1;
		if (sep != ',')
			break;
	}
	fclose(f);
	return n;
}

/* A thread has at most two commands outstanding (its stop poll and its
 * entry's) in a ring of four, so the SQ is never full; should it be, what
 * is queued goes to the kernel first. NULL: the ring cannot take it. */
static struct io_uring_sqe *get_sqe(struct uworker *w)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);

	if (!sqe && io_uring_submit(&w->ring) >= 0)
		sqe = io_uring_get_sqe(&w->ring);
	return sqe;
}

static int prep_cmd(struct uworker *w, uint32_t op, uint64_t commit_id)
{
	/* SQE128: the 80-byte command area starts at sqe->cmd (byte 48) and
	 * runs into the second half, past what the 64-byte struct declares. */
	struct k_cmd_req r = {.commit_id = commit_id, .qid = (uint16_t)w->qid};
	struct io_uring_sqe *sqe = get_sqe(w);
	void *area;

	if (!sqe)
		return -EBUSY;
	area = (void *)((uintptr_t)sqe + offsetof(struct io_uring_sqe, cmd));
	memset(sqe, 0, sizeof(*sqe));
	memset(area, 0, 80);
	memcpy(area, &r, sizeof(r));
	sqe->opcode = IORING_OP_URING_CMD;
	sqe->fd = w->u->fuse_fd;
	sqe->cmd_op = op;
	if (op == K_URING_CMD_REGISTER) {
		sqe->addr = (uintptr_t)w->iov;
		sqe->len = 2;
	}
	io_uring_sqe_set_data(sqe, w);
	return 0;
}

static int make_ring(struct uworker *w)
{
	struct io_uring_params p = {
		.flags = IORING_SETUP_SQE128 | IORING_SETUP_SINGLE_ISSUER |
			 IORING_SETUP_DEFER_TASKRUN,
	};
	int ret = io_uring_queue_init_params(4, &w->ring, &p);

	if (ret == -EINVAL) { /* a kernel without the task-run flags */
		memset(&p, 0, sizeof(p));
		p.flags = IORING_SETUP_SQE128;
		ret = io_uring_queue_init_params(4, &w->ring, &p);
	}
	if (ret < 0)
		return ret;
	w->ring_made = true;
	/* C11: the size must be a multiple of the alignment. */
	w->buf = aligned_alloc(4096, (PRE + w->u->payload + 4095) & ~(size_t)4095);
	if (!w->buf)
		return -ENOMEM;
	w->iov[0] = (struct iovec){&w->hdr, sizeof(w->hdr)};
	w->iov[1] = (struct iovec){w->buf + PRE, w->u->payload};
	return 0;
}

static void pin(unsigned cpu)
{
	cpu_set_t set;

	if (cpu >= CPU_SETSIZE)
		return;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	/* A cpuset without this CPU: the queue is served from elsewhere. */
	pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

/* The request in w's entry, as /dev/fuse would have given it. */
static int build_request(struct uworker *w, struct fuse_buf *fb)
{
	struct k_in_header in;
	uint32_t psz = w->hdr.ent.payload_sz;
	size_t op, head;
	char *start;

	memcpy(&in, w->hdr.in_out, sizeof(in));
	w->unique = in.unique;
	if (in.len < sizeof(in) + (size_t)psz || psz > w->u->payload)
		return -EIO;
	op = in.len - sizeof(in) - psz;
	if (op > K_URING_OP_SZ)
		return -EIO;
	head = sizeof(in) + op;
	start = w->buf + PRE - head;
	if ((uintptr_t)start % 8) {
		/* Op headers are multiples of 8 bytes; should one not be,
		 * move the payload rather than read the header unaligned. */
		start -= (uintptr_t)start % 8;
		memmove(start + head, w->buf + PRE, psz);
	}
	memcpy(start, &in, sizeof(in));
	memcpy(start + sizeof(in), w->hdr.op_in, op);
	*fb = (struct fuse_buf){.mem = start, .size = in.len, .fd = -1};
	return 0;
}

static void reply_error(struct uworker *w, int err)
{
	struct k_out_header oh = {.len = sizeof(oh), .error = -err, .unique = w->unique};

	memcpy(w->hdr.in_out, &oh, sizeof(oh));
	w->hdr.ent.payload_sz = 0;
	w->replied = true;
}

bool pfs_uring_claims(uint64_t unique)
{
	return tl_w && !tl_w->replied && tl_w->unique == unique;
}

ssize_t pfs_uring_reply(const struct iovec *iov, int count)
{
	struct uworker *w = tl_w;
	size_t body = 0;

	if (count < 1 || iov[0].iov_len != sizeof(struct k_out_header))
		return -EINVAL;
	for (int i = 1; i < count; i++)
		body += iov[i].iov_len;
	if (body > w->u->payload) {
		reply_error(w, EIO);
		return -EIO;
	}
	memcpy(w->hdr.in_out, iov[0].iov_base, iov[0].iov_len);
	body = 0;
	for (int i = 1; i < count; i++) {
		if (iov[i].iov_len == 0) /* its base may be NULL */
			continue;
		memmove(w->buf + PRE + body, iov[i].iov_base, iov[i].iov_len);
		body += iov[i].iov_len;
	}
	w->hdr.ent.payload_sz = (uint32_t)body;
	w->replied = true;
	return (ssize_t)(sizeof(struct k_out_header) + body);
}

static int read_full(int fd, void *p, size_t len)
{
	while (len) {
		ssize_t n = read(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		p = (char *)p + n;
		len -= (size_t)n;
	}
	return 0;
}

ssize_t pfs_uring_reply_pipe(int pipe_fd, size_t len)
{
	struct uworker *w = tl_w;
	struct k_out_header oh;
	int ret;

	if (len < sizeof(oh) || len - sizeof(oh) > w->u->payload)
		return -EINVAL;
	ret = read_full(pipe_fd, &oh, sizeof(oh));
	if (ret == 0)
		ret = read_full(pipe_fd, w->buf + PRE, len - sizeof(oh));
	if (ret < 0) {
		reply_error(w, EIO);
		return ret;
	}
	memcpy(w->hdr.in_out, &oh, sizeof(oh));
	w->hdr.ent.payload_sz = (uint32_t)(len - sizeof(oh));
	w->replied = true;
	return (ssize_t)len;
}

static void handle(struct uworker *w)
{
	struct pfs_uring *u = w->u;
	struct uqueue *q = &u->q[w->qid];
	struct fuse_buf fb;

	__atomic_add_fetch(&q->busy, 1, __ATOMIC_RELAXED);
	__atomic_add_fetch(&q->started, 1, __ATOMIC_RELAXED);
	if (__atomic_load_n(&u->monitor_asleep, __ATOMIC_RELAXED)) {
		pthread_mutex_lock(&u->lock);
		u->monitor_asleep = false;
		pthread_cond_broadcast(&u->cond);
		pthread_mutex_unlock(&u->lock);
	}
	w->replied = false;
	if (build_request(w, &fb) < 0) {
		reply_error(w, EIO);
	} else {
		tl_w = w;
		if (pfs_shim_request(u->fs, fb.mem, fb.size))
			reply_error(w, ENOENT); /* an error reply is not cached */
		else
			fuse_session_process_buf(u->se, &fb);
		pfs_shim_request_done(u->fs);
		tl_w = NULL;
		/* Every handler replies before it returns; should one not,
		 * the caller must not wait forever. */
		if (!w->replied) {
			fuse_log(FUSE_LOG_ERR, "prismfs: a request over io_uring had no reply\n");
			reply_error(w, EIO);
		}
	}
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Hand the reply to the kernel, which wakes the caller. Why as SCHED_IDLE:
 * the caller went to sleep on this CPU and this thread runs on it, so the
 * scheduler would wake the caller on another, idle, CPU; its next request
 * then goes to that CPU's queue, and every round trip pays a cross-CPU
 * wakeup (about 45 us on these VMs; a stat round trip took 100 us instead
 * of 18). A CPU running only SCHED_IDLE threads counts as idle, so the
 * caller is woken here and runs as soon as this thread waits again. The
 * window is one syscall; should this thread be preempted inside it by
 * other work, the monitor restores its policy. */
static int commit(struct uworker *w)
{
	struct pfs_uring *u = w->u;
	struct sched_param sp = {0};
	int ret = prep_cmd(w, K_URING_CMD_COMMIT_AND_FETCH, w->unique);

	if (ret == 0 && __atomic_load_n(&u->idle_hint, __ATOMIC_RELAXED)) {
		__atomic_store_n(&w->hint_since, now_ns(), __ATOMIC_RELAXED);
		if (sched_setscheduler(0, SCHED_IDLE, &sp) == 0) {
			io_uring_submit(&w->ring);
			if (sched_setscheduler(0, SCHED_OTHER, &sp) < 0)
				__atomic_store_n(&u->idle_hint, false, __ATOMIC_RELAXED);
		}
		__atomic_store_n(&w->hint_since, 0, __ATOMIC_RELAXED);
	}
	__atomic_sub_fetch(&u->q[w->qid].busy, 1, __ATOMIC_RELAXED);
	return ret;
}

static void *worker_main(void *arg)
{
	struct uworker *w = arg;
	struct pfs_uring *u = w->u;
	sigset_t all;
	int ret;

	/* Signals end the session through the /dev/fuse loop's threads. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	pin(w->qid);
	__atomic_store_n(&w->ktid, gettid(), __ATOMIC_RELAXED);
	ret = make_ring(w);
	pthread_mutex_lock(&u->lock);
	if (u->state == U_SETUP) {
		u->set_up++;
		if (ret < 0) {
			u->failed++;
			u->setup_err = ret;
		}
		pthread_cond_broadcast(&u->cond);
	}
	while (u->state == U_SETUP)
		pthread_cond_wait(&u->cond, &u->lock);
	if (u->state == U_STOP || ret < 0) {
		w->reg = -1; /* a kick waiting for it gives up */
		pthread_cond_broadcast(&u->cond);
		pthread_mutex_unlock(&u->lock);
		return NULL;
	}
	pthread_mutex_unlock(&u->lock);

	struct io_uring_sqe *sqe = get_sqe(w);

	ret = -EBUSY;
	if (sqe) {
		io_uring_prep_poll_add(sqe, u->stop_fd, POLLIN);
		io_uring_sqe_set_data64(sqe, STOP_TAG);
		ret = prep_cmd(w, K_URING_CMD_REGISTER, 0);
	}
	/* The kernel takes the entry during the submit (DEFER_TASKRUN runs
	 * the command inline): from here on it can be kicked. */
	if (ret == 0)
		ret = io_uring_submit(&w->ring);
	pthread_mutex_lock(&u->lock);
	w->reg = ret < 0 ? -1 : 1;
	pthread_cond_broadcast(&u->cond);
	pthread_mutex_unlock(&u->lock);
	if (ret < 0) { /* its entry is not in the kernel: nothing to serve */
		fuse_log(FUSE_LOG_ERR, "prismfs: io_uring queue %u: cannot register: %s\n", w->qid,
			 strerror(-ret));
		return NULL;
	}
	for (;;) {
		struct io_uring_cqe *cqe;
		unsigned head, seen = 0;
		bool stop = false, got = false;

		ret = io_uring_submit_and_wait(&w->ring, 1);
		if (ret == -EINTR)
			continue;
		if (ret < 0) {
			fuse_log(FUSE_LOG_ERR, "prismfs: io_uring wait: %s\n", strerror(-ret));
			break;
		}
		io_uring_for_each_cqe(&w->ring, head, cqe) {
			seen++;
			if (cqe->user_data == STOP_TAG) {
				stop = true;
			} else if (cqe->res < 0) {
				/* ENOTCONN: the connection ended. Anything else: a
				 * REGISTER the kernel refused (it falls back to
				 * /dev/fuse) or a lost entry. */
				if (cqe->res != -ENOTCONN && cqe->res != -ECONNABORTED)
					fuse_log(FUSE_LOG_ERR, "prismfs: io_uring queue %u: %s\n",
						 w->qid, strerror(-cqe->res));
				stop = true;
			} else {
				got = true;
			}
		}
		io_uring_cq_advance(&w->ring, seen);
		if (got) {
			handle(w);
			if (commit(w) < 0) {
				/* Cannot happen (see get_sqe); the caller then
				 * waits for the unmount, the other threads go on. */
				fuse_log(FUSE_LOG_ERR,
					 "prismfs: io_uring queue %u: no room to commit a reply\n",
					 w->qid);
				break;
			}
		}
		if (stop) {
			if (got)
				io_uring_submit(&w->ring);
			break;
		}
	}
	return NULL;
}

/* Under u->lock. */
static int start_worker(struct pfs_uring *u, unsigned qid)
{
	struct uworker *w = calloc(1, sizeof(*w));
	int ret;

	if (!w)
		return -ENOMEM;
	w->u = u;
	w->qid = qid;
	ret = pthread_create(&w->tid, NULL, worker_main, w);
	if (ret != 0) {
		free(w);
		return -ret;
	}
	w->next = u->workers;
	u->workers = w;
	u->q[qid].nthreads++;
	__atomic_add_fetch(&u->threads, 1, __ATOMIC_RELAXED);
	return 0;
}

/* The kernel gives a request that found every entry of its queue busy to
 * the next entry that commits a reply, never to one registered later; if
 * all are stuck in slow calls, it waits for them. So once a new thread's
 * entry is in, a throwaway request is made from the queue's CPU: a lookup
 * of a name only this mount knows, answered ENOENT without touching the
 * source. Its reply's commit takes up the waiting request. The lookup runs
 * in its own short thread's child (kick_lookup), which may wait behind
 * stuck calls itself. Under u->lock. */
static void kick(struct pfs_uring *u, struct uworker *w)
{
	while (w->reg == 0 && u->state == U_RUN)
		pthread_cond_wait(&u->cond, &u->lock);
	if (w->reg == 1)
		pfs_uring_kick_start(w->qid, u->fs->mountpoint, u->kick);
}

bool pfs_uring_is_kick(const struct pfs_uring *u, const char *name)
{
	return u && strcmp(name, u->kick) == 0;
}

/* A queue gets another thread when all of its threads have been busy for
 * two ticks in a row without taking up a request: stuck in slow calls. */
static void *monitor_main(void *arg)
{
	struct pfs_uring *u = arg;
	struct timespec tick = {.tv_nsec = TICK_NS};
	unsigned long *seen = calloc(u->nq, sizeof(*seen));
	unsigned *full = calloc(u->nq, sizeof(*full));
	unsigned quiet = 0;

	pthread_mutex_lock(&u->lock);
	while (seen && full && u->state == U_RUN) {
		bool any = false;

		if (u->monitor_asleep) {
			pthread_cond_wait(&u->cond, &u->lock);
			continue;
		}
		pthread_mutex_unlock(&u->lock);
		nanosleep(&tick, NULL);
		pthread_mutex_lock(&u->lock);
		for (unsigned i = 0; i < u->nq && u->state == U_RUN; i++) {
			struct uqueue *q = &u->q[i];
			unsigned busy = __atomic_load_n(&q->busy, __ATOMIC_RELAXED);
			unsigned long started = __atomic_load_n(&q->started, __ATOMIC_RELAXED);

			any |= busy > 0;
			full[i] = busy >= q->nthreads && started == seen[i] ? full[i] + 1 : 0;
			seen[i] = started;
			if (full[i] >= 2 && q->nthreads < u->max_per_queue) {
				/* on failure, the queue waits */
				if (start_worker(u, i) == 0)
					kick(u, u->workers);
				full[i] = 0;
			}
		}
		if (__atomic_load_n(&u->idle_hint, __ATOMIC_RELAXED)) {
			uint64_t now = now_ns();
			struct sched_param sp = {0};

			for (struct uworker *w = u->workers; w; w = w->next) {
				uint64_t since = __atomic_load_n(&w->hint_since, __ATOMIC_RELAXED);

				if (since && now - since > 2 * TICK_NS)
					sched_setscheduler(w->ktid, SCHED_OTHER, &sp);
			}
		}
		quiet = any ? 0 : quiet + 1;
		if (quiet >= 100) {
			u->monitor_asleep = true;
			quiet = 0;
		}
	}
	pthread_mutex_unlock(&u->lock);
	free(seen);
	free(full);
	return NULL;
}

/* A thread may leave SCHED_IDLE for SCHED_OTHER at nice 0 only with
 * CAP_SYS_NICE or an RLIMIT_NICE of 20 (sched(7)). */
static bool can_leave_sched_idle(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NICE, &rl) == 0 && (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= 20))
		return true;
	return pfs_cap_effective(23 /* CAP_SYS_NICE */);
}

int pfs_uring_prepare(struct pfs_fs *fs, size_t payload, unsigned max_per_queue,
		      struct pfs_uring **up)
{
	struct pfs_uring *u;
	unsigned nq = possible_cpus();
	uint64_t rnd;
	int ret = 0;

	*up = NULL;
	if (nq == 0 || nq > 4096)
		return -ENOSYS;
	u = calloc(1, sizeof(*u));
	if (!u)
		return -ENOMEM;
	u->q = calloc(nq, sizeof(*u->q));
	u->stop_fd = eventfd(0, EFD_CLOEXEC);
	if (!u->q || u->stop_fd < 0) {
		ret = u->q ? -errno : -ENOMEM;
		if (u->stop_fd >= 0)
			close(u->stop_fd);
		free(u->q);
		free(u);
		return ret;
	}
	u->fs = fs;
	u->se = fs->xport->se;
	u->fuse_fd = fuse_session_fd(fs->xport->se);
	u->nq = nq;
	u->payload = payload;
	u->max_per_queue = max_per_queue ? max_per_queue : 1;
	u->idle_hint = can_leave_sched_idle();
	if (getrandom(&rnd, sizeof(rnd), 0) != sizeof(rnd))
		rnd = (uint64_t)now_ns() ^ ((uint64_t)getpid() << 32);
	snprintf(u->kick, sizeof(u->kick), ".prismfs-uring-kick-%016" PRIx64, rnd);
	pthread_mutex_init(&u->lock, NULL);
	pthread_cond_init(&u->cond, NULL);
	pthread_mutex_lock(&u->lock);
	for (unsigned i = 0; i < nq && ret == 0; i++)
		for (unsigned k = 0; k < START_PER_QUEUE && k < u->max_per_queue && ret == 0; k++)
			ret = start_worker(u, i);
	while (ret == 0 && u->set_up < u->threads)
		pthread_cond_wait(&u->cond, &u->lock);
	if (ret == 0 && u->failed)
		ret = u->setup_err;
	pthread_mutex_unlock(&u->lock);
	if (ret < 0) {
		pfs_uring_stop(u);
		return ret;
	}
	*up = u;
	return 0;
}

size_t pfs_uring_payload(const struct pfs_uring *u)
{
	return u->payload;
}

void pfs_uring_start(struct pfs_uring *u)
{
	pthread_mutex_lock(&u->lock);
	u->state = U_RUN;
	pthread_cond_broadcast(&u->cond);
	u->monitor_started = pthread_create(&u->monitor, NULL, monitor_main, u) == 0;
	pthread_mutex_unlock(&u->lock);
}

void pfs_uring_stop(struct pfs_uring *u)
{
	uint64_t one = 1;

	if (!u)
		return;
	pthread_mutex_lock(&u->lock);
	u->state = U_STOP;
	pthread_cond_broadcast(&u->cond);
	pthread_mutex_unlock(&u->lock);
	if (write(u->stop_fd, &one, sizeof(one)) < 0)
		fuse_log(FUSE_LOG_ERR, "prismfs: cannot stop the io_uring threads\n");
	if (u->monitor_started)
		pthread_join(u->monitor, NULL);
	/* The monitor no longer restores a thread preempted in its SCHED_IDLE
	 * window (commit()): beside CPU-bound work such a thread could wait
	 * seconds for the CPU before it sees the stop. No new window opens,
	 * and every thread gets its normal policy back. */
	__atomic_store_n(&u->idle_hint, false, __ATOMIC_RELAXED);
	for (struct uworker *w = u->workers; w; w = w->next) {
		struct sched_param sp = {0};

		pid_t tid = __atomic_load_n(&w->ktid, __ATOMIC_RELAXED);

		if (tid > 0)
			sched_setscheduler(tid, SCHED_OTHER, &sp);
	}
	/* No lock: the monitor, the only other starter, has ended. */
	while (u->workers) {
		struct uworker *w = u->workers;

		u->workers = w->next;
		pthread_join(w->tid, NULL);
		/* Closing the ring cancels its commands, which hold /dev/fuse. */
		if (w->ring_made)
			io_uring_queue_exit(&w->ring);
		free(w->buf);
		free(w);
	}
	close(u->stop_fd);
	pthread_cond_destroy(&u->cond);
	pthread_mutex_destroy(&u->lock);
	free(u->q);
	free(u);
}

unsigned pfs_uring_queues(const struct pfs_uring *u)
{
	return u ? u->nq : 0;
}

unsigned pfs_uring_threads(const struct pfs_uring *u)
{
	return u ? __atomic_load_n(&u->threads, __ATOMIC_RELAXED) : 0;
}
