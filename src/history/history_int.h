/* history_int: what the parts of the history store share (history.c: the
 * operations; history_db.c: the database; history_save.c: versions;
 * history_wfd.c: the files open for writing). */
#ifndef PFS_HISTORY_INT_H
#define PFS_HISTORY_INT_H

#include "history/history.h"
#include "store/caller.h"

#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <sys/stat.h>

#define PFS_HIST_NB 4096u
#define PFS_HIST_NCOMM 64u

/* A row on its way to the journal (history_db.c). A change's row is on its
 * writer's stack, queued until a commit has it; a note after the fact
 * (a release's "write") is malloc'ed and rides in the next commit. */
struct hrow {
	struct hrow *next;
	long long t;            /* a note's time; 0: the commit's */
	long long uid, gid, pid;
	char comm[32];
	const char *kind, *path, *path2;
	long long arg;
	int state;              /* 0: before the change; 1: a note after it */
	long long seq;          /* its seq once committed, or -errno */
	bool done;
};

/* The command name of a pid: its /proc/PID/comm kept open (one pread a
 * row; a process gone answers ESRCH, and the pid is opened anew). */
struct hcomm {
	pthread_mutex_t mu;
	pid_t pid;
	int fd;
};

/* An object whose previous version the current snapshot already has. */
struct hsaved {
	struct hsaved *next;
	dev_t dev;
	ino_t ino;
	unsigned long long name; /* 0, or a hash of the path of a hard link */
	bool ready;             /* its row written: st and file are the save's */
	struct stat st;         /* what it was (another name's row shares it) */
	char file[64];          /* its data in DIR/versions, "" none */
	char *xa;               /* its kept xattrs (pfs_hist_xattrs), or NULL */
	size_t xalen;
};

/* A file opened for writing: what it was, to say at release if it changed. */
struct hwfd {
	struct hwfd *next;
	struct hwfd *inext;     /* h->wino's chain: by (dev, ino) */
	int fd;
	ino_t ino;
	dev_t dev;
	bool created; /* opened by its create: its creator's setup is noted */
	struct pfs_caller who; /* who opened it: releases come from no one */
	char comm[32];          /* its command name then ("" unknown) */
	char *path;             /* its path when opened (malloc'ed) or NULL: */
	unsigned long long pgen; /* still right while h->rgen is this */
	off_t size;
	struct timespec mtime;
};

struct pfs_history {
	struct pfs_store base;
	struct pfs_store_ops ops; /* history_ops and what the store below has */
	struct pfs_store *in;
	char root[PATH_MAX];   /* the tree's canonical path */
	size_t rootlen;
	char dir[PATH_MAX];    /* DIR, canonical */
	dev_t procdev;         /* /proc's: the view names a node's object as
				* (its /proc/self/fd, "N") */
	int procfd;            /* /proc/self/fd of the process that serves, or
				* -1: a path is read by readlinkat(procfd, "N"),
				* one lookup instead of four */
	pthread_mutex_t lock;  /* the database, the tables */
	sqlite3 *db;
	sqlite3_stmt *ins, *upd, *sav, *sbegin, *scommit, *sroll;
	/* A read of db stepped once and not reset: the connection keeps its
	 * read transaction (its WAL read mark) from one commit to the next,
	 * instead of taking it anew in each (4 of a commit's 6 fcntl locks).
	 * Dropped before a checkpoint (it stops at a reader's mark) and
	 * before anything that a pending statement forbids (DROP TABLE). */
	sqlite3_stmt *hold;
	bool holding;
	int wal_pages;          /* the WAL's size after the last commit (hook) */
	struct { long long seq; int ret; } *pend; /* outcomes not yet written */
	size_t npend, cpend;
	struct hrow *notes, **notes_tail; /* notes not yet written (under lock) */
	/* Group commit: rows queue here; one writer at a time (the leader)
	 * commits all that are queued in one transaction, the others wait
	 * for theirs. A row is committed before its change, as alone. */
	pthread_mutex_t qmu;
	pthread_cond_t qcv;
	struct hrow *qhead, **qtail;
	bool qleader;
	struct hcomm comm[PFS_HIST_NCOMM];
	/* The WAL's checkpoints (which fsync) on a thread of their own, not
	 * in the commit of the change that crosses the threshold. */
	pthread_mutex_t ck_mu;
	pthread_cond_t ck_cv;
	pthread_t ck_thread;
	bool ck_running, ck_stop, ck_want;
	int ck_done;            /* WAL frames its last checkpoint copied */
	sqlite3 *ckdb;
	long long snap;        /* the newest snapshot's id, 0: none */
	unsigned long long vseq; /* names of saved versions */
	int vdir;              /* DIR/versions */
	int lockfd;            /* DIR/lock, flock'ed */
	struct hsaved *saved[PFS_HIST_NB];
	struct hwfd *wfds[PFS_HIST_NB];
	struct hwfd *wino[PFS_HIST_NB]; /* the same, by (dev, ino) */
	/* Renames made through the store (atomic): a path found before the
	 * last one may be stale, one found since is right (bumped after
	 * each rename is made). */
	unsigned long long rgen;
	unsigned nwfds;         /* entries in wfds */
	unsigned ncreated;      /* of them opened by their create (atomic) */
	struct pfs_hist_policy pol;
	pthread_mutex_t cp_mu;  /* the checkpoint thread's sleep */
	pthread_cond_t cp_cv;
	pthread_t cp_thread;
	bool cp_running, cp_stop;
	unsigned long long cp_checks; /* atomic */
	struct pfs_past past;   /* the tree at each snapshot (history_browse.c) */
	pthread_mutex_t bmu;    /* one browse at a time: bdb, rootfd */
	sqlite3 *bdb;           /* read-only, opened at the first browse */
	int rootfd;             /* O_PATH on the tree's root, or -1 */
	int rootfd0;            /* the root given at pfs_history_new, or -1:
				 * h->root reaches it */
	bool b_valid;           /* bdb's TEMP tables hold the replay since */
	bool b_ls;              /* a listing made temp.ls in this browse */
	long long b_id, b_ver;  /* snapshot b_id, at data_version b_ver */
	bool mapped;            /* maps has a row: a table was recorded once */
	bool temps_outside;     /* a layered mount's: outside the root, only temporaries */
	void (*on_snaps)(void *arg); /* past.watch's: set once, before serving */
	void *on_snaps_arg;
};

/* history_browse.c: tell the watcher the set of snapshots changed. */
void pfs_hist_snaps_changed(struct pfs_history *h);

#define H(st) ((struct pfs_history *)(st))

/* history.c: (dirfd, name) as the object it names: the view names a
 * node's object as ("/proc/self/fd", "N"), which becomes (N, NULL). */
void pfs_hist_obj(struct pfs_history *h, int *dirfd, const char **name);
/* history.c: the path of (dirfd, name) relative to the root ("" the root;
 * absolute when outside it). 0 or -errno. */
int pfs_hist_path(struct pfs_history *h, int dirfd, const char *name, char *buf, size_t len);
/* The same; a descriptor's object whose name /proc gives was removed
 * (" (deleted)") is named by another name it has now (hard links), else
 * *stale is set (nlink 0, or no other name found). */
int pfs_hist_path_at(struct pfs_history *h, int dirfd, const char *name, char *buf, size_t len,
		     bool *stale);
/* history_name.c: a name (relative to the root, into buf) the file open
 * as fd has now, its name gone (relative too) removed: another of its
 * names (hard links), checked to be the same object. 0 or -ENOENT. */
int pfs_hist_live_name(struct pfs_history *h, int fd, const char *gone, char *buf, size_t len);
/* history.c: is (dirfd, name) an object no name of the tree reaches (a
 * file unlinked while open, changed through its descriptor)? */
bool pfs_hist_nameless(struct pfs_history *h, int dirfd, const char *name);
/* history.c: a new O_PATH descriptor of the tree's root, or -errno. The
 * tree is read through h->in (a cache fills and loads what is asked). */
int pfs_hist_root(struct pfs_history *h);

/* history.c: is path (as pfs_hist_path gave it) a layered mount's temporary? */
bool pfs_hist_outside(const struct pfs_history *h, const char *path);
/* history.c: a ref as (dirfd, name): an open fd is its own object. */
void pfs_hist_ref_at(struct pfs_ref r, int *dirfd, const char **name);

/* history_wfd.c: the files open for writing (h->wfds, under h->lock).
 * fd opened for writing (created: by its create) by this thread's caller
 * (command name comm, "" unknown), path its path as found while h->rgen
 * was pgen (NULL: not known; the entry takes it). */
void pfs_hist_wfd_add(struct pfs_history *h, int fd, bool created, const char *comm,
		      char *path, unsigned long long pgen);
/* Did fd's file change since it was opened (or last asked)? Its opener
 * into *who, if it changed its path (malloc'ed, if the one found at its
 * open is still right, else NULL) into *path, the opener's command
 * name then into comm[32], and whether it is unlinked now (no name
 * reaches it) into *gone; forget: it is being released. */
bool pfs_hist_wfd_changed(struct pfs_history *h, int fd, bool forget, struct pfs_caller *who,
			  char **path, char *comm, bool *gone);
/* The current rename generation (see rgen). */
unsigned long long pfs_hist_rgen(struct pfs_history *h);
/* All of them freed (the history's end). */
void pfs_hist_wfd_free(struct pfs_history *h);
/* Is r's object a file the caller created through this store and still
 * has open from that create (its setup: notes, not commits)? If so, its
 * path into *path when the one found at its create is still right
 * (malloc'ed; else NULL). */
void pfs_hist_wfd_closed(struct pfs_history *h, int fd);
struct hcreator {
	char *path;     /* see above */
	char comm[32];  /* the creator's command name at its create */
	bool gone;      /* the object is unlinked (no name reaches it) */
};
bool pfs_hist_by_creator(struct pfs_history *h, struct pfs_ref r, struct hcreator *c);
/* Before such a change: previous version saved, its path into c->path
 * (malloc'ed; NULL: not journaled); c->path on entry: the path
 * pfs_hist_by_creator gave, or NULL to find it. 0 or -errno. */
int pfs_hist_creator_before(struct pfs_history *h, struct pfs_ref r, struct hcreator *c);
/* ...and after it (ret: the change's): noted if made, path freed. ret. */
int pfs_hist_creator_after(struct pfs_history *h, struct hcreator *c, const char *kind,
			   long long arg, int ret);

/* history_db.c, under h->lock: end the read transaction kept between
 * commits (see hold), before a use of db a pending statement forbids. */
void pfs_hist_db_unhold(struct pfs_history *h);
/* history_db.c. Open DIR/history.db (tables made if missing). */
int pfs_hist_db_open(struct pfs_history *h, char *err, size_t errlen);
void pfs_hist_db_close(struct pfs_history *h);
/* Record a change about to be made by who (NULL: this thread's
 * requester): its row's seq, or -errno. The command name it recorded
 * into comm[32] (if not NULL). */
long long pfs_hist_db_record(struct pfs_history *h, const struct pfs_caller *who,
			     const char *kind, const char *path, const char *path2, long long arg,
			     char *comm);
/* The change seq was made (ret >= 0) or failed (ret < 0). */
void pfs_hist_db_done(struct pfs_history *h, long long seq, int ret);
/* A change already made and covered by an earlier row (a release's
 * "write"): written with the next commit, or when the journal is read. */
void pfs_hist_db_note(struct pfs_history *h, const struct pfs_caller *who, const char *kind,
		      const char *path, long long arg);
/* The same, by who whose command name is comm (not read again). */
void pfs_hist_db_note_as(struct pfs_history *h, const struct pfs_caller *who, const char *comm,
			 const char *kind, const char *path, long long arg);
/* Record the mapping table in force from now on (JSON text, "" none). */
int pfs_hist_db_table(struct pfs_history *h, const char *json);
/* The group commit's and the command-name cache's state, made and freed
 * with the history. */
void pfs_hist_db_init(struct pfs_history *h);
void pfs_hist_db_fini(struct pfs_history *h);
/* The checkpoint thread of the WAL (in the process that serves), and
 * its stop (before the database closes). 0 or -errno. */
int pfs_hist_db_ck_start(struct pfs_history *h);
void pfs_hist_db_ck_stop(struct pfs_history *h);

/* history_save.c: before a change to the object (dirfd, name) — name NULL
 * or "" for dirfd's own — save its previous version if a snapshot was
 * taken since it was last saved. 0 or -errno (the change must not go on). */
int pfs_hist_save(struct pfs_history *h, int dirfd, const char *name);
/* history_save.c, under h->lock (a snapshot's transaction): the version
 * of the regular file open for writing as fd, under snapshot snap. */
int pfs_hist_save_open(struct pfs_history *h, int fd, long long snap);
/* history_xattr.c: the extended attributes the history keeps
 * (pfs_xblob_kept: user.*, ACLs, security.*, trusted.*) of (dirfd, name) (name
 * NULL or "": dirfd's own) as one blob kept with its version: for each,
 * its name, a NUL, its value's length (4 bytes, host order), its value.
 * *out malloc'ed (NULL and 0: none). 0 or -errno. */
int pfs_hist_xattrs(struct pfs_history *h, int dirfd, const char *name, char **out,
		    size_t *len);
/* getxattr(2)'s answer for name, or listxattr(2)'s (name NULL: the kept
 * names only), from such a blob (size 0: the length only). */
ssize_t pfs_hist_xa_get(const char *b, size_t len, const char *name, char *buf, size_t size);
/* listxattr(2)'s answer for the live object r, its kept names only. */
ssize_t pfs_hist_xa_list(struct pfs_history *h, struct pfs_ref r, char *buf, size_t size);
/* Forget what was saved (a new snapshot). Under h->lock. */
void pfs_hist_saved_clear(struct pfs_history *h);
/* history_db.c: at the start, the rows a dead daemon left unfinished that
 * the tree shows were made are marked made. 0 or -EIO. */
int pfs_hist_settle(struct pfs_history *h);

/* history_keep.c: the checkpoint thread (started if the policy asks for
 * it), stopped before the database closes; the sweep of DIR/versions at
 * start (files no row names: a prune or a save a crash cut short). */
int pfs_hist_keep_start(struct pfs_history *h);
void pfs_hist_keep_stop(struct pfs_history *h);
int pfs_hist_sweep(struct pfs_history *h);

/* history_browse.c: h->past (made with h), closed with it. */
void pfs_hist_browse_init(struct pfs_history *h);
void pfs_hist_browse_fini(struct pfs_history *h);

#endif
