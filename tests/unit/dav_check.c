/* dav_check: drive every pfs_remote_ops call of the WebDAV client against
 * a real server and check what really happened. Not run by `meson test`
 * (it needs a server): tests/integration/test_remote_dav.py starts Apache
 * and nginx and runs it, then reads the server's directory itself.
 *
 * usage: dav_check URL KEEPDIR
 * URL's root must be empty. KEEPDIR receives big.bin, the 20 MiB source
 * of the round trip, for the caller to compare with the server's copy.
 * Prints "caps ...", one "ok NAME" per check, and "list-begin"/"list-end"
 * around the one listing of 1,000 names (the caller counts requests in the
 * server's log between them). Exit 0 when every check held. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mirror/remote.h"

static int failures;
static char err[512];

#define CHECK(cond, ...)                                                                  \
	do {                                                                              \
		if (!(cond)) {                                                            \
			printf("FAIL line %d: %s: ", __LINE__, #cond);                    \
			printf(__VA_ARGS__);                                              \
			printf(" [%s]\n", err);                                           \
			failures++;                                                       \
		}                                                                         \
	} while (0)

#define BIG (20u << 20)

/* A file of n bytes: a fixed pseudo-random sequence, so that a shift or a
 * dropped block cannot compare equal. */
static int make_file(const char *path, size_t n, uint32_t seed)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	uint32_t buf[16384], x = seed | 1;

	if (fd < 0)
		return -1;
	for (size_t done = 0; done < n;) {
		size_t k = n - done < sizeof(buf) ? n - done : sizeof(buf);

		for (size_t i = 0; i < sizeof(buf) / 4; i++) {
			x ^= x << 13;
			x ^= x >> 17;
			x ^= x << 5;
			buf[i] = x;
		}
		if (write(fd, buf, k) != (ssize_t)k) {
			close(fd);
			return -1;
		}
		done += k;
	}
	return fd;
}

static int tmp_fd(void)
{
	char t[] = "/tmp/dav_check.XXXXXX";
	int fd = mkstemp(t);

	if (fd >= 0)
		unlink(t);
	return fd;
}

/* Two descriptors' whole contents equal? */
static bool same(int a, int b)
{
	static char ba[1 << 16], bb[1 << 16];
	off_t off = 0;

	for (;;) {
		ssize_t na = pread(a, ba, sizeof(ba), off), nb = pread(b, bb, sizeof(bb), off);

		if (na < 0 || na != nb || memcmp(ba, bb, (size_t)na) != 0)
			return false;
		if (na == 0)
			return true;
		off += na;
	}
}

static int put_str(struct pfs_remote *r, const char *path, const char *s, const char *if_match,
		   const struct pfs_rmeta *m, struct pfs_rstat *out)
{
	int fd = tmp_fd(), ret;

	if (fd < 0 || write(fd, s, strlen(s)) != (ssize_t)strlen(s))
		return -EIO;
	ret = r->ops->put(r, path, fd, strlen(s), m, if_match, out, err, sizeof(err));
	close(fd);
	return ret;
}

/* path's content equals s. */
static bool holds(struct pfs_remote *r, const char *path, const char *s)
{
	struct pfs_rstat st;
	char buf[256];
	int fd = tmp_fd();
	ssize_t n;
	bool ok;

	if (fd < 0 || r->ops->get(r, path, fd, &st, err, sizeof(err)) != 0) {
		if (fd >= 0)
			close(fd);
		return false;
	}
	n = pread(fd, buf, sizeof(buf), 0);
	ok = n == (ssize_t)strlen(s) && memcmp(buf, s, (size_t)n) == 0;
	close(fd);
	return ok;
}

static void caps_line(const struct pfs_remote *r)
{
	static const struct {
		unsigned bit;
		const char *name;
	} names[] = {{PFS_RCAP_IF_MATCH, "if_match"},   {PFS_RCAP_META, "meta"},
		     {PFS_RCAP_MTIME_DATE, "mtime_date"}, {PFS_RCAP_RANGE_PUT, "range_put"},
		     {PFS_RCAP_DEL_COND, "del_cond"},     {PFS_RCAP_ETAG, "etag"}};

	printf("server %s\ncaps", r->server);
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (r->caps & names[i].bit)
			printf(" %s", names[i].name);
	printf("\n");
}

static void check_big(struct pfs_remote *r, const char *keep)
{
	char path[4096];
	struct pfs_rstat st, gst;
	int src, dst;

	snprintf(path, sizeof(path), "%s/big.bin", keep);
	src = make_file(path, BIG, 20261206);
	dst = tmp_fd();
	CHECK(src >= 0 && dst >= 0, "temporary files");
	if (src < 0 || dst < 0)
		return;
	CHECK(r->ops->mkdir(r, "d", NULL, err, sizeof(err)) == 0, "mkdir d");
	CHECK(r->ops->mkdir(r, "d", NULL, err, sizeof(err)) == -EEXIST, "mkdir d again");
	CHECK(r->ops->put(r, "d/big.bin", src, BIG, NULL, "*", &st, err, sizeof(err)) == 0,
	      "put big");
	CHECK(!st.dir && st.size == BIG, "put's stat: size %llu", (unsigned long long)st.size);
	CHECK(r->ops->get(r, "d/big.bin", dst, &gst, err, sizeof(err)) == 0, "get big");
	CHECK(gst.size == BIG && same(src, dst), "round trip content");
	if (r->caps & PFS_RCAP_ETAG)
		CHECK(strcmp(gst.etag, st.etag) == 0, "etag get %s put %s", gst.etag, st.etag);
	printf("ok big %u\n", BIG);

	/* A create where the name exists: refused, content unchanged. */
	if (r->caps & PFS_RCAP_IF_MATCH) {
		CHECK(put_str(r, "d/big.bin", "small", "*", NULL, NULL) == -ESTALE,
		      "conditional create over an existing file");
		CHECK(ftruncate(dst, 0) == 0 && lseek(dst, 0, SEEK_SET) == 0, "truncate");
		CHECK(r->ops->get(r, "d/big.bin", dst, &gst, err, sizeof(err)) == 0 &&
			      same(src, dst),
		      "content kept after a refused create");
		printf("ok create-refused\n");
	}
	close(src);
	close(dst);
}

static void check_etag(struct pfs_remote *r)
{
	struct pfs_rstat st, st2;
	char e1[128];

	CHECK(put_str(r, "d/e.txt", "one", NULL, NULL, &st) == 0, "put e.txt");
	CHECK(r->ops->stat(r, "d/e.txt", &st2, err, sizeof(err)) == 0 && st2.size == 3,
	      "stat e.txt");
	CHECK(st2.etag[0] != '\0', "an etag (PROPFIND or HEAD)");
	snprintf(e1, sizeof(e1), "%s", st2.etag);
	if (!(r->caps & PFS_RCAP_IF_MATCH))
		return;
	CHECK(put_str(r, "d/e.txt", "two!", e1, NULL, &st) == 0, "put with the current etag %s",
	      e1);
	CHECK(strcmp(st.etag, e1) != 0, "the etag changed");
	CHECK(put_str(r, "d/e.txt", "three", e1, NULL, NULL) == -ESTALE, "put with a stale etag");
	CHECK(holds(r, "d/e.txt", "two!"), "content of the last accepted put");
	printf("ok stale-etag\n");
}

static void check_move_remove(struct pfs_remote *r)
{
	struct pfs_rstat st;

	CHECK(r->ops->mkdir(r, "m1", NULL, err, sizeof(err)) == 0, "mkdir m1");
	CHECK(r->ops->mkdir(r, "m1/sub", NULL, err, sizeof(err)) == 0, "mkdir m1/sub");
	CHECK(put_str(r, "m1/sub/a", "alpha", NULL, NULL, NULL) == 0, "put m1/sub/a");
	CHECK(r->ops->move(r, "m1", "m2", true, true, err, sizeof(err)) == 0, "move m1 m2");
	CHECK(r->ops->stat(r, "m1", &st, err, sizeof(err)) == -ENOENT, "m1 gone");
	CHECK(r->ops->stat(r, "m2", &st, err, sizeof(err)) == 0 && st.dir, "m2 a directory");
	CHECK(holds(r, "m2/sub/a", "alpha"), "m2/sub/a moved with it");
	printf("ok move-dir\n");

	CHECK(put_str(r, "x1", "first", NULL, NULL, NULL) == 0, "put x1");
	CHECK(put_str(r, "x2", "second", NULL, NULL, NULL) == 0, "put x2");
	CHECK(r->ops->move(r, "x1", "x2", false, true, err, sizeof(err)) == -EEXIST,
	      "noreplace onto x2");
	CHECK(holds(r, "x1", "first") && holds(r, "x2", "second"), "both kept");
	CHECK(r->ops->move(r, "x1", "x2", false, false, err, sizeof(err)) == 0, "replace x2");
	CHECK(r->ops->stat(r, "x1", &st, err, sizeof(err)) == -ENOENT, "x1 gone");
	CHECK(holds(r, "x2", "first"), "x2 replaced");
	CHECK(r->ops->move(r, "nothere", "x3", false, true, err, sizeof(err)) == -ENOENT,
	      "move of a missing name");
	printf("ok move-noreplace\n");

	CHECK(r->ops->remove(r, "nothere", false, NULL, err, sizeof(err)) == -ENOENT,
	      "remove missing");
	CHECK(r->ops->remove(r, "nodir", true, NULL, err, sizeof(err)) == -ENOENT,
	      "remove missing dir");
	CHECK(r->ops->remove(r, "m2", true, NULL, err, sizeof(err)) == -ENOTEMPTY,
	      "remove a non-empty dir");
	CHECK(holds(r, "m2/sub/a", "alpha"), "kept after the refused rmdir");
	CHECK(r->ops->mkdir(r, "gone", NULL, err, sizeof(err)) == 0, "mkdir gone");
	CHECK(put_str(r, "gone.txt", "x", NULL, NULL, NULL) == 0, "put gone.txt");
	CHECK(r->ops->remove(r, "gone", true, NULL, err, sizeof(err)) == 0, "rmdir gone");
	CHECK(r->ops->remove(r, "gone.txt", false, NULL, err, sizeof(err)) == 0, "rm gone.txt");
	CHECK(r->ops->stat(r, "gone", &st, err, sizeof(err)) == -ENOENT, "gone is gone");
	CHECK(r->ops->stat(r, "gone.txt", &st, err, sizeof(err)) == -ENOENT, "gone.txt is gone");
	CHECK(r->ops->get(r, "gone.txt", 1, &st, err, sizeof(err)) == -ENOENT, "get missing");
	CHECK(put_str(r, "no/parent", "x", NULL, NULL, NULL) == -ENOENT,
	      "put with a missing parent");
	printf("ok remove\n");
}

static void check_list(struct pfs_remote *r)
{
	struct pfs_rlist l = {0};
	char name[32];
	bool seen[1000] = {false};
	size_t good = 0;
	int ret;

	CHECK(r->ops->mkdir(r, "many", NULL, err, sizeof(err)) == 0, "mkdir many");
	for (int i = 0; i < 1000; i++) {
		snprintf(name, sizeof(name), "many/f %04d", i);
		if (put_str(r, name, name, NULL, NULL, NULL) != 0) {
			CHECK(0, "put %s", name);
			return;
		}
	}
	printf("list-begin\n");
	fflush(stdout);
	ret = r->ops->list(r, "many", &l, err, sizeof(err));
	printf("list-end\n");
	CHECK(ret == 0 && l.n == 1000, "list many: %d, %zu names", ret, l.n);
	for (size_t i = 0; i < l.n; i++) {
		int k;

		if (sscanf(l.v[i].name, "f %04d", &k) == 1 && k >= 0 && k < 1000 && !seen[k] &&
		    !l.v[i].st.dir && l.v[i].st.size == strlen("many/f 0000")) {
			seen[k] = true;
			good++;
		}
	}
	CHECK(good == 1000, "%zu names as written", good);
	pfs_rlist_free(&l);
	CHECK(r->ops->list(r, "x2", &l, err, sizeof(err)) == -ENOTDIR, "list of a file");
	CHECK(r->ops->list(r, "nodir", &l, err, sizeof(err)) == -ENOENT, "list of nothing");
	printf("ok list 1000\n");
}

static void check_meta(struct pfs_remote *r)
{
	struct pfs_rmeta m = {.has = PFS_RMETA_MODE | PFS_RMETA_OWNER | PFS_RMETA_MTIME,
			      .mode = 0604, .uid = 1234, .gid = 5678,
			      .mtime = {.tv_sec = 1234567890, .tv_nsec = 500000000}};
	struct pfs_rstat st;

	if (!(r->caps & PFS_RCAP_META)) {
		CHECK(r->ops->setmeta(r, "x2", false, &m, NULL, err, sizeof(err)) == -EOPNOTSUPP,
		      "setmeta without the capability");
		if (r->caps & PFS_RCAP_MTIME_DATE) {
			CHECK(put_str(r, "dated", "d", NULL, &m, &st) == 0, "put with a Date");
			CHECK(st.mtime.tv_sec == m.mtime.tv_sec, "mtime from Date: %lld",
			      (long long)st.mtime.tv_sec);
			printf("ok mtime-date\n");
		}
		return;
	}
	CHECK(r->ops->setmeta(r, "x2", false, &m, &st, err, sizeof(err)) == 0, "setmeta x2");
	CHECK(r->ops->stat(r, "x2", &st, err, sizeof(err)) == 0, "stat x2");
	CHECK(st.has == m.has && st.mode == m.mode && st.uid == m.uid && st.gid == m.gid &&
		      st.mtime.tv_sec == m.mtime.tv_sec && st.mtime.tv_nsec == m.mtime.tv_nsec,
	      "metadata back: has %u mode %o uid %u gid %u", st.has, (unsigned)st.mode,
	      (unsigned)st.uid, (unsigned)st.gid);
	m.mode = 0711;
	m.has = PFS_RMETA_MODE;
	CHECK(r->ops->mkdir(r, "metadir", &m, err, sizeof(err)) == 0, "mkdir with meta");
	CHECK(r->ops->stat(r, "metadir", &st, err, sizeof(err)) == 0 && st.dir &&
		      (st.has & PFS_RMETA_MODE) && st.mode == 0711,
	      "directory mode back");
	m.has = PFS_RMETA_MTIME;
	m.mtime.tv_sec = 999999999;
	CHECK(put_str(r, "dated", "d", NULL, &m, &st) == 0 && st.mtime.tv_sec == 999999999,
	      "put with meta");
	printf("ok meta\n");
}

int main(int argc, char **argv)
{
	struct pfs_remote_opts o = {.timeout_ms = 60000};
	struct pfs_remote *r = NULL;
	int ret;

	if (argc != 3) {
		fprintf(stderr, "usage: dav_check URL KEEPDIR\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	ret = pfs_dav_open(&r, argv[1], &o, err, sizeof(err));
	if (ret) {
		printf("FAIL open: %s\n", err);
		return 1;
	}
	caps_line(r);
	check_big(r, argv[2]);
	check_etag(r);
	check_move_remove(r);
	check_list(r);
	check_meta(r);
	r->ops->close(r);
	printf(failures ? "failures %d\n" : "all ok\n", failures);
	return failures ? 1 : 0;
}
