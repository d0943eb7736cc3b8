/* idmap: the ranges of uidmapping=/gidmapping= (idmap.h). */
#include "util/idmap.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* The largest id a range may reach: (uid_t)-1 means "no change" to chown
 * and is no one's id. */
#define ID_LAST 4294967294ULL

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/* One decimal field at *p, up to ':' or the end; *p moves past it. */
static int field(const char **p, unsigned long long *out)
{
	unsigned long long v = 0;
	const char *s = *p;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	for (; *s >= '0' && *s <= '9'; s++) {
		v = v * 10 + (unsigned long long)(*s - '0');
		if (v > 0xffffffffULL)
			return -EINVAL;
	}
	if (*s != ':' && *s != '\0')
		return -EINVAL;
	*p = s;
	*out = v;
	return 0;
}

static bool overlap(uint32_t a, uint32_t b, uint32_t count_a, uint32_t count_b)
{
	return (unsigned long long)a < (unsigned long long)b + count_b &&
	       (unsigned long long)b < (unsigned long long)a + count_a;
}

int pfs_idmap_parse(const char *s, struct pfs_idmap *m, char *err, size_t errlen)
{
	static const char *const names[3] = {"container id", "host id", "size"};
	const char *p = s ? s : "";

	m->n = 0;
	if (!*p)
		return fail(err, errlen, "no ranges");
	for (;;) {
		unsigned long long v[3];
		struct pfs_idrange *r;

		if (m->n == PFS_IDMAP_MAX)
			return fail(err, errlen, "more than %d ranges", PFS_IDMAP_MAX);
		for (int k = 0; k < 3; k++) {
			if (k > 0 && *p++ != ':')
				return fail(err, errlen, "range %zu has no %s", m->n + 1, names[k]);
			if (field(&p, &v[k]) < 0)
				return fail(err, errlen, "range %zu: the %s is not a number below 4294967296",
					    m->n + 1, names[k]);
		}
		if (v[2] == 0)
			return fail(err, errlen, "range %zu: size 0", m->n + 1);
		if (v[0] + v[2] - 1 > ID_LAST || v[1] + v[2] - 1 > ID_LAST)
			return fail(err, errlen, "range %zu goes past id 4294967294", m->n + 1);
		r = &m->r[m->n];
		*r = (struct pfs_idrange){(uint32_t)v[0], (uint32_t)v[1], (uint32_t)v[2]};
		/* One to one, as a user namespace's map: no id on either side
		 * may belong to two ranges. */
		for (size_t i = 0; i < m->n; i++) {
			if (overlap(m->r[i].stored, r->stored, m->r[i].count, r->count) ||
			    overlap(m->r[i].shown, r->shown, m->r[i].count, r->count))
				return fail(err, errlen, "ranges %zu and %zu overlap", i + 1, m->n + 1);
		}
		m->n++;
		if (!*p)
			return 0;
		p++; /* the ':' before the next range */
		if (!*p)
			return fail(err, errlen, "a colon with no range after it");
	}
}

bool pfs_idmap_shown(const struct pfs_idmap *m, uint32_t stored, uint32_t *shown)
{
	for (size_t i = 0; i < m->n; i++) {
		if (stored - m->r[i].stored < m->r[i].count) {
			*shown = m->r[i].shown + (stored - m->r[i].stored);
			return true;
		}
	}
	return false;
}

bool pfs_idmap_stored(const struct pfs_idmap *m, uint32_t shown, uint32_t *stored)
{
	for (size_t i = 0; i < m->n; i++) {
		if (shown - m->r[i].shown < m->r[i].count) {
			*stored = m->r[i].stored + (shown - m->r[i].shown);
			return true;
		}
	}
	return false;
}
