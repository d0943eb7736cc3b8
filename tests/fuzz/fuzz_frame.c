/* libFuzzer target: the pipe decoder, fed the input in pieces and with EOFs
 * at places the input chooses, must report exactly what a whole-buffer
 * reference parse of each writer's bytes reports.
 * Input: byte 0 picks the piece sizes, byte 1 how often a writer closes,
 * byte 2 the cap (4, 8 or 16 KiB, so that buffers have to double), the rest
 * is the stream. */
#include "map/mapframe.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(c)                                                                     \
	do {                                                                         \
		if (!(c)) {                                                          \
			fprintf(stderr, "check failed: %s (%s:%d)\n", #c, __FILE__, __LINE__); \
			abort();                                                     \
		}                                                                    \
	} while (0)

/* Every event, in order, folded into one digest. */
struct trace {
	uint64_t h;
	size_t cap;
	size_t msgs, errs;
	size_t errs_since_eof;
};

static void mix(struct trace *t, const void *p, size_t n)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < n; i++) {
		t->h ^= b[i];
		t->h *= 1099511628211ull;
	}
}

static void on_msg(const char *msg, size_t len, void *arg)
{
	struct trace *t = arg;

	CHECK(msg && len <= t->cap);
	mix(t, "M", 1);
	mix(t, &len, sizeof(len));
	mix(t, msg, len);
	t->msgs++;
}

static void on_err(const char *reason, void *arg)
{
	struct trace *t = arg;

	CHECK(reason && reason[0] && !strchr(reason, '\n'));
	mix(t, "E", 1);
	mix(t, reason, strlen(reason) + 1);
	t->errs++;
	t->errs_since_eof++;
}

/* What one writer's bytes should produce, parsed in one go. */
static void reference(const unsigned char *p, size_t n, struct trace *t)
{
	char reason[160];
	size_t pos = 0;

	while (pos < n) {
		size_t len;

		if (n - pos < 4) {
			snprintf(reason, sizeof(reason), "partial length header: got %zu of 4 bytes",
				 n - pos);
			on_err(reason, t);
			return;
		}
		len = (size_t)p[pos] << 24 | (size_t)p[pos + 1] << 16 | (size_t)p[pos + 2] << 8 |
		      p[pos + 3];
		pos += 4;
		if (len > t->cap) {
			snprintf(reason, sizeof(reason),
				 "message of %zu bytes exceeds the %zu-byte cap", len, t->cap);
			on_err(reason, t);
			return;
		}
		if (n - pos < len) {
			snprintf(reason, sizeof(reason), "partial message: got %zu of %zu bytes",
				 n - pos, len);
			on_err(reason, t);
			return;
		}
		on_msg((const char *)p + pos, len, t);
		pos += len;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct trace got = {.h = 14695981039346656037ull}, want;
	struct pfs_frame_dec d;
	unsigned seed = size > 0 ? data[0] : 0, every = size > 1 ? data[1] : 0;
	const unsigned char *s = size > 3 ? data + 3 : data;
	size_t n = size > 3 ? size - 3 : 0, pos = 0, seg = 0, piece = 0;

	got.cap = (size_t)4096 << (size > 2 ? data[2] % 3 : 0);
	want = got;
	pfs_frame_init(&d, got.cap);
	while (pos < n) {
		/* Piece sizes from the stream itself: 1..37 bytes, or all at
		 * once when the seed's top bit says so. */
		size_t len = seed & 0x80 ? n - pos : 1 + (s[pos] ^ seed) % 37;

		if (len > n - pos)
			len = n - pos;
		CHECK(pfs_frame_feed(&d, s + pos, len, on_msg, on_err, &got) == 0);
		CHECK(d.hdr_have <= 4 && d.have <= d.need && d.have <= d.alloc);
		/* Memory follows the data and never exceeds the length. */
		CHECK(d.alloc <= d.need && (d.alloc == 0) == (d.buf == NULL));
		CHECK(got.errs_since_eof <= 1);
		pos += len;
		if (every && ++piece % every == 0) {
			pfs_frame_eof(&d, on_err, &got);
			got.errs_since_eof = 0;
			reference(s + seg, pos - seg, &want);
			seg = pos;
		}
	}
	pfs_frame_eof(&d, on_err, &got);
	reference(s + seg, pos - seg, &want);
	CHECK(d.buf == NULL && d.hdr_have == 0 && !d.skipping);
	CHECK(got.msgs == want.msgs && got.errs == want.errs && got.h == want.h);
	pfs_frame_free(&d);
	return 0;
}
