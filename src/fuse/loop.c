/* loop: the session loop. It replaces libfuse's multi-threaded loop, whose
 * workers all wait in read(2) on /dev/fuse at once. The kernel wakes those
 * waiters in FIFO order, so a sequential caller's requests rotate through
 * every worker, and each one is woken cold, often on another CPU: on a
 * 2-vCPU VM a GETATTR round trip took 45 us that way and 11 us with one
 * reader. Here only `slots` workers (normally one) take turns reading; the
 * rest wait on a condition variable. A monitor ticking every millisecond
 * while requests are in progress opens another slot when every slot holder
 * has been busy for two ticks in a row (blocked in a slow call, or simply
 * saturated), up to --threads, and closes slots that stay unused. */
#include "fuse/loop.h"

#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#define TICK_NS 1000000L
#define IDLE_TICKS_BEFORE_SLEEP 100

struct worker {
	struct worker *next;
	struct pfs_loop *lp;
	pthread_t tid;
	struct fuse_buf fbuf;
};

struct pfs_loop {
	struct fuse_session *se;
	pthread_mutex_t lock;
	pthread_cond_t turn;     /* followers wait here for a free slot */
	pthread_cond_t wake;     /* the monitor waits here while all is idle */
	sem_t finish;            /* posted when a worker ends the session */
	unsigned max_threads;
	unsigned nthreads;       /* workers started; under lock */
	unsigned idle;           /* workers waiting on `turn`; under lock */
	unsigned holders;        /* workers holding a slot; under lock */
	unsigned slots;          /* slots open (1..max_threads) */
	unsigned busy;           /* slot holders processing a request */
	unsigned long started;   /* requests taken up so far */
	bool monitor_asleep;
	bool exit;
	int error;
	struct worker *workers;  /* under lock */
	void (*done)(void *);    /* after each request, on its worker */
	void *done_arg;
};

static unsigned load(const unsigned *p)
{
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static void *worker_main(void *arg);

/* Under lp->lock. */
static int start_worker(struct pfs_loop *lp)
{
	struct worker *w = calloc(1, sizeof(*w));
	int ret;

	if (!w)
		return -ENOMEM;
	w->lp = lp;
	ret = pthread_create(&w->tid, NULL, worker_main, w);
	if (ret != 0) {
		free(w);
		return -ret;
	}
	w->next = lp->workers;
	lp->workers = w;
	lp->nthreads++;
	return 0;
}

static void end_session(struct pfs_loop *lp, int error)
{
	pthread_mutex_lock(&lp->lock);
	if (error < 0 && lp->error == 0)
		lp->error = error;
	pthread_mutex_unlock(&lp->lock);
	fuse_session_exit(lp->se);
	sem_post(&lp->finish);
}

/* Holding a slot: read and process requests until the session ends or the
 * slot is closed. Returns false when the session ended. */
static bool serve(struct pfs_loop *lp, struct worker *w)
{
	for (;;) {
		int res;

		pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
		res = fuse_session_receive_buf(lp->se, &w->fbuf);
		pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
		if (res == -EINTR)
			continue;
		if (res <= 0 || fuse_session_exited(lp->se)) {
			end_session(lp, res);
			return false;
		}
		__atomic_add_fetch(&lp->busy, 1, __ATOMIC_RELAXED);
		__atomic_add_fetch(&lp->started, 1, __ATOMIC_RELAXED);
		if (__atomic_load_n(&lp->monitor_asleep, __ATOMIC_RELAXED)) {
			pthread_mutex_lock(&lp->lock);
			lp->monitor_asleep = false;
			pthread_cond_signal(&lp->wake);
			pthread_mutex_unlock(&lp->lock);
		}
		fuse_session_process_buf(lp->se, &w->fbuf);
		if (lp->done)
			lp->done(lp->done_arg);
		__atomic_sub_fetch(&lp->busy, 1, __ATOMIC_RELAXED);
		if (fuse_session_exited(lp->se)) { /* a handler ended it */
			end_session(lp, 0);
			return false;
		}
		if (load(&lp->holders) > load(&lp->slots)) {
			bool leave;

			pthread_mutex_lock(&lp->lock);
			leave = lp->holders > lp->slots;
			if (leave)
				lp->holders--;
			pthread_mutex_unlock(&lp->lock);
			if (leave)
				return true;
		}
	}
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct pfs_loop *lp = w->lp;

	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
	for (;;) {
		pthread_mutex_lock(&lp->lock);
		while (!lp->exit && lp->holders >= lp->slots) {
			lp->idle++;
			pthread_cond_wait(&lp->turn, &lp->lock);
			lp->idle--;
		}
		if (lp->exit) {
			pthread_mutex_unlock(&lp->lock);
			break;
		}
		lp->holders++;
		pthread_mutex_unlock(&lp->lock);
		if (!serve(lp, w))
			break;
	}
	return NULL;
}

/* Another slot opens when every holder is stuck (all busy at two ticks in
 * a row with no request taken up between them: a slow call) or saturated
 * (all busy at SATURATED_TICKS ticks in a row). */
#define SATURATED_TICKS 8

static void *monitor_main(void *arg)
{
	struct pfs_loop *lp = arg;
	struct timespec tick = {.tv_nsec = TICK_NS};
	unsigned quiet = 0, full_ticks = 0;
	unsigned long seen = 0;

	pthread_mutex_lock(&lp->lock);
	while (!lp->exit) {
		unsigned busy;
		unsigned long started;
		bool full;

		if (lp->monitor_asleep) {
			pthread_cond_wait(&lp->wake, &lp->lock);
			continue;
		}
		pthread_mutex_unlock(&lp->lock);
		nanosleep(&tick, NULL);
		pthread_mutex_lock(&lp->lock);
		busy = load(&lp->busy);
		started = __atomic_load_n(&lp->started, __ATOMIC_RELAXED);
		full = busy >= lp->slots && lp->holders >= lp->slots;
		full_ticks = full ? full_ticks + 1 : 0;
		if (full && ((full_ticks >= 2 && started == seen) || full_ticks >= SATURATED_TICKS) &&
		    lp->slots < lp->max_threads) {
			lp->slots++;
			if (lp->idle)
				pthread_cond_signal(&lp->turn);
			else if (lp->nthreads < lp->max_threads)
				start_worker(lp); /* on failure the slot waits */
			full_ticks = 0;
		} else if (!full && lp->slots > 1 && busy + 1 < lp->slots) {
			/* A closed slot's holder leaves after its next request. */
			lp->slots--;
		}
		seen = started;
		quiet = busy ? 0 : quiet + 1;
		if (quiet >= IDLE_TICKS_BEFORE_SLEEP && lp->slots == 1) {
			lp->monitor_asleep = true;
			quiet = 0;
		}
	}
	pthread_mutex_unlock(&lp->lock);
	return NULL;
}

int pfs_loop_run(struct fuse_session *se, unsigned max_threads, void (*done)(void *),
		 void *arg)
{
	struct pfs_loop lp = {
		.se = se,
		.max_threads = max_threads ? max_threads : 1,
		.slots = 1,
		.done = done,
		.done_arg = arg,
	};
	pthread_t monitor;
	bool monitor_started = false;
	int ret;

	pthread_mutex_init(&lp.lock, NULL);
	pthread_cond_init(&lp.turn, NULL);
	pthread_cond_init(&lp.wake, NULL);
	sem_init(&lp.finish, 0, 0);
	pthread_mutex_lock(&lp.lock);
	ret = start_worker(&lp);
	pthread_mutex_unlock(&lp.lock);
	if (ret < 0)
		goto out;
	ret = -pthread_create(&monitor, NULL, monitor_main, &lp);
	if (ret < 0) {
		end_session(&lp, ret);
	} else {
		monitor_started = true;
	}
	/* Signals interrupt sem_wait (libfuse's handlers are not SA_RESTART)
	 * and set the session's exit flag. */
	while (!fuse_session_exited(se))
		sem_wait(&lp.finish);
	pthread_mutex_lock(&lp.lock);
	lp.exit = true;
	pthread_cond_broadcast(&lp.turn);
	pthread_cond_broadcast(&lp.wake);
	/* Workers waiting in read(2) leave at that cancellation point; the
	 * others are processing with cancellation off, or waiting for a turn. */
	for (struct worker *w = lp.workers; w; w = w->next)
		pthread_cancel(w->tid);
	pthread_mutex_unlock(&lp.lock);
	if (monitor_started)
		pthread_join(monitor, NULL);
	ret = lp.error;
out:
	while (lp.workers) {
		struct worker *w = lp.workers;

		lp.workers = w->next;
		pthread_join(w->tid, NULL);
		free(w->fbuf.mem);
		free(w);
	}
	sem_destroy(&lp.finish);
	pthread_cond_destroy(&lp.wake);
	pthread_cond_destroy(&lp.turn);
	pthread_mutex_destroy(&lp.lock);
	return ret;
}
