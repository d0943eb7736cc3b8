/* mapwatch: where mapping tables come from. A regular file is watched
 * through its parent directory (so an atomic rename into place is seen as
 * well as a write in place), with a 100 ms stat poll as fallback; a named
 * pipe is read by a thread that never blocks the mount. Every update is
 * parsed and validated whole, then applied in one swap, or rejected and
 * reported, the previous view staying. */
#include "map/mapwatch.h"
#include "map/mapframe.h"
#include "ctl/oplog.h"
#include "view/selfmnt.h"
#include "util/util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

struct pfs_mapwatch {
	struct pfs_fs *fs;
	char *path;       /* absolute */
	char *dir, *base; /* the file's directory (watched) and name */
	bool fifo;
	size_t cap;
	pthread_t thread;
	bool running;
	int stop[2];      /* a byte here ends the thread */

	pthread_mutex_t lock; /* what status reports */
	uint64_t generation;
	struct timespec applied_at;
	size_t entries;
	uint64_t rejected;
	char last_error[PFS_MAP_ERRLEN + 64];
	struct timespec error_at;

	/* file source: the last content read, to skip rewrites of the same */
	char *content;
	size_t content_len;
	struct stat seen;     /* stat at the last read */
	struct stat pending;  /* stat at the previous poll */
	bool have_seen, have_pending;
};

static void rejected(struct pfs_mapwatch *w, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&w->lock);
	va_start(ap, fmt);
	vsnprintf(w->last_error, sizeof(w->last_error), fmt, ap);
	va_end(ap);
	clock_gettime(CLOCK_REALTIME, &w->error_at);
	w->rejected++;
	pthread_mutex_unlock(&w->lock);
	/* Seen on a foreground terminal; otherwise in status and the op log. */
	fprintf(stderr, "prismfs: mapping update rejected: %s\n", w->last_error);
	if (w->fs->log) {
		struct pfs_logarg args[] = {PFS_LA_STR("source", w->path),
					    PFS_LA_STR("reason", w->last_error), PFS_LA_END};
		struct pfs_oprec rec = {.op = "map_reject", .args = args, .result = -EINVAL};

		rec.t0_ns = rec.t1_ns = pfs_now_ns();
		pfs_oplog_op(w->fs->log, &rec);
	}
}

static void applied(struct pfs_mapwatch *w, struct pfs_map *m)
{
	uint64_t gen;
	size_t count = pfs_map_count(m);

	pfs_view_set_map(w->fs, m);
	pthread_mutex_lock(&w->lock);
	gen = ++w->generation;
	w->entries = count;
	clock_gettime(CLOCK_REALTIME, &w->applied_at);
	pthread_mutex_unlock(&w->lock);
	if (w->fs->log) {
		struct pfs_logarg args[] = {PFS_LA_STR("source", w->path), PFS_LA_INT("generation", gen),
					    PFS_LA_INT("entries", count), PFS_LA_END};
		struct pfs_oprec rec = {.op = "map_apply", .args = args, .result = 0};

		rec.t0_ns = rec.t1_ns = pfs_now_ns();
		pfs_oplog_op(w->fs->log, &rec);
	}
}

/* Parse one update; apply it or say why not. */
static void update(struct pfs_mapwatch *w, const char *json, size_t len, const char *what)
{
	char err[PFS_MAP_ERRLEN];
	struct pfs_map *m;

	if (len == 0) {
		rejected(w, "%s: empty", what);
		return;
	}
	if (pfs_map_parse(json, len, &m, err) < 0) {
		rejected(w, "%s: %s", what, err);
		return;
	}
	applied(w, m);
}

/* The table's file (or pipe) opened with flags, or -errno. The path may
 * lead through the mount point (a table inside it, or a directory on the
 * way swapped for a symlink there): read through the mount, that would be
 * the daemon asking itself, for whatever the view shows there. So its
 * directory is walked as selfmnt.h does (the mount point is what it
 * covers, as when the path was given), and a symlink in the file's place
 * (a table switched by a symlink) is followed the same way. */
static int map_open(struct pfs_mapwatch *w, int flags)
{
	char *path = strdup(w->path);
	int fd = -ENOMEM;

	for (int links = 0; path; links++) {
		char *slash = strrchr(path, '/'), *dir, *text = NULL, *next = NULL;
		ssize_t len;
		int dfd;

		dir = slash == path ? strdup("/") : strndup(path, (size_t)(slash - path));
		dfd = dir ? pfs_selfmnt_opendir_covered(w->fs, dir) : -ENOMEM;
		fd = dfd < 0 ? dfd : pfs_selfmnt_openat(w->fs, dfd, slash + 1, flags | O_NOFOLLOW |
								       O_CLOEXEC | O_NOCTTY);
		if (dfd >= 0 && fd < 0)
			fd = -errno;
		if (fd == -ELOOP && links < 40 && (text = malloc(PATH_MAX)) &&
		    (len = readlinkat(dfd, slash + 1, text, PATH_MAX - 1)) >= 0) {
			text[len] = '\0';
			if (text[0] == '/')
				next = strdup(text);
			else if (asprintf(&next, "%s/%s", dir, text) < 0)
				next = NULL;
			fd = next ? -EAGAIN : -ENOMEM; /* again, from the link */
		}
		free(text);
		free(dir);
		if (dfd >= 0)
			close(dfd);
		free(path);
		path = next;
		if (fd != -EAGAIN)
			break;
	}
	free(path);
	return fd;
}

static int read_file(struct pfs_mapwatch *w, size_t cap, char **out, size_t *len,
		     struct stat *st)
{
	int fd = map_open(w, O_RDONLY | O_NONBLOCK);
	size_t used = 0, alloc = 0;
	char *buf = NULL;
	int ret = 0;

	if (fd < 0)
		return fd;
	if (fstat(fd, st) < 0) {
		ret = -errno;
		goto out;
	}
	if (!S_ISREG(st->st_mode)) {
		ret = -EINVAL;
		goto out;
	}
	for (;;) {
		ssize_t n;

		if (used == alloc) {
			size_t na = alloc ? alloc * 2 : 4096;
			char *nb;

			if (alloc > cap) {
				ret = -EFBIG;
				goto out;
			}
			nb = realloc(buf, na + 1);
			if (!nb) {
				ret = -ENOMEM;
				goto out;
			}
			buf = nb;
			alloc = na;
		}
		n = read(fd, buf + used, alloc - used);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = -errno;
			goto out;
		}
		if (n == 0)
			break;
		used += (size_t)n;
	}
	if (used > cap) {
		ret = -EFBIG;
		goto out;
	}
	buf[used] = '\0';
	*out = buf;
	*len = used;
	buf = NULL;
out:
	free(buf);
	close(fd);
	return ret;
}

static bool same_stat(const struct stat *a, const struct stat *b)
{
	return a->st_ino == b->st_ino && a->st_dev == b->st_dev && a->st_size == b->st_size &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
	       a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/* Read the file again; an unchanged content is no update. */
static void reload_file(struct pfs_mapwatch *w)
{
	struct stat st;
	char *buf;
	size_t len;
	int ret = read_file(w, w->cap, &buf, &len, &st);

	if (ret == -ENOENT)
		return; /* between the removal and the rename of an atomic replace */
	if (ret < 0) {
		rejected(w, "%s: cannot read: %s", w->path,
			 ret == -EFBIG ? "larger than --map-max" : strerror(-ret));
		return;
	}
	w->seen = st;
	w->have_seen = true;
	if (w->content && len == w->content_len && memcmp(buf, w->content, len) == 0) {
		free(buf);
		return;
	}
	free(w->content);
	w->content = buf;
	w->content_len = len;
	update(w, buf, len, w->path);
}

static void *watch_file(void *arg)
{
	struct pfs_mapwatch *w = arg;
	int in = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
	int dfd = pfs_selfmnt_opendir_covered(w->fs, w->dir);
	char at[64];

	/* The directory as it was given, never the view's (see map_open). */
	snprintf(at, sizeof(at), "/proc/self/fd/%d", dfd);
	if (in >= 0 && (dfd < 0 || inotify_add_watch(in, at, IN_CLOSE_WRITE | IN_MOVED_TO |
							      IN_CREATE | IN_ATTRIB) < 0)) {
		close(in);
		in = -1; /* the poll alone still sees every change */
	}
	if (dfd >= 0)
		close(dfd);
	for (;;) {
		struct pollfd p[2] = {{.fd = w->stop[0], .events = POLLIN},
				      {.fd = in, .events = POLLIN}};
		bool hit = false;
		struct stat st;
		int fd, r = poll(p, in >= 0 ? 2 : 1, 100);

		if (r < 0 && errno != EINTR)
			break;
		if (p[0].revents)
			break;
		if (in >= 0 && (p[1].revents & POLLIN)) {
			char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
			ssize_t n;

			while ((n = read(in, buf, sizeof(buf))) > 0) {
				for (char *q = buf; q < buf + n;) {
					struct inotify_event *ev = (struct inotify_event *)q;

					if (ev->len && strcmp(ev->name, w->base) == 0 &&
					    (ev->mask & (IN_CLOSE_WRITE | IN_MOVED_TO)))
						hit = true;
					q += sizeof(*ev) + ev->len;
				}
			}
		}
		if (hit) {
			reload_file(w);
			continue;
		}
		/* Fallback: a change the events missed (a writer that keeps the
		 * file open, a filesystem without inotify), read once it has
		 * stood still for one poll interval. */
		fd = map_open(w, O_RDONLY | O_NONBLOCK);
		r = fd >= 0 ? fstat(fd, &st) : -1;
		if (fd >= 0)
			close(fd);
		if (r < 0 || !S_ISREG(st.st_mode))
			continue;
		if (w->have_seen && same_stat(&st, &w->seen)) {
			w->have_pending = false;
			continue;
		}
		if (w->have_pending && same_stat(&st, &w->pending)) {
			w->have_pending = false;
			reload_file(w);
			continue;
		}
		w->pending = st;
		w->have_pending = true;
	}
	if (in >= 0)
		close(in);
	return NULL;
}

struct fifo_ctx {
	struct pfs_mapwatch *w;
	uint64_t n;
};

static void fifo_msg(const char *msg, size_t len, void *arg)
{
	struct fifo_ctx *c = arg;
	char what[64];

	snprintf(what, sizeof(what), "pipe message %llu", (unsigned long long)++c->n);
	update(c->w, msg, len, what);
}

static void fifo_err(const char *reason, void *arg)
{
	struct fifo_ctx *c = arg;

	rejected(c->w, "pipe: %s", reason);
}

static void *watch_fifo(void *arg)
{
	struct pfs_mapwatch *w = arg;
	struct pfs_frame_dec dec;
	struct fifo_ctx c = {.w = w};
	char *buf = malloc(65536);
	int fd = -1;

	pfs_frame_init(&dec, w->cap);
	while (buf) {
		struct pollfd p[2] = {{.fd = w->stop[0], .events = POLLIN},
				      {.fd = -1, .events = POLLIN}};
		ssize_t n;

		if (fd < 0) {
			/* Non-blocking: opening never waits for a writer. Until one
			 * comes, poll reports nothing on a fresh reader. */
			fd = map_open(w, O_RDONLY | O_NONBLOCK);
			if (fd < 0) {
				rejected(w, "cannot open pipe %s: %s", w->path, strerror(-fd));
				if (poll(p, 1, 1000) > 0)
					break;
				continue;
			}
		}
		p[1].fd = fd;
		if (poll(p, 2, -1) < 0 && errno != EINTR)
			break;
		if (p[0].revents)
			break;
		if (!p[1].revents)
			continue;
		n = read(fd, buf, 65536);
		if (n > 0) {
			if (pfs_frame_feed(&dec, buf, (size_t)n, fifo_msg, fifo_err, &c) < 0)
				rejected(w, "pipe: out of memory for a message");
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		/* Every writer closed: a message cut short is dropped, and a
		 * fresh open starts the next writer at a message boundary. */
		pfs_frame_eof(&dec, fifo_err, &c);
		close(fd);
		fd = -1;
	}
	if (fd >= 0)
		close(fd);
	pfs_frame_free(&dec);
	free(buf);
	return NULL;
}

int pfs_mapwatch_prepare(struct pfs_fs *fs, const char *path, size_t cap, char *err,
			 size_t errlen)
{
	struct pfs_mapwatch *w = calloc(1, sizeof(*w));
	char tmpl[] = "/tmp/.prismfs-empty-XXXXXX";
	struct stat st;
	char *slash;
	int ret = -ENOMEM;

	if (!w)
		goto fail;
	w->fs = fs;
	w->cap = cap;
	w->stop[0] = w->stop[1] = -1;
	pthread_mutex_init(&w->lock, NULL);
	w->path = realpath(path, NULL);
	if (!w->path) {
		ret = -errno;
		snprintf(err, errlen, "mapping %s: %s", path, strerror(errno));
		goto fail;
	}
	if (stat(w->path, &st) < 0) {
		ret = -errno;
		snprintf(err, errlen, "mapping %s: %s", path, strerror(errno));
		goto fail;
	}
	if (S_ISFIFO(st.st_mode)) {
		size_t ml = strlen(fs->mountpoint);

		w->fifo = true;
		/* After mounting, that path is the view's pipe, and the reader
		 * keeps it open: the daemon would hold its own mount busy, and
		 * no unmount would ever succeed. */
		if (strncmp(w->path, fs->mountpoint, ml) == 0 &&
		    (w->path[ml] == '/' || ml == 1)) {
			ret = -EINVAL;
			snprintf(err, errlen, "mapping pipe %s is inside the mount point %s, where "
				 "the daemon would hold its own mount open: put it outside", path,
				 fs->mountpoint);
			goto fail;
		}
	} else if (!S_ISREG(st.st_mode)) {
		ret = -EINVAL;
		snprintf(err, errlen, "mapping %s: not a regular file or a named pipe", path);
		goto fail;
	}
	w->dir = strdup(w->path);
	if (!w->dir)
		goto fail;
	slash = strrchr(w->dir, '/');
	w->base = slash + 1;
	*slash = '\0';
	if (!*w->dir) {
		free(w->dir);
		w->dir = strdup("/");
		if (!w->dir)
			goto fail;
		w->base = strrchr(w->path, '/') + 1;
	}
	if (pipe2(w->stop, O_CLOEXEC) < 0) {
		ret = -errno;
		snprintf(err, errlen, "mapping: %s", strerror(errno));
		goto fail;
	}
	/* Synthetic directories hold an fd on a removed empty directory: it
	 * can be stat'ed and listed, and nothing can be made in it. */
	if (!mkdtemp(tmpl) || (fs->empty_fd = open(tmpl, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0) {
		ret = -errno;
		snprintf(err, errlen, "mapping: cannot make an empty directory: %s", strerror(errno));
		rmdir(tmpl);
		goto fail;
	}
	rmdir(tmpl);
	if (!w->fifo) {
		/* The first table must be good: bad input stops before mounting. */
		char *buf;
		size_t len;
		char perr[PFS_MAP_ERRLEN];
		struct pfs_map *m;

		ret = read_file(w, cap, &buf, &len, &st);
		if (ret < 0) {
			snprintf(err, errlen, "mapping %s: %s", path,
				 ret == -EFBIG ? "larger than --map-max" : strerror(-ret));
			goto fail;
		}
		ret = pfs_map_parse(buf, len, &m, perr);
		if (ret < 0) {
			snprintf(err, errlen, "mapping %s: %s", path, perr);
			free(buf);
			goto fail;
		}
		w->content = buf;
		w->content_len = len;
		w->seen = st;
		w->have_seen = true;
		fs->map = m;
		w->generation = 1;
		w->entries = pfs_map_count(m);
		clock_gettime(CLOCK_REALTIME, &w->applied_at);
	}
	fs->watch = w;
	return 0;
fail:
	if (err[0] == '\0')
		snprintf(err, errlen, "mapping %s: %s", path, strerror(-ret));
	pfs_mapwatch_free(w);
	if (fs->empty_fd >= 0 && !fs->watch) {
		close(fs->empty_fd);
		fs->empty_fd = -1;
	}
	return ret;
}

int pfs_mapwatch_start(struct pfs_fs *fs)
{
	struct pfs_mapwatch *w = fs->watch;
	int ret;

	if (!w || w->running)
		return 0;
	ret = pthread_create(&w->thread, NULL, w->fifo ? watch_fifo : watch_file, w);
	if (ret)
		return -ret;
	w->running = true;
	return 0;
}

void pfs_mapwatch_stop(struct pfs_fs *fs)
{
	struct pfs_mapwatch *w = fs->watch;

	if (!w || !w->running)
		return;
	if (write(w->stop[1], "x", 1) < 0) {
		/* the pipe is ours and empty: cannot fail */
	}
	pthread_join(w->thread, NULL);
	w->running = false;
}

void pfs_mapwatch_free(struct pfs_mapwatch *w)
{
	if (!w)
		return;
	if (w->stop[0] >= 0)
		close(w->stop[0]);
	if (w->stop[1] >= 0)
		close(w->stop[1]);
	pthread_mutex_destroy(&w->lock);
	free(w->content);
	free(w->dir);
	free(w->path);
	free(w);
}

json_t *pfs_mapwatch_status(struct pfs_fs *fs)
{
	struct pfs_mapwatch *w = fs->watch;
	char at[40];
	json_t *o;

	if (!w)
		return json_null();
	o = json_object();
	pthread_mutex_lock(&w->lock);
	json_object_set_new(o, "source", json_string(w->path));
	json_object_set_new(o, "kind", json_string(w->fifo ? "named pipe" : "file"));
	json_object_set_new(o, "generation", json_integer((json_int_t)w->generation));
	if (w->generation) {
		pfs_fmt_time(&w->applied_at, at, sizeof(at));
		json_object_set_new(o, "applied_at", json_string(at));
	} else {
		json_object_set_new(o, "applied_at", json_null());
	}
	json_object_set_new(o, "entries", json_integer((json_int_t)w->entries));
	json_object_set_new(o, "rejected", json_integer((json_int_t)w->rejected));
	if (w->rejected) {
		pfs_fmt_time(&w->error_at, at, sizeof(at));
		json_object_set_new(o, "last_rejected_at", json_string(at));
		json_object_set_new(o, "last_rejected_reason", json_string(w->last_error));
	} else {
		json_object_set_new(o, "last_rejected_at", json_null());
		json_object_set_new(o, "last_rejected_reason", json_null());
	}
	pthread_mutex_unlock(&w->lock);
	return o;
}
