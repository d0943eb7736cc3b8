/* history_prune: prismfs prune (issue 17, retention). The daemon prunes
 * (it holds the journal and must not save under a snapshot being
 * deleted); this asks it and prints its report. */
#include "cli/cli.h"
#include "cli/cmdutil.h"
#include "cli/history_cmd_int.h"
#include "history/history.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void print_report(json_t *o, bool json)
{
	json_t *gone = json_object_get(o, "pruned"), *x;
	bool dry = json_is_true(json_object_get(o, "dry_run"));
	size_t i;

	if (json) {
		pfs_hc_put_json(o);
	} else {
		json_array_foreach(gone, i, x)
			printf("%s snapshot %lld %s (%s)\n", dry ? "would prune" : "pruned",
			       (long long)json_integer_value(json_object_get(x, "id")),
			       json_string_value(json_object_get(x, "name")),
			       json_string_value(json_object_get(x, "kind")));
		printf("%s%zu snapshot%s, %lld saved version%s (%lld bytes); history %lld bytes\n",
		       dry ? "would remove " : "removed ", json_array_size(gone),
		       json_array_size(gone) == 1 ? "" : "s",
		       (long long)json_integer_value(json_object_get(o, "versions_removed")),
		       json_integer_value(json_object_get(o, "versions_removed")) == 1 ? "" : "s",
		       (long long)json_integer_value(json_object_get(o, "bytes_freed")),
		       (long long)json_integer_value(json_object_get(o, "history_bytes")));
	}
	if (json_is_true(json_object_get(o, "over_max")))
		say("the pinned snapshots and the newest alone hold %lld bytes of saved versions, "
		    "over --history-max %lld", (long long)json_integer_value(
							json_object_get(o, "history_bytes")),
		    (long long)json_integer_value(json_object_get(o, "history_max")));
}

int pfs_history_prune_cmd(int argc, char **argv)
{
	const char *mnt = NULL, *keep = NULL, *max = NULL;
	bool dry = false, json = false;
	char req[512], err[256], *line;
	json_t *o;
	int ret = 1;

	for (int i = 2; i < argc; i++) {
		const char *a = argv[i];

		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			fputs(pfs_prune_usage, stdout);
			return 0;
		} else if (strcmp(a, "--dry-run") == 0) {
			dry = true;
		} else if (strcmp(a, "--json") == 0) {
			json = true;
		} else if (strcmp(a, "--keep") == 0 || strcmp(a, "--history-max") == 0) {
			if (i + 1 >= argc) {
				say("%s needs a value (see prismfs prune --help)", a);
				return 2;
			}
			*(a[2] == 'k' ? &keep : &max) = argv[++i];
		} else if (a[0] == '-' && a[1]) {
			say("unknown option '%s' (see prismfs prune --help)", a);
			return 2;
		} else if (!mnt) {
			mnt = a;
		} else {
			say("unexpected argument '%s' (see prismfs prune --help)", a);
			return 2;
		}
	}
	if (!mnt) {
		say("missing MOUNTPOINT (usage: prismfs prune MOUNTPOINT [--dry-run])");
		return 2;
	}
	if (keep) {
		struct pfs_hist_policy pol;

		pfs_hist_policy_init(&pol);
		if (pfs_hist_parse_keep(keep, &pol, err, sizeof(err)) < 0 ||
		    strlen(keep) > 200 || strchr(keep, ' ')) {
			say("%s", err[0] ? err : "--keep: too long");
			return 2;
		}
	}
	if (max) {
		unsigned long long b;

		if (pfs_hist_parse_size(max, &b) < 0 || strlen(max) > 40) {
			say("--history-max needs a size like 512M or 2G, not '%s'", max);
			return 2;
		}
	}
	snprintf(req, sizeof(req), "prune %d %s %s\n", dry, keep ? keep : "-", max ? max : "-");
	line = malloc(1 << 20);
	if (!line || pfs_hc_ask(mnt, req, line, 1 << 20) < 0)
		goto out;
	o = strncmp(line, "ok ", 3) == 0 ? json_loads(line + 3, 0, NULL) : NULL;
	if (!o) {
		say("%s: the daemon's answer is not a report", mnt);
		goto out;
	}
	print_report(o, json);
	json_decref(o);
	ret = 0;
out:
	free(line);
	return ret;
}
