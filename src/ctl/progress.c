#include "ctl/progress.h"
#include "util/util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_INTERVAL_MS 200

void pfs_progress_init(struct pfs_progress *p, bool on, FILE *out, const char *what)
{
	const char *env = getenv("PRISMFS_TEST_PROGRESS_MS");
	long ms = DEFAULT_INTERVAL_MS;

	memset(p, 0, sizeof(*p));
	p->on = on;
	p->out = out;
	p->what = what;
	/* Tests shorten the interval so that a small tree still draws. */
	if (env && pfs_parse_long(env, 0, 60000, &ms) < 0)
		ms = DEFAULT_INTERVAL_MS;
	p->interval_ns = (uint64_t)ms * 1000000u;
	/* Short operations finish before the first line and never draw. */
	p->next_ns = pfs_now_ns() + p->interval_ns;
}

static void fmt_bytes(char *buf, size_t len, uint64_t b)
{
	if (b < 1024 * 1024)
		snprintf(buf, len, "%.1f KiB", (double)b / 1024);
	else if (b < 1024ull * 1024 * 1024)
		snprintf(buf, len, "%.1f MiB", (double)b / (1024 * 1024));
	else
		snprintf(buf, len, "%.2f GiB", (double)b / (1024 * 1024 * 1024));
}

void pfs_progress_set_sink(struct pfs_progress *p, pfs_progress_sink sink, void *arg)
{
	p->sink = sink;
	p->sink_arg = arg;
}

void pfs_progress_redraw(struct pfs_progress *p)
{
	char done[32], total[32], shared[48] = "";

	if (!p->on)
		return;
	fmt_bytes(done, sizeof(done), p->bytes);
	fmt_bytes(total, sizeof(total), p->bytes_total);
	if (p->shared)
		snprintf(shared, sizeof(shared), ", %llu unchanged shared",
			 (unsigned long long)p->shared);
	/* \r and erase-to-end-of-line: one line, rewritten in place. */
	fprintf(p->out, "\rprismfs: %s: %llu/%llu files, %s/%s%s\033[K", p->what,
		(unsigned long long)p->files, (unsigned long long)p->files_total, done, total,
		shared);
	fflush(p->out);
	p->drawn = true;
}

static void draw(struct pfs_progress *p)
{
	uint64_t now;

	if (!p->on && !p->sink)
		return;
	now = pfs_now_ns();
	if (now < p->next_ns)
		return;
	p->next_ns = now + p->interval_ns;
	if (p->sink)
		p->sink(p->sink_arg, p);
	pfs_progress_redraw(p);
}

void pfs_progress_bytes(struct pfs_progress *p, uint64_t n)
{
	p->bytes += n;
	draw(p);
}

void pfs_progress_tick(void *arg, uint64_t n)
{
	pfs_progress_bytes(arg, n);
}

void pfs_progress_file(struct pfs_progress *p, uint64_t size)
{
	p->files++;
	p->bytes = p->file_start + size;
	p->file_start = p->bytes;
	draw(p);
}

void pfs_progress_shared(struct pfs_progress *p)
{
	p->shared++;
	draw(p);
}

void pfs_progress_end(struct pfs_progress *p)
{
	if (p->on && p->drawn) {
		fputs("\r\033[K", p->out);
		fflush(p->out);
	}
	p->drawn = false;
}

int pfs_progress_encode(const struct pfs_progress *p, char *buf, size_t len)
{
	int n = snprintf(buf, len, "progress %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64
			 " %" PRIu64 "\n", p->files, p->files_total, p->bytes, p->bytes_total,
			 p->shared);

	return n < 0 || (size_t)n >= len ? -ENOSPC : n;
}

int pfs_progress_decode(const char *line, struct pfs_progress *p)
{
	uint64_t v[5];
	const char *s;
	char *end;

	if (strncmp(line, "progress", 8) != 0)
		return -EINVAL;
	s = line + 8;
	/* strtoull alone would take signs and blanks it should not. */
	for (int i = 0; i < 5; i++) {
		if (s[0] != ' ' || s[1] < '0' || s[1] > '9')
			return -EINVAL;
		errno = 0;
		v[i] = strtoull(s + 1, &end, 10);
		if (errno)
			return -EINVAL;
		s = end;
	}
	if (*s)
		return -EINVAL;
	p->files = v[0];
	p->files_total = v[1];
	p->bytes = v[2];
	p->bytes_total = v[3];
	p->shared = v[4];
	return 0;
}
