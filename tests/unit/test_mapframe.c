#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "map/mapframe.h"

#define MAXMSG 256

struct seen {
	char *msgs[MAXMSG];
	size_t lens[MAXMSG];
	int nmsg;
	char errs[8][160];
	int nerr;
};

static void on_msg(const char *msg, size_t len, void *arg)
{
	struct seen *s = arg;

	assert_non_null(msg);
	assert_true(s->nmsg < MAXMSG);
	s->msgs[s->nmsg] = malloc(len + 1);
	if (!s->msgs[s->nmsg]) {
		fail();
		return;
	}
	memcpy(s->msgs[s->nmsg], msg, len);
	s->msgs[s->nmsg][len] = '\0';
	s->lens[s->nmsg++] = len;
}

static void on_err(const char *reason, void *arg)
{
	struct seen *s = arg;

	assert_true(s->nerr < 8);
	snprintf(s->errs[s->nerr++], sizeof(s->errs[0]), "%s", reason);
}

static void seen_free(struct seen *s)
{
	for (int i = 0; i < s->nmsg; i++)
		free(s->msgs[i]);
	memset(s, 0, sizeof(*s));
}

/* Appends one frame to buf at *n; returns buf for chaining. */
static unsigned char *frame(unsigned char *buf, size_t *n, uint32_t len, const char *body)
{
	buf[(*n)++] = (unsigned char)(len >> 24);
	buf[(*n)++] = (unsigned char)(len >> 16);
	buf[(*n)++] = (unsigned char)(len >> 8);
	buf[(*n)++] = (unsigned char)len;
	if (body) {
		memcpy(buf + *n, body, len);
		*n += len;
	}
	return buf;
}

static void feed(struct pfs_frame_dec *d, const void *p, size_t n, struct seen *s)
{
	assert_int_equal(pfs_frame_feed(d, p, n, on_msg, on_err, s), 0);
}

static void t_one(void **st)
{
	struct pfs_frame_dec d;
	struct seen s = {0};
	unsigned char b[64];
	size_t n = 0;

	(void)st;
	pfs_frame_init(&d, 1024);
	frame(b, &n, 8, "{\"/a\":1}");
	feed(&d, b, n, &s);
	assert_int_equal(s.nmsg, 1);
	assert_int_equal(s.lens[0], 8);
	assert_string_equal(s.msgs[0], "{\"/a\":1}");
	pfs_frame_eof(&d, on_err, &s);
	assert_int_equal(s.nerr, 0); /* a clean boundary says nothing */
	pfs_frame_free(&d);
	seen_free(&s);
}

static void check_three(const struct seen *s)
{
	assert_int_equal(s->nmsg, 3);
	assert_int_equal(s->nerr, 0);
	assert_string_equal(s->msgs[0], "hello");
	assert_int_equal(s->lens[1], 0);
	assert_string_equal(s->msgs[2], "world!");
}

static void t_split_everywhere(void **st)
{
	unsigned char b[64];
	size_t n = 0;

	(void)st;
	frame(b, &n, 5, "hello");
	frame(b, &n, 0, NULL);
	frame(b, &n, 6, "world!");
	/* Every pair of cut points: three feeds of any sizes, empty included. */
	for (size_t i = 0; i <= n; i++) {
		for (size_t j = i; j <= n; j++) {
			struct pfs_frame_dec d;
			struct seen s = {0};

			pfs_frame_init(&d, 6);
			feed(&d, b, i, &s);
			feed(&d, b + i, j - i, &s);
			feed(&d, b + j, n - j, &s);
			check_three(&s);
			pfs_frame_eof(&d, on_err, &s);
			assert_int_equal(s.nerr, 0);
			pfs_frame_free(&d);
			seen_free(&s);
		}
	}
}

static void t_byte_at_a_time(void **st)
{
	struct pfs_frame_dec d;
	struct seen s = {0};
	unsigned char *b = malloc(20000);
	char *big = malloc(10000);
	size_t n = 0;

	(void)st;
	if (!b || !big) {
		fail();
		return;
	}
	memset(big, 'x', 10000);
	frame(b, &n, 10000, big);
	frame(b, &n, 2, "ok");
	pfs_frame_init(&d, 10000);
	for (size_t i = 0; i < n; i++) {
		feed(&d, b + i, 1, &s);
		/* The buffer follows the bytes, never more than the length. */
		assert_true(d.alloc <= d.need);
		assert_true(d.have <= d.alloc);
	}
	assert_int_equal(s.nmsg, 2);
	assert_int_equal(s.lens[0], 10000);
	assert_memory_equal(s.msgs[0], big, 10000);
	assert_string_equal(s.msgs[1], "ok");
	assert_null(d.buf); /* released once its message is out */
	pfs_frame_free(&d);
	seen_free(&s);
	free(b);
	free(big);
}

static void t_burst(void **st)
{
	struct pfs_frame_dec d;
	struct seen s = {0};
	unsigned char b[4096];
	char body[16];
	size_t n = 0;

	(void)st;
	for (int i = 0; i < 200; i++) {
		int l = snprintf(body, sizeof(body), "m%d", i);

		frame(b, &n, (uint32_t)l, body);
	}
	pfs_frame_init(&d, 64);
	feed(&d, b, n, &s);
	assert_int_equal(s.nmsg, 200);
	for (int i = 0; i < 200; i++) {
		snprintf(body, sizeof(body), "m%d", i);
		assert_string_equal(s.msgs[i], body);
	}
	pfs_frame_free(&d);
	seen_free(&s);
}

static void t_zero_length(void **st)
{
	struct pfs_frame_dec d;
	struct seen s = {0};
	unsigned char b[16];
	size_t n = 0;

	(void)st;
	frame(b, &n, 0, NULL);
	frame(b, &n, 0, NULL);
	pfs_frame_init(&d, 0); /* even a zero cap lets an empty message through */
	feed(&d, b, n, &s);
	assert_int_equal(s.nmsg, 2);
	assert_int_equal(s.lens[0], 0);
	assert_int_equal(s.lens[1], 0);
	assert_int_equal(s.nerr, 0);
	pfs_frame_free(&d);
	seen_free(&s);
}

static void t_over_cap(void **st)
{
	struct pfs_frame_dec d;
	struct seen s = {0};
	unsigned char b[128];
	size_t n = 0;

	(void)st;
	pfs_frame_init(&d, 16);
	frame(b, &n, 16, "exactly 16 bytes"); /* the cap itself is fine */
	frame(b, &n, 17, "seventeen bytes!!");
	frame(b, &n, 2, "no"); /* looks valid but follows the bad frame */
	feed(&d, b, n, &s);
	assert_int_equal(s.nmsg, 1);
	assert_int_equal(s.nerr, 1);
	assert_string_equal(s.errs[0], "message of 17 bytes exceeds the 16-byte cap");
	feed(&d, b, n, &s); /* still ignored, still reported only once */
	assert_int_equal(s.nmsg, 1);
	assert_int_equal(s.nerr, 1);
	pfs_frame_eof(&d, on_err, &s);
	assert_int_equal(s.nerr, 1);
	n = 0;
	frame(b, &n, 4, "good");
	feed(&d, b, n, &s);
	assert_int_equal(s.nmsg, 2);
	assert_string_equal(s.msgs[1], "good");
	pfs_frame_free(&d);
	seen_free(&s);
}

static void t_huge_length(void **st)
{
	struct pfs_frame_dec d;
	struct seen s = {0};
	unsigned char b[64];
	size_t n = 0;

	(void)st;
	pfs_frame_init(&d, 64u << 20);
	frame(b, &n, 0xffffffffu, NULL);
	feed(&d, b, n, &s);
	assert_string_equal(s.errs[0], "message of 4294967295 bytes exceeds the 67108864-byte cap");
	pfs_frame_eof(&d, on_err, &s);

	/* Just under the cap: memory follows the data, not the claimed size. */
	n = 0;
	frame(b, &n, (64u << 20) - 1, NULL);
	memset(b + n, 'y', 10);
	feed(&d, b, n + 10, &s);
	assert_true(d.alloc <= 4096);
	pfs_frame_eof(&d, on_err, &s);
	assert_int_equal(s.nerr, 2);
	assert_string_equal(s.errs[1], "partial message: got 10 of 67108863 bytes");
	assert_null(d.buf);
	assert_int_equal(s.nmsg, 0);
	pfs_frame_free(&d);
	seen_free(&s);
}

static void t_partial(void **st)
{
	struct pfs_frame_dec d;
	struct seen s = {0};
	unsigned char b[64];
	size_t n = 0;

	(void)st;
	pfs_frame_init(&d, 1024);
	frame(b, &n, 10, "0123456789");
	feed(&d, b, 7, &s); /* header and 3 bytes */
	pfs_frame_eof(&d, on_err, &s);
	assert_int_equal(s.nerr, 1);
	assert_string_equal(s.errs[0], "partial message: got 3 of 10 bytes");
	feed(&d, b, 2, &s);
	pfs_frame_eof(&d, on_err, &s);
	assert_int_equal(s.nerr, 2);
	assert_string_equal(s.errs[1], "partial length header: got 2 of 4 bytes");
	feed(&d, b, 4, &s); /* the whole header, no body yet */
	pfs_frame_eof(&d, on_err, &s);
	assert_string_equal(s.errs[2], "partial message: got 0 of 10 bytes");
	/* The next writer starts afresh. */
	feed(&d, b, n, &s);
	assert_int_equal(s.nmsg, 1);
	assert_string_equal(s.msgs[0], "0123456789");
	pfs_frame_eof(&d, on_err, &s);
	pfs_frame_eof(&d, on_err, &s);
	assert_int_equal(s.nerr, 3);
	pfs_frame_free(&d);
	seen_free(&s);
}

static void t_free_midway(void **st)
{
	struct pfs_frame_dec d;
	struct seen s = {0};
	unsigned char b[64];
	size_t n = 0;

	(void)st;
	pfs_frame_init(&d, 1024);
	frame(b, &n, 10, "0123456789");
	feed(&d, b, 9, &s);
	assert_non_null(d.buf);
	pfs_frame_free(&d); /* LeakSanitizer checks the buffer went */
	assert_null(d.buf);
	/* No callbacks is fine too. */
	pfs_frame_init(&d, 4);
	assert_int_equal(pfs_frame_feed(&d, b, n, NULL, NULL, NULL), 0);
	pfs_frame_eof(&d, NULL, NULL);
	pfs_frame_free(&d);
	seen_free(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(t_one),         cmocka_unit_test(t_split_everywhere),
		cmocka_unit_test(t_byte_at_a_time), cmocka_unit_test(t_burst),
		cmocka_unit_test(t_zero_length), cmocka_unit_test(t_over_cap),
		cmocka_unit_test(t_huge_length), cmocka_unit_test(t_partial),
		cmocka_unit_test(t_free_midway),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
