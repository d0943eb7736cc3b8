/* history_policy: the words of --checkpoint-every, --keep and
 * --history-max (history.h). Pure: the command line checks them too. */
#include "history/history.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void pfs_hist_policy_init(struct pfs_hist_policy *pol)
{
	memset(pol, 0, sizeof(*pol));
	for (int i = 0; i < PFS_KEEP_N; i++)
		pol->keep[i] = -1;
}

int pfs_hist_parse_duration(const char *s, long long *ns)
{
	char *end;
	unsigned long long v;
	long long unit = 1;

	if (!s || !*s || *s == '-')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -EINVAL;
	if (*end) {
		if (end[1])
			return -EINVAL;
		switch (*end) {
		case 's': unit = 1; break;
		case 'm': unit = 60; break;
		case 'h': unit = 3600; break;
		case 'd': unit = 86400; break;
		default: return -EINVAL;
		}
	}
	if (v == 0 || v > 3650ull * 86400 / (unsigned long long)unit)
		return -EINVAL;
	*ns = (long long)v * unit * 1000000000ll;
	return 0;
}

int pfs_hist_parse_size(const char *s, unsigned long long *bytes)
{
	char *end;
	unsigned long long v, m = 1;

	if (!s || !*s || *s == '-')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -EINVAL;
	if (*end) {
		if (end[1] && strcmp(end + 1, "iB") != 0 && strcmp(end + 1, "B") != 0)
			return -EINVAL;
		switch (*end) {
		case 'K': case 'k': m = 1ull << 10; break;
		case 'M': m = 1ull << 20; break;
		case 'G': m = 1ull << 30; break;
		case 'T': m = 1ull << 40; break;
		default: return -EINVAL;
		}
	}
	if (v == 0 || v > ~0ull / m)
		return -EINVAL;
	*bytes = v * m;
	return 0;
}

static const char *const KEEP_NAMES[PFS_KEEP_N] = {"last", "hourly", "daily", "weekly",
						   "monthly", "manual"};

int pfs_hist_parse_keep(const char *s, struct pfs_hist_policy *pol, char *err, size_t errlen)
{
	char *copy = s ? strdup(s) : NULL, *save = NULL, *tok;
	int r = 0;

	if (!copy || !*copy) {
		snprintf(err, errlen, "--keep needs RULE=N,... (last, hourly, daily, weekly, "
			 "monthly, manual)");
		free(copy);
		return -EINVAL;
	}
	for (tok = strtok_r(copy, ",:", &save); tok; tok = strtok_r(NULL, ",:", &save)) {
		char *eq = strchr(tok, '='), *end;
		long v;
		int k;

		for (k = 0; k < PFS_KEEP_N; k++)
			if (eq && (size_t)(eq - tok) == strlen(KEEP_NAMES[k]) &&
			    strncmp(tok, KEEP_NAMES[k], (size_t)(eq - tok)) == 0)
				break;
		if (k == PFS_KEEP_N) {
			snprintf(err, errlen, "--keep: unknown rule '%s' (last, hourly, daily, "
				 "weekly, monthly, manual: RULE=N)", tok);
			r = -EINVAL;
			break;
		}
		errno = 0;
		v = strtol(eq + 1, &end, 10);
		if (errno || end == eq + 1 || *end || v < 0 || v > 1000000) {
			snprintf(err, errlen, "--keep: %s needs a count (0 to 1000000), not '%s'",
				 KEEP_NAMES[k], eq + 1);
			r = -EINVAL;
			break;
		}
		pol->keep[k] = (int)v;
		pol->has_keep = true;
	}
	free(copy);
	return r;
}
