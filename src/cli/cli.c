/* cli: the commands, their usage texts and the dispatch from argv[1]; the
 * small commands' arguments here, mount's in cli_mount.c. Pure: no I/O. */
#include "cli/cli.h"
#include "cli/cli_parse.h"
#include "util/util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char pfs_usage[] =
	"usage: prismfs COMMAND [ARGS]\n"
	"\n"
	"A live, programmable view of real directories (FUSE).\n"
	"\n"
	"commands:\n"
	"  mount [OPTIONS] SOURCE MOUNTPOINT   show SOURCE at MOUNTPOINT (may be SOURCE itself)\n"
	"  unmount [--action ACTION] MOUNTPOINT\n"
	"                                      unmount cleanly and wait for the daemon to exit;\n"
	"                                      with an upper, then preserve, discard, commit or\n"
	"                                      commit-atomic it (default: --on-unmount's),\n"
	"                                      showing a long commit's progress on a terminal\n"
	"  status [--json] MOUNTPOINT          show what a mount is doing\n"
	"  sync MOUNTPOINT                     wait until a cached mount (--mirror) has\n"
	"                                      written everything back, durably\n"
	"  commit --upper U --lower L [--lower L2 ...] [--atomic] [--work W]\n"
	"                                      apply an overlay upper directory to its lower\n"
	"  discard --upper U [--work W]        throw an upper directory's changes away\n"
	"  recover --lower L                   finish an interrupted commit (or undo an atomic one)\n"
	"  log MOUNTPOINT [PATH] [--since T] [--json]\n"
	"                                      the changes made through a mount with --history\n"
	"  snapshot MOUNTPOINT [--name NAME] [--pin]\n"
	"                                      mark the history's position (constant time)\n"
	"  snapshots [--json] MOUNTPOINT       list a mount's snapshots\n"
	"  versions MOUNTPOINT PATH [--json]   one file's saved versions\n"
	"  diff MOUNTPOINT A [B] [--stat]      what changed between two snapshots, or\n"
	"                                      a snapshot and now\n"
	"  restore MOUNTPOINT SNAPSHOT [PATH...]\n"
	"                                      put paths (files, trees, or everything)\n"
	"                                      back as they were at SNAPSHOT\n"
	"  prune MOUNTPOINT [--dry-run] [--json]\n"
	"                                      drop the snapshots --keep and --history-max\n"
	"                                      let go, and the versions none needs\n"
	"  export MOUNTPOINT SNAPSHOT [-o FILE|-]\n"
	"                                      the tree at SNAPSHOT as a tar stream\n"
	"  help [COMMAND]                      this help, or COMMAND's (= COMMAND --help)\n"
	"\n"
	"  -h, --help       this help;  prismfs help mount (or mount --help) for mount\n"
	"                   options, prismfs help commit for commit, discard and recover\n"
	"  -V, --version    print the version\n"
	"\n"
	"mount(8) runs prismfs as its helper (mount -t fuse.prismfs, /etc/fstab), without\n"
	"the word mount:\n"
	"  prismfs SOURCE MOUNTPOINT [-o OPTS]\n"
	"                   as prismfs mount; SOURCE must have a '/' or exist, or -o\n"
	"                   must be given (then SOURCE may be a label such as none,\n"
	"                   with lowerdir=); any other first word is an unknown\n"
	"                   command (exit 2)\n"
	"  prismfs [-f] -o OPTS MOUNTPOINT\n"
	"                   fuse-overlayfs's form: OPTS name the layers (lowerdir=)\n"
	"                   or the mirror (mirror=) instead of SOURCE\n";

const char pfs_unmount_usage[] =
	"usage: prismfs unmount [--action ACTION] [--force] MOUNTPOINT\n"
	"\n"
	"Unmount a prismfs mount cleanly and wait for its daemon to exit (umount is a\n"
	"synonym). A dead mount (its daemon killed) is cleared.\n"
	"\n"
	"  --action preserve|discard|commit|commit-atomic\n"
	"            what becomes of a layered mount's upper (default: the mount's\n"
	"            --on-unmount, itself preserve by default); the outcome is printed,\n"
	"            with a long commit's progress on a terminal\n"
	"  --force   a cached mount (--mirror) whose mirror cannot be written is\n"
	"            unmounted anyway: what is not written back is kept in a\n"
	"            quarantine directory, which is named (without --force such an\n"
	"            unmount is refused, naming what is pending)\n"
	"  -h, --help  this help\n";

const char pfs_log_usage[] =
	"usage: prismfs log MOUNTPOINT [PATH] [--since T] [--json]\n"
	"\n"
	"The changes made through a mount with --history, oldest first: time, kind,\n"
	"path(s), the requester's uid, pid and command. PATH: only changes to it or\n"
	"beneath it (a path inside the mount, or relative to its root).\n"
	"\n"
	"options:\n"
	"  --since T               only changes after T: seconds since the epoch, a UTC\n"
	"                          time YYYY-MM-DDTHH:MM:SS, or a snapshot's name\n"
	"  --json                  one JSON array of objects\n"
	"  -h, --help              this help\n";

const char pfs_snapshot_usage[] =
	"usage: prismfs snapshot MOUNTPOINT [--name NAME] [--pin]\n"
	"       prismfs snapshots MOUNTPOINT [--json]\n"
	"\n"
	"snapshot marks the journal's position of a mount with --history, in constant\n"
	"time; from then on the first change of each object saves its previous\n"
	"version. snapshots lists them.\n"
	"\n"
	"options:\n"
	"  --name NAME             the snapshot's name (default: the UTC time)\n"
	"  --pin                   never to be pruned\n"
	"  --json                  snapshots: one JSON array of objects\n"
	"  -h, --help              this help\n";

const char pfs_versions_usage[] =
	"usage: prismfs versions MOUNTPOINT PATH [--json]\n"
	"\n"
	"The versions of PATH a mount with --history saved, oldest first: the snapshot\n"
	"each was saved under and its time, the version's size and mtime.\n"
	"\n"
	"options:\n"
	"  --json                  one JSON array of objects\n"
	"  -h, --help              this help\n";

const char pfs_diff_usage[] =
	"usage: prismfs diff MOUNTPOINT A [B] [--stat]\n"
	"\n"
	"The paths created (+), deleted (-), modified (M) and renamed (R OLD -> NEW)\n"
	"between snapshot A and snapshot B (a name or an id), or A and now, from the\n"
	"journal of a mount with --history; one a line, by path, as zfs diff.\n"
	"\n"
	"options:\n"
	"  --stat                  only how many of each\n"
	"  -h, --help              this help\n";

const char pfs_restore_usage[] =
	"usage: prismfs restore MOUNTPOINT SNAPSHOT [PATH...]\n"
	"\n"
	"Put each PATH of a mount with --history (a file, a symlink or a directory\n"
	"subtree) back as it was at SNAPSHOT (a name or an id), atomically per path: the\n"
	"snapshot's copy is built beside it, in the mount, and exchanged with it in one\n"
	"rename, then the old one is removed; a PATH made since SNAPSHOT is removed.\n"
	"Every step goes through the mount, so the restore is in the journal. With no\n"
	"PATH, or /, everything: each top-level entry atomically, the root as a whole\n"
	"not. A snapshot is taken first (before-restore-TIME): restoring it undoes the\n"
	"restore. Temporaries (.prismfs-restore.*) left by a killed restore are removed\n"
	"by the next restore in their directory.\n"
	"\n"
	"options:\n"
	"  -h, --help              this help\n";

const char pfs_sync_usage[] =
	"usage: prismfs sync MOUNTPOINT\n"
	"\n"
	"Wait until every change made in a cached mount (--mirror) is written back to\n"
	"its mirror and durable there. Exits 1 with the mirror's error if it cannot be\n"
	"written (the changes stay pending). A mount without a cache has nothing to\n"
	"write back: it returns at once.\n"
	"\n"
	"  -h, --help  this help\n";

const char pfs_status_usage[] =
	"usage: prismfs status [--json] MOUNTPOINT\n"
	"\n"
	"Show what a prismfs mount is doing: its source, layers, data path, request\n"
	"transport, mapping table and counters. Times are in ISO 8601 (UTC).\n"
	"\n"
	"  --json      one JSON object (started: seconds since the epoch)\n"
	"  -h, --help  this help\n";

const char pfs_mount_usage[] =
	"usage: prismfs mount [OPTIONS] SOURCE MOUNTPOINT\n"
	"       prismfs mount --new-mountpoint tmp|cache [OPTIONS] SOURCE\n"
	"       prismfs mount --mirror DIR [CACHE OPTIONS] [OPTIONS] MOUNTPOINT\n"
	"\n"
	"Mirror the directory SOURCE at MOUNTPOINT. MOUNTPOINT may be SOURCE itself:\n"
	"the daemon opens SOURCE before mounting and never re-enters the mount.\n"
	"Returns once the mount answers; the daemon then runs in the background.\n"
	"\n"
	"options:\n"
	"  -f, --foreground        stay in the foreground (logs and errors on stderr)\n"
	"  -d                      debug: libfuse's trace of every request and reply on\n"
	"                          stderr, in the foreground (same as -o debug)\n"
	"  -o OPT[,OPT...]         FUSE mount options: allow_other, ro, default_permissions,\n"
	"                          fsname=..., subtype=..., max_read=..., debug, ...\n"
	"                          (repeatable), and every option below as KEY=VALUE\n"
	"                          (see the end). A value libfuse refuses is bad usage\n"
	"                          (exit 2). The generic flags of mount(8) are accepted:\n"
	"                          ro, rw, nosuid, nodev, noexec, sync, dirsync and noatime\n"
	"                          apply to the FUSE mount; atime, relatime, norelatime,\n"
	"                          strictatime, nostrictatime, diratime, nodiratime,\n"
	"                          lazytime and nolazytime change nothing (a FUSE mount's\n"
	"                          kernel never updates access times itself: they are\n"
	"                          SOURCE's, under its own mount's flags); nosymfollow\n"
	"                          is set on the mount by the daemon (mount_setattr:\n"
	"                          needs root, else the mount is refused); fsname= and\n"
	"                          subtype= change how /proc/mounts shows the mount;\n"
	"                          prismfs status and unmount still find it\n"
	"  --read-only             every modifying call fails with EROFS\n"
	"  --mirror DIR            a memory cache of DIR (or file:///DIR) instead of SOURCE:\n"
	"                          files live in memory, loaded from DIR when first used and\n"
	"                          written back to it in the background, in order.\n"
	"                          Durability: fsync and fdatasync return once that file is\n"
	"                          on DIR and durable there (or fail with DIR's error);\n"
	"                          close queues; `prismfs sync MOUNTPOINT` waits until\n"
	"                          nothing is pending; unmount writes everything back\n"
	"                          first. sync(2)/syncfs(2) do not reach a FUSE daemon\n"
	"                          (the kernel sends FUSE_SYNCFS to virtiofs only): use\n"
	"                          fsync or prismfs sync. A file changed in DIR since it\n"
	"                          was loaded is not overwritten: the cache's version is\n"
	"                          written beside it as NAME.prismfs-conflict-STAMP.\n"
	"                          DIR may be a server: http(s)://HOST/PATH or\n"
	"                          dav(s)://HOST/PATH (WebDAV), s3://BUCKET[/PREFIX];\n"
	"                          every write-back is conditional (If-Match), status\n"
	"                          says which guarantees the server gives; symlinks,\n"
	"                          hard links, special files and xattrs are refused\n"
	"  --cache-size SIZE       memory for the cache (K, M, G; a bare number is MiB;\n"
	"                          default 512M); past it, data written back and not\n"
	"                          open is evicted, least recently used first\n"
	"  --cache-max-dirty, --cache-max-write-size SIZE\n"
	"                          data not yet written back above which writers wait\n"
	"                          (default a quarter of the cache size); one file\n"
	"                          larger is written beside DIR, not in memory\n"
	"  --lazy-load [on|off]    on (default): a file's data and a directory's names are\n"
	"                          read from DIR when first used; off: every directory is\n"
	"                          read at mount, and files' data loaded while the cache\n"
	"                          has room (keeping --cache-max-dirty free for writes);\n"
	"                          the rest loads when used\n"
	"  --write-back SECONDS    how long a change waits before it is written back, so\n"
	"                          that changes batch (default 1)\n"
	"  --journal DIR           crash safety: every change is recorded in DIR (a local\n"
	"                          directory; DIR/journal.db) before it is acknowledged,\n"
	"                          and the cache's memory filesystem is mounted at\n"
	"                          DIR/tree so that it outlives the daemon; a kill -9 of\n"
	"                          the daemon loses nothing acknowledged: the next mount\n"
	"                          with the same DIR writes what is pending back first.\n"
	"                          Not power loss: that is what fsync and prismfs sync are\n"
	"                          for. --cache-size bounds DIR/tree as it bounds memory.\n"
	"                          Without it, a crash loses what was not yet written back\n"
	"                          (at most what was not fsync'ed)\n"
	"  --mirror-ttl SECONDS    a directory listed from the mirror is listed again at\n"
	"                          its next use once older than this, so changes made on\n"
	"                          the mirror behind the mount show (default 30; 0: never;\n"
	"                          prismfs sync: at once); names and attributes are cached\n"
	"                          by the kernel no longer unless --timeout is given\n"
	"  --s3-endpoint URL       an s3:// mirror's server (default AWS's for the region)\n"
	"  --s3-region NAME        the region requests are signed for (default us-east-1)\n"
	"  --s3-profile NAME       the ~/.aws/credentials profile, when AWS_ACCESS_KEY_ID\n"
	"                          is not set (default AWS_PROFILE, else default)\n"
	"  --history DIR           journal every change made through the mount (time,\n"
	"                          uid, pid, command, paths) in DIR/history.db (SQLite),\n"
	"                          each before it is made; snapshots save the previous\n"
	"                          version of what changes next into DIR/versions (see\n"
	"                          prismfs log, prismfs snapshot). A plain mount only\n"
	"  --checkpoint-every DURATION\n"
	"                          with --history: take an automatic snapshot (auto-TIME)\n"
	"                          every DURATION (30s, 15m, 1h, 1d) when something changed\n"
	"                          since the last one, then prune\n"
	"  --keep RULES            with --history: which automatic snapshots a prune keeps,\n"
	"                          the newest of each of the last N periods that have one:\n"
	"                          hourly=N,daily=N,weekly=N,monthly=N, and last=N (the N\n"
	"                          newest); manual=N keeps the N newest manual ones (all\n"
	"                          by default). Pinned ones and the newest always stay.\n"
	"                          In -o keep=, separate the rules with ':'\n"
	"  --history-max SIZE      with --history: a prune also drops the oldest unpinned\n"
	"                          snapshots until the saved versions the rest need fit\n"
	"                          in SIZE (K, M, G)\n"
	"  --history-dir-name NAME with --history: the name of the read-only directory at\n"
	"                          the root holding each snapshot's tree (default\n"
	"                          .history; in no listing, reachable by name)\n"
	"  --passthrough auto|on|off\n"
	"                          kernel FUSE passthrough: file data moves between the\n"
	"                          program and the source inside the kernel, never through\n"
	"                          the daemon. auto (default) uses it when the kernel and\n"
	"                          privileges allow and says why not otherwise (prismfs\n"
	"                          status); on refuses to mount without it; off never uses it\n"
	"  --uring auto|on|off     take requests over io_uring (kernel FUSE-over-io_uring,\n"
	"                          enabled by Y in /sys/module/fuse/parameters/enable_uring):\n"
	"                          one queue per CPU, each request answered on the CPU that\n"
	"                          made it, which makes metadata calls several times faster.\n"
	"                          auto (default) uses it when the kernel offers it; on\n"
	"                          refuses to mount without it; off reads /dev/fuse\n"
	"  --log FILE|-            log every operation, its arguments and result, to FILE\n"
	"                          (- = stderr). Logging never stalls I/O: when the writer\n"
	"                          falls behind, records are dropped and counted, and the\n"
	"                          count is reported at unmount. With kernel passthrough the\n"
	"                          daemon never sees reads and writes of regular files, so\n"
	"                          they are not logged; opens, releases and all metadata\n"
	"                          operations are.\n"
	"  --log-format text|json  text lines (-> op path args / <- op path = result) or\n"
	"                          one JSON object per operation (default text)\n"
	"  --timeout SECONDS       how long the kernel may cache names and attributes\n"
	"                          (default 86400). prismfs invalidates the kernel's cache\n"
	"                          itself for every change made through the mount\n"
	"                          (with --mirror, not given: at most --mirror-ttl).\n"
	"  --volatile              the source is also changed by programs that do not go\n"
	"                          through the mount: no kernel caching of names,\n"
	"                          attributes or file data (same as --timeout 0 plus no\n"
	"                          page cache kept across opens)\n"
	"  --no-default-permissions\n"
	"                          do not let the kernel check permissions against the\n"
	"                          attributes shown (default: it does; with allow_other\n"
	"                          this is what keeps users apart). The daemon checks\n"
	"                          nothing itself: other users are then let in only\n"
	"                          with an explicit -o allow_other\n"
	"  --private               only the user who mounted may use the mount (EACCES\n"
	"                          for the others). Without it a mount made by root is\n"
	"                          open to every user (allow_other), each getting the\n"
	"                          answers the kernel's permission checks give against\n"
	"                          the attributes shown, as with kernel overlayfs; a\n"
	"                          mount made by another user is private unless it asks\n"
	"                          for -o allow_other (user_allow_other in fuse.conf)\n"
	"  --squash-to-root        show every file and directory as owned by uid 0 and\n"
	"                          gid 0 (fuse-overlayfs's squash_to_root); the backing\n"
	"                          files keep their owners\n"
	"  --squash-to-uid UID     show every owner as UID (fuse-overlayfs's squash_to_uid)\n"
	"  --squash-to-gid GID     show every group as GID (fuse-overlayfs's squash_to_gid)\n"
	"  --threads N             at most N worker threads (default 16; one reads at a\n"
	"                          time, more join while requests block or pile up);\n"
	"                          over io_uring, at most N per CPU queue\n"
	"  --node-fds N            keep at most N fds open on the objects the kernel\n"
	"                          holds (default: 3/4 of the fd limit); past that the\n"
	"                          least used are closed and reopened from file handles\n"
	"                          when needed (needs CAP_DAC_READ_SEARCH and a source\n"
	"                          filesystem with handles; otherwise they stay open)\n"
	"  --map FILE              a live mapping table (JSON) that remaps, grafts, hides and\n"
	"                          narrows paths in the view. FILE is a regular file (watched:\n"
	"                          in-place writes and atomic renames are applied at once)\n"
	"                          or a named pipe (messages: 4-byte big-endian length, then\n"
	"                          that much JSON; applied in order). An update that does not\n"
	"                          parse or validate is rejected whole; the view stays.\n"
	"                          Also with --upper: the table shapes SOURCE's layer only\n"
	"                          (each --lower is taken at the view's paths, but a hidden\n"
	"                          path hides every lower); changes land in the upper at the\n"
	"                          view's paths, and an upper written so is never committed\n"
	"                          (commit and commit-atomic are refused: preserve or discard)\n"
	"  --map-max BYTES         largest message accepted from a mapping pipe (default 64M;\n"
	"                          K, M, G suffixes)\n"
	"  -h, --help              this help\n"
	"\n"
	"copy-on-write layers (SOURCE and every --lower stay unchanged):\n"
	"  --upper DIR             every change lands in DIR, in kernel overlayfs's format\n"
	"  --work DIR              scratch directory on DIR's filesystem (default: made\n"
	"                          beside the upper as .NAME.prismfs-work)\n"
	"  --lower DIR             a read-only layer below SOURCE (repeatable: each one is\n"
	"                          below the ones before it). Without --upper: a read-only\n"
	"                          merge of SOURCE and the lowers (EROFS for every change),\n"
	"                          as the kernel mounts lowerdir=A:B alone\n"
	"  --whiteout auto|chardev|file\n"
	"                          how a deletion is recorded: a 0/0 character device (the\n"
	"                          kernel's form, needs CAP_MKNOD), a .wh.NAME file, or the\n"
	"                          device where mknod works and the file otherwise (auto)\n"
	"  --on-unmount preserve|discard|commit|commit-atomic\n"
	"                          what becomes of the upper when the mount ends (default\n"
	"                          preserve; prismfs unmount --action overrides it). commit\n"
	"                          applies it to SOURCE in place, commit-atomic builds the\n"
	"                          new tree beside SOURCE and swaps it in; either empties\n"
	"                          the upper only once SOURCE is durable, and keeps it on\n"
	"                          failure. discard empties the upper. prismfs unmount\n"
	"                          waits for the action and reports it (with a commit's\n"
	"                          progress on a terminal); after a plain umount a failed\n"
	"                          action leaves one line in .NAME.prismfs-failed beside\n"
	"                          the upper, which the next mount with it prints once\n"
	"                          and removes (so does a later commit or discard of it\n"
	"                          that succeeds).\n"
	"  --default-upper         the upper is SOURCE_upper beside SOURCE, made if missing\n"
	"  --new-mountpoint tmp|cache\n"
	"                          give SOURCE alone: a new mount point is made in $TMPDIR\n"
	"                          (or /tmp), or with cache in ~/.cache/prismfs, and its\n"
	"                          path printed on stdout. The unmount action removes what\n"
	"                          the mount made, never a directory that was there:\n"
	"                          preserve the mount point, discard and (once it\n"
	"                          succeeded) commit the upper and the mount point too\n"
	"\n"
	"The kernel's spelling works too, also through mount(8) and /etc/fstab:\n"
	"  -o lowerdir=L1:L2,upperdir=U,workdir=W   (SOURCE is then none, or L1)\n"
	"  -o whiteout=FORM,on_unmount=ACTION       ('\\:' and '\\,' escape ':' and ',')\n"
	"  mount -t fuse.prismfs -o lowerdir=L,upperdir=U none MOUNTPOINT\n"
	"  prismfs [-f] -o lowerdir=L,upperdir=U,workdir=W MOUNTPOINT   (fuse-overlayfs's)\n"
	"  (upperdir= without lowerdir= takes SOURCE as the lower; SOURCE none, or one\n"
	"  that does not exist, is refused naming the missing lowerdir=)\n"	"  (lowerdir=A:B without upperdir=: read-only, as --lower without --upper;\n"
	"  data-only layers, lowerdir=A:B::C, are refused)\n"
	"\n"
	"Kernel overlay options (of mount -t overlay lines), accepted where they mean\n"
	"what prismfs does; the others are refused in one line naming them (exit 2):\n"
	"  -o redirect_dir=on|follow|nofollow|off\n"
	"                          on: a directory with lower parts renames with an\n"
	"                          overlay.redirect, as the kernel's; follow: read\n"
	"                          them only; off (default), nofollow: neither (EXDEV)\n"
	"  -o metacopy=on|off      on: a chmod, chown, utimes, xattr change or rename\n"
	"                          of a lower file copies no data (overlay.metacopy)\n"
	"                          until the first write; turns redirect_dir=on on;\n"
	"                          off (default): copy-up copies the data\n"
	"  -o index=off,nfs_export=off\n"
	"                          no inode index, no exported handles: what\n"
	"                          prismfs does\n"
	"  -o xino=off|auto|on,uuid=null|off|auto\n"
	"                          inode numbers: real on one filesystem, the layer in\n"
	"                          the high bits across several; no overlay uuid kept\n"
	"  -o userxattr            the layers' xattrs are user.overlay.* (not trusted.)\n"
	"  -o volatile             is prismfs's --volatile (fsync still reaches the upper)\n"
	"\n"
	"Every option above as -o KEY[=VALUE], for /etc/fstab and mount -t fuse.prismfs\n"
	"(the long name without its dashes, - as _; a flag without a value):\n"
	"  -o map=FILE,map_max=BYTES,log=FILE,log_format=F,timeout=SECONDS\n"
	"  -o passthrough=P,uring=U,threads=N,node_fds=N\n"
	"  -o read_only,volatile,nodefault_permissions,private\n"
	"  -o squash_to_root,squash_to_uid=UID,squash_to_gid=GID\n"
	"  -o mirror=DIR,cache_size=SIZE,cache_max_dirty=SIZE,write_back=SECONDS\n"
	"  -o lazy_load[=on|off],mirror_ttl=SECONDS\n"
	"  -o default_upper,new_mountpoint=WHERE\n"
	"  (upperdir=, workdir=, whiteout=, on_unmount=: above; --lower has lowerdir=)\n"
	"  mount -t fuse.prismfs -o mirror=DIR,cache_size=1G none MOUNTPOINT\n"
	"\n"
	"PassthroughFS's command line also works (stays in the foreground, as it did):\n"
	"  prismfs --mountpoint MOUNTPOINT --target SOURCE [--mapping_file FILE] [OPTIONS]\n";

const char pfs_layers_usage[] =
	"usage: prismfs commit --upper U --lower L [--lower L2 ...] [--atomic] [--work W]\n"
	"                      [--whiteout auto|chardev|file]\n"
	"       prismfs discard --upper U [--work W]\n"
	"       prismfs recover --lower L\n"
	"\n"
	"Finalize a copy-on-write layer offline. U is an upper directory in the kernel\n"
	"overlayfs format (whiteouts, opaque directories, overlay xattrs) and L the\n"
	"lower directory it applies to (the top lower). Neither may be in use by a mount.\n"
	"\n"
	"  commit    make L what the overlay showed: whiteouts delete, opaque directories\n"
	"            replace, directories merge, changed files are written to a temporary\n"
	"            file and renamed over the old one (identical ones are kept), with\n"
	"            owner, mode, times and extended attributes; everything is made durable,\n"
	"            then U (and W) are emptied. On failure U is kept and nothing more\n"
	"            changes; running the same commit again completes it. Killed at any\n"
	"            point, the next commit, recover, or mount of L with an upper\n"
	"            completes it (journal .L.prismfs-inplace); U is never applied again\n"
	"            once its emptying has begun.\n"
	"  --atomic  build the new tree beside L (.L.prismfs-new, sharing unchanged files\n"
	"            by reflink or hard link, never copying them), make it durable, and\n"
	"            swap it with L in one rename. A crash at any point leaves L wholly old\n"
	"            or wholly new; the next commit or recover finishes or undoes it.\n"
	"  discard   empty U (and W): any depth, never following symlinks or crossing\n"
	"            into other mounts.\n"
	"  recover   finish (if the swap happened) or roll back (if not) an interrupted\n"
	"            atomic commit of L; complete an interrupted in-place one.\n"
	"  --work W  the overlay work directory, emptied together with U\n"
	"  --lower L2 (after L, repeatable) the lowers below L, in the order the overlay\n"
	"            stacked them: what U hid from them stays hidden, by whiteouts and\n"
	"            opaque directories kept in L (only where they would show through)\n"
	"  --whiteout auto|chardev|file  how such a whiteout is made: a 0/0 character\n"
	"            device, a .wh.NAME file, or the device where mknod works (default)\n"
	"\n"
	"With a terminal on stderr, a long commit shows its progress on one line.\n"
	"A commit or discard that succeeds also removes .U.prismfs-failed, the record a\n"
	"failed unmount action left beside U (see prismfs mount --help, --on-unmount).\n";

void pfs_cli_seterr(char *err, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
}

int pfs_cli_push_dir(const char ***arr, size_t *n, const char *dir)
{
	const char **a = realloc(*arr, (*n + 1) * sizeof(*a));

	if (!a)
		return -ENOMEM;
	a[(*n)++] = dir;
	*arr = a;
	return 0;
}

static const char *const whiteout_names[] = {
	[PFS_WH_AUTO] = "auto",
	[PFS_WH_CHARDEV] = "chardev",
	[PFS_WH_FILE] = "file",
};

int pfs_cli_set_whiteout(struct pfs_config *cfg, const char *v, const char *what, char *err,
			 size_t errlen)
{
	for (size_t i = 0; v && i < PFS_ARRAY_SIZE(whiteout_names); i++) {
		if (strcmp(v, whiteout_names[i]) == 0) {
			cfg->whiteout = (enum pfs_whiteout)i;
			if (!cfg->layer_opt)
				cfg->layer_opt = what;
			return 0;
		}
	}
	pfs_cli_seterr(err, errlen, "%s must be auto, chardev or file, not %s", what,
		       v && *v ? v : "an empty value");
	return -EINVAL;
}

/* --name=value or --name value; returns the value or NULL. */
const char *pfs_cli_optval(int argc, char **argv, int *i, const char *arg, const char *name,
			   bool *matched)
{
	size_t n = strlen(name);

	*matched = false;
	if (strncmp(arg, name, n) != 0)
		return NULL;
	if (arg[n] == '=') {
		*matched = true;
		return arg + n + 1;
	}
	if (arg[n] != '\0')
		return NULL;
	*matched = true;
	if (*i + 1 >= argc)
		return NULL;
	return argv[++*i];
}

static int parse_target(int argc, char **argv, int start, struct pfs_config *cfg, char *err,
			size_t errlen, const char *cmd)
{
	for (int i = start; i < argc; i++) {
		const char *a = argv[i], *v;
		bool m = false;

		if (strcmp(a, "--json") == 0 && cfg->cmd == PFS_CMD_STATUS) {
			cfg->json = true;
		} else if (cfg->cmd == PFS_CMD_UNMOUNT &&
			   ((v = pfs_cli_optval(argc, argv, &i, a, "--action", &m)) || m)) {
			if (pfs_action_parse(v, &cfg->action) < 0) {
				pfs_cli_seterr(err, errlen, "--action must be preserve, discard, "
					       "commit or commit-atomic, not '%s'", v ? v : "");
				return -EINVAL;
			}
		} else if (strcmp(a, "--force") == 0 && cfg->cmd == PFS_CMD_UNMOUNT) {
			cfg->force = true;
		} else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			if (cfg->cmd == PFS_CMD_STATUS) {
				cfg->cmd = PFS_CMD_STATUS_HELP;
				cfg->usage = pfs_status_usage;
			} else if (cfg->cmd == PFS_CMD_SYNC) {
				cfg->cmd = PFS_CMD_SYNC_HELP;
				cfg->usage = pfs_sync_usage;
			} else {
				cfg->cmd = PFS_CMD_UNMOUNT_HELP;
				cfg->usage = pfs_unmount_usage;
			}
			return 0;
		} else if (a[0] == '-' && a[1]) {
			pfs_cli_seterr(err, errlen, "unknown option '%s' for %s (see prismfs %s "
				       "--help)", a, cmd, cmd);
			return -EINVAL;
		} else if (cfg->mountpoint) {
			pfs_cli_seterr(err, errlen, "unexpected argument '%s'", a);
			return -EINVAL;
		} else {
			cfg->mountpoint = a;
		}
	}
	if (!cfg->mountpoint) {
		pfs_cli_seterr(err, errlen, "missing MOUNTPOINT (usage: prismfs %s MOUNTPOINT)",
			       cmd);
		return -EINVAL;
	}
	return 0;
}

/* commit, discard, recover: named options only. */
static int parse_layers(int argc, char **argv, int start, struct pfs_config *cfg, char *err,
			size_t errlen, const char *cmd)
{
	bool commit = cfg->cmd == PFS_CMD_COMMIT, discard = cfg->cmd == PFS_CMD_DISCARD;
	bool recover = cfg->cmd == PFS_CMD_RECOVER;

	for (int i = start; i < argc; i++) {
		const char *a = argv[i], *v, **slot = NULL, *name = NULL;
		bool m;

		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			cfg->cmd = PFS_CMD_LAYERS_HELP;
			cfg->usage = pfs_layers_usage;
			return 0;
		} else if (commit && strcmp(a, "--atomic") == 0) {
			cfg->atomic = true;
			continue;
		} else if ((commit || discard) &&
			   ((v = pfs_cli_optval(argc, argv, &i, a, "--upper", &m)) || m)) {
			slot = &cfg->upper;
			name = "--upper";
		} else if ((commit || recover) &&
			   ((v = pfs_cli_optval(argc, argv, &i, a, "--lower", &m)) || m)) {
			/* commit: the first is the top lower, the others are
			 * the lowers below it, as stacked at mount */
			if (commit && cfg->lower && v && *v) {
				if (pfs_cli_push_dir(&cfg->lowers, &cfg->nlowers, v) < 0) {
					pfs_cli_seterr(err, errlen, "out of memory");
					return -ENOMEM;
				}
				continue;
			}
			slot = &cfg->lower;
			name = "--lower";
		} else if (commit &&
			   ((v = pfs_cli_optval(argc, argv, &i, a, "--whiteout", &m)) || m)) {
			int ret = pfs_cli_set_whiteout(cfg, v, "--whiteout", err, errlen);

			if (ret < 0)
				return ret;
			continue;
		} else if ((commit || discard) &&
			   ((v = pfs_cli_optval(argc, argv, &i, a, "--work", &m)) || m)) {
			slot = &cfg->work;
			name = "--work";
		} else if (a[0] == '-' && a[1]) {
			pfs_cli_seterr(err, errlen, "unknown option '%s' for %s (see prismfs %s "
				       "--help)", a, cmd, cmd);
			return -EINVAL;
		} else {
			pfs_cli_seterr(err, errlen, "unexpected argument '%s' (prismfs %s takes "
				       "named options)", a, cmd);
			return -EINVAL;
		}
		if (!v || !*v) {
			pfs_cli_seterr(err, errlen, "%s needs a directory", name);
			return -EINVAL;
		}
		if (*slot) {
			pfs_cli_seterr(err, errlen, "%s given twice", name);
			return -EINVAL;
		}
		*slot = v;
	}
	if ((commit || discard) && !cfg->upper) {
		pfs_cli_seterr(err, errlen, "missing --upper (usage: prismfs %s --upper U%s)", cmd,
			       commit ? " --lower L" : "");
		return -EINVAL;
	}
	if ((commit || recover) && !cfg->lower) {
		pfs_cli_seterr(err, errlen, "missing --lower (usage: prismfs %s%s --lower L)", cmd,
			       commit ? " --upper U" : "");
		return -EINVAL;
	}
	return 0;
}

/* `help CMD`: the help of CMD, as CMD --help gives it. */
static int parse_help(int argc, char **argv, struct pfs_config *cfg, char *err, size_t errlen)
{
	static const struct {
		const char *name;
		enum pfs_cmd cmd;
		const char *usage;
	} topics[] = {
		{"help", PFS_CMD_HELP, pfs_usage},
		{"mount", PFS_CMD_MOUNT_HELP, pfs_mount_usage},
		{"unmount", PFS_CMD_UNMOUNT_HELP, pfs_unmount_usage},
		{"umount", PFS_CMD_UNMOUNT_HELP, pfs_unmount_usage},
		{"status", PFS_CMD_STATUS_HELP, pfs_status_usage},
		{"sync", PFS_CMD_SYNC_HELP, pfs_sync_usage},
		{"commit", PFS_CMD_LAYERS_HELP, pfs_layers_usage},
		{"discard", PFS_CMD_LAYERS_HELP, pfs_layers_usage},
		{"recover", PFS_CMD_LAYERS_HELP, pfs_layers_usage},
		{"log", PFS_CMD_STATUS_HELP, pfs_log_usage},
		{"snapshot", PFS_CMD_STATUS_HELP, pfs_snapshot_usage},
		{"snapshots", PFS_CMD_STATUS_HELP, pfs_snapshot_usage},
		{"versions", PFS_CMD_STATUS_HELP, pfs_versions_usage},
		{"diff", PFS_CMD_STATUS_HELP, pfs_diff_usage},
		{"restore", PFS_CMD_STATUS_HELP, pfs_restore_usage},
		{"prune", PFS_CMD_STATUS_HELP, pfs_prune_usage},
		{"export", PFS_CMD_STATUS_HELP, pfs_export_usage},
	};

	cfg->cmd = PFS_CMD_HELP;
	cfg->usage = pfs_usage;
	if (argc < 3)
		return 0;
	if (argc > 3) {
		pfs_cli_seterr(err, errlen, "unexpected argument '%s' (usage: prismfs help "
			       "[COMMAND])", argv[3]);
		return -EINVAL;
	}
	/* help's own help is the general help, which says what help does */
	if (strcmp(argv[2], "--help") == 0 || strcmp(argv[2], "-h") == 0)
		return 0;
	for (size_t i = 0; i < PFS_ARRAY_SIZE(topics); i++) {
		if (strcmp(argv[2], topics[i].name) == 0) {
			cfg->cmd = topics[i].cmd;
			cfg->usage = topics[i].usage;
			return 0;
		}
	}
	pfs_cli_seterr(err, errlen, "unknown command '%s' (see prismfs --help)", argv[2]);
	return -EINVAL;
}

/* Is there a -o among argv[from..] (before any "--")? */
static bool has_o(int argc, char **argv, int from)
{
	for (int i = from; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0)
			break;
		if (strncmp(argv[i], "-o", 2) == 0)
			return true;
	}
	return false;
}

/* A first word that may be a SOURCE (the mount(8) helper form): a path
 * by its spelling, or any word when mount.fuse's -o comes along. */
static bool source_by_form(int argc, char **argv)
{
	const char *c = argv[1];

	if (strchr(c, '/') || strcmp(c, ".") == 0 || strcmp(c, "..") == 0)
		return true;
	return has_o(argc, argv, 2);
}

int pfs_cli_parse(int argc, char **argv, struct pfs_config *cfg, char *err, size_t errlen)
{
	const char *c;

	memset(cfg, 0, sizeof(*cfg));
	cfg->timeout = PFS_DEFAULT_TIMEOUT;
	cfg->lazy_load = true;
	cfg->write_back = -1; /* not given */
	cfg->mirror_ttl = -1;
	cfg->threads = 16;
	cfg->default_permissions = true;
	cfg->squash_uid = cfg->squash_gid = -1;
	cfg->map_max = PFS_DEFAULT_MAP_MAX;
	err[0] = '\0';
	if (argc < 2) {
		pfs_cli_seterr(err, errlen, "missing command (see prismfs --help)");
		return -EINVAL;
	}
	c = argv[1];
	if (strcmp(c, "-h") == 0 || strcmp(c, "--help") == 0) {
		cfg->cmd = PFS_CMD_HELP;
		cfg->usage = pfs_usage;
		return 0;
	}
	if (strcmp(c, "help") == 0)
		return parse_help(argc, argv, cfg, err, errlen);
	if (strcmp(c, "-V") == 0 || strcmp(c, "--version") == 0 || strcmp(c, "version") == 0) {
		cfg->cmd = PFS_CMD_VERSION;
		return 0;
	}
	if (strcmp(c, "mount") == 0) {
		cfg->cmd = PFS_CMD_MOUNT;
		return pfs_cli_parse_mount(argc, argv, 2, false, cfg, err, errlen);
	}
	if (strcmp(c, "unmount") == 0 || strcmp(c, "umount") == 0) {
		cfg->cmd = PFS_CMD_UNMOUNT;
		return parse_target(argc, argv, 2, cfg, err, errlen, "unmount");
	}
	if (strcmp(c, "status") == 0) {
		cfg->cmd = PFS_CMD_STATUS;
		return parse_target(argc, argv, 2, cfg, err, errlen, "status");
	}
	if (strcmp(c, "sync") == 0) {
		cfg->cmd = PFS_CMD_SYNC;
		return parse_target(argc, argv, 2, cfg, err, errlen, "sync");
	}
	if (strcmp(c, "commit") == 0 || strcmp(c, "discard") == 0 || strcmp(c, "recover") == 0) {
		cfg->cmd = c[0] == 'c' ? PFS_CMD_COMMIT : c[0] == 'd' ? PFS_CMD_DISCARD
								     : PFS_CMD_RECOVER;
		return parse_layers(argc, argv, 2, cfg, err, errlen, c);
	}
	if (c[0] != '-') {
		/* mount(8) helper convention: prismfs SOURCE MOUNTPOINT -o OPTS.
		 * A bare word without -o may be a mistyped command instead. */
		if (!source_by_form(argc, argv))
			cfg->maybe_cmd = c;
		cfg->cmd = PFS_CMD_MOUNT;
		return pfs_cli_parse_mount(argc, argv, 1, false, cfg, err, errlen);
	}
	for (int i = 1; i < argc; i++) {
		if (strncmp(argv[i], "--mountpoint", 12) == 0 || strncmp(argv[i], "--target", 8) == 0) {
			cfg->cmd = PFS_CMD_MOUNT;
			return pfs_cli_parse_mount(argc, argv, 1, true, cfg, err, errlen);
		}
	}
	if (has_o(argc, argv, 1)) {
		/* fuse-overlayfs's synopsis: prismfs [-f] -o lowerdir=...
		 * MOUNTPOINT (or any mount with its options first) */
		cfg->cmd = PFS_CMD_MOUNT;
		return pfs_cli_parse_mount(argc, argv, 1, false, cfg, err, errlen);
	}
	pfs_cli_seterr(err, errlen, "unknown option '%s' (see prismfs --help)", c);
	return -EINVAL;
}

void pfs_config_free(struct pfs_config *cfg)
{
	free(cfg->fuse_opts);
	cfg->fuse_opts = NULL;
	free(cfg->lowers);
	cfg->lowers = NULL;
	cfg->nlowers = 0;
	free(cfg->optlowers);
	cfg->optlowers = NULL;
	cfg->noptlowers = 0;
	for (size_t i = 0; i < cfg->nstrs; i++)
		free(cfg->strs[i]);
	free(cfg->strs);
	cfg->strs = NULL;
	cfg->nstrs = 0;
}
