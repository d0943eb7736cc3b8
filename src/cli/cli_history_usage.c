/* cli_history_usage: the usage texts of the history's later commands
 * (cli.c holds the others; it is near its size limit). */
#include "cli/cli.h"

const char pfs_prune_usage[] =
	"usage: prismfs prune MOUNTPOINT [--dry-run] [--json] [--keep RULES]\n"
	"                     [--history-max SIZE]\n"
	"\n"
	"Prune the history of a mount with --history now, by the mount's --keep and\n"
	"--history-max (or the ones given here, for this run): the snapshots they let\n"
	"go, and the saved versions no kept snapshot needs. Pinned snapshots and the\n"
	"newest one are never pruned; manual ones only by --keep manual=N or\n"
	"--history-max. The daemon also prunes after each automatic checkpoint.\n"
	"\n"
	"options:\n"
	"  --dry-run               say what would go, change nothing\n"
	"  --json                  the report as one JSON object\n"
	"  --keep RULES            as mount's --keep (last=, hourly=, daily=, weekly=,\n"
	"                          monthly=, manual=)\n"
	"  --history-max SIZE      as mount's --history-max (K, M, G)\n"
	"  -h, --help              this help\n";

const char pfs_export_usage[] =
	"usage: prismfs export MOUNTPOINT SNAPSHOT [-o FILE|-]\n"
	"       prismfs export MOUNTPOINT SNAPSHOT --layer DIR\n"
	"\n"
	"Write the whole tree of a mount with --history as it was at SNAPSHOT (a name\n"
	"or an id) as a POSIX pax tar stream: files, directories and symlinks with\n"
	"their mode, owner and mtime. What changed since comes from the versions\n"
	"saved at the change, the rest from the live tree. On a layered mount\n"
	"(--upper), write its upper layer as it was into the new directory DIR, in\n"
	"overlayfs's format: mount -t overlay -o lowerdir=DIR:SOURCE:LOWER... shows\n"
	"the snapshot (the tar stream is refused there).\n"
	"\n"
	"options:\n"
	"  -o, --output FILE       write to FILE (default, or -: stdout, not a terminal)\n"
	"  --layer DIR             layered mount: the upper as it was, into new DIR\n"
	"  -h, --help              this help\n";
