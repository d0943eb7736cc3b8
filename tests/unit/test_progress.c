#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl/progress.h"

static void t_round_trip(void **s)
{
	struct pfs_progress a = {.files = 3, .files_total = 200, .bytes = 4096,
				 .bytes_total = UINT64_MAX, .shared = 7};
	struct pfs_progress b = {0};
	char buf[128];
	int n;

	(void)s;
	n = pfs_progress_encode(&a, buf, sizeof(buf));
	assert_true(n > 0);
	assert_int_equal((size_t)n, strlen(buf));
	assert_string_equal(buf, "progress 3 200 4096 18446744073709551615 7\n");
	buf[n - 1] = '\0';
	assert_int_equal(pfs_progress_decode(buf, &b), 0);
	assert_true(b.files == 3 && b.files_total == 200 && b.bytes == 4096 &&
		    b.bytes_total == UINT64_MAX && b.shared == 7);
	assert_int_equal(pfs_progress_encode(&a, buf, 10), -ENOSPC);
}

static void t_decode_refuses(void **s)
{
	static const char *const bad[] = {
		"", "progress", "progress 1 2 3 4", "progress 1 2 3 4 5 6", "progress 1 2 3 4 x",
		"progress  1 2 3 4 5", "progress -1 2 3 4 5", "progress +1 2 3 4 5",
		"progress 1 2 3 4 5 ", "progressive 1 2 3 4 5", "progress 1 2 3 4 18446744073709551616",
		"exit 0 dropped 0",
	};
	struct pfs_progress p = {.files = 42};

	(void)s;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(pfs_progress_decode(bad[i], &p), -EINVAL);
		assert_true(p.files == 42); /* unchanged */
	}
}

/* What the client draws from a record: one line, rewritten in place. */
static void t_redraw(void **s)
{
	struct pfs_progress p;
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	(void)s;
	assert_non_null(f);
	pfs_progress_init(&p, true, f, "commit");
	assert_int_equal(pfs_progress_decode("progress 1 4 2048 4096 0", &p), 0);
	pfs_progress_redraw(&p);
	pfs_progress_end(&p);
	fclose(f);
	assert_string_equal(text, "\rprismfs: commit: 1/4 files, 2.0 KiB/4.0 KiB\033[K\r\033[K");
	free(text);
}

static void count_sink(void *arg, const struct pfs_progress *p)
{
	uint64_t *seen = arg;

	seen[0]++;
	seen[1] = p->files;
}

/* Off: nothing drawn, but a sink still hears the counts at the pace. */
static void t_sink(void **s)
{
	struct pfs_progress p;
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	uint64_t seen[2] = {0, 0};

	(void)s;
	assert_non_null(f);
	setenv("PRISMFS_TEST_PROGRESS_MS", "0", 1);
	pfs_progress_init(&p, false, f, "commit");
	unsetenv("PRISMFS_TEST_PROGRESS_MS");
	pfs_progress_set_sink(&p, count_sink, seen);
	p.files_total = 2;
	pfs_progress_file(&p, 10);
	pfs_progress_file(&p, 10);
	pfs_progress_end(&p);
	fclose(f);
	assert_true(seen[0] == 2 && seen[1] == 2);
	assert_int_equal((int)len, 0);
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(t_round_trip),
		cmocka_unit_test(t_decode_refuses),
		cmocka_unit_test(t_redraw),
		cmocka_unit_test(t_sink),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
