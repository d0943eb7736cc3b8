#include "ctl/oplog.h"
#include "util/util.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct pfs_oplog {
	int fd;
	enum pfs_log_format fmt;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	char **ring;
	size_t cap, head, count;
	uint64_t written, dropped;
	bool stopping, started;
	pthread_t thread;
};

static void ts_of(uint64_t ns, struct timespec *ts)
{
	ts->tv_sec = (time_t)(ns / 1000000000u);
	ts->tv_nsec = (long)(ns % 1000000000u);
}

static bool needs_quote(const char *s)
{
	if (!*s)
		return true;
	for (; *s; s++)
		if ((unsigned char)*s <= ' ' || *s == '"' || *s == '\\' || *s == 0x7f)
			return true;
	return false;
}

static void put_text_str(FILE *f, const char *s)
{
	if (!needs_quote(s)) {
		fputs(s, f);
		return;
	}
	fputc('"', f);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < ' ' || c == 0x7f)
			fprintf(f, "\\x%02x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

static void put_text_arg(FILE *f, const struct pfs_logarg *a)
{
	fprintf(f, " %s=", a->key);
	switch (a->type) {
	case 'o':
		fprintf(f, "0%llo", (unsigned long long)a->u);
		break;
	case 'x':
		fprintf(f, "0x%llx", (unsigned long long)a->u);
		break;
	case 's':
		put_text_str(f, a->s ? a->s : "");
		break;
	default:
		fprintf(f, "%lld", (long long)a->i);
	}
}

static char *format_text(const struct pfs_oprec *r)
{
	char *buf = NULL, t0[40], t1[40], eb[16];
	size_t len = 0;
	struct timespec ts;
	FILE *f = open_memstream(&buf, &len);
	const char *path = r->path ? r->path : "-";

	if (!f)
		return NULL;
	ts_of(r->t0_ns, &ts);
	pfs_fmt_time(&ts, t0, sizeof(t0));
	ts_of(r->t1_ns, &ts);
	pfs_fmt_time(&ts, t1, sizeof(t1));
	fprintf(f, "%s -> %s ", t0, r->op);
	put_text_str(f, path);
	if (r->path2) {
		fputs(" to=", f);
		put_text_str(f, r->path2);
	}
	for (const struct pfs_logarg *a = r->args; a && a->key; a++)
		put_text_arg(f, a);
	fprintf(f, "\n%s <- %s ", t1, r->op);
	put_text_str(f, path);
	if (r->result >= 0)
		fprintf(f, " = %lld\n", (long long)r->result);
	else
		fprintf(f, " = -%s\n", pfs_errname((int)-r->result, eb, sizeof(eb)));
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

static json_t *json_arg(const struct pfs_logarg *a)
{
	char b[32];

	switch (a->type) {
	case 'o':
		snprintf(b, sizeof(b), "0%llo", (unsigned long long)a->u);
		return json_string(b);
	case 'x':
		snprintf(b, sizeof(b), "0x%llx", (unsigned long long)a->u);
		return json_string(b);
	case 's':
		/* Names are bytes, not always UTF-8: keep them lossless-ish. */
		return a->s ? json_stringn_nocheck(a->s, strlen(a->s)) : json_null();
	default:
		return json_integer((json_int_t)a->i);
	}
}

static char *format_json(const struct pfs_oprec *r)
{
	char t0[40], eb[16], *out = NULL;
	struct timespec ts;
	json_t *o = json_object(), *args = json_object();

	if (!o || !args)
		goto out;
	ts_of(r->t0_ns, &ts);
	pfs_fmt_time(&ts, t0, sizeof(t0));
	json_object_set_new(o, "time", json_string(t0));
	json_object_set_new(o, "op", json_string(r->op));
	json_object_set_new(o, "path", r->path ? json_stringn_nocheck(r->path, strlen(r->path))
					       : json_null());
	if (r->path2)
		json_object_set_new(o, "path2", json_stringn_nocheck(r->path2, strlen(r->path2)));
	for (const struct pfs_logarg *a = r->args; a && a->key; a++)
		json_object_set_new(args, a->key, json_arg(a));
	json_object_set(o, "args", args);
	json_object_set_new(o, "result", json_integer((json_int_t)r->result));
	json_object_set_new(o, "errno", r->result < 0
		? json_string(pfs_errname((int)-r->result, eb, sizeof(eb))) : json_null());
	json_object_set_new(o, "duration_us",
			    json_integer((json_int_t)((r->t1_ns - r->t0_ns) / 1000)));
	out = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
	if (out) {
		size_t n = strlen(out);
		char *p = realloc(out, n + 2);

		if (!p) {
			free(out);
			out = NULL;
			goto out;
		}
		p[n] = '\n';
		p[n + 1] = '\0';
		out = p;
	}
out:
	json_decref(args);
	json_decref(o);
	return out;
}

char *pfs_oplog_format(enum pfs_log_format fmt, const struct pfs_oprec *rec)
{
	return fmt == PFS_LOG_JSON ? format_json(rec) : format_text(rec);
}

int pfs_oplog_open(struct pfs_oplog **out, const char *path, enum pfs_log_format fmt,
		   size_t capacity)
{
	struct pfs_oplog *lg = calloc(1, sizeof(*lg));
	int ret;

	if (!lg)
		return -ENOMEM;
	lg->fmt = fmt;
	lg->cap = capacity;
	lg->ring = calloc(capacity, sizeof(*lg->ring));
	if (!lg->ring) {
		ret = -ENOMEM;
		goto err_free;
	}
	if (strcmp(path, "-") == 0)
		lg->fd = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
	else
		lg->fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (lg->fd < 0) {
		ret = -errno;
		goto err_ring;
	}
	pthread_mutex_init(&lg->lock, NULL);
	pthread_cond_init(&lg->wake, NULL);
	*out = lg;
	return 0;
err_ring:
	free(lg->ring);
err_free:
	free(lg);
	return ret;
}

static void write_all(int fd, const char *s, size_t n)
{
	while (n) {
		ssize_t w = write(fd, s, n);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return; /* a log we cannot write must not take the mount down */
		}
		s += w;
		n -= (size_t)w;
	}
}

static void *writer(void *arg)
{
	struct pfs_oplog *lg = arg;
	char *batch[256];

	pthread_mutex_lock(&lg->lock);
	for (;;) {
		size_t n = 0;

		while (lg->count == 0 && !lg->stopping)
			pthread_cond_wait(&lg->wake, &lg->lock);
		if (lg->count == 0 && lg->stopping)
			break;
		while (lg->count && n < PFS_ARRAY_SIZE(batch)) {
			batch[n++] = lg->ring[lg->head];
			lg->head = (lg->head + 1) % lg->cap;
			lg->count--;
		}
		pthread_mutex_unlock(&lg->lock);
		for (size_t i = 0; i < n; i++) {
			write_all(lg->fd, batch[i], strlen(batch[i]));
			free(batch[i]);
		}
		pthread_mutex_lock(&lg->lock);
		lg->written += n;
	}
	pthread_mutex_unlock(&lg->lock);
	return NULL;
}

static char *start_record(const struct pfs_oplog *lg, const char *source, const char *mnt,
			  const char *note)
{
	char *s = NULL;

	if (lg->fmt == PFS_LOG_JSON) {
		json_t *o = json_pack("{s:s, s:s, s:s, s:s}", "event", "start", "version",
				      PRISMFS_VERSION, "source", source, "mountpoint", mnt);
		char *d;

		if (!o)
			return NULL;
		if (note)
			json_object_set_new(o, "note", json_string(note));
		d = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
		json_decref(o);
		if (d && asprintf(&s, "%s\n", d) < 0)
			s = NULL;
		free(d);
	} else if (asprintf(&s, "# prismfs %s op log: source=%s mountpoint=%s\n%s%s%s",
			    PRISMFS_VERSION, source, mnt, note ? "# " : "", note ? note : "",
			    note ? "\n" : "") < 0) {
		s = NULL;
	}
	return s;
}

int pfs_oplog_start(struct pfs_oplog *lg, const char *source, const char *mountpoint,
		    const char *note)
{
	char *s = start_record(lg, source, mountpoint, note);
	int ret;

	if (s) {
		write_all(lg->fd, s, strlen(s));
		free(s);
	}
	ret = pthread_create(&lg->thread, NULL, writer, lg);
	if (ret)
		return -ret;
	lg->started = true;
	return 0;
}

void pfs_oplog_op(struct pfs_oplog *lg, const struct pfs_oprec *rec)
{
	char *s = pfs_oplog_format(lg->fmt, rec);
	bool queued = false;

	pthread_mutex_lock(&lg->lock);
	if (s && lg->count < lg->cap && !lg->stopping) {
		lg->ring[(lg->head + lg->count) % lg->cap] = s;
		lg->count++;
		queued = true;
		pthread_cond_signal(&lg->wake);
	} else {
		lg->dropped++;
	}
	pthread_mutex_unlock(&lg->lock);
	if (!queued)
		free(s);
}

uint64_t pfs_oplog_dropped(struct pfs_oplog *lg)
{
	uint64_t d;

	pthread_mutex_lock(&lg->lock);
	d = lg->dropped;
	pthread_mutex_unlock(&lg->lock);
	return d;
}

static void free_log(struct pfs_oplog *lg)
{
	while (lg->count) {
		free(lg->ring[lg->head]);
		lg->head = (lg->head + 1) % lg->cap;
		lg->count--;
	}
	close(lg->fd);
	pthread_cond_destroy(&lg->wake);
	pthread_mutex_destroy(&lg->lock);
	free(lg->ring);
	free(lg);
}

void pfs_oplog_discard(struct pfs_oplog *lg)
{
	if (lg)
		free_log(lg);
}

uint64_t pfs_oplog_close(struct pfs_oplog *lg)
{
	uint64_t dropped;
	char *s = NULL;

	if (!lg)
		return 0;
	pthread_mutex_lock(&lg->lock);
	lg->stopping = true;
	pthread_cond_signal(&lg->wake);
	pthread_mutex_unlock(&lg->lock);
	if (lg->started)
		pthread_join(lg->thread, NULL);
	/* Records still queued when no thread ran: write them now. */
	while (lg->count) {
		char *r = lg->ring[lg->head];

		write_all(lg->fd, r, strlen(r));
		free(r);
		lg->head = (lg->head + 1) % lg->cap;
		lg->count--;
		lg->written++;
	}
	dropped = lg->dropped;
	if (lg->fmt == PFS_LOG_JSON) {
		if (asprintf(&s, "{\"event\":\"end\",\"records\":%llu,\"dropped\":%llu}\n",
			     (unsigned long long)lg->written, (unsigned long long)dropped) < 0)
			s = NULL;
	} else if (asprintf(&s, "# prismfs op log end: records=%llu dropped=%llu\n",
			    (unsigned long long)lg->written, (unsigned long long)dropped) < 0) {
		s = NULL;
	}
	if (s) {
		write_all(lg->fd, s, strlen(s));
		free(s);
	}
	free_log(lg);
	return dropped;
}
