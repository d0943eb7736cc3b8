#include "map/mapframe.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* First allocation for a message body; later ones double. */
#define FIRST_ALLOC 4096

void pfs_frame_init(struct pfs_frame_dec *d, size_t cap)
{
	memset(d, 0, sizeof(*d));
	d->cap = cap;
}

__attribute__((format(printf, 3, 4)))
static void say(pfs_frame_err_fn err, void *arg, const char *fmt, ...)
{
	char reason[160];
	va_list ap;

	if (!err)
		return;
	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	err(reason, arg);
}

static void drop_buf(struct pfs_frame_dec *d)
{
	free(d->buf);
	d->buf = NULL;
	d->alloc = 0;
}

/* Grow towards need in doublings, so a bogus length just under the cap
 * costs memory only as fast as bytes actually arrive. */
static int grow(struct pfs_frame_dec *d, size_t want)
{
	size_t a = d->alloc ? d->alloc : FIRST_ALLOC;
	char *b;

	while (a < want && a <= d->need / 2)
		a *= 2;
	if (a < want || a > d->need)
		a = d->need;
	b = realloc(d->buf, a);
	if (!b)
		return -ENOMEM;
	d->buf = b;
	d->alloc = a;
	return 0;
}

int pfs_frame_feed(struct pfs_frame_dec *d, const void *p, size_t n, pfs_frame_msg_fn msg,
		   pfs_frame_err_fn err, void *arg)
{
	const unsigned char *in = p;

	while (n > 0 && !d->skipping) {
		size_t take;

		if (d->hdr_have < 4) {
			take = 4 - d->hdr_have < n ? 4 - d->hdr_have : n;
			memcpy(d->hdr + d->hdr_have, in, take);
			d->hdr_have += take;
			in += take;
			n -= take;
			if (d->hdr_have < 4)
				break;
			d->need = (size_t)d->hdr[0] << 24 | (size_t)d->hdr[1] << 16 |
				  (size_t)d->hdr[2] << 8 | (size_t)d->hdr[3];
			d->have = 0;
			if (d->need > d->cap) {
				say(err, arg, "message of %zu bytes exceeds the %zu-byte cap", d->need,
				    d->cap);
				/* The stream has no resync marker: only a new
				 * writer (EOF, reopen) brings a known boundary. */
				d->skipping = true;
				break;
			}
		} else {
			take = d->need - d->have < n ? d->need - d->have : n;
			if (d->have + take > d->alloc && grow(d, d->have + take) < 0) {
				say(err, arg, "out of memory at %zu of a %zu-byte message", d->have,
				    d->need);
				d->skipping = true;
				drop_buf(d);
				return -ENOMEM;
			}
			memcpy(d->buf + d->have, in, take);
			d->have += take;
			in += take;
			n -= take;
		}
		if (d->have == d->need) {
			/* An empty message is still a message: the caller decides. */
			if (msg)
				msg(d->need ? d->buf : "", d->need, arg);
			d->hdr_have = 0;
			d->need = d->have = 0;
			/* Updates are rare: a fresh buffer per message keeps
			 * alloc <= need and one big update from pinning memory. */
			drop_buf(d);
		}
	}
	return 0;
}

void pfs_frame_eof(struct pfs_frame_dec *d, pfs_frame_err_fn err, void *arg)
{
	if (d->skipping)
		; /* already reported when the bad length came */
	else if (d->hdr_have > 0 && d->hdr_have < 4)
		say(err, arg, "partial length header: got %zu of 4 bytes", d->hdr_have);
	else if (d->hdr_have == 4)
		say(err, arg, "partial message: got %zu of %zu bytes", d->have, d->need);
	d->hdr_have = 0;
	d->need = d->have = 0;
	d->skipping = false;
	drop_buf(d);
}

void pfs_frame_free(struct pfs_frame_dec *d)
{
	drop_buf(d);
	d->hdr_have = 0;
	d->need = d->have = 0;
	d->skipping = false;
}
