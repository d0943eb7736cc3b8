#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "mirror/dav_int.h"
#include "mirror/http.h"
#include "mirror/remote.h"

static void t_escape(void **s)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
		{"", ""},
		{"a/b c", "a/b%20c"},
		{"dir/file-1.txt_~", "dir/file-1.txt_~"},
		{"100%", "100%25"},
		{"q?x#y&z=1+2", "q%3Fx%23y%26z%3D1%2B2"},
		{"\xc3\xa9t\xc3\xa9", "%C3%A9t%C3%A9"},
		{"a:b;c@d", "a%3Ab%3Bc%40d"},
	};

	(void)s;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *e = pfs_http_escape_path(cases[i].in);

		assert_non_null(e);
		assert_string_equal(e, cases[i].out);
		/* Every escape comes back to the original bytes. */
		assert_int_equal(pfs_http_unescape(e), 0);
		assert_string_equal(e, cases[i].in);
		free(e);
	}
}

static void t_unescape(void **s)
{
	static const char *const bad[] = {"%", "%4", "%G0", "a%zz", "%00", "x%0"};
	char buf[64];

	(void)s;
	strcpy(buf, "%c3%A9%20x");
	assert_int_equal(pfs_http_unescape(buf), 0);
	assert_string_equal(buf, "\xc3\xa9 x");
	strcpy(buf, "plain+name");
	assert_int_equal(pfs_http_unescape(buf), 0);
	assert_string_equal(buf, "plain+name");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		strcpy(buf, bad[i]);
		assert_int_equal(pfs_http_unescape(buf), -EINVAL);
	}
}

static void t_date(void **s)
{
	char buf[64];
	int64_t t = -1;

	(void)s;
	assert_int_equal(pfs_http_parse_date("Sun, 06 Nov 1994 08:49:37 GMT", &t), 0);
	assert_int_equal(t, 784111777);
	/* The obsolete forms RFC 7231 7.1.1.1 says a recipient accepts. */
	assert_int_equal(pfs_http_parse_date("Sunday, 06-Nov-94 08:49:37 GMT", &t), 0);
	assert_int_equal(t, 784111777);
	assert_int_equal(pfs_http_parse_date("Sun Nov  6 08:49:37 1994", &t), 0);
	assert_int_equal(t, 784111777);
	pfs_http_format_date(784111777, buf, sizeof(buf));
	assert_string_equal(buf, "Sun, 06 Nov 1994 08:49:37 GMT");
	pfs_http_format_date(0, buf, sizeof(buf));
	assert_string_equal(buf, "Thu, 01 Jan 1970 00:00:00 GMT");
	assert_int_equal(pfs_http_parse_date(buf, &t), 0);
	assert_int_equal(t, 0);
	pfs_http_format_date(4102444799, buf, sizeof(buf));
	assert_int_equal(pfs_http_parse_date(buf, &t), 0);
	assert_int_equal(t, 4102444799);
	assert_int_equal(pfs_http_parse_date("yesterday", &t), -EINVAL);
	assert_int_equal(pfs_http_parse_date("Sun, 06 Nov 1994 08:49:37 GMT junk", &t), -EINVAL);
	assert_int_equal(pfs_http_parse_date("", &t), -EINVAL);
	assert_int_equal(pfs_http_parse_date(NULL, &t), -EINVAL);
}

static void t_errno(void **s)
{
	(void)s;
	assert_int_equal(pfs_http_errno(200), 0);
	assert_int_equal(pfs_http_errno(201), 0);
	assert_int_equal(pfs_http_errno(204), 0);
	assert_int_equal(pfs_http_errno(207), 0);
	assert_int_equal(pfs_http_errno(404), -ENOENT);
	assert_int_equal(pfs_http_errno(412), -ESTALE);
	assert_int_equal(pfs_http_errno(401), -EACCES);
	assert_int_equal(pfs_http_errno(403), -EACCES);
	assert_int_equal(pfs_http_errno(405), -EOPNOTSUPP);
	assert_int_equal(pfs_http_errno(501), -EOPNOTSUPP);
	assert_int_equal(pfs_http_errno(507), -ENOSPC);
	assert_int_equal(pfs_http_errno(413), -EFBIG);
	assert_int_equal(pfs_http_errno(423), -EBUSY);
	assert_int_equal(pfs_http_errno(500), -EIO);
	assert_int_equal(pfs_http_errno(503), -EIO);
	assert_int_equal(pfs_http_errno(302), -EIO);
}

/* A refused connection is a transport errno, not a status. */
static void t_refused(void **s)
{
	struct pfs_http *h = NULL;
	struct pfs_http_resp rs;
	struct pfs_http_req rq = {.method = "GET", .in_fd = -1, .out_fd = -1};
	char err[256] = "", url[64];
	int rc, port;

	(void)s;
	/* A port bound but not listening: held for the test, so nothing else
	 * can take it, and a connect() to it is refused. */
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);
	int sk = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(sk >= 0);
	assert_int_equal(bind(sk, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(getsockname(sk, (struct sockaddr *)&sa, &sl), 0);
	port = ntohs(sa.sin_port);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/x", port);
	rq.url = url;
	assert_int_equal(pfs_http_new(&h, 5000, err, sizeof(err)), 0);
	rc = pfs_http_do(h, &rq, &rs, err, sizeof(err));
	assert_int_equal(rc, -ECONNREFUSED);
	assert_non_null(strstr(err, "GET"));
	pfs_http_free(h);
	close(sk);
}

static int collect(const char *href, const struct pfs_rstat *st, void *arg)
{
	struct pfs_rlist *l = arg;

	return pfs_rlist_add(l, href, st);
}

/* A multistatus as Apache writes it: a 200 and a 404 propstat, our dead
 * properties, an absolute href; the mtime we kept wins over Last-Modified. */
static void t_multistatus(void **s)
{
	static const char xml[] =
		"<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"
		"<D:multistatus xmlns:D=\"DAV:\" xmlns:ns1=\"" PFS_DAV_NS "\">"
		"<D:response><D:href>/r/dir/</D:href><D:propstat><D:prop>"
		"<D:resourcetype><D:collection/></D:resourcetype>"
		"<D:getlastmodified>Sun, 06 Nov 1994 08:49:37 GMT</D:getlastmodified>"
		"</D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat>"
		"<D:propstat><D:prop><D:getetag/><ns1:mode/></D:prop>"
		"<D:status>HTTP/1.1 404 Not Found</D:status></D:propstat></D:response>"
		"<D:response><D:href>http://h:1/r/dir/a%20b</D:href><D:propstat><D:prop>"
		"<D:resourcetype/><D:getcontentlength>42</D:getcontentlength>"
		"<D:getlastmodified>Sun, 06 Nov 1994 08:49:37 GMT</D:getlastmodified>"
		"<D:getetag>\"2a-5f\"</D:getetag><ns1:mode>0640</ns1:mode><ns1:uid>7</ns1:uid>"
		"<ns1:gid>8</ns1:gid><ns1:mtime>1000000000.000000005</ns1:mtime>"
		"</D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>"
		"</D:multistatus>";
	struct pfs_rlist l = {0};
	char err[128];

	(void)s;
	assert_int_equal(pfs_dav_parse_multistatus(xml, strlen(xml), collect, &l, err, sizeof(err)), 0);
	assert_int_equal(l.n, 2);
	assert_string_equal(l.v[0].name, "/r/dir/");
	assert_true(l.v[0].st.dir && l.v[0].st.has == 0 && l.v[0].st.etag[0] == '\0');
	assert_int_equal(l.v[0].st.mtime.tv_sec, 784111777);
	assert_string_equal(l.v[1].name, "http://h:1/r/dir/a%20b");
	assert_false(l.v[1].st.dir);
	assert_int_equal(l.v[1].st.size, 42);
	assert_string_equal(l.v[1].st.etag, "\"2a-5f\"");
	assert_int_equal(l.v[1].st.has, PFS_RMETA_MODE | PFS_RMETA_OWNER | PFS_RMETA_MTIME);
	assert_int_equal(l.v[1].st.mode, 0640);
	assert_int_equal(l.v[1].st.uid, 7);
	assert_int_equal(l.v[1].st.gid, 8);
	assert_int_equal(l.v[1].st.mtime.tv_sec, 1000000000);
	assert_int_equal(l.v[1].st.mtime.tv_nsec, 5);
	pfs_rlist_free(&l);
	assert_int_equal(pfs_dav_parse_multistatus("<html/>", 7, collect, &l, err, sizeof(err)), -EIO);
	assert_int_equal(pfs_dav_parse_multistatus("not xml", 7, collect, &l, err, sizeof(err)), -EIO);
	assert_int_equal(l.n, 0);
}

static void t_proppatch(void **s)
{
	static const char ok[] =
		"<D:multistatus xmlns:D=\"DAV:\"><D:response><D:href>/x</D:href><D:propstat>"
		"<D:prop><m/></D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat>"
		"</D:response></D:multistatus>";
	static const char refused[] =
		"<D:multistatus xmlns:D=\"DAV:\"><D:response><D:href>/x</D:href><D:propstat>"
		"<D:prop><m/></D:prop><D:status>HTTP/1.1 403 Forbidden</D:status></D:propstat>"
		"</D:response></D:multistatus>";
	struct pfs_rmeta m = {.has = PFS_RMETA_MODE | PFS_RMETA_MTIME, .mode = 0755,
			      .mtime = {.tv_sec = 12, .tv_nsec = 34}};
	char err[128], *body;

	(void)s;
	assert_int_equal(pfs_dav_parse_proppatch(ok, strlen(ok), err, sizeof(err)), 0);
	assert_int_equal(pfs_dav_parse_proppatch(refused, strlen(refused), err, sizeof(err)),
			 -EOPNOTSUPP);
	body = pfs_dav_proppatch_body(&m);
	assert_non_null(body);
	assert_non_null(strstr(body, "<P:mode>0755</P:mode>"));
	assert_non_null(strstr(body, "<P:mtime>12.000000034</P:mtime>"));
	assert_null(strstr(body, "uid"));
	free(body);
}

static void t_rlist(void **s)
{
	struct pfs_rlist l = {0};
	struct pfs_rstat st = {.size = 7};
	char name[32];

	(void)s;
	for (int i = 0; i < 1000; i++) {
		snprintf(name, sizeof(name), "f%04d", i);
		st.size = (uint64_t)i;
		assert_int_equal(pfs_rlist_add(&l, name, &st), 0);
	}
	assert_int_equal(l.n, 1000);
	assert_string_equal(l.v[999].name, "f0999");
	assert_int_equal(l.v[500].st.size, 500);
	pfs_rlist_free(&l);
	assert_null(l.v);
	assert_int_equal(l.n, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(t_escape),  cmocka_unit_test(t_unescape),
		cmocka_unit_test(t_date),    cmocka_unit_test(t_errno),
		cmocka_unit_test(t_refused), cmocka_unit_test(t_rlist),
		cmocka_unit_test(t_multistatus), cmocka_unit_test(t_proppatch),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
