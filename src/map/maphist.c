/* maphist: the table's text and the way between view and SOURCE paths, for
 * the history (maphist.h). */
#include "map/maphist.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *pfs_map_dump(const struct pfs_map *m)
{
	json_t *o = json_object();
	const struct pfs_map_entry *e;
	size_t n;
	char *s = NULL;

	if (!o)
		return NULL;
	e = pfs_map_entries(m, &n);
	for (size_t i = 0; i < n; i++) {
		json_t *v = json_object();
		char mode[16];

		if (!v)
			goto out;
		if (e[i].target)
			json_object_set_new(v, "target", json_string(e[i].target));
		if (e[i].has_mode) {
			snprintf(mode, sizeof(mode), "0%o", (unsigned)e[i].mode);
			json_object_set_new(v, "mode", json_string(mode));
		}
		if (e[i].has_uid)
			json_object_set_new(v, "uid", json_integer(e[i].uid));
		if (e[i].has_gid)
			json_object_set_new(v, "gid", json_integer(e[i].gid));
		if (e[i].readonly)
			json_object_set_new(v, "readonly", json_true());
		json_object_set_new(o, e[i].key, v);
	}
	s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
out:
	json_decref(o);
	return s;
}

/* in normalised (no empty, "." or ".." component), relative ("a/b", "")
 * or absolute ("/a/b", "/"): 0, -EXDEV (a ".." above the start),
 * -ENAMETOOLONG. */
static int norm(const char *in, char *out, size_t len)
{
	size_t o = 0;
	bool abs = in[0] == '/';

	if (len < 2)
		return -ENAMETOOLONG;
	if (abs)
		out[o++] = '/';
	out[o] = '\0';
	for (const char *c = in; *c;) {
		size_t n = strcspn(c, "/");

		if (n == 0 || (n == 1 && c[0] == '.')) {
			/* nothing */
		} else if (n == 2 && c[0] == '.' && c[1] == '.') {
			char *s;

			if (o == (size_t)abs)
				return -EXDEV;
			out[o] = '\0';
			s = strrchr(out, '/');
			o = s ? (size_t)(s - out) : 0;
			if (abs && o == 0)
				o = 1;
		} else {
			if (o > (size_t)abs)
				out[o++] = '/';
			if (o + n + 1 > len)
				return -ENAMETOOLONG;
			memcpy(out + o, c, n);
			o += n;
		}
		out[o] = '\0';
		c += n + (c[n] == '/');
	}
	return 0;
}

/* p under dir ("/x" or "/x/y"): the rest after it (no leading '/'), or NULL. */
static const char *under(const char *p, const char *dir)
{
	size_t n;

	if (!dir || !*dir)
		return NULL;
	n = strlen(dir);
	while (n > 1 && dir[n - 1] == '/')
		n--;
	if (n == 1 && dir[0] == '/')
		return p + 1;
	if (strncmp(p, dir, n) != 0 || (p[n] != '\0' && p[n] != '/'))
		return NULL;
	return p[n] ? p + n + 1 : p + n;
}

/* A target as a path in SOURCE: 1 relative, 0 absolute outside, -errno. */
static int target_path(const char *target, const char *source, const char *mnt, char *out,
		       size_t len)
{
	char buf[4096];
	const char *r;
	int ret = norm(target, buf, sizeof(buf));

	if (ret < 0)
		return ret;
	if (buf[0] != '/')
		return (size_t)snprintf(out, len, "%s", buf) < len ? 1 : -ENAMETOOLONG;
	r = under(buf, source);
	if (!r)
		r = under(buf, mnt);
	if (r)
		return (size_t)snprintf(out, len, "%s", r) < len ? 1 : -ENAMETOOLONG;
	return (size_t)snprintf(out, len, "%s", buf) < len ? 0 : -ENAMETOOLONG;
}

int pfs_map_to_source(const struct pfs_map *m, const char *vpath, const char *source,
		      const char *mnt, char *out, size_t len, bool *virt)
{
	struct pfs_map_res r;
	char t[4096];
	int kind;

	pfs_map_resolve(m, vpath, &r);
	if (virt)
		*virt = r.parent_of_keys && !r.hidden;
	if (r.hidden)
		return -ENOENT;
	if (!r.entry) {
		return (size_t)snprintf(out, len, "%s", vpath + 1) < len ? 1 : -ENAMETOOLONG;
	}
	kind = target_path(r.entry->target, source, mnt, t, sizeof(t));
	if (kind < 0)
		return kind == -ENAMETOOLONG ? kind : -ENOENT;
	if (!*r.rest)
		return (size_t)snprintf(out, len, "%s", t) < len ? kind : -ENAMETOOLONG;
	return (size_t)snprintf(out, len, "%s%s%s", t, *t && strcmp(t, "/") ? "/" : "", r.rest) <
			       len
		       ? kind
		       : -ENAMETOOLONG;
}

int pfs_map_to_view(const struct pfs_map *m, const char *spath, const char *source,
		    const char *mnt, char *out, size_t len)
{
	const struct pfs_map_entry *e, *best = NULL;
	char t[4096], cand[4096];
	size_t n, bestlen = 0;
	struct pfs_map_res r;
	int kind = spath[0] == '/' ? 0 : 1;

	e = pfs_map_entries(m, &n);
	for (size_t i = 0; i < n; i++) {
		const char *rest;
		size_t tl;

		if (!e[i].target || target_path(e[i].target, source, mnt, t, sizeof(t)) != kind)
			continue;
		tl = strlen(t);
		if (kind == 1 && tl == 0)
			rest = spath;
		else if ((rest = under(spath, t)) == NULL)
			continue;
		if (best && tl <= bestlen)
			continue;
		snprintf(cand, sizeof(cand), "%s%s%s", strcmp(e[i].key, "/") ? e[i].key : "",
			 *rest || !strcmp(e[i].key, "/") ? "/" : "", rest);
		pfs_map_resolve(m, cand, &r);
		if (r.hidden || r.entry != &e[i])
			continue; /* a deeper key covers it there */
		best = &e[i];
		bestlen = tl;
		if ((size_t)snprintf(out, len, "%s", cand) >= len)
			return -ENAMETOOLONG;
	}
	if (best)
		return 1;
	if (kind == 1) {
		snprintf(cand, sizeof(cand), "/%s", spath);
		pfs_map_resolve(m, cand, &r);
		if (!r.hidden && !r.entry)
			return (size_t)snprintf(out, len, "%s", cand) < len ? 1 : -ENAMETOOLONG;
	}
	return (size_t)snprintf(out, len, "%s", spath) < len ? 0 : -ENAMETOOLONG;
}
