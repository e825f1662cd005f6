// The attacker inside the sandbox. Runs in: a sandboxed command (the escape suite starts
// it through every way corral starts a command), and once on the host as a witness helper
// (`scan`). Built at test time with `cc -static`, so it needs nothing from the sandbox's
// view but its own file.
//
//   probe run CASE ARGS...        one attack; prints one JSON line and exits 0
//   probe template CASE ARGS...   a copy-on-write template speaking corral's fork protocol
//                                 (docs/fork-protocol.md); every clone runs CASE ARGS
//   probe scan DIR                on the host: set-user-ID / set-group-ID / capability files
//   probe victim NAME             listens on the abstract socket @NAME, prints what reaches it
//
// Each attack prints {"case":…,"escaped":true|false|null,"detail":…}: `escaped` is what the
// probe can see for itself (the forbidden thing succeeded), null when only a witness
// outside can tell (a datagram that left, a file that changed on the host). Attacks make
// raw system calls, so a libc wrapper's own checks never hide what the kernel allows.
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/filter.h>
#include <linux/io_uring.h>
#include <linux/keyctl.h>
#include <linux/mount.h>
#include <linux/openat2.h>
#include <linux/perf_event.h>
#include <linux/sched.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#ifndef IPPROTO_MPTCP
#define IPPROTO_MPTCP 262
#endif
#ifndef SYS_fchmodat2
#define SYS_fchmodat2 452
#endif
#ifndef MFD_EXEC
#define MFD_EXEC 0x0010U
#endif
#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif
#if defined(__x86_64__)
#define LDSO "/lib64/ld-linux-x86-64.so.2"
#elif defined(__aarch64__)
#define LDSO "/lib/ld-linux-aarch64.so.1"
#else
#define LDSO "/lib/ld-linux.so.2"
#endif

// ---------------------------------------------------------------------------------------
// Output: one JSON line per attack.

static char detail[16384];
static size_t detail_len;

static void note(const char *fmt, ...) {
  if (detail_len + 2 >= sizeof detail) return;
  if (detail_len) detail[detail_len++] = ' ';
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(detail + detail_len, sizeof detail - detail_len, fmt, ap);
  va_end(ap);
  if (n > 0) detail_len += (size_t)n < sizeof detail - detail_len ? (size_t)n : sizeof detail - detail_len - 1;
}

/// Records one attempt: `what=ok` or `what=ERRNO`; returns 1 when it succeeded.
static int attempt(const char *what, long ret) {
  if (ret >= 0) {
    note("%s=ok", what);
    return 1;
  }
  note("%s=%s", what, strerrorname_np(errno) ? strerrorname_np(errno) : "?");
  return 0;
}

static void json_string(FILE *f, const char *s, size_t n) {
  fputc('"', f);
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
    else if (c < 0x20 || c >= 0x7f) fprintf(f, "\\u%04x", c);
    else fputc(c, f);
  }
  fputc('"', f);
}

static const char *case_name = "?";

/// Prints the attack's line. escaped: 1 yes, 0 no, -1 only a witness can tell.
static int report(int escaped) {
  printf("{\"case\":");
  json_string(stdout, case_name, strlen(case_name));
  printf(",\"escaped\":%s,\"detail\":", escaped < 0 ? "null" : escaped ? "true" : "false");
  json_string(stdout, detail, detail_len);
  printf("}\n");
  fflush(stdout);
  return 0;
}

// ---------------------------------------------------------------------------------------
// Small helpers.

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
  }
}

/// Waits up to `ms` for the host's "go" (SIGUSR1, blocked since main began): the host
/// sends it once it has made what the attack is about (a socket, a file). Whether that
/// thing is then visible here is part of what the attack finds out.
static int wait_go(long ms) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  for (;;) {
    int r = sigtimedwait(&set, NULL, &ts);
    if (r == SIGUSR1) return 1;
    if (r < 0 && errno == EINTR) continue;
    note("no_go_from_host");
    return 0;
  }
}

/// Waits up to `ms` for `path` to exist (lstat); 1 when it does.
static int wait_for(const char *path, long ms) {
  struct stat st;
  for (long waited = 0;; waited += 5) {
    if (lstat(path, &st) == 0) return 1;
    if (waited >= ms) return 0;
    sleep_ms(5);
  }
}

static ssize_t read_all(int fd, char *buf, size_t cap) {
  size_t got = 0;
  while (got < cap) {
    ssize_t n = read(fd, buf + got, cap - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += (size_t)n;
  }
  return (ssize_t)got;
}

static ssize_t read_file(const char *path, char *buf, size_t cap) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = read_all(fd, buf, cap);
  close(fd);
  return n;
}

static int contains(const char *hay, size_t n, const char *needle) {
  size_t m = strlen(needle);
  if (m == 0 || n < m) return 0;
  for (size_t i = 0; i + m <= n; i++)
    if (memcmp(hay + i, needle, m) == 0) return 1;
  return 0;
}

static int write_file(const char *path, const char *data, int mode) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return -1;
  ssize_t n = write(fd, data, strlen(data));
  close(fd);
  return n < 0 ? -1 : 0;
}

static int copy_file(const char *from, int to_fd) {
  int in = open(from, O_RDONLY | O_CLOEXEC);
  if (in < 0) return -1;
  char buf[65536];
  ssize_t n;
  while ((n = read(in, buf, sizeof buf)) > 0)
    if (write(to_fd, buf, (size_t)n) != n) {
      close(in);
      return -1;
    }
  close(in);
  return n < 0 ? -1 : 0;
}

static void mkdirs(const char *path) {
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s", path);
  for (char *p = tmp + 1; *p; p++)
    if (*p == '/') {
      *p = 0;
      mkdir(tmp, 0755);
      *p = '/';
    }
  mkdir(tmp, 0755);
}

/// Runs argv (execve of `path`) or, with fd >= 0, execveat(fd, "", AT_EMPTY_PATH) in a child
/// whose stdout is captured into out; returns bytes captured, -1 when the exec failed.
static ssize_t run_capture(const char *path, int fd, char *const argv[], char *out, size_t cap, int *exec_errno) {
  int p[2], e[2];
  if (pipe2(p, O_CLOEXEC) < 0 || pipe2(e, O_CLOEXEC) < 0) return -1;
  pid_t pid = fork();
  if (pid == 0) {
    dup2(p[1], 1);
    char *envp[] = {NULL};
    if (fd >= 0) syscall(SYS_execveat, fd, "", argv, envp, AT_EMPTY_PATH);
    else syscall(SYS_execve, path, argv, envp);
    int err = errno;
    if (write(e[1], &err, sizeof err) < 0) _exit(126);
    _exit(127);
  }
  close(p[1]);
  close(e[1]);
  ssize_t n = read_all(p[0], out, cap);
  int err = 0;
  ssize_t got = read(e[0], &err, sizeof err);
  close(p[0]);
  close(e[0]);
  int status;
  waitpid(pid, &status, 0);
  *exec_errno = got == (ssize_t)sizeof err ? err : 0;
  return got == (ssize_t)sizeof err ? -1 : n;
}

static const char *errname(int e) {
  const char *n = strerrorname_np(e);
  return n ? n : "?";
}

// ---------------------------------------------------------------------------------------
// File system.

/// modify PATH TOKEN: every way to change a file the sandbox must not change.
static int c_modify(char **a) {
  const char *path = a[0], *token = a[1];
  struct stat st;
  int hit = 0;
  if (lstat(path, &st) < 0) {
    note("lstat=%s", errname(errno));
    memset(&st, 0, sizeof st);
  }
  int fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
  if (attempt("open_append", fd)) {
    hit |= attempt("write", write(fd, token, strlen(token)));
    close(fd);
  }
  struct open_how how = {.flags = O_WRONLY | O_CLOEXEC};
  fd = (int)syscall(SYS_openat2, AT_FDCWD, path, &how, sizeof how);
  if (attempt("openat2_wronly", fd)) {
    hit = 1;
    close(fd);
  }
  hit |= attempt("truncate", truncate(path, st.st_size));
  hit |= attempt("chmod", chmod(path, st.st_mode & 07777));
  hit |= attempt("chown", chown(path, st.st_uid, st.st_gid));
  hit |= attempt("utimensat", utimensat(AT_FDCWD, path, NULL, AT_SYMLINK_NOFOLLOW));
  hit |= attempt("setxattr", setxattr(path, "user.corral-escape", token, strlen(token), 0));
  char moved[4200];
  snprintf(moved, sizeof moved, "%s.moved-%s", path, token);
  if (attempt("rename", rename(path, moved))) {
    hit = 1;
    if (rename(moved, path) < 0) note("rename_back=%s", errname(errno));
  }
  snprintf(moved, sizeof moved, "%s.link-%s", path, token);
  if (attempt("link", link(path, moved))) {
    hit = 1;
    unlink(moved);
  }
  return report(hit);
}

/// create DIR TOKEN: every way to add an entry to a directory the sandbox must not change.
static int c_create(char **a) {
  const char *dir = a[0], *token = a[1];
  char p[4200];
  int hit = 0;
  snprintf(p, sizeof p, "%s/escape-%s", dir, token);
  int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (attempt("creat", fd)) {
    hit = 1;
    close(fd);
  }
  snprintf(p, sizeof p, "%s/escape-%s.d", dir, token);
  hit |= attempt("mkdir", mkdir(p, 0755));
  snprintf(p, sizeof p, "%s/escape-%s.l", dir, token);
  hit |= attempt("symlink", symlink("/", p));
  snprintf(p, sizeof p, "%s/escape-%s.p", dir, token);
  hit |= attempt("mkfifo", mknod(p, S_IFIFO | 0644, 0));
  snprintf(p, sizeof p, "%s/escape-%s.w", dir, token);
  hit |= attempt("mknod_whiteout", mknod(p, S_IFCHR | 0644, makedev(0, 0)));
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  snprintf(sa.sun_path, sizeof sa.sun_path, "%s/esc-%s.s", dir, token);
  int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  hit |= attempt("bind_unix", bind(s, (struct sockaddr *)&sa, sizeof sa));
  close(s);
  return report(hit);
}

/// plant PATH CONTENT: create PATH (and its missing directories) holding CONTENT, as
/// `mkdir -p; echo > file` would.
static int c_plant(char **a) {
  char dir[4200];
  snprintf(dir, sizeof dir, "%s", a[0]);
  char *slash = strrchr(dir, '/');
  if (slash && slash != dir) {
    *slash = 0;
    mkdirs(dir);
  }
  return report(attempt("plant", write_file(a[0], a[1], 0755)));
}

/// remove PATH: unlink or rmdir something the sandbox must not remove.
static int c_remove(char **a) {
  int hit = attempt("unlink", unlink(a[0]));
  hit |= attempt("rmdir", rmdir(a[0]));
  return report(hit);
}

/// read PATH MARKER: the content must not be readable (MARKER is part of it).
static int c_read(char **a) {
  const char *path = a[0], *marker = a[1];
  static char buf[1 << 16];
  int hit = 0;
  ssize_t n = read_file(path, buf, sizeof buf);
  if (attempt("open", n)) {
    note("bytes=%zd", n);
    if (contains(buf, (size_t)n, marker)) hit = 1, note("marker_seen");
  }
  struct open_how how = {.flags = O_RDONLY | O_CLOEXEC, .resolve = RESOLVE_NO_MAGICLINKS};
  int fd = (int)syscall(SYS_openat2, AT_FDCWD, path, &how, sizeof how);
  if (fd >= 0) {
    n = read_all(fd, buf, sizeof buf);
    close(fd);
    if (n > 0 && contains(buf, (size_t)n, marker)) hit = 1, note("marker_seen_openat2");
  }
  fd = open(path, O_PATH | O_CLOEXEC);
  if (fd >= 0) {
    char via[64];
    snprintf(via, sizeof via, "/proc/self/fd/%d", fd);
    n = read_file(via, buf, sizeof buf);
    close(fd);
    if (n > 0 && contains(buf, (size_t)n, marker)) hit = 1, note("marker_seen_procfd");
  }
  return report(hit);
}

/// ls DIR MARKER: no entry name containing MARKER may be listed.
static int c_ls(char **a) {
  DIR *d = opendir(a[0]);
  int hit = 0;
  if (!attempt("opendir", d ? 0 : -1)) return report(0);
  struct dirent *e;
  while ((e = readdir(d)))
    if (strstr(e->d_name, a[1])) hit = 1, note("listed=%s", e->d_name);
  closedir(d);
  return report(hit);
}

/// setid DIR: files and directories with set-user-ID, set-group-ID or file capabilities.
static int c_setid(char **a) {
  const char *dir = a[0];
  char p[4200];
  int hit = 0;
  // chmod after writing, as `cp; chmod 4755` does.
  snprintf(p, sizeof p, "%s/suid-chmod", dir);
  if (write_file(p, "#!/bin/sh\nid\n", 0755) == 0) hit |= attempt("chmod_4755", chmod(p, 04755));
  else note("create=%s", errname(errno));
  snprintf(p, sizeof p, "%s/sgid-chmod", dir);
  if (write_file(p, "x", 0755) == 0) hit |= attempt("chmod_2755", chmod(p, 02755));
  snprintf(p, sizeof p, "%s/suid-fchmod", dir);
  int fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0755);
  if (fd >= 0) {
    hit |= attempt("fchmod_4755", fchmod(fd, 04755));
    close(fd);
  }
  snprintf(p, sizeof p, "%s/suid-fchmodat", dir);
  if (write_file(p, "x", 0755) == 0) hit |= attempt("fchmodat_6755", fchmodat(AT_FDCWD, p, 06755, 0));
  snprintf(p, sizeof p, "%s/suid-fchmodat2", dir);
  if (write_file(p, "x", 0755) == 0)
    hit |= attempt("fchmodat2_4755", syscall(SYS_fchmodat2, AT_FDCWD, p, 04755, AT_SYMLINK_NOFOLLOW));
  snprintf(p, sizeof p, "%s/suid-procfd", dir);
  fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0755);
  if (fd >= 0) {
    char via[64];
    snprintf(via, sizeof via, "/proc/self/fd/%d", fd);
    hit |= attempt("chmod_procfd_4755", chmod(via, 04755));
    close(fd);
  }
  snprintf(p, sizeof p, "%s/suid-creat", dir);
  fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 04755);
  if (fd >= 0) close(fd);
  snprintf(p, sizeof p, "%s/sgid-dir", dir);
  hit |= attempt("mkdir_2775", mkdir(p, 02775)) && 0;
  chmod(p, 02775);
  snprintf(p, sizeof p, "%s/fcap", dir);
  if (write_file(p, "x", 0755) == 0) {
    // VFS_CAP_REVISION_2 granting CAP_NET_RAW (13) permitted+effective.
    uint32_t cap[5] = {0x02000001, 1u << 13, 0, 0, 0};
    hit |= attempt("setxattr_security_capability", setxattr(p, "security.capability", cap, sizeof cap, 0));
  }
  // What the sandbox now sees.
  DIR *d = opendir(dir);
  struct dirent *e;
  while (d && (e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
    if (lstat(p, &st) < 0) continue;
    char capbuf[64];
    ssize_t caps = getxattr(p, "security.capability", capbuf, sizeof capbuf);
    if ((st.st_mode & (S_ISUID | S_ISGID)) || caps > 0) {
      hit = 1;
      note("%s:%o%s", e->d_name, st.st_mode & 07777, caps > 0 ? "+cap" : "");
    }
  }
  if (d) closedir(d);
  return report(hit);
}

/// mapwrite FILE: rewrite FILE through a shared writable mapping and report whether it
/// kept a set-user-ID or set-group-ID bit (write(2) clears them; a mapping does not).
static int c_mapwrite(char **a) {
  const char *path = a[0];
  int fd = open(path, O_RDWR | O_CLOEXEC);
  if (!attempt("open_rdwr", fd)) return report(0);
  struct stat st;
  if (fstat(fd, &st) < 0 || st.st_size < 8) {
    note("size=%lld", (long long)st.st_size);
    close(fd);
    return report(0);
  }
  char *m = mmap(NULL, st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (m == MAP_FAILED) {
    attempt("mmap_shared_write", -1);
    close(fd);
    return report(0);
  }
  char *at = memmem(m, st.st_size, "original", 8);
  if (at) memcpy(at, "ESCAPED!", 8);
  msync(m, st.st_size, MS_SYNC);
  munmap(m, st.st_size);
  struct stat after;
  fstat(fd, &after);
  close(fd);
  note("rewritten=%d mode=%o", at != NULL, after.st_mode & 07777);
  return report(at != NULL && (after.st_mode & (S_ISUID | S_ISGID)));
}

/// mapwritelater FILE WAIT_MS: after the host's "go", try mapwrite on FILE every 20 ms for
/// up to WAIT_MS (the host has just replaced something on its path).
static int c_mapwritelater(char **a) {
  long ms = atol(a[1]);
  wait_go(ms);
  for (long waited = 0;; waited += 20) {
    int fd = open(a[0], O_RDWR | O_CLOEXEC);
    if (fd >= 0) {
      close(fd);
      note("after_ms=%ld", waited);
      return c_mapwrite(a);
    }
    if (waited >= ms) break;
    usleep(20000);
  }
  return c_mapwrite(a);
}

/// aclmode FILE GROUP OTHER [MARK]: optionally write MARK over "original" in FILE with
/// write(2) first, then set an access ACL whose group and other entries are GROUP and OTHER
/// (octal rwx digits): an ACL sets a file's permission bits without clearing a set-id bit.
/// Reports the mode that results.
static int c_aclmode(char **a) {
  const char *path = a[0];
  if (a[3] && *a[3]) {
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (!attempt("open_rdwr", fd)) return report(0);
    char buf[4096];
    ssize_t n = read(fd, buf, sizeof buf);
    char *at = n > 0 ? memmem(buf, (size_t)n, "original", 8) : NULL;
    if (at) attempt("pwrite", pwrite(fd, a[3], 8, at - buf));
    close(fd);
  }
  struct {
    uint32_t version;
    struct {
      uint16_t tag, perm;
      uint32_t id;
    } __attribute__((packed)) e[3];
  } __attribute__((packed)) acl = {2, {{1, 7, 0xffffffff}, {4, (uint16_t)atoi(a[1]), 0xffffffff}, {0x20, (uint16_t)atoi(a[2]), 0xffffffff}}};
  int ok = attempt("setxattr_acl", setxattr(path, "system.posix_acl_access", &acl, sizeof acl, 0));
  struct stat st;
  if (stat(path, &st) == 0) note("mode=%o", st.st_mode & 07777);
  return report(ok && (st.st_mode & 06000) && (st.st_mode & 0033));
}

/// maplink FILE NEW: hard-link FILE to NEW (its directory made first), then rewrite it
/// through a shared writable mapping under the new name (see mapwrite).
static int c_maplink(char **a) {
  char dir[4200];
  snprintf(dir, sizeof dir, "%s", a[1]);
  char *slash = strrchr(dir, '/');
  if (slash) {
    *slash = 0;
    mkdirs(dir);
  }
  if (!attempt("link", link(a[0], a[1]))) return report(0);
  char *b[] = {a[1]};
  return c_mapwrite(b);
}

/// guardlease DIR COUNT: hold a write lease on DIR/leased, open COUNT other new files in DIR
/// (enough to make a set-id guard's responder drop its remembered verdicts), then open
/// DIR/leased from another process: whoever opens it for the guard must not wait for the
/// lease, nor give up answering the rest of the sandboxes. Reports whether that open was
/// answered (either way) and the probe lived.
static int c_guardlease(char **a) {
  const char *dir = a[0];
  long count = atol(a[1]);
  char leased[4200], f[4200];
  snprintf(leased, sizeof leased, "%s/leased", dir);
  signal(SIGIO, SIG_IGN); // a lease break is signalled to its holder
  int fd = open(leased, O_CREAT | O_RDONLY | O_CLOEXEC, 0644);
  if (!attempt("open_leased", fd)) return report(0);
  if (!attempt("setlease_wrlck", fcntl(fd, F_SETLEASE, F_WRLCK))) return report(0);
  long made = 0;
  for (long i = 0; i < count; i++) {
    snprintf(f, sizeof f, "%s/churn-%ld", dir, i);
    int c = open(f, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    if (c >= 0) {
      made++;
      close(c);
    }
    unlink(f);
  }
  note("churned=%ld", made);
  pid_t pid = fork();
  if (pid == 0) {
    int o = open(leased, O_RDONLY | O_CLOEXEC);
    _exit(o >= 0 ? 0 : errno);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  note("reopen=%s", WIFEXITED(st) ? (WEXITSTATUS(st) ? strerror(WEXITSTATUS(st)) : "ok") : "killed");
  close(fd);
  unlink(leased);
  return report(0);
}

/// replace ROOT ANCESTOR LEAF MARK: make ROOT/ANCESTOR/LEAF hold MARK by replacing
/// ANCESTOR (rename it away, exchange it, or unlink it when it is a symlink). Only the
/// host can tell whether the protected path changed.
static int c_replace(char **a) {
  const char *root = a[0], *anc = a[1], *leaf = a[2], *mark = a[3];
  char orig[4200], fresh[4200], file[8500], moved[4200];
  snprintf(orig, sizeof orig, "%s/%s", root, anc);
  snprintf(fresh, sizeof fresh, "%s/%s.new-escape", root, anc);
  snprintf(moved, sizeof moved, "%s/%s.orig-escape", root, anc);
  snprintf(file, sizeof file, "%s/%s", fresh, leaf);
  char *slash = strrchr(file, '/');
  *slash = 0;
  mkdirs(file);
  *slash = '/';
  if (write_file(file, mark, 0644) < 0) note("prepare=%s", errname(errno));
  struct stat st;
  int is_link = lstat(orig, &st) == 0 && S_ISLNK(st.st_mode);
  int done = 0;
  int exchange_only = a[4] && !strcmp(a[4], "exchange");
  if (exchange_only) {
    done = attempt("exchange", syscall(SYS_renameat2, AT_FDCWD, fresh, AT_FDCWD, orig, RENAME_EXCHANGE));
  } else if (is_link) {
    if (attempt("unlink_symlink", unlink(orig))) done = attempt("rename_in", rename(fresh, orig));
  } else if (attempt("rename_away", rename(orig, moved))) {
    done = attempt("rename_in", rename(fresh, orig));
  } else {
    done = attempt("exchange", syscall(SYS_renameat2, AT_FDCWD, fresh, AT_FDCWD, orig, RENAME_EXCHANGE));
  }
  // Whatever happened, what does the sandbox now see at the protected path?
  char path[8500], buf[256];
  snprintf(path, sizeof path, "%s/%s/%s", root, anc, leaf);
  ssize_t n = read_file(path, buf, sizeof buf - 1);
  if (n > 0 && contains(buf, (size_t)n, mark)) note("sandbox_sees_mark");
  note("swapped=%d", done);
  return report(-1);
}

/// link SRC DSTDIR MARKER: a hard link to a hidden or protected file, then read and write
/// through it.
static int c_link(char **a) {
  char dst[4200];
  snprintf(dst, sizeof dst, "%s/escape-link", a[1]);
  int hit = 0;
  if (attempt("link", link(a[0], dst)) ||
      attempt("linkat_follow", linkat(AT_FDCWD, a[0], AT_FDCWD, dst, AT_SYMLINK_FOLLOW))) {
    char buf[4096];
    ssize_t n = read_file(dst, buf, sizeof buf);
    if (n > 0 && contains(buf, (size_t)n, a[2])) hit = 1, note("marker_seen");
    int fd = open(dst, O_WRONLY | O_APPEND | O_CLOEXEC);
    if (attempt("write_through_link", fd)) {
      hit = 1;
      close(fd);
    }
  }
  return report(hit);
}

// ---------------------------------------------------------------------------------------
// Sockets.

static int unix_addr(struct sockaddr_un *sa, const char *path) {
  memset(sa, 0, sizeof *sa);
  sa->sun_family = AF_UNIX;
  if (path[0] == '@') {
    size_t n = strlen(path);
    memcpy(sa->sun_path + 1, path + 1, n - 1);
    return (int)(offsetof(struct sockaddr_un, sun_path) + n);
  }
  snprintf(sa->sun_path, sizeof sa->sun_path, "%s", path);
  return (int)sizeof *sa;
}

/// Connects to a Unix socket (stream, then seqpacket, then a datagram sent to it); sends
/// the token on success. Returns 1 when any way reached it.
static int unix_reach(const char *path, const char *token) {
  struct sockaddr_un sa;
  int len = unix_addr(&sa, path);
  int hit = 0;
  static const struct {
    int type;
    const char *name;
  } kinds[] = {{SOCK_STREAM, "stream"}, {SOCK_SEQPACKET, "seqpacket"}, {SOCK_DGRAM, "dgram"}};
  for (size_t i = 0; i < 3; i++) {
    int s = socket(AF_UNIX, kinds[i].type | SOCK_CLOEXEC, 0);
    char what[64];
    if (kinds[i].type == SOCK_DGRAM) {
      snprintf(what, sizeof what, "sendto_%s", kinds[i].name);
      hit |= attempt(what, sendto(s, token, strlen(token), 0, (struct sockaddr *)&sa, (socklen_t)len));
    } else {
      snprintf(what, sizeof what, "connect_%s", kinds[i].name);
      if (attempt(what, connect(s, (struct sockaddr *)&sa, (socklen_t)len))) {
        hit = 1;
        if (send(s, token, strlen(token), MSG_NOSIGNAL) < 0) note("send=%s", errname(errno));
      }
    }
    close(s);
  }
  return hit;
}

/// unix PATH TOKEN WAIT_MS: a pathname (or @abstract) socket; with WAIT_MS > 0 one the
/// host creates after the sandbox started (it says so with SIGUSR1).
static int c_unix(char **a) {
  long wait = atol(a[2]);
  if (wait > 0) wait_go(wait);
  return report(unix_reach(a[0], a[1]));
}

/// unixvia HOW PATH TOKEN WAIT_MS: the socket at PATH (made by the host after "go"), reached
/// by another name: symlink (a link to it in /tmp), symlink-dir (a link to its directory),
/// hardlink (a hard link beside it), procfd (/proc/self/fd/N of an O_PATH descriptor),
/// procpid (/proc/PID/fd/N), thread-self, dotdot (/proc/../proc/self/fd/N, which names
/// whoever resolves it), relative (from its directory as the working directory).
static int c_unixvia(char **a) {
  const char *how = a[0], *path = a[1], *token = a[2];
  wait_go(atol(a[3]));
  wait_for(path, 2000);
  char alias[4200], dir[4096];
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  const char *base = slash ? slash + 1 : path;
  if (slash) *slash = 0;
  int fd = open(path, O_PATH | O_CLOEXEC);
  if (!strcmp(how, "symlink")) {
    unlink("/tmp/probe-alias.sock");
    attempt("symlink", symlink(path, "/tmp/probe-alias.sock"));
    snprintf(alias, sizeof alias, "/tmp/probe-alias.sock");
  } else if (!strcmp(how, "symlink-dir")) {
    unlink("/tmp/probe-alias-dir");
    attempt("symlink", symlink(dir, "/tmp/probe-alias-dir"));
    snprintf(alias, sizeof alias, "/tmp/probe-alias-dir/%s", base);
  } else if (!strcmp(how, "hardlink")) {
    snprintf(alias, sizeof alias, "%s/hl-%s", dir, base);
    attempt("link", link(path, alias));
  } else if (!strcmp(how, "procfd")) {
    attempt("open_path", fd);
    snprintf(alias, sizeof alias, "/proc/self/fd/%d", fd);
  } else if (!strcmp(how, "procpid")) {
    attempt("open_path", fd);
    snprintf(alias, sizeof alias, "/proc/%d/fd/%d", getpid(), fd);
  } else if (!strcmp(how, "thread-self")) {
    attempt("open_path", fd);
    snprintf(alias, sizeof alias, "/proc/thread-self/fd/%d", fd);
  } else if (!strcmp(how, "dotdot")) {
    attempt("open_path", fd);
    snprintf(alias, sizeof alias, "/proc/../proc/self/fd/%d", fd);
  } else if (!strcmp(how, "relative")) {
    attempt("chdir", chdir(dir));
    snprintf(alias, sizeof alias, "%s", base);
  } else {
    note("unknown_how");
    return report(0);
  }
  note("via=%s", alias);
  int hit = unix_reach(alias, token);
  // Every descriptor number of this process, through the /proc spellings above.
  if (!strcmp(how, "dotdot")) {
    for (int n = 0; n < 64; n++) {
      snprintf(alias, sizeof alias, "/proc/../proc/self/fd/%d", n);
      struct sockaddr_un sa;
      int len = unix_addr(&sa, alias);
      int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (connect(s, (struct sockaddr *)&sa, (socklen_t)len) == 0) hit = 1, note("connected_%s", alias);
      close(s);
    }
  }
  return report(hit);
}

static struct {
  char dir[4096], cur[4200];
  atomic_int want, moved;
} race;

static void race_name(char *out, size_t cap, int i) { snprintf(out, cap, "%s/race-%d.sock", race.dir, i); }

/// Renames the host's socket over each name the moment the gate has made it.
static void *race_mover(void *unused) {
  (void)unused;
  for (;;) {
    int i = atomic_load(&race.want);
    if (i == -2) return NULL;
    if (i < 0) continue;
    char target[4200];
    race_name(target, sizeof target, i);
    struct stat st;
    while (lstat(target, &st) != 0 && atomic_load(&race.want) == i) {
    }
    if (rename(race.cur, target) == 0) snprintf(race.cur, sizeof race.cur, "%s", target);
    atomic_store(&race.moved, i);
    while (atomic_load(&race.want) == i) {
    }
  }
}

/// bindrace PATH TOKEN MS: PATH is a host program's socket in a directory the sandbox may
/// write. Binds new sockets there, one name after another, while a second thread renames
/// the host's socket over each new name as soon as it appears: if whoever binds for the
/// command remembers "the socket at that name" rather than the one it bound, the host's
/// socket becomes the sandbox's own. Then connects to the host's socket (wherever it now
/// is) and sends TOKEN. Tries for MS milliseconds.
static int c_bindrace(char **a) {
  const char *path = a[0], *token = a[1];
  long ms = atol(a[2]);
  snprintf(race.dir, sizeof race.dir, "%s", path);
  char *slash = strrchr(race.dir, '/');
  if (slash) *slash = 0;
  snprintf(race.cur, sizeof race.cur, "%s", path);
  atomic_store(&race.want, -1);
  atomic_store(&race.moved, -1);
  pthread_t t;
  if (pthread_create(&t, NULL, race_mover, NULL)) return report(0);
  struct timespec start, now;
  clock_gettime(CLOCK_MONOTONIC, &start);
  int hit = 0, i = 0;
  for (;; i++) {
    char name[4200];
    race_name(name, sizeof name, i);
    struct sockaddr_un sa;
    int len = unix_addr(&sa, name);
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    atomic_store(&race.want, i);
    long b = bind(s, (struct sockaddr *)&sa, (socklen_t)len);
    while (b == 0 && atomic_load(&race.moved) != i) {
    }
    if (b == 0) {
      len = unix_addr(&sa, race.cur);
      int c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (connect(c, (struct sockaddr *)&sa, (socklen_t)len) == 0) {
        hit = 1;
        if (write(c, token, strlen(token)) < 0) note("write=%s", errname(errno));
        sleep_ms(50);
        note("connected_to_host_socket_at=%s attempt=%d", race.cur, i);
      }
      close(c);
    }
    close(s);
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (hit || (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000 > ms) break;
  }
  atomic_store(&race.want, -2);
  pthread_join(t, NULL);
  note("attempts=%d", i + 1);
  return report(hit);
}

/// proxysock DIR HOST PORT TOKEN WAIT_MS: finds another sandbox's proxy socket
/// (DIR/corral-proxy-*/proxy.sock, created after this sandbox started) and asks it for
/// HOST:PORT. Tries every candidate until one answers (stale ones refuse).
static int c_proxysock(char **a) {
  const char *dir = a[0], *host = a[1], *port = a[2], *token = a[3];
  long wait = atol(a[4]);
  wait_go(wait);
  for (long waited = 0; waited <= wait; waited += 5) {
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
      if (strncmp(e->d_name, "corral-proxy-", 13)) continue;
      char sock[4200];
      snprintf(sock, sizeof sock, "%s/%s/proxy.sock", dir, e->d_name);
      struct sockaddr_un sa;
      int len = unix_addr(&sa, sock);
      int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (connect(s, (struct sockaddr *)&sa, (socklen_t)len) < 0) {
        close(s);
        continue;
      }
      closedir(d);
      note("connect_proxy=ok");
      char req[512];
      int n = snprintf(req, sizeof req, "CONNECT %s:%s HTTP/1.1\r\nHost: %s:%s\r\n\r\n", host, port, host, port);
      if (write(s, req, (size_t)n) < 0) note("write=%s", errname(errno));
      char resp[256] = "";
      ssize_t got = read(s, resp, sizeof resp - 1);
      if (got > 0) {
        resp[got] = 0;
        char *eol = strchr(resp, '\r');
        if (eol) *eol = 0;
        note("reply=%s", resp);
        if (strstr(resp, " 200")) {
          if (write(s, token, strlen(token)) < 0) note("token=%s", errname(errno));
          sleep_ms(50);
        }
      }
      close(s);
      return report(1);
    }
    if (d) closedir(d);
    sleep_ms(5);
  }
  note("no_proxy_socket_reached");
  return report(0);
}

static int inet_addr_any(const char *host, int port, struct sockaddr_storage *ss) {
  memset(ss, 0, sizeof *ss);
  struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
  struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
  if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
    in4->sin_family = AF_INET;
    in4->sin_port = htons((uint16_t)port);
    return sizeof *in4;
  }
  if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons((uint16_t)port);
    return sizeof *in6;
  }
  return -1;
}

/// net PROTO HOST PORT TOKEN: tcp, mptcp, sctp (connect) or udp (sendto, and connect+send).
static int c_net(char **a) {
  const char *proto = a[0], *host = a[1], *token = a[3];
  int port = atoi(a[2]);
  struct sockaddr_storage ss;
  int len = inet_addr_any(host, port, &ss);
  if (len < 0) {
    note("bad_address");
    return report(0);
  }
  int type = SOCK_STREAM, protocol = 0, witness_only = 0;
  if (!strcmp(proto, "mptcp")) protocol = IPPROTO_MPTCP;
  else if (!strcmp(proto, "sctp")) protocol = IPPROTO_SCTP, type = SOCK_STREAM;
  else if (!strcmp(proto, "udp")) type = SOCK_DGRAM, witness_only = 1;
  else if (!strcmp(proto, "udplite")) type = SOCK_DGRAM, protocol = IPPROTO_UDPLITE, witness_only = 1;
  int s = socket(ss.ss_family, type | SOCK_CLOEXEC, protocol);
  if (!attempt("socket", s)) return report(0);
  int hit = 0;
  if (!strcmp(proto, "tcp-fastopen")) {
    // sendto(MSG_FASTOPEN) connects without connect().
    if (attempt("sendto_fastopen", sendto(s, token, strlen(token), MSG_FASTOPEN | MSG_NOSIGNAL, (struct sockaddr *)&ss, (socklen_t)len))) {
      hit = 1;
      sleep_ms(50);
    }
  } else if (type == SOCK_DGRAM) {
    attempt("sendto", sendto(s, token, strlen(token), 0, (struct sockaddr *)&ss, (socklen_t)len));
    if (attempt("connect", connect(s, (struct sockaddr *)&ss, (socklen_t)len)))
      attempt("send", send(s, token, strlen(token), 0));
    // A reply means it really left the sandbox (the witness echoes).
    struct pollfd pfd = {.fd = s, .events = POLLIN};
    char buf[64];
    if (poll(&pfd, 1, 200) > 0 && recv(s, buf, sizeof buf, MSG_DONTWAIT) > 0) hit = 1, note("reply");
  } else {
    struct timeval tv = {2, 0};
    setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (attempt("connect", connect(s, (struct sockaddr *)&ss, (socklen_t)len))) {
      hit = 1;
      if (send(s, token, strlen(token), MSG_NOSIGNAL) < 0) note("send=%s", errname(errno));
      sleep_ms(20);
    }
  }
  close(s);
  return report(hit ? 1 : witness_only ? -1 : 0);
}

/// bind PROTO PORT: binding and listening where port rules forbid it (mptcp, tcp, tcp6).
static int c_bind(char **a) {
  const char *proto = a[0];
  int port = atoi(a[1]);
  int v6 = !strcmp(proto, "tcp6") || !strcmp(proto, "mptcp6");
  int protocol = strncmp(proto, "mptcp", 5) == 0 ? IPPROTO_MPTCP : 0;
  struct sockaddr_storage ss;
  int len = inet_addr_any(v6 ? "::1" : "127.0.0.1", port, &ss);
  int s = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, protocol);
  if (!attempt("socket", s)) return report(0);
  int one = 1;
  setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  int hit = attempt("bind", bind(s, (struct sockaddr *)&ss, (socklen_t)len));
  hit &= attempt("listen", listen(s, 1));
  close(s);
  return report(hit);
}

static int inet_addr_any(const char *host, int port, struct sockaddr_storage *ss);

/// The port in an inet or inet6 address.
static int inet_port(const struct sockaddr_storage *ss) {
  return ntohs(ss->ss_family == AF_INET6 ? ((const struct sockaddr_in6 *)ss)->sin6_port : ((const struct sockaddr_in *)ss)->sin_port);
}

/// Connects to `port` on loopback (v6: ::1) as anyone on that network would, noting "reached".
static void reach_loopback(int v6, int port) {
  struct sockaddr_storage to;
  int tlen = inet_addr_any(v6 ? "::1" : "127.0.0.1", port, &to);
  int c = socket(to.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  attempt("reached", connect(c, (struct sockaddr *)&to, (socklen_t)tlen));
  close(c);
}

/// listen PROTO: listen() on a socket never bound (the kernel picks a port), where port
/// rules forbid binding: tcp, tcp6, mptcp.
static int c_listen(char **a) {
  int v6 = !strcmp(a[0], "tcp6");
  int s = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, !strcmp(a[0], "mptcp") ? IPPROTO_MPTCP : 0);
  if (!attempt("socket", s)) return report(0);
  int hit = attempt("listen", listen(s, 1));
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (hit && getsockname(s, (struct sockaddr *)&ss, &len) == 0) {
    int port = inet_port(&ss);
    note("port=%d", port);
    // Listening on every address of the network it is in: reach it as anyone there would.
    reach_loopback(v6, port);
  }
  close(s);
  return report(hit);
}

/// listen-stale PROTO: listen() on a socket that was never bound but whose name still shows
/// the ephemeral port of a failed connect (the kernel keeps the old source port in the
/// name after releasing the port, and a second connect resets the socket's state), where
/// port rules forbid binding: tcp, tcp6, tcp-unspec (disconnected with AF_UNSPEC instead).
/// The kernel then picks a fresh ephemeral port.
static int c_listen_stale(char **a) {
  int v6 = !strcmp(a[0], "tcp6");
  struct sockaddr_storage to;
  int tlen = inet_addr_any(v6 ? "::1" : "127.0.0.1", 1, &to);
  int s = socket(to.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (!attempt("socket", s)) return report(0);
  attempt("connect_refused", connect(s, (struct sockaddr *)&to, (socklen_t)tlen));
  if (!strcmp(a[0], "tcp-unspec")) {
    struct sockaddr unspec = {.sa_family = AF_UNSPEC};
    attempt("disconnect", connect(s, &unspec, sizeof unspec));
  } else {
    attempt("connect_again", connect(s, (struct sockaddr *)&to, (socklen_t)tlen));
  }
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (getsockname(s, (struct sockaddr *)&ss, &len) == 0)
    note("name_port=%d", inet_port(&ss));
  int hit = attempt("listen", listen(s, 1));
  len = sizeof ss;
  if (hit && getsockname(s, (struct sockaddr *)&ss, &len) == 0) {
    int port = inet_port(&ss);
    note("listening_port=%d", port);
    reach_loopback(v6, port);
  }
  close(s);
  return report(hit);
}

/// gatewrap KIND: sendmsg with control data whose second header claims a length that, added
/// to its offset, wraps around (KIND loop: a type nobody knows; rights: SCM_RIGHTS). The
/// kernel answers EINVAL. A child makes the call and the command ends 200 ms later: only the
/// result can tell whether whoever copies the message for the kernel coped (the run must
/// end with the command, neither at its timeout nor as a failed setup).
static int c_gatewrap(char **a) {
  pid_t child = fork();
  if (child == 0) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv) < 0) _exit(1);
    union {
      struct cmsghdr h;
      char b[64];
    } u;
    memset(&u, 0, sizeof u);
    struct cmsghdr *c1 = (struct cmsghdr *)u.b;
    c1->cmsg_len = sizeof(struct cmsghdr), c1->cmsg_level = SOL_SOCKET, c1->cmsg_type = 0x99;
    struct cmsghdr *c2 = (struct cmsghdr *)(u.b + sizeof(struct cmsghdr));
    c2->cmsg_len = (size_t)0 - sizeof(struct cmsghdr), c2->cmsg_level = SOL_SOCKET;
    c2->cmsg_type = !strcmp(a[0], "rights") ? SCM_RIGHTS : 0x99;
    char byte = 'x';
    struct iovec iov = {&byte, 1};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.b, .msg_controllen = sizeof u.b};
    long r = syscall(SYS_sendmsg, sv[0], &m, 0);
    _exit(r < 0 && errno == EINVAL ? 0 : 1);
  }
  if (!attempt("fork", child)) return report(0);
  sleep_ms(200);
  int status;
  if (waitpid(child, &status, WNOHANG) == child) note("sendmsg_returned=%s", WIFEXITED(status) && WEXITSTATUS(status) == 0 ? "EINVAL" : "other");
  else note("sendmsg_still_waiting");
  return report(-1);
}

static int proxy_port(const char *var, int fallback);

/// hogproxy N SECONDS: keeps N connections to the allow-list proxy open for SECONDS,
/// sending nothing (each waits for its request until the proxy drops it; a dropped one is
/// opened again at once). Prints its line once N are open, then holds them.
static int c_hogproxy(char **a) {
  long n = atol(a[0]), seconds = atol(a[1]);
  int port = proxy_port("HTTP_PROXY", 3128);
  int *socks = calloc((size_t)n, sizeof *socks);
  if (!socks) return report(0);
  for (long i = 0; i < n; i++) socks[i] = -1;
  struct timespec start, now;
  clock_gettime(CLOCK_MONOTONIC, &start);
  int reported = 0;
  for (;;) {
    long open_now = 0;
    for (long i = 0; i < n; i++) {
      if (socks[i] >= 0) {
        char c;
        ssize_t r = recv(socks[i], &c, 1, MSG_DONTWAIT);
        if (r == 0 || (r < 0 && errno != EAGAIN)) close(socks[i]), socks[i] = -1;
      }
      if (socks[i] < 0) {
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (s >= 0 && connect(s, (struct sockaddr *)&sa, sizeof sa) == 0) socks[i] = s;
        else if (s >= 0) close(s);
      }
      open_now += socks[i] >= 0;
    }
    if (!reported && open_now >= n) {
      note("open=%ld", open_now);
      report(-1);
      reported = 1;
    }
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (now.tv_sec - start.tv_sec >= seconds) break;
    sleep_ms(100);
  }
  if (!reported) note("open_short"), report(-1);
  return 0;
}

static void *lookup_loop(void *arg) {
  long seconds = (long)arg;
  int port = proxy_port("HTTP_PROXY", 3128);
  struct timespec start, now;
  clock_gettime(CLOCK_MONOTONIC, &start);
  unsigned seed = (unsigned)(uintptr_t)&start ^ (unsigned)start.tv_nsec;
  do {
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s >= 0 && connect(s, (struct sockaddr *)&sa, sizeof sa) == 0) {
      char req[128], reply[256];
      int n = snprintf(req, sizeof req, "CONNECT n%u.%s:80 HTTP/1.1\r\n\r\n", rand_r(&seed), "test");
      if (write(s, req, (size_t)n) == n && read(s, reply, sizeof reply) < 0) sleep_ms(10);
    } else {
      sleep_ms(100);
    }
    if (s >= 0) close(s);
    clock_gettime(CLOCK_MONOTONIC, &now);
  } while (now.tv_sec - start.tv_sec < seconds);
  return NULL;
}

/// lookups THREADS SECONDS: THREADS threads ask the allow-list proxy for names that have
/// to be resolved (random names under .test, which the policy allows), one after another,
/// for SECONDS. Prints its line once they are running.
static int c_lookups(char **a) {
  long threads = atol(a[0]), seconds = atol(a[1]);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 64 << 10);
  pthread_t t[64];
  long started = 0;
  for (long i = 0; i < threads && i < 64; i++)
    if (pthread_create(&t[i], &attr, lookup_loop, (void *)seconds) == 0) started++;
  note("threads=%ld", started);
  report(-1);
  for (long i = 0; i < started; i++) pthread_join(t[i], NULL);
  return 0;
}

/// pipesz: the capacity of a new pipe (the kernel gives 2 pages instead of 16 once the
/// user's pipes hold more than fs.pipe-user-pages-soft).
static int c_pipesz(char **a) {
  (void)a;
  int p[2];
  if (!attempt("pipe", pipe2(p, O_CLOEXEC))) return report(0);
  note("pipe_size=%d", fcntl(p[1], F_GETPIPE_SZ));
  return report(-1);
}

#ifndef SO_ZEROCOPY
#define SO_ZEROCOPY 60
#endif
#ifndef MSG_ZEROCOPY
#define MSG_ZEROCOPY 0x4000000
#endif
#define ZC_LEN (64 << 10)

static long msg_send(int fd, const void *buf, size_t n, int flags) {
  struct iovec iov = {(void *)buf, n};
  struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
  return syscall(SYS_sendmsg, fd, &m, flags);  // sendmsg always stops at the socket gate
}

/// zerocopy MARK: a sibling process keeps sending MARK (over a socket pair, by sendmsg);
/// this process sends its own bytes with MSG_ZEROCOPY over TCP on loopback to a receiver
/// that reads nothing yet, so they wait in the send queue, then reads them. Whoever sends
/// on the command's behalf must not lend the kernel memory it reuses: the bytes received
/// must be this process's own, never the sibling's.
static int c_zerocopy(char **a) {
  const char *mark = a[0];
  size_t ml = strlen(mark);
  pid_t v = fork();
  if (v == 0) {
    int sv[2];
    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
    char *secret = malloc(ZC_LEN), *sink = malloc(ZC_LEN);
    for (size_t i = 0; i + ml <= ZC_LEN; i += ml) memcpy(secret + i, mark, ml);
    for (;;) {
      msg_send(sv[0], secret, ZC_LEN, 0);
      while (recv(sv[1], sink, ZC_LEN, MSG_DONTWAIT) > 0) {
      }
      usleep(500);
    }
  }
  int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int small = 2048, one = 1;
  setsockopt(l, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t sl = sizeof sa;
  if (!attempt("listen", bind(l, (struct sockaddr *)&sa, sizeof sa) == 0 ? listen(l, 1) : -1)) return kill(v, SIGKILL), report(0);
  getsockname(l, (struct sockaddr *)&sa, &sl);
  int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  attempt("so_zerocopy", setsockopt(c, SOL_SOCKET, SO_ZEROCOPY, &one, sizeof one));
  if (!attempt("connect", connect(c, (struct sockaddr *)&sa, sizeof sa))) return kill(v, SIGKILL), report(0);
  int r = accept(l, NULL, NULL);
  char *mine = malloc(ZC_LEN);
  memset(mine, 'A', ZC_LEN);
  long total = 0;
  for (int k = 0; k < 8; k++) {
    long n = msg_send(c, mine, ZC_LEN, MSG_ZEROCOPY | MSG_DONTWAIT);
    if (k == 0) attempt("sendmsg_zerocopy", n);
    if (n > 0) total += n;
    sleep_ms(20);
  }
  sleep_ms(300);
  // Now let them through at full speed (a tiny window would trickle them for minutes).
  int big = 4 << 20;
  setsockopt(r, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
  struct timeval tv = {3, 0};
  setsockopt(r, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  char *got = malloc(8 * ZC_LEN);
  long have = 0, foreign = 0;
  while (have < total) {
    ssize_t n = recv(r, got + have, (size_t)(8 * ZC_LEN - have), 0);
    if (n <= 0) break;
    have += n;
  }
  for (long i = 0; i < have; i++) foreign += got[i] != 'A';
  int leaked = memmem(got, (size_t)have, mark, ml) != NULL;
  note("received=%ld not_ours=%ld sibling_data=%d", have, foreign, leaked);
  kill(v, SIGKILL);
  waitpid(v, NULL, 0);
  return report(leaked);
}

/// binds N: binds N datagram sockets in /tmp one after another, each closed and its file
/// removed at once (as a test suite's temporary sockets are), then binds a listening socket
/// and connects to it. Whoever binds for the command must not run out of anything on the
/// way: every bind and the last connect must work.
static int c_binds(char **a) {
  long n = atol(a[0]), ok = 0;
  int first_error = 0;
  for (long i = 0; i < n; i++) {
    char p[64];
    snprintf(p, sizeof p, "/tmp/probe-b%ld.sock", i);
    struct sockaddr_un sa;
    int len = unix_addr(&sa, p);
    int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (bind(s, (struct sockaddr *)&sa, (socklen_t)len) == 0) ok++;
    else if (!first_error) first_error = errno;
    close(s);
    unlink(p);
  }
  note("binds_ok=%ld/%ld", ok, n);
  if (first_error) note("first_error=%s", errname(first_error));
  struct sockaddr_un sa;
  int len = unix_addr(&sa, "/tmp/probe-own.sock");
  int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  attempt("own_bind", bind(l, (struct sockaddr *)&sa, (socklen_t)len));
  attempt("own_listen", listen(l, 1));
  int c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  attempt("own_connect", connect(c, (struct sockaddr *)&sa, (socklen_t)len));
  return report(-1);
}

static const char *park_path = "/tmp/probe-full.sock";

static void *park_one(void *unused) {
  (void)unused;
  struct sockaddr_un sa;
  int len = unix_addr(&sa, park_path);
  int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  connect(s, (struct sockaddr *)&sa, (socklen_t)len); // blocks: the listener never accepts
  pause();
  return NULL;
}

/// gatepark N: N threads block in connect() to a listener of this sandbox that never
/// accepts, then this thread makes one gated call that needs no waiting (a connect to a
/// path that does not exist, ENOENT at once) and reports how long it took. The gate serves
/// every process of the sandbox (a template's clones, the template's own fork replies):
/// calls that wait must not starve the others. Only the result tells: the run has a
/// timeout far beyond what the call needs.
static int c_gatepark(char **a) {
  long n = atol(a[0]);
  unlink(park_path);
  struct sockaddr_un sa;
  int len = unix_addr(&sa, park_path);
  int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (!attempt("bind", bind(l, (struct sockaddr *)&sa, (socklen_t)len)) || !attempt("listen", listen(l, 0))) return report(0);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 64 << 10);
  long started = 0;
  for (long i = 0; i < n; i++) {
    pthread_t t;
    if (pthread_create(&t, &attr, park_one, NULL) == 0) started++;
  }
  note("threads=%ld", started);
  sleep_ms(1000);
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int len2 = unix_addr(&sa, "/tmp/probe-no-such.sock");
  attempt("victim_connect", connect(s, (struct sockaddr *)&sa, (socklen_t)len2));
  clock_gettime(CLOCK_MONOTONIC, &t1);
  note("victim_ms=%ld", (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000);
  report(-1);
  fflush(stdout);
  _exit(0);
}

/// socket FAMILY TYPE PROTOCOL: a family or type the profile refuses.
static int c_socket(char **a) {
  int s = socket(atoi(a[0]), atoi(a[1]) | SOCK_CLOEXEC, atoi(a[2]));
  int hit = attempt("socket", s);
  if (s >= 0) close(s);
  return report(hit);
}

static int proxy_port(const char *var, int fallback) {
  const char *v = getenv(var);
  const char *colon = v ? strrchr(v, ':') : NULL;
  return colon ? atoi(colon + 1) : fallback;
}

static int tcp_to(const char *host, int port) {
  struct sockaddr_storage ss;
  int len = inet_addr_any(host, port, &ss);
  int s = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct timeval tv = {5, 0};
  setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (connect(s, (struct sockaddr *)&ss, (socklen_t)len) < 0) {
    note("proxy_connect=%s", errname(errno));
    close(s);
    return -1;
  }
  return s;
}

/// proxy KIND HOST PORT TOKEN: asks the allow-list proxy for HOST:PORT.
/// KIND: connect (HTTP CONNECT), get (absolute-URI GET), socks5 (address or name, as
/// the spelling of HOST says), socks5name (always as a name), socks4.
static int c_proxy(char **a) {
  const char *kind = a[0], *host = a[1], *token = a[3];
  int port = atoi(a[2]);
  char buf[1024];
  int hit = 0;
  if (!strcmp(kind, "connect") || !strcmp(kind, "get")) {
    int s = tcp_to("127.0.0.1", proxy_port("HTTP_PROXY", 3128));
    if (s < 0) return report(0);
    int n;
    if (!strcmp(kind, "connect"))
      n = snprintf(buf, sizeof buf, "CONNECT %s:%d HTTP/1.1\r\nHost: %s:%d\r\n\r\n", host, port, host, port);
    else
      n = snprintf(buf, sizeof buf, "GET http://%s:%d/%s HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\n\r\n", host,
                   port, token, host, port);
    if (write(s, buf, (size_t)n) < 0) note("write=%s", errname(errno));
    ssize_t got = read(s, buf, sizeof buf - 1);
    if (got > 0) {
      buf[got] = 0;
      char *eol = strchr(buf, '\r');
      if (eol) *eol = 0;
      note("reply=%s", buf);
      hit = strncmp(buf, "HTTP/1.1 200", 12) == 0 || strncmp(buf, "HTTP/1.0 200", 12) == 0;
      if (hit && !strcmp(kind, "connect") && write(s, token, strlen(token)) < 0) note("token=%s", errname(errno));
    } else {
      note("no_reply");
    }
    sleep_ms(20);
    close(s);
    return report(hit);
  }
  int s = tcp_to("127.0.0.1", proxy_port("ALL_PROXY", 1080));
  if (s < 0) return report(0);
  unsigned char req[600];
  size_t n = 0;
  if (!strcmp(kind, "socks4")) {
    struct timeval tv = {1, 0};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct in_addr ip4;
    req[n++] = 4, req[n++] = 1, req[n++] = (unsigned char)(port >> 8), req[n++] = (unsigned char)port;
    if (inet_pton(AF_INET, host, &ip4) == 1) {
      memcpy(req + n, &ip4, 4), n += 4;
      req[n++] = 0;
    } else {  // SOCKS4a: 0.0.0.x then the name
      req[n++] = 0, req[n++] = 0, req[n++] = 0, req[n++] = 1, req[n++] = 0;
      memcpy(req + n, host, strlen(host) + 1), n += strlen(host) + 1;
    }
    if (write(s, req, n) < 0) note("write=%s", errname(errno));
    ssize_t got = read(s, buf, 8);
    hit = got >= 2 && (unsigned char)buf[1] == 0x5a;
    note("socks4_reply=%d", got >= 2 ? (unsigned char)buf[1] : -1);
  } else {
    unsigned char hello[3] = {5, 1, 0};
    if (write(s, hello, 3) < 0 || read(s, buf, 2) != 2) {
      note("socks_hello_failed");
      close(s);
      return report(0);
    }
    struct in_addr ip4;
    struct in6_addr ip6;
    req[n++] = 5, req[n++] = 1, req[n++] = 0;
    if (strcmp(kind, "socks5name") && inet_pton(AF_INET, host, &ip4) == 1) {
      req[n++] = 1, memcpy(req + n, &ip4, 4), n += 4;
    } else if (strcmp(kind, "socks5name") && inet_pton(AF_INET6, host, &ip6) == 1) {
      req[n++] = 4, memcpy(req + n, &ip6, 16), n += 16;
    } else {
      req[n++] = 3, req[n++] = (unsigned char)strlen(host);
      memcpy(req + n, host, strlen(host)), n += strlen(host);
    }
    req[n++] = (unsigned char)(port >> 8), req[n++] = (unsigned char)port;
    if (write(s, req, n) < 0) note("write=%s", errname(errno));
    ssize_t got = read(s, buf, sizeof buf);
    hit = got >= 2 && buf[1] == 0;
    note("socks5_reply=%d", got >= 2 ? (unsigned char)buf[1] : -1);
  }
  if (hit && write(s, token, strlen(token)) < 0) note("token=%s", errname(errno));
  sleep_ms(20);
  close(s);
  return report(hit);
}

// ---------------------------------------------------------------------------------------
// System calls the default profile refuses.

static int child_pause(void) {
  pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    for (;;) pause();
  }
  return pid;
}

/// sys NAME: a call (with arguments that would work) that must fail.
static int c_sys(char **a) {
  const char *n = a[0];
  long r = -1;
  errno = ENOSYS;
  if (!strcmp(n, "unshare-user")) r = unshare(CLONE_NEWUSER);
  else if (!strcmp(n, "unshare-mount")) r = unshare(CLONE_NEWNS);
  else if (!strcmp(n, "unshare-net")) r = unshare(CLONE_NEWNET);
  else if (!strcmp(n, "unshare-all")) r = unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET);
  else if (!strcmp(n, "clone-newuser") || !strcmp(n, "clone-newns") || !strcmp(n, "clone-newuser-vfork")) {
    unsigned long flags = !strcmp(n, "clone-newns") ? CLONE_NEWNS : CLONE_NEWUSER;
    if (!strcmp(n, "clone-newuser-vfork")) flags |= CLONE_VFORK | CLONE_VM;
    r = syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0);
    if (r == 0) _exit(0);
    if (r > 0) waitpid((pid_t)r, NULL, 0);
  } else if (!strcmp(n, "clone3-newuser")) {
    struct clone_args ca = {.flags = CLONE_NEWUSER, .exit_signal = SIGCHLD};
    r = syscall(SYS_clone3, &ca, sizeof ca);
    if (r == 0) _exit(0);
    if (r > 0) waitpid((pid_t)r, NULL, 0);
  } else if (!strcmp(n, "mount-tmpfs")) r = syscall(SYS_mount, "none", "/tmp", "tmpfs", 0, NULL);
  else if (!strcmp(n, "remount-usr-rw")) r = syscall(SYS_mount, NULL, "/usr", NULL, 32 /* MS_REMOUNT */ | 4096 /* MS_BIND */, NULL);
  else if (!strcmp(n, "umount-proc")) r = syscall(SYS_umount2, "/proc", 2 /* MNT_DETACH */);
  else if (!strcmp(n, "fsopen")) r = syscall(SYS_fsopen, "tmpfs", 0);
  else if (!strcmp(n, "open_tree")) r = syscall(SYS_open_tree, AT_FDCWD, "/usr", OPEN_TREE_CLONE);
  else if (!strcmp(n, "mount_setattr")) {
    struct mount_attr attr = {.attr_clr = MOUNT_ATTR_RDONLY};
    r = syscall(SYS_mount_setattr, AT_FDCWD, "/usr", 0, &attr, sizeof attr);
  } else if (!strcmp(n, "move_mount")) r = syscall(SYS_move_mount, AT_FDCWD, "/tmp", AT_FDCWD, "/usr", 0);
  else if (!strcmp(n, "pivot_root")) r = syscall(SYS_pivot_root, "/tmp", "/tmp");
  else if (!strcmp(n, "chroot")) r = chroot("/tmp");
  else if (!strcmp(n, "setns-user")) {
    int fd = open("/proc/self/ns/user", O_RDONLY | O_CLOEXEC);
    r = setns(fd, 0);
  } else if (!strcmp(n, "keyctl")) r = syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, 0);
  else if (!strcmp(n, "add_key")) r = syscall(SYS_add_key, "user", "corral-escape", "x", 1, KEY_SPEC_PROCESS_KEYRING);
  else if (!strcmp(n, "request_key")) r = syscall(SYS_request_key, "user", "corral-escape", NULL, 0);
  else if (!strcmp(n, "bpf-map")) {
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.map_type = BPF_MAP_TYPE_ARRAY, attr.key_size = 4, attr.value_size = 4, attr.max_entries = 1;
    r = syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof attr);
  } else if (!strcmp(n, "bpf-prog")) {
    struct bpf_insn insns[] = {{.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = 0, .imm = 0},
                               {.code = BPF_JMP | BPF_EXIT}};
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.prog_type = BPF_PROG_TYPE_SOCKET_FILTER, attr.insn_cnt = 2, attr.insns = (uintptr_t)insns;
    attr.license = (uintptr_t) "GPL";
    r = syscall(SYS_bpf, BPF_PROG_LOAD, &attr, sizeof attr);
  } else if (!strcmp(n, "perf_event_open")) {
    struct perf_event_attr pe = {.type = PERF_TYPE_SOFTWARE, .size = sizeof pe, .config = PERF_COUNT_SW_CPU_CLOCK};
    pe.disabled = 1, pe.exclude_kernel = 1, pe.exclude_hv = 1;
    r = syscall(SYS_perf_event_open, &pe, 0, -1, -1, 0);
  } else if (!strcmp(n, "io_uring_setup")) {
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    r = syscall(SYS_io_uring_setup, 1, &p);
  } else if (!strcmp(n, "userfaultfd")) r = syscall(SYS_userfaultfd, O_CLOEXEC | 1 /* UFFD_USER_MODE_ONLY */);
  else if (!strcmp(n, "fanotify_init")) r = syscall(SYS_fanotify_init, 0, O_RDONLY);
  else if (!strcmp(n, "ptrace-traceme")) {
    pid_t pid = fork();
    if (pid == 0) _exit(ptrace(PTRACE_TRACEME, 0, 0, 0) == 0 ? 0 : errno);
    int st;
    waitpid(pid, &st, 0);
    r = WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
    errno = WIFEXITED(st) ? WEXITSTATUS(st) : EINTR;
  } else if (!strcmp(n, "ptrace-attach")) {
    pid_t pid = child_pause();
    r = ptrace(PTRACE_ATTACH, pid, 0, 0);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
  } else if (!strcmp(n, "process_vm_readv")) {
    static char secret[16] = "parent-secret";
    pid_t pid = child_pause();
    char buf[16];
    struct iovec local = {buf, sizeof buf}, remote = {secret, sizeof secret};
    r = syscall(SYS_process_vm_readv, pid, &local, 1, &remote, 1, 0);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
  } else if (!strcmp(n, "kcmp")) {
    r = syscall(SYS_kcmp, getpid(), getpid(), 0 /* KCMP_FILE */, 1, 1);
  } else if (!strcmp(n, "pidfd_getfd")) {
    int pfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
    r = syscall(SYS_pidfd_getfd, pfd, 1, 0);
  } else if (!strcmp(n, "name_to_handle_at")) {
    char buf[sizeof(struct file_handle) + 128];
    struct file_handle *fh = (struct file_handle *)buf;
    fh->handle_bytes = 128;
    int mount_id;
    r = syscall(SYS_name_to_handle_at, AT_FDCWD, "/etc/passwd", fh, &mount_id, 0);
  } else if (!strcmp(n, "open_by_handle_at")) {
    char buf[sizeof(struct file_handle) + 8] = {0};
    struct file_handle *fh = (struct file_handle *)buf;
    fh->handle_bytes = 8, fh->handle_type = 1;
    int root = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    r = syscall(SYS_open_by_handle_at, root, fh, O_RDONLY);
  } else if (!strcmp(n, "init_module")) r = syscall(SYS_init_module, "", 0, "");
  else if (!strcmp(n, "finit_module")) r = syscall(SYS_finit_module, 0, "", 0);
  else if (!strcmp(n, "kexec_load")) r = syscall(SYS_kexec_load, 0, 0, NULL, 0);
  else if (!strcmp(n, "syslog")) {
    char buf[64];
    r = syscall(SYS_syslog, 3 /* READ_ALL */, buf, sizeof buf);
  } else if (!strcmp(n, "acct")) r = syscall(SYS_acct, NULL);
  else if (!strcmp(n, "swapoff")) r = syscall(SYS_swapoff, "/nonexistent");
  else if (!strcmp(n, "settimeofday")) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    r = settimeofday(&tv, NULL);
  } else if (!strcmp(n, "clock_settime")) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    r = clock_settime(CLOCK_REALTIME, &ts);
  } else if (!strcmp(n, "sethostname")) r = sethostname("escaped", 7);
  else if (!strcmp(n, "personality-exec")) {
    r = syscall(SYS_personality, 0x0400000 /* READ_IMPLIES_EXEC */);
    syscall(SYS_personality, 0);
  }
#if defined(__x86_64__)
  else if (!strcmp(n, "iopl")) r = syscall(SYS_iopl, 3);
  else if (!strcmp(n, "ioperm")) r = syscall(SYS_ioperm, 0x80, 1, 1);
  else if (!strcmp(n, "x32-unshare")) r = syscall(0x40000000 | SYS_unshare, CLONE_NEWUSER);
  else if (!strcmp(n, "x32-mount")) r = syscall(0x40000000 | SYS_mount, "none", "/tmp", "tmpfs", 0, NULL);
  else if (!strcmp(n, "int80-getpid")) {
    // The 32-bit entry point: another syscall table the filter must not let through.
    pid_t pid = fork();
    if (pid == 0) {
      long ret;
      __asm__ volatile("int $0x80" : "=a"(ret) : "a"(20 /* getpid */) : "memory");
      _exit(ret > 0 ? 0 : 1);
    }
    int st;
    waitpid(pid, &st, 0);
    if (WIFSIGNALED(st)) note("child_signal=%d", WTERMSIG(st));
    r = WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
    errno = EPERM;
  } else if (!strcmp(n, "int80-unshare")) {
    pid_t pid = fork();
    if (pid == 0) {
      long ret;
      __asm__ volatile("int $0x80" : "=a"(ret) : "a"(310 /* i386 unshare */), "b"(CLONE_NEWUSER) : "memory");
      _exit(ret == 0 ? 0 : 1);
    }
    int st;
    waitpid(pid, &st, 0);
    if (WIFSIGNALED(st)) note("child_signal=%d", WTERMSIG(st));
    r = WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
    errno = EPERM;
  }
#endif
  else {
    note("unknown_call");
    return report(0);
  }
  return report(attempt(n, r));
}

// ---------------------------------------------------------------------------------------
// Processes.

/// kill PID: a process outside the sandbox (pidfd too).
static int c_kill(char **a) {
  pid_t pid = (pid_t)atol(a[0]);
  int hit = attempt("kill0", kill(pid, 0));
  hit |= attempt("pidfd_open", syscall(SYS_pidfd_open, pid, 0));
  return report(hit);
}

/// killall: kill(-1, SIGKILL) reaches only the sandbox (the witness checks the victims).
/// pid1sig: every way to signal init (kill, a forged rt_sigqueueinfo SIGCHLD, a pidfd),
/// stop and continue included, then the command ends at once. Only the result tells whether
/// init kept serving: the run must end with the command's own exit.
static int c_pid1sig(char **a) {
  (void)a;
  static const int sigs[] = {SIGSTOP, SIGTSTP, SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGPIPE, SIGALRM, SIGCHLD, SIGKILL};
  int any = 0;
  for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++) {
    char what[32];
    snprintf(what, sizeof what, "kill_%d", sigs[i]);
    any |= attempt(what, kill(1, sigs[i]));
  }
  siginfo_t si;
  memset(&si, 0, sizeof si);
  si.si_signo = SIGCHLD, si.si_code = SI_QUEUE, si.si_pid = getpid(), si.si_uid = getuid();
  any |= attempt("sigqueue_chld", syscall(SYS_rt_sigqueueinfo, 1, SIGCHLD, &si));
  int pfd = (int)syscall(SYS_pidfd_open, 1, 0);
  if (attempt("pidfd_open_1", pfd)) any |= attempt("pidfd_send_signal", syscall(SYS_pidfd_send_signal, pfd, SIGSTOP, NULL, 0));
  note("delivered_or_ignored=%d", any);
  return report(-1);
}

static int c_killall(char **a) {
  (void)a;
  pid_t pid = fork();
  if (pid == 0) {
    attempt("kill_minus_1", kill(-1, SIGKILL));
    report(-1);
    _exit(0);
  }
  int st;
  waitpid(pid, &st, 0);
  return 0;
}

/// pid1 WHAT [ARGS]: the sandbox's init. caps: no capabilities; cmdline HELPER PID: neither
/// the helper's host path nor the caller's host pid; access: nothing of it reachable.
static int c_pid1(char **a) {
  static char buf[65536];
  int hit = 0;
  if (!strcmp(a[0], "caps")) {
    ssize_t n = read_file("/proc/1/status", buf, sizeof buf - 1);
    if (n < 0) {
      note("status=%s", errname(errno));
      return report(0);
    }
    buf[n] = 0;
    for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
      if (!strncmp(line, "CapEff:", 7) || !strncmp(line, "CapPrm:", 7) || !strncmp(line, "NoNewPrivs:", 11)) {
        note("%s", line);
        if (!strncmp(line, "CapEff:", 7) && strtoull(line + 7, NULL, 16) != 0) hit = 1;
        if (!strncmp(line, "CapPrm:", 7) && strtoull(line + 7, NULL, 16) != 0) hit = 1;
      }
    }
    return report(hit);
  }
  if (!strcmp(a[0], "cmdline")) {
    ssize_t n = read_file("/proc/1/cmdline", buf, sizeof buf - 1);
    if (n < 0) {
      note("cmdline=%s", errname(errno));
      return report(0);
    }
    for (ssize_t i = 0; i < n; i++)
      if (!buf[i]) buf[i] = ' ';
    buf[n] = 0;
    note("cmdline=%s", buf);
    if (strstr(buf, a[1])) hit = 1, note("helper_path_shown");
    for (char *w = strtok(buf, " "); w; w = strtok(NULL, " "))
      if (!strcmp(w, a[2])) hit = 1, note("caller_pid_shown");
    return report(hit);
  }
  // access
  static const char *files[] = {"/proc/1/environ", "/proc/1/mem", "/proc/1/auxv", "/proc/1/stack", "/proc/1/syscall"};
  for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
    ssize_t n = read_file(files[i], buf, 4096);
    hit |= attempt(files[i] + 8, n > 0 ? 0 : -1);
  }
  // Init's root and working directory would show its whole view; its descriptors (the
  // proxy's socket among them) and namespaces are listed below but must not open.
  static const char *dirs[] = {"/proc/1/root/", "/proc/1/cwd/"};
  for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++) {
    DIR *d = opendir(dirs[i]);
    int entries = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) entries += e->d_name[0] != '.';
    if (d) closedir(d);
    note("%s=%s", dirs[i] + 8, d ? "ok" : errname(errno));
    if (d && entries) hit = 1;
  }
  static const char *links[] = {"/proc/1/ns/user", "/proc/1/ns/mnt", "/proc/1/ns/net", "/proc/1/exe"};
  for (size_t i = 0; i < sizeof links / sizeof *links; i++) {
    int f = open(links[i], O_RDONLY | O_CLOEXEC);
    hit |= attempt(links[i] + 8, f);
    if (f >= 0) close(f);
  }
  for (int fd = 0; fd < 16; fd++) {
    char p[64];
    snprintf(p, sizeof p, "/proc/1/fd/%d", fd);
    int f = open(p, O_RDONLY | O_CLOEXEC);
    if (f >= 0) hit = 1, note("opened_%s", p), close(f);
    struct sockaddr_un sa;
    int len = unix_addr(&sa, p);
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (connect(s, (struct sockaddr *)&sa, (socklen_t)len) == 0) hit = 1, note("connected_%s", p);
    close(s);
  }
  return report(hit);
}

/// memsib: one process of the sandbox reads another's private memory.
static int c_memsib(char **a) {
  (void)a;
  static char secret[64];  // zero in every process until the victim writes it
  int ready[2];
  if (pipe(ready) < 0) return report(0);
  pid_t victim = fork();
  if (victim == 0) {
    strcpy(secret, "victim-private-secret");
    if (write(ready[1], "x", 1) < 0) _exit(1);
    for (;;) pause();
  }
  char c;
  if (read(ready[0], &c, 1) != 1) return report(0);
  int hit = 0;
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/mem", victim);
  // From a sibling (not the victim's parent) and from the parent.
  int p[2];
  if (pipe(p) < 0) return report(0);
  pid_t attacker = fork();
  if (attacker == 0) {
    char buf[64] = "";
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? pread(fd, buf, sizeof buf, (off_t)(uintptr_t)secret) : -1;
    int ok = n > 0 && strstr(buf, "victim-private-secret");
    char msg[80];
    snprintf(msg, sizeof msg, "%d %s", ok, fd < 0 ? errname(errno) : n < 0 ? errname(errno) : "read");
    if (write(p[1], msg, strlen(msg)) < 0) _exit(1);
    _exit(0);
  }
  close(p[1]);
  char msg[80] = "";
  ssize_t got = read(p[0], msg, sizeof msg - 1);
  if (got > 0) msg[got] = 0;
  waitpid(attacker, NULL, 0);
  note("sibling=%s", msg);
  if (msg[0] == '1') hit = 1;
  char buf[64] = "";
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  ssize_t n = fd >= 0 ? pread(fd, buf, sizeof buf, (off_t)(uintptr_t)secret) : -1;
  note("parent=%s", fd < 0 ? errname(errno) : n < 0 ? errname(errno) : "read");
  if (n > 0 && strstr(buf, "victim-private-secret")) hit = 1;
  kill(victim, SIGKILL);
  waitpid(victim, NULL, 0);
  return report(hit);
}

/// clonemem ROLE_DIR: in a copy-on-write template, clone 0 keeps a secret; clone 1 reads
/// it through /proc/PID/mem. (Clones share the template's /tmp.)
static int c_clonemem(char **a) {
  static char secret[64];
  const char *id = getenv("CLONE_ID");
  char info[4200];
  snprintf(info, sizeof info, "%s/clonemem-victim", a[0]);
  if (id && !strcmp(id, "0")) {
    strcpy(secret, "clone-zero-private-secret");
    char line[64];
    snprintf(line, sizeof line, "%d", getpid());
    char tmp[4300];
    snprintf(tmp, sizeof tmp, "%s.tmp", info);
    write_file(tmp, line, 0644);
    rename(tmp, info);
    char done[4300];
    snprintf(done, sizeof done, "%s.done", info);
    wait_for(done, 5000);
    note("victim");
    return report(-1);
  }
  if (!wait_for(info, 3000)) {
    note("victim_never_ready");
    return report(0);
  }
  char line[64] = "";
  read_file(info, line, sizeof line - 1);
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/mem", atoi(line));
  char buf[64] = "";
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  ssize_t n = fd >= 0 ? pread(fd, buf, sizeof buf, (off_t)(uintptr_t)secret) : -1;
  note("mem=%s", fd < 0 ? errname(errno) : n < 0 ? errname(errno) : "read");
  char done[4300];
  snprintf(done, sizeof done, "%s.done", info);
  write_file(done, "", 0644);
  return report(n > 0 && strstr(buf, "clone-zero-private-secret") ? 1 : 0);
}

/// env HEX: no process in the sandbox has the marker (hex-encoded here, so that it is not
/// in this process's own arguments) in its environment or arguments.
static int c_env(char **a) {
  char marker[256] = "";
  for (size_t i = 0; a[0][2 * i] && a[0][2 * i + 1] && i < sizeof marker - 1; i++) {
    char hex[3] = {a[0][2 * i], a[0][2 * i + 1], 0};
    marker[i] = (char)strtol(hex, NULL, 16);
  }
  DIR *d = opendir("/proc");
  struct dirent *e;
  static char buf[1 << 16];
  int hit = 0;
  while (d && (e = readdir(d))) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    for (int k = 0; k < 2; k++) {
      char p[300];
      snprintf(p, sizeof p, "/proc/%s/%s", e->d_name, k ? "cmdline" : "environ");
      ssize_t n = read_file(p, buf, sizeof buf);
      if (n > 0 && contains(buf, (size_t)n, marker)) hit = 1, note("in_%s", p);
    }
  }
  if (d) closedir(d);
  return report(hit);
}

/// fds ALLOWED: no descriptors besides ALLOWED (comma-separated) are open.
static int c_fds(char **a) {
  int hit = 0;
  DIR *d = opendir("/proc/self/fd");
  struct dirent *e;
  while (d && (e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    int fd = atoi(e->d_name);
    if (fd == dirfd(d)) continue;
    char want[64];
    snprintf(want, sizeof want, ",%s,", a[0]);
    char me[16];
    snprintf(me, sizeof me, ",%d,", fd);
    if (strstr(want, me)) continue;
    char p[64], target[512] = "";
    snprintf(p, sizeof p, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(p, target, sizeof target - 1);
    if (n > 0) target[n] = 0;
    hit = 1;
    note("fd%d=%s", fd, target);
  }
  if (d) closedir(d);
  return report(hit);
}

/// pids N: how many processes one sandbox may hold (at least N is unbounded).
static int c_pids(char **a) {
  int want = atoi(a[0]);
  pid_t *kids = calloc((size_t)want, sizeof *kids);
  int made = 0;
  int err = 0;
  for (; made < want; made++) {
    pid_t pid = fork();
    if (pid == 0) {
      for (;;) pause();
    }
    if (pid < 0) {
      err = errno;
      break;
    }
    kids[made] = pid;
  }
  for (int i = 0; i < made; i++) kill(kids[i], SIGKILL);
  for (int i = 0; i < made; i++) waitpid(kids[i], NULL, 0);
  note("made=%d stopped_by=%s", made, err ? errname(err) : "none");
  return report(made >= want);
}

/// flood MIB: writes MIB MiB to stdout after the line (the caller must not keep it all).
static int c_flood(char **a) {
  note("flooding");
  report(-1);
  static char block[1 << 20];
  memset(block, 'x', sizeof block);
  for (long i = 0; i < atol(a[0]); i++)
    if (write(1, block, sizeof block) < 0) break;
  return 0;
}

/// size PATH MAX_BYTES: a writable file system the sandbox can fill is bounded by MAX.
static int c_size(char **a) {
  struct statfs sf;
  if (!attempt("statfs", statfs(a[0], &sf))) return report(0);
  unsigned long long bytes = (unsigned long long)sf.f_blocks * (unsigned long long)sf.f_bsize;
  note("bytes=%llu", bytes);
  return report(bytes > strtoull(a[1], NULL, 10));
}

/// later PATH SECRET WAIT_MS: a denied path that the host creates after the sandbox was
/// made (it says so with SIGUSR1).
static int c_later(char **a) {
  wait_go(atol(a[2]));
  char buf[4096];
  ssize_t n = read_file(a[0], buf, sizeof buf);
  attempt("read", n);
  return report(n > 0 && contains(buf, (size_t)n, a[1]));
}

/// flockhold PATH WAIT_MS: an exclusive flock on PATH (a file or directory it may only read,
/// such as the placeholder under a protected path), held until the host's "go". What it
/// blocks outside is for the witness to say (in overlay modes the lock is on the overlay's
/// own file, and blocks nothing).
static int c_flockhold(char **a) {
  int fd = open(a[0], O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  attempt("open", fd);
  attempt("flock_ex", fd < 0 ? -1 : flock(fd, LOCK_EX | LOCK_NB));
  wait_go(atol(a[1]));
  return report(-1);
}

/// leftover WRITE|CHECK TOKEN: what one pooled run leaves must not reach the next.
static int c_leftover(char **a) {
  char p[256];
  if (!strcmp(a[0], "write")) {
    snprintf(p, sizeof p, "/tmp/leftover-%s", a[1]);
    write_file(p, a[1], 0644);
    snprintf(p, sizeof p, "/dev/shm/leftover-%s", a[1]);
    write_file(p, a[1], 0644);
    if (fork() == 0) {
      setsid();
      if (fork() == 0) {
        for (;;) pause();
      }
      _exit(0);
    }
    note("planted");
    return report(-1);
  }
  int hit = 0;
  snprintf(p, sizeof p, "/tmp/leftover-%s", a[1]);
  if (access(p, F_OK) == 0) hit = 1, note("tmp_file_left");
  snprintf(p, sizeof p, "/dev/shm/leftover-%s", a[1]);
  if (access(p, F_OK) == 0) hit = 1, note("shm_file_left");
  DIR *d = opendir("/proc");
  struct dirent *e;
  int procs = 0;
  while (d && (e = readdir(d)))
    if (e->d_name[0] >= '0' && e->d_name[0] <= '9' && atoi(e->d_name) != 1 && atoi(e->d_name) != getpid()) procs++;
  if (d) closedir(d);
  if (procs) hit = 1, note("other_processes=%d", procs);
  return report(hit);
}

// ---------------------------------------------------------------------------------------
// Terminals.

/// tty OP FD: an ioctl on a terminal descriptor (0, 1, 2, or "own" for a fresh pty this
/// process makes its controlling terminal). The witness of the caller's terminal is
/// outside; on an own pty the profile must still refuse injection.
static int c_tty(char **a) {
  const char *op = a[0];
  int fd;
  if (!strcmp(a[1], "own")) {
    int m = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (!attempt("ptmx", m)) return report(0);
    int unlock = 0;
    ioctl(m, TIOCSPTLCK, &unlock);
    fd = ioctl(m, TIOCGPTPEER, O_RDWR | O_CLOEXEC);
    if (!attempt("peer", fd)) return report(0);
    setsid();
    attempt("sctty", ioctl(fd, TIOCSCTTY, 0));
  } else {
    fd = atoi(a[1]);
    note("isatty=%d", isatty(fd));
  }
  long r;
  if (!strcmp(op, "tiocsti")) {
    char c = '#';
    r = syscall(SYS_ioctl, fd, (unsigned long)TIOCSTI, &c);
  } else if (!strcmp(op, "tiocsti-hi")) {
    char c = '#';
    r = syscall(SYS_ioctl, fd, 0xffffffff00000000UL | TIOCSTI, &c);
  } else if (!strcmp(op, "tioclinux")) {
    char sub = 2; /* TIOCL_SETSEL */
    r = syscall(SYS_ioctl, fd, (unsigned long)TIOCLINUX, &sub);
  } else if (!strcmp(op, "tiocsetd")) {
    int ldisc = 27; /* N_NULL */
    r = syscall(SYS_ioctl, fd, (unsigned long)TIOCSETD, &ldisc);
  } else if (!strcmp(op, "tcsets")) {
    struct termios t;
    r = tcgetattr(fd, &t);
    if (r == 0) {
      t.c_lflag &= ~(tcflag_t)(ECHO | ICANON);
      r = tcsetattr(fd, TCSANOW, &t);
    }
  } else if (!strcmp(op, "sctty")) {
    // Make the caller's terminal our controlling terminal (then TIOCSTI would reach it).
    setsid();
    r = ioctl(fd, TIOCSCTTY, 0);
  } else if (!strcmp(op, "nonblock")) {
    int fl = fcntl(fd, F_GETFL);
    r = fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
  } else if (!strcmp(op, "tiocswinsz")) {
    struct winsize ws = {.ws_row = 3, .ws_col = 7};
    r = ioctl(fd, TIOCSWINSZ, &ws);
  } else {
    note("unknown_op");
    return report(0);
  }
  // On the caller's terminal every change is an escape; on an own pty only injection is;
  // on a descriptor that is no terminal at all (the CLI relays through a pipe) nothing is.
  int own = !strcmp(a[1], "own");
  int hit = attempt(op, r);
  if (!own && !isatty(fd)) return report(0);
  return report(own && strcmp(op, "tiocsti") && strcmp(op, "tiocsti-hi") && strcmp(op, "tioclinux") ? 0 : hit);
}

// ---------------------------------------------------------------------------------------
// Execution.

static const char *echo_path(void) { return access("/usr/bin/echo", R_OK) == 0 ? "/usr/bin/echo" : "/bin/echo"; }

/// exec HOW DIR MARK: runs a copy of echo written to DIR (which the policy does not let
/// execute) by HOW: direct (execve), ldso (the dynamic loader), execveat (by descriptor),
/// mmap (map it executable), memfd (memfd_create + execveat), memfd-proc (execve of
/// /proc/self/fd/N), script (a #! script written to DIR, executed directly).
static int c_exec(char **a) {
  const char *how = a[0], *dir = a[1], *mark = a[2];
  char path[4200], out[256];
  int err = 0, hit = 0;
  ssize_t n = -1;
  if (!strncmp(how, "memfd", 5)) {
    int fd = (int)syscall(SYS_memfd_create, "escape", MFD_CLOEXEC | MFD_EXEC);
    if (fd < 0) fd = (int)syscall(SYS_memfd_create, "escape", MFD_CLOEXEC);
    if (!attempt("memfd_create", fd)) return report(0);
    if (copy_file(echo_path(), fd) < 0) note("copy=%s", errname(errno));
    fchmod(fd, 0755);
    if (!strcmp(how, "memfd")) {
      char *argv[] = {"echo", (char *)mark, NULL};
      n = run_capture(NULL, fd, argv, out, sizeof out - 1, &err);
    } else {
      // Not close-on-exec for this one: the path must stay valid across the exec.
      int keep = fcntl(fd, F_DUPFD, 10);
      snprintf(path, sizeof path, "/proc/self/fd/%d", keep);
      char *argv[] = {"echo", (char *)mark, NULL};
      n = run_capture(path, -1, argv, out, sizeof out - 1, &err);
    }
  } else if (strstr(how, "-existing")) {
    // dir names a file that is already there (granted for reading, not for running).
    snprintf(path, sizeof path, "%s", dir);
    if (!strncmp(how, "ldso", 4)) {
      char *argv[] = {LDSO, path, (char *)mark, NULL};
      n = run_capture(LDSO, -1, argv, out, sizeof out - 1, &err);
    } else {
      int rfd = open(path, O_RDONLY | O_CLOEXEC);
      void *m = mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE, rfd, 0);
      return report(attempt("mmap_exec", m == MAP_FAILED ? -1 : 0));
    }
  } else {
    snprintf(path, sizeof path, "%s/escape-exec-%d", dir, getpid());
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
    if (!attempt("write_copy", fd)) return report(0);
    if (!strcmp(how, "script")) {
      char body[300];
      snprintf(body, sizeof body, "#!/bin/sh\necho %s\n", mark);
      if (write(fd, body, strlen(body)) < 0) note("write=%s", errname(errno));
    } else if (copy_file(echo_path(), fd) < 0) {
      note("copy=%s", errname(errno));
    }
    close(fd);
    chmod(path, 0755);
    if (!strcmp(how, "direct") || !strcmp(how, "script")) {
      char *argv[] = {path, (char *)mark, NULL};
      n = run_capture(path, -1, argv, out, sizeof out - 1, &err);
    } else if (!strcmp(how, "ldso")) {
      char *argv[] = {LDSO, path, (char *)mark, NULL};
      n = run_capture(LDSO, -1, argv, out, sizeof out - 1, &err);
    } else if (!strcmp(how, "execveat")) {
      int rfd = open(path, O_RDONLY | O_CLOEXEC);
      char *argv[] = {path, (char *)mark, NULL};
      n = run_capture(NULL, rfd, argv, out, sizeof out - 1, &err);
    } else if (!strcmp(how, "mmap")) {
      int rfd = open(path, O_RDONLY | O_CLOEXEC);
      void *m = mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE, rfd, 0);
      hit = attempt("mmap_exec", m == MAP_FAILED ? -1 : 0);
      if (m == MAP_FAILED) {
        m = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, rfd, 0);
        if (m != MAP_FAILED) hit |= attempt("mprotect_exec", mprotect(m, 4096, PROT_READ | PROT_EXEC));
      }
      unlink(path);
      return report(hit);
    }
    unlink(path);
  }
  if (n < 0) note("exec=%s", errname(err));
  else {
    out[n] = 0;
    if (contains(out, (size_t)n, mark)) hit = 1, note("ran");
    else note("output=%zd", n);
  }
  return report(hit);
}

/// execvia WRITEDIR RUNDIR MARK: writes a copy of echo into WRITEDIR and runs the same file
/// by its name under RUNDIR (another place the same host directory appears), directly and
/// through the dynamic loader: W^X must hold for the file, not for one of its paths.
static int c_execvia(char **a) {
  const char *wdir = a[0], *rdir = a[1], *mark = a[2];
  char wpath[4200], rpath[4200], out[256];
  snprintf(wpath, sizeof wpath, "%s/escape-via-%d", wdir, getpid());
  snprintf(rpath, sizeof rpath, "%s/escape-via-%d", rdir, getpid());
  int fd = open(wpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
  if (!attempt("write_copy", fd)) return report(0);
  if (copy_file(echo_path(), fd) < 0) note("copy=%s", errname(errno));
  close(fd);
  int hit = 0, err = 0;
  char *argv[] = {rpath, (char *)mark, NULL};
  ssize_t n = run_capture(rpath, -1, argv, out, sizeof out - 1, &err);
  if (n < 0) note("exec=%s", errname(err));
  else if (out[n] = 0, contains(out, (size_t)n, mark)) hit = 1, note("ran_direct");
  char *largv[] = {LDSO, rpath, (char *)mark, NULL};
  n = run_capture(LDSO, -1, largv, out, sizeof out - 1, &err);
  if (n < 0) note("ldso=%s", errname(err));
  else if (out[n] = 0, contains(out, (size_t)n, mark)) hit = 1, note("ran_ldso");
  unlink(wpath);
  return report(hit);
}

/// inotify COUNT WAIT_MS: takes up to COUNT inotify instances (a per-user limit the kernel
/// also charges to the user namespace's owner on the host), holds them until the host's
/// "go" (or WAIT_MS), taking more as others free theirs, and reports how many it got.
static int c_inotify(char **a) {
  long want = atol(a[0]), held = 0;
  for (; held < want; held++)
    if (inotify_init1(IN_CLOEXEC) < 0) {
      note("stopped=%s", errname(errno));
      break;
    }
  // Until the host's "go": take every instance anyone else on the host gives back.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  struct timespec tick = {0, 1000000L};
  for (long waited = 0; waited < atol(a[1]); waited++) {
    if (sigtimedwait(&set, NULL, &tick) == SIGUSR1) break;
    while (held < want && inotify_init1(IN_CLOEXEC) >= 0) held++;
  }
  note("held=%ld", held);
  return report(-1);
}

/// proc PATH KIND: a host-wide /proc file the sandbox must not read. KIND any: any byte;
/// addr: a kernel address that is not zeroed.
static int c_proc(char **a) {
  static char buf[1 << 16];
  ssize_t n = read_file(a[0], buf, sizeof buf - 1);
  if (!attempt("read", n)) return report(0);
  note("bytes=%zd", n);
  if (!strcmp(a[1], "any")) return report(n > 0);
  buf[n] = 0;
  // "0xffff…" ranges or phys=… that are not all zeros.
  for (char *p = strstr(buf, "0x"); p; p = strstr(p + 2, "0x")) {
    char *end;
    unsigned long long v = strtoull(p + 2, &end, 16);
    if (v != 0 && end - p > 10) {
      note("address=%.18s", p);
      return report(1);
    }
  }
  return report(0);
}

/// write-proc PATH VALUE: a host-wide knob the sandbox must not set.
static int c_writeproc(char **a) {
  int fd = open(a[0], O_WRONLY | O_CLOEXEC);
  int hit = attempt("open", fd);
  if (fd >= 0) {
    hit = attempt("write", write(fd, a[1], strlen(a[1])));
    close(fd);
  }
  return report(hit);
}

// ---------------------------------------------------------------------------------------
// Entry points.

struct attack {
  const char *name;
  int args;
  int (*fn)(char **);
};

static const struct attack attacks[] = {
    {"modify", 2, c_modify},     {"create", 2, c_create},     {"remove", 1, c_remove},
    {"read", 2, c_read},         {"ls", 2, c_ls},             {"setid", 1, c_setid},
    {"replace", 4, c_replace},   {"link", 3, c_link},         {"unix", 3, c_unix},         {"unixvia", 4, c_unixvia}, {"bindrace", 3, c_bindrace},
    {"proxysock", 5, c_proxysock}, {"net", 4, c_net},         {"bind", 2, c_bind},
    {"socket", 3, c_socket},     {"proxy", 4, c_proxy},       {"sys", 1, c_sys},
    {"kill", 1, c_kill},         {"pid1sig", 0, c_pid1sig},         {"killall", 0, c_killall},   {"pid1", 1, c_pid1},
    {"memsib", 0, c_memsib},     {"clonemem", 1, c_clonemem}, {"env", 1, c_env},
    {"fds", 1, c_fds},           {"pids", 1, c_pids},         {"size", 2, c_size},
    {"later", 3, c_later},       {"flockhold", 2, c_flockhold},       {"leftover", 2, c_leftover}, {"tty", 2, c_tty},
    {"exec", 3, c_exec},         {"plant", 2, c_plant},         {"listen", 1, c_listen},       {"listen-stale", 1, c_listen_stale}, {"gatewrap", 1, c_gatewrap}, {"gatepark", 1, c_gatepark}, {"hogproxy", 2, c_hogproxy}, {"lookups", 2, c_lookups}, {"pipesz", 0, c_pipesz}, {"binds", 1, c_binds}, {"zerocopy", 1, c_zerocopy},         {"flood", 1, c_flood},         {"proc", 2, c_proc},         {"writeproc", 2, c_writeproc},
    {"mapwrite", 1, c_mapwrite}, {"guardlease", 2, c_guardlease}, {"mapwritelater", 2, c_mapwritelater}, {"aclmode", 4, c_aclmode}, {"maplink", 2, c_maplink}, {"execvia", 3, c_execvia}, {"inotify", 2, c_inotify},
};

static int run_attack(int argc, char **argv) {
  if (argc < 1) return 2;
  // after-go WAIT_MS CASE ARGS...: the attack, once the host has said "go".
  if (!strcmp(argv[0], "after-go") && argc >= 3) {
    wait_go(atol(argv[1]));
    return run_attack(argc - 2, argv + 2);
  }
  // after-ms MS CASE ARGS...: the attack, MS milliseconds later (well after a host change,
  // so that a carve-out put back in time would be in place).
  if (!strcmp(argv[0], "after-ms") && argc >= 3) {
    sleep_ms(atol(argv[1]));
    return run_attack(argc - 2, argv + 2);
  }
  case_name = argv[0];
  for (size_t i = 0; i < sizeof attacks / sizeof *attacks; i++) {
    if (strcmp(attacks[i].name, argv[0])) continue;
    if (argc - 1 < attacks[i].args) {
      note("missing_arguments");
      return report(0), 2;
    }
    static char *empty[8];
    return attacks[i].fn(argc > 1 ? argv + 1 : empty);
  }
  note("unknown_case");
  report(0);
  return 2;
}

// The template side of corral's fork protocol (docs/fork-protocol.md), minimal.
static long json_int(const char *msg, const char *key) {
  char k[32];
  snprintf(k, sizeof k, "\"%s\"", key);
  const char *p = strstr(msg, k);
  if (!p) return -1;
  p += strlen(k);
  while (*p == ' ' || *p == ':') p++;
  return strtol(p, NULL, 10);
}

static void send_msg(int ch, const char *msg, const int *fds, int nfds) {
  struct iovec iov = {(void *)msg, strlen(msg)};
  union {
    char buf[CMSG_SPACE(2 * sizeof(int))];
    struct cmsghdr align;
  } u;
  struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
  if (nfds) {
    mh.msg_control = u.buf, mh.msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int));
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET, c->cmsg_type = SCM_RIGHTS, c->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
    memcpy(CMSG_DATA(c), fds, (size_t)nfds * sizeof(int));
  }
  if (sendmsg(ch, &mh, MSG_NOSIGNAL) < 0) _exit(3);
}

static int serve_template(int argc, char **argv) {
  const char *raw = getenv("CORRAL_FORK_FD");
  if (!raw) {
    fprintf(stderr, "probe: not started as a template\n");
    return 2;
  }
  int ch = atoi(raw);
  unsetenv("CORRAL_FORK_FD");
  fcntl(ch, F_SETFD, FD_CLOEXEC);
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_BLOCK, &chld, NULL);
  int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
  struct {
    pid_t pid;
    long id;
  } kids[256];
  int nkids = 0;
  // As the protocol asks (docs/fork-protocol.md): not dumpable, so that every clone is born
  // so and no clone reads another's memory.
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) return 3;
  send_msg(ch, "{\"op\":\"ready\"}", NULL, 0);
  for (;;) {
    struct pollfd p[2] = {{.fd = ch, .events = POLLIN}, {.fd = sfd, .events = POLLIN}};
    if (poll(p, 2, -1) < 0 && errno != EINTR) return 3;
    if (p[1].revents) {
      struct signalfd_siginfo si;
      while (read(sfd, &si, sizeof si) > 0) {
      }
      int st;
      pid_t pid;
      while ((pid = waitpid(-1, &st, WNOHANG)) > 0)
        for (int i = 0; i < nkids; i++)
          if (kids[i].pid == pid) {
            char msg[128];
            if (WIFSIGNALED(st))
              snprintf(msg, sizeof msg, "{\"op\":\"exit\",\"id\":%ld,\"signal\":%d}", kids[i].id, WTERMSIG(st));
            else
              snprintf(msg, sizeof msg, "{\"op\":\"exit\",\"id\":%ld,\"code\":%d}", kids[i].id, WEXITSTATUS(st));
            send_msg(ch, msg, NULL, 0);
          }
    }
    if (!p[0].revents) continue;
    char msg[4097];
    ssize_t n = recv(ch, msg, sizeof msg - 1, 0);
    if (n <= 0) return 0;
    msg[n] = 0;
    if (strstr(msg, "\"close\"")) return 0;
    if (strstr(msg, "\"signal\"") && strstr(msg, "\"op\":\"signal\"")) {
      long id = json_int(msg, "id"), sig = json_int(msg, "signal");
      for (int i = 0; i < nkids; i++)
        if (kids[i].id == id) kill(kids[i].pid, (int)sig);
      continue;
    }
    if (!strstr(msg, "\"fork\"")) continue;
    long id = json_int(msg, "id"), clone = json_int(msg, "clone");
    int out[2], err[2];
    if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0) return 3;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
      dup2(out[1], 1);
      dup2(err[1], 2);
      close(out[0]), close(out[1]), close(err[0]), close(err[1]), close(ch), close(sfd);
      sigprocmask(SIG_UNBLOCK, &chld, NULL);
      char cid[32];
      snprintf(cid, sizeof cid, "%ld", clone);
      setenv("CLONE_ID", cid, 1);
      _exit(run_attack(argc, argv) == 2 ? 2 : 0);
    }
    close(out[1]), close(err[1]);
    if (pid < 0) {
      char m[128];
      snprintf(m, sizeof m, "{\"op\":\"error\",\"id\":%ld,\"message\":\"fork failed\"}", id);
      send_msg(ch, m, NULL, 0);
    } else {
      if (nkids < 256) kids[nkids].pid = pid, kids[nkids].id = id, nkids++;
      char m[128];
      snprintf(m, sizeof m, "{\"op\":\"forked\",\"id\":%ld,\"pid\":%d}", id, pid);
      int fds[2] = {out[0], err[0]};
      send_msg(ch, m, fds, 2);
    }
    close(out[0]), close(err[0]);
  }
}

/// evil-template KIND: a template that answers a fork request with something a well-behaved
/// one never sends, to see whether the caller survives it. KIND: dirfd (directories where
/// pipes belong), devzero (/dev/zero as the clone's output), nofds, extrafds, unknownid,
/// garbage, notjson, twice (two answers), exitflood (a million exit reports).
static int serve_evil(const char *kind) {
  const char *raw = getenv("CORRAL_FORK_FD");
  if (!raw) return 2;
  int ch = atoi(raw);
  send_msg(ch, "{\"op\":\"ready\"}", NULL, 0);
  char msg[4097];
  ssize_t n = recv(ch, msg, sizeof msg - 1, 0);
  if (n <= 0) return 0;
  msg[n] = 0;
  long id = json_int(msg, "id");
  char m[4200];
  int out[2], err[2];
  if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0) return 3;
  int fds[5] = {out[0], err[0], out[0], err[0], out[0]};
  snprintf(m, sizeof m, "{\"op\":\"forked\",\"id\":%ld,\"pid\":%d}", id, getpid());
  if (!strcmp(kind, "dirfd")) {
    int d = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int two[2] = {d, d};
    send_msg(ch, m, two, 2);
  } else if (!strcmp(kind, "devzero")) {
    int z = open("/dev/zero", O_RDONLY | O_CLOEXEC);
    int two[2] = {z, z};
    send_msg(ch, m, two, 2);
  } else if (!strcmp(kind, "nofds")) {
    send_msg(ch, m, NULL, 0);
  } else if (!strcmp(kind, "extrafds")) {
    struct iovec iov = {m, strlen(m)};
    union {
      char buf[CMSG_SPACE(5 * sizeof(int))];
      struct cmsghdr align;
    } u;
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET, c->cmsg_type = SCM_RIGHTS, c->cmsg_len = CMSG_LEN(5 * sizeof(int));
    memcpy(CMSG_DATA(c), fds, sizeof fds);
    sendmsg(ch, &mh, MSG_NOSIGNAL);
  } else if (!strcmp(kind, "unknownid")) {
    snprintf(m, sizeof m, "{\"op\":\"forked\",\"id\":%ld,\"pid\":1}", id + 1000);
    send_msg(ch, m, fds, 2);
    snprintf(m, sizeof m, "{\"op\":\"exit\",\"id\":%ld,\"code\":0}", id + 1000);
    send_msg(ch, m, NULL, 0);
  } else if (!strcmp(kind, "garbage")) {
    char junk[4096];
    memset(junk, 0xff, sizeof junk);
    send(ch, junk, sizeof junk, MSG_NOSIGNAL);
  } else if (!strcmp(kind, "notjson")) {
    send_msg(ch, "{\"op\":\"forked\",\"id\":", NULL, 0);
    snprintf(m, sizeof m, "{\"op\":\"forked\",\"id\":%ld,\"pid\":-99999999999999999999999}", id);
    send_msg(ch, m, fds, 2);
  } else if (!strcmp(kind, "twice")) {
    send_msg(ch, m, fds, 2);
    send_msg(ch, m, fds, 2);
  } else if (!strcmp(kind, "exitflood")) {
    send_msg(ch, m, fds, 2);
    for (long i = 0; i < 1000000; i++) {
      snprintf(m, sizeof m, "{\"op\":\"exit\",\"id\":%ld,\"code\":0}", id + 1 + i);
      if (send(ch, m, strlen(m), MSG_NOSIGNAL | MSG_DONTWAIT) < 0 && errno != EAGAIN) break;
    }
  }
  close(out[1]), close(err[1]);
  // Linger, so that the caller has to deal with what it got.
  for (int i = 0; i < 20; i++) {
    struct pollfd p = {.fd = ch, .events = POLLIN};
    if (poll(&p, 1, 100) > 0) {
      n = recv(ch, msg, sizeof msg - 1, 0);
      if (n <= 0) break;
      msg[n] = 0;
      if (strstr(msg, "\"close\"")) break;
    }
  }
  return 0;
}

/// On the host, after a run: files below DIR with set-id bits or capabilities.
static void scan(const char *dir, int *count) {
  DIR *d = opendir(dir);
  struct dirent *e;
  while (d && (e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    char p[4200];
    snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
    struct stat st;
    if (lstat(p, &st) < 0) continue;
    char capbuf[64];
    ssize_t caps = S_ISLNK(st.st_mode) ? -1 : getxattr(p, "security.capability", capbuf, sizeof capbuf);
    if ((st.st_mode & (S_ISUID | S_ISGID)) || caps > 0) {
      printf("%s{\"path\":", (*count)++ ? "," : "");
      json_string(stdout, p, strlen(p));
      printf(",\"mode\":\"%o\",\"uid\":%u,\"cap\":%s}", st.st_mode & 07777, st.st_uid, caps > 0 ? "true" : "false");
    }
    if (S_ISDIR(st.st_mode)) scan(p, count);
  }
  if (d) closedir(d);
}

/// Victim sandbox: reports every connection to @NAME on stdout.
static int victim(const char *name) {
  struct sockaddr_un sa;
  char at[128];
  snprintf(at, sizeof at, "@%s", name);
  int len = unix_addr(&sa, at);
  int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (bind(s, (struct sockaddr *)&sa, (socklen_t)len) < 0 || listen(s, 8) < 0) {
    printf("bind-failed %s\n", errname(errno));
    fflush(stdout);
  } else {
    printf("listening\n");
    fflush(stdout);
  }
  for (;;) {
    int c = accept(s, NULL, NULL);
    if (c < 0) {
      sleep_ms(1000);
      continue;
    }
    char buf[128] = "";
    ssize_t n = read(c, buf, sizeof buf - 1);
    if (n > 0) buf[n] = 0;
    printf("reached %s\n", buf);
    fflush(stdout);
    close(c);
  }
  return 0;
}

int main(int argc, char **argv) {
  // The host's "go" for attacks on things it creates later; blocked at once so that an
  // early one waits instead of killing us.
  sigset_t go;
  sigemptyset(&go);
  sigaddset(&go, SIGUSR1);
  sigprocmask(SIG_BLOCK, &go, NULL);
  // Says so where the host can read it (SigBlk does not: sigtimedwait unblocks meanwhile).
  prctl(PR_SET_NAME, "probe-go-ready");
  if (argc >= 3 && !strcmp(argv[1], "run")) return run_attack(argc - 2, argv + 2) == 2 ? 2 : 0;
  if (argc >= 3 && !strcmp(argv[1], "template")) return serve_template(argc - 2, argv + 2);
  if (argc == 3 && !strcmp(argv[1], "scan")) {
    int count = 0;
    printf("[");
    scan(argv[2], &count);
    printf("]\n");
    return 0;
  }
  if (argc == 3 && !strcmp(argv[1], "victim")) return victim(argv[2]);
  if (argc >= 3 && !strcmp(argv[1], "evil-template")) return serve_evil(argv[2]);
  fprintf(stderr, "usage: probe run|template CASE ARGS... | scan DIR | victim NAME\n");
  return 2;
}
