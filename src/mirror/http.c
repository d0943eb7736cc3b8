/* http: one HTTP exchange over a reused libcurl easy handle (see http.h). */
#include "mirror/http.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define PFS_HTTP_DEF_MAX_BODY (64u << 20)
#define PFS_HTTP_MAX_HDRS 256
#define PFS_HTTP_ERR_BODY 65536

struct pfs_http {
	CURL *c;
	long timeout_ms;
};

static pthread_once_t http_once = PTHREAD_ONCE_INIT;
static CURLcode http_init_rc;

/* curl_global_init is not thread-safe before 7.84; run it exactly once. */
static void http_global_init(void)
{
	http_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

int pfs_http_new(struct pfs_http **out, long timeout_ms, char *err, size_t errlen)
{
	struct pfs_http *h;

	*out = NULL;
	pthread_once(&http_once, http_global_init);
	if (http_init_rc != CURLE_OK) {
		snprintf(err, errlen, "http: libcurl init: %s", curl_easy_strerror(http_init_rc));
		return -EIO;
	}
	h = calloc(1, sizeof(*h));
	if (!h) {
		snprintf(err, errlen, "http: out of memory");
		return -ENOMEM;
	}
	h->c = curl_easy_init();
	if (!h->c) {
		free(h);
		snprintf(err, errlen, "http: curl_easy_init failed");
		return -ENOMEM;
	}
	h->timeout_ms = timeout_ms > 0 ? timeout_ms : 30000;
	*out = h;
	return 0;
}

void pfs_http_free(struct pfs_http *h)
{
	if (!h)
		return;
	curl_easy_cleanup(h->c);
	free(h);
}

/* State of one exchange, shared by the callbacks. */
struct xfer {
	CURL *c;
	const struct pfs_http_req *rq;
	struct pfs_http_resp *rs;
	uint64_t in_done;
	size_t cap, max_body;
	size_t hcap;
	int fd_err; /* -errno of a descriptor read/write, or -ENOMEM / -EFBIG */
};

static size_t read_cb(char *buf, size_t size, size_t n, void *arg)
{
	struct xfer *x = arg;
	uint64_t left = x->rq->in_len - x->in_done;
	size_t want = size * n;
	ssize_t got;

	if (left == 0)
		return 0;
	if (want > left)
		want = (size_t)left;
	do
		got = pread(x->rq->in_fd, buf, want, (off_t)(x->rq->in_off + x->in_done));
	while (got < 0 && errno == EINTR);
	if (got < 0) {
		x->fd_err = -errno;
		return CURL_READFUNC_ABORT;
	}
	if (got == 0) {
		/* The file shrank under us: the promised length cannot be sent. */
		x->fd_err = -EIO;
		return CURL_READFUNC_ABORT;
	}
	x->in_done += (uint64_t)got;
	return (size_t)got;
}

static size_t write_cb(char *buf, size_t size, size_t n, void *arg)
{
	struct xfer *x = arg;
	size_t len = size * n, done = 0;
	long status = 0;

	/* Only a success's body goes to the caller's descriptor: an error
	 * page must not land in a file's data. It is kept in memory, and
	 * what passes a small cap is dropped (it only explains the status). */
	curl_easy_getinfo(x->c, CURLINFO_RESPONSE_CODE, &status);
	if (x->rq->out_fd >= 0 && (status < 200 || status > 299)) {
		if (x->rs->len + len > PFS_HTTP_ERR_BODY)
			return len;
	} else if (x->rq->out_fd >= 0) {
		while (done < len) {
			ssize_t w = write(x->rq->out_fd, buf + done, len - done);

			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0) {
				x->fd_err = -errno;
				return 0;
			}
			done += (size_t)w;
		}
		return len;
	}
	if (x->rq->out_fd < 0 && x->rs->len + len > x->max_body) {
		x->fd_err = -EFBIG;
		return 0;
	}
	if (x->rs->len + len + 1 > x->cap) {
		size_t ncap = x->cap ? x->cap : 4096;
		char *nb;

		while (ncap < x->rs->len + len + 1)
			ncap *= 2;
		nb = realloc(x->rs->body, ncap);
		if (!nb) {
			x->fd_err = -ENOMEM;
			return 0;
		}
		x->rs->body = nb;
		x->cap = ncap;
	}
	memcpy(x->rs->body + x->rs->len, buf, len);
	x->rs->len += len;
	x->rs->body[x->rs->len] = '\0';
	return len;
}

static void hdrs_clear(struct pfs_http_resp *rs)
{
	for (size_t i = 0; i < rs->nhdrs; i++) {
		free(rs->hdrs[i].name);
		free(rs->hdrs[i].value);
	}
	rs->nhdrs = 0;
}

static size_t header_cb(char *buf, size_t size, size_t n, void *arg)
{
	struct xfer *x = arg;
	size_t len = size * n;
	const char *colon, *v, *e;
	struct pfs_http_hdr *hd;

	/* A status line starts a new reply (100 Continue, redirects): keep
	 * only the final reply's headers. */
	if (len >= 5 && strncmp(buf, "HTTP/", 5) == 0) {
		hdrs_clear(x->rs);
		return len;
	}
	colon = memchr(buf, ':', len);
	if (!colon || colon == buf)
		return len;
	if (x->rs->nhdrs >= PFS_HTTP_MAX_HDRS)
		return len;
	if (x->rs->nhdrs == x->hcap) {
		size_t ncap = x->hcap ? x->hcap * 2 : 16;
		struct pfs_http_hdr *nh = realloc(x->rs->hdrs, ncap * sizeof(*nh));

		if (!nh) {
			x->fd_err = -ENOMEM;
			return 0;
		}
		x->rs->hdrs = nh;
		x->hcap = ncap;
	}
	v = colon + 1;
	e = buf + len;
	while (v < e && (*v == ' ' || *v == '\t'))
		v++;
	while (e > v && (e[-1] == '\r' || e[-1] == '\n' || e[-1] == ' ' || e[-1] == '\t'))
		e--;
	hd = &x->rs->hdrs[x->rs->nhdrs];
	hd->name = strndup(buf, (size_t)(colon - buf));
	hd->value = strndup(v, (size_t)(e - v));
	if (!hd->name || !hd->value) {
		free(hd->name);
		free(hd->value);
		x->fd_err = -ENOMEM;
		return 0;
	}
	for (char *p = hd->name; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	x->rs->nhdrs++;
	return len;
}

static int curl_errno(CURLcode rc)
{
	switch (rc) {
	case CURLE_COULDNT_CONNECT:
		return -ECONNREFUSED;
	case CURLE_OPERATION_TIMEDOUT:
		return -ETIMEDOUT;
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
		return -ECONNRESET;
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		return -EHOSTUNREACH;
	case CURLE_OUT_OF_MEMORY:
		return -ENOMEM;
	default:
		return -EIO;
	}
}

int pfs_http_do(struct pfs_http *h, const struct pfs_http_req *rq, struct pfs_http_resp *rs,
		char *err, size_t errlen)
{
	struct xfer x = {.c = h->c, .rq = rq, .rs = rs};
	char cerr[CURL_ERROR_SIZE] = "";
	CURL *c = h->c;
	CURLcode rc;
	int ret = 0;

	memset(rs, 0, sizeof(*rs));
	x.max_body = rq->max_body ? rq->max_body : PFS_HTTP_DEF_MAX_BODY;

	/* Reset clears the last request's options but keeps the connection
	 * cache, so the next request reuses the open connection. */
	curl_easy_reset(c);
	curl_easy_setopt(c, CURLOPT_URL, rq->url);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, h->timeout_ms);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, h->timeout_ms);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, header_cb);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, &x);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &x);
	curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
	if (rq->in_fd >= 0) {
		curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(c, CURLOPT_READFUNCTION, read_cb);
		curl_easy_setopt(c, CURLOPT_READDATA, &x);
		curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)rq->in_len);
	} else if (rq->body) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, rq->body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)rq->bodylen);
	}
	if (rq->no_body)
		curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
	/* After UPLOAD/POSTFIELDS, which set PUT/POST themselves. */
	if (!(rq->no_body && strcmp(rq->method, "HEAD") == 0))
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, rq->method);
	if (rq->headers)
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, rq->headers);
	if (rq->userpwd)
		curl_easy_setopt(c, CURLOPT_USERPWD, rq->userpwd);
	if (rq->aws_sigv4)
		curl_easy_setopt(c, CURLOPT_AWS_SIGV4, rq->aws_sigv4);

	rc = curl_easy_perform(c);
	if (x.fd_err) {
		ret = x.fd_err;
		snprintf(err, errlen, "%s %s: %s", rq->method, rq->url,
			 ret == -EFBIG ? "reply body too large" : strerror(-ret));
		goto fail;
	}
	if (rc != CURLE_OK) {
		ret = curl_errno(rc);
		snprintf(err, errlen, "%s %s: %s", rq->method, rq->url,
			 cerr[0] ? cerr : curl_easy_strerror(rc));
		goto fail;
	}
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &rs->status);
	return 0;
fail:
	pfs_http_resp_free(rs);
	return ret;
}

void pfs_http_resp_free(struct pfs_http_resp *rs)
{
	if (!rs)
		return;
	hdrs_clear(rs);
	free(rs->hdrs);
	free(rs->body);
	memset(rs, 0, sizeof(*rs));
}

const char *pfs_http_header(const struct pfs_http_resp *rs, const char *name)
{
	for (size_t i = 0; i < rs->nhdrs; i++)
		if (strcasecmp(rs->hdrs[i].name, name) == 0)
			return rs->hdrs[i].value;
	return NULL;
}

int pfs_http_errno(long status)
{
	if (status >= 200 && status < 300)
		return 0;
	switch (status) {
	case 404:
	case 410:
		return -ENOENT;
	case 412:
		return -ESTALE;
	case 401:
	case 403:
		return -EACCES;
	case 405:
	case 501:
		return -EOPNOTSUPP;
	case 507:
		return -ENOSPC;
	case 413:
		return -EFBIG;
	case 423:
		return -EBUSY;
	case 408:
		return -ETIMEDOUT;
	default:
		return -EIO;
	}
}

static int unreserved(unsigned char ch)
{
	return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
	       ch == '-' || ch == '.' || ch == '_' || ch == '~' || ch == '/';
}

char *pfs_http_escape_path(const char *path)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = 0;
	char *out, *o;

	for (const unsigned char *p = (const unsigned char *)path; *p; p++)
		n += unreserved(*p) ? 1 : 3;
	out = malloc(n + 1);
	if (!out)
		return NULL;
	o = out;
	for (const unsigned char *p = (const unsigned char *)path; *p; p++) {
		if (unreserved(*p)) {
			*o++ = (char)*p;
		} else {
			*o++ = '%';
			*o++ = hex[*p >> 4];
			*o++ = hex[*p & 15];
		}
	}
	*o = '\0';
	return out;
}

static int hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

int pfs_http_unescape(char *s)
{
	char *o = s;

	for (char *p = s; *p; p++) {
		if (*p == '%') {
			int hi = hexval(p[1]), lo = hi < 0 ? -1 : hexval(p[2]);

			if (hi < 0 || lo < 0)
				return -EINVAL;
			/* A NUL would cut the name short: not a name at all. */
			if (hi == 0 && lo == 0)
				return -EINVAL;
			*o++ = (char)(hi * 16 + lo);
			p += 2;
		} else {
			*o++ = *p;
		}
	}
	*o = '\0';
	return 0;
}

int pfs_http_parse_date(const char *s, int64_t *secs)
{
	/* IMF-fixdate and the two obsolete forms RFC 7231 says to accept. */
	static const char *const fmts[] = {"%a, %d %b %Y %H:%M:%S GMT", "%A, %d-%b-%y %H:%M:%S GMT",
					   "%a %b %e %H:%M:%S %Y"};
	struct tm tm;

	if (!s)
		return -EINVAL;
	while (*s == ' ' || *s == '\t')
		s++;
	for (size_t i = 0; i < sizeof(fmts) / sizeof(fmts[0]); i++) {
		const char *end;

		memset(&tm, 0, sizeof(tm));
		end = strptime(s, fmts[i], &tm);
		if (!end)
			continue;
		while (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n')
			end++;
		if (*end)
			continue;
		*secs = (int64_t)timegm(&tm);
		return 0;
	}
	return -EINVAL;
}

void pfs_http_format_date(int64_t secs, char *buf, size_t len)
{
	static const char *const wd[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
	static const char *const mon[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
					  "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	time_t t = (time_t)secs;
	struct tm tm;

	if (len == 0)
		return;
	/* By hand rather than strftime: %a/%b follow the locale. */
	if (!gmtime_r(&t, &tm)) {
		buf[0] = '\0';
		return;
	}
	snprintf(buf, len, "%s, %02d %s %04d %02d:%02d:%02d GMT", wd[tm.tm_wday], tm.tm_mday,
		 mon[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}
