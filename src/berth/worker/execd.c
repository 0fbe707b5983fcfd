/* berth-execd: starts a sandbox's exec'd commands from inside its container, so that an exec is a fork+exec
 * there (the container's namespaces, cgroup, user, capabilities, rlimits, seccomp filter and no_new_privs,
 * all inherited) instead of a new `crun exec`. Built by berth.worker.execd and bind-mounted read-only.
 *
 *   tini -s -- /__berth/execd -- COMMAND...      (fd 3: a SOCK_SEQPACKET socket whose peer the worker holds)
 *   execd --fd3 FD crun run --preserve-fds 1 ... (on the host: FD becomes fd 3, then crun runs)
 *   tini -s -- /__berth/execd --wait             (a pooled container: the entrypoint comes later, as 'M')
 *   tini -s -- /__berth/execd --stdin            (a pooled runsc container, where no fd can be passed in: the
 *                                                 entrypoint comes on stdin, see read_entrypoint)
 *
 * It makes a fresh socket pair and hands one end to the worker over fd 3 ('H', the end attached): crun
 * keeps fd 3 open for as long as the container runs, so only the fresh pair tells the worker when execd is
 * gone. It forks its server (which tini, pid 1, adopts) and then execs COMMAND in its own place, so the
 * sandbox's entrypoint keeps its pid and its parent, and holds neither socket. Nothing is listening
 * anywhere: only the holder of the pair's other end can ask for anything, and what it asks for runs with
 * exactly what the entrypoint has. Messages, one per packet, little-endian:
 *   worker → execd  'X' id flags rows cols argc envc, then NUL-terminated cwd, argv..., env...
 *                   (pipes: 3 fds attached, stdin/stdout/stderr; flags&1: a terminal, no fds)
 *                   'K' id signum            signal the command
 *                   'M' ...                  as 'X' (pipes), the entrypoint of a pooled container (--wait):
 *                                            execd forks its server off (tini adopts it) and execs the
 *                                            entrypoint in its own place, as in the first form
 *   execd → worker  'H' 0 0                  (over fd 3, once) the worker's end of the pair attached
 *                   'S' id pid               started (a terminal: its master fd attached)
 *                   'F' id errno  (+ stage)  could not start it (value: errno; rows: 1 at chdir, 2 at exec)
 *                   'E' id wait status       it exited
 * When the worker's end closes, the server exits; when the entrypoint exits, tini ends the namespace. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#define CONTROL_FD 3
static int control = CONTROL_FD; /* the server's end of the fresh pair */
#define MAX_MSG (1 << 20)
#define MAX_EXECS 4096

struct head {
    uint32_t type, id, flags;
    uint16_t rows, cols;
    uint32_t argc, envc;
};

struct reply {
    uint32_t type, id;
    int32_t value, stage;
};

static struct { uint32_t id; pid_t pid; } running[MAX_EXECS];
/* --wait: what tini forwards to its child before the hand-over ends execd (and the container) */
static const int forwarded[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
extern char **environ;

static void send_reply(uint32_t type, uint32_t id, int32_t value, int32_t stage, int fd) {
    struct reply r = {type, id, value, stage};
    struct iovec iov = {&r, sizeof r};
    char cbuf[CMSG_SPACE(sizeof(int))];
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    if (fd >= 0) {
        memset(cbuf, 0, sizeof cbuf);
        msg.msg_control = cbuf;
        msg.msg_controllen = sizeof cbuf;
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd, sizeof(int));
    }
    while (sendmsg(control, &msg, MSG_NOSIGNAL) < 0 && errno == EINTR) {
    }
}

static void remember(uint32_t id, pid_t pid) {
    for (int i = 0; i < MAX_EXECS; i++) {
        if (running[i].pid == 0) {
            running[i].id = id;
            running[i].pid = pid;
            return;
        }
    }
}

static int find(uint32_t id) {
    for (int i = 0; i < MAX_EXECS; i++)
        if (running[i].pid != 0 && running[i].id == id) return i;
    return -1;
}

/* In the child: become the command. Reports errno and the failing stage over `report` (close-on-exec), so
 * the server learns of a failed exec before it answers, and nothing when the exec succeeded. */
static void become(char *cwd, char **argv, char **envp, int stdio[3], const char *slave, int main_process,
                   int report, sigset_t *mask) {
    int32_t failure[2];
    sigprocmask(SIG_SETMASK, mask, NULL);
    signal(SIGPIPE, SIG_DFL);
    if (!main_process) setsid();
    if (slave != NULL) {
        int t = open(slave, O_RDWR);
        if (t < 0 || ioctl(t, TIOCSCTTY, 0) < 0) goto fail_exec;
        stdio[0] = stdio[1] = stdio[2] = t;
    }
    for (int i = 0; i < 3; i++)
        if (dup2(stdio[i], i) < 0) goto fail_exec;
    if (slave != NULL && stdio[0] > 2) close(stdio[0]);
    if (cwd[0] != 0 && chdir(cwd) < 0) {
        if (main_process) {
            fprintf(stderr, "berth: chdir to %s: %s\n", cwd, strerror(errno));
            _exit(126);
        }
        failure[0] = errno;
        failure[1] = 1;
        (void)!write(report, failure, sizeof failure);
        _exit(127);
    }
    environ = envp;
    execvp(argv[0], argv);
fail_exec:
    if (main_process) {
        int err = errno;
        fprintf(stderr, "berth: cannot run %s: %s\n", argv[0], strerror(err));
        _exit(err == ENOENT ? 127 : 126);
    }
    failure[0] = errno;
    failure[1] = 2;
    (void)!write(report, failure, sizeof failure);
    _exit(127);
}

static char *next_string(char **cursor, char *end) {
    char *s = *cursor;
    char *nul = memchr(s, 0, (size_t)(end - s));
    if (nul == NULL) return NULL;
    *cursor = nul + 1;
    return s;
}

static void start(char *buf, ssize_t n, int *fds, int nfds, sigset_t *mask) {
    struct head h;
    memcpy(&h, buf, sizeof h);
    int main_process = h.type == 'M';
    char *cursor = buf + sizeof h, *end = buf + n;
    int terminal = h.flags & 1;
    char **argv = calloc(h.argc + 1, sizeof(char *)), **envp = calloc(h.envc + 1, sizeof(char *));
    char *cwd = next_string(&cursor, end);
    int ok = argv != NULL && envp != NULL && cwd != NULL && h.argc > 0 && (terminal ? nfds == 0 : nfds == 3);
    if (main_process) ok = ok && !terminal;
    for (uint32_t i = 0; ok && i < h.argc; i++) ok = (argv[i] = next_string(&cursor, end)) != NULL;
    for (uint32_t i = 0; ok && i < h.envc; i++) ok = (envp[i] = next_string(&cursor, end)) != NULL;
    int master = -1;
    char slave[64] = {0};
    if (ok && terminal) {
        struct winsize ws = {h.rows, h.cols, 0, 0};
        master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
        ok = master >= 0 && grantpt(master) == 0 && unlockpt(master) == 0 &&
             ptsname_r(master, slave, sizeof slave) == 0 && ioctl(master, TIOCSWINSZ, &ws) == 0;
    }
    if (ok && main_process) {
        pid_t child = fork();
        if (child == 0) {
            if (fork() == 0) { /* the server from now on (tini adopts it): the entrypoint is this execd */
                for (int i = 0; i < nfds; i++) close(fds[i]);
                free(argv);
                free(envp);
                return;
            }
            _exit(0);
        }
        if (child > 0) {
            waitpid(child, NULL, 0);
            send_reply('S', h.id, getpid(), 0, -1);
            close(control);
            become(cwd, argv, envp, fds, NULL, 1, -1, mask); /* does not return */
        }
        ok = 0;
    }
    int report[2] = {-1, -1};
    if (ok) ok = pipe2(report, O_CLOEXEC) == 0;
    if (!ok) {
        send_reply('F', h.id, errno ? errno : EINVAL, 0, -1);
    } else {
        pid_t pid = fork();
        if (pid == 0) {
            close(report[0]);
            become(cwd, argv, envp, fds, terminal ? slave : NULL, main_process, report[1], mask);
        }
        close(report[1]);
        int32_t failure[2];
        ssize_t got = pid < 0 ? 0 : read(report[0], failure, sizeof failure);
        while (got < 0 && errno == EINTR) got = read(report[0], failure, sizeof failure);
        if (pid < 0) {
            send_reply('F', h.id, errno, 0, -1);
        } else if (got == sizeof failure) {
            waitpid(pid, NULL, 0);
            send_reply('F', h.id, failure[0], failure[1], -1);
        } else {
            remember(h.id, pid);
            send_reply('S', h.id, pid, 0, master);
        }
    }
    if (report[0] >= 0) close(report[0]);
    if (master >= 0) close(master);
    for (int i = 0; i < nfds; i++) close(fds[i]);
    free(argv);
    free(envp);
}

static int receive(char *buf, int *fds, int *nfds) {
    struct iovec iov = {buf, MAX_MSG};
    char cbuf[CMSG_SPACE(3 * sizeof(int))];
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
    ssize_t n = recvmsg(control, &msg, MSG_CMSG_CLOEXEC);
    *nfds = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); n > 0 && c != NULL; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            int count = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
            for (int i = 0; i < count && *nfds < 3; i++) memcpy(&fds[(*nfds)++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        }
    }
    return (int)n;
}

static void reap(void) {
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (int i = 0; i < MAX_EXECS; i++) {
            if (running[i].pid == pid) {
                send_reply('E', running[i].id, status, 0, -1);
                running[i].pid = 0;
            }
        }
    }
}

static int serve(sigset_t *handled, sigset_t *old) {
    int sfd = signalfd(-1, handled, SFD_CLOEXEC | SFD_NONBLOCK);
    char *buf = malloc(MAX_MSG);
    if (sfd < 0 || buf == NULL) return 1;
    signal(SIGPIPE, SIG_IGN);
    struct pollfd p[2] = {{control, POLLIN, 0}, {sfd, POLLIN, 0}};
    for (;;) {
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR) continue;
            return 1;
        }
        if (p[1].revents & POLLIN) {
            struct signalfd_siginfo info;
            while (read(sfd, &info, sizeof info) > 0) {
                if (info.ssi_signo != SIGCHLD) _exit(128 + (int)info.ssi_signo); /* stopped while it waited */
            }
            reap();
        }
        if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            int fds[3], nfds;
            int n = receive(buf, fds, &nfds);
            if (n <= 0) return 0; /* the worker is gone */
            struct head h;
            if ((size_t)n < sizeof h) continue;
            memcpy(&h, buf, sizeof h);
            if (h.type == 'X' || h.type == 'M') {
                start(buf, n, fds, nfds, old);
                reap(); /* a command may already have exited */
            } else {
                for (int i = 0; i < nfds; i++) close(fds[i]);
                int at = find(h.id);
                if (h.type == 'K' && at >= 0) kill(running[at].pid, (int)h.flags);
            }
        }
    }
}

static int read_exactly(char *buf, size_t n) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(0, buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        got += (size_t)r;
    }
    return 0;
}

/* --stdin: one message on stdin, read to its last byte and no further (what follows is the entrypoint's own
 * stdin): u32 length, then u32 argc, u32 envc, NUL-terminated cwd, argv..., env... (little-endian). Then
 * become the entrypoint, with the container's stdio. EOF first (the worker discarded the container): exit. */
static int read_entrypoint(void) {
    uint32_t len, counts[2];
    if (read_exactly((char *)&len, sizeof len) < 0 || len < sizeof counts || len > MAX_MSG) return 0;
    char *buf = malloc(len);
    if (buf == NULL || read_exactly(buf, len) < 0) return 0;
    memcpy(counts, buf, sizeof counts);
    char *cursor = buf + sizeof counts, *end = buf + len;
    char **args = calloc(counts[0] + 1, sizeof(char *)), **envp = calloc(counts[1] + 1, sizeof(char *));
    char *cwd = next_string(&cursor, end);
    int ok = args != NULL && envp != NULL && cwd != NULL && counts[0] > 0;
    for (uint32_t i = 0; ok && i < counts[0]; i++) ok = (args[i] = next_string(&cursor, end)) != NULL;
    for (uint32_t i = 0; ok && i < counts[1]; i++) ok = (envp[i] = next_string(&cursor, end)) != NULL;
    if (!ok) {
        fprintf(stderr, "berth: malformed entrypoint message\n");
        return 126;
    }
    if (cwd[0] != 0 && chdir(cwd) < 0) {
        fprintf(stderr, "berth: chdir to %s: %s\n", cwd, strerror(errno));
        return 126;
    }
    environ = envp;
    execvp(args[0], args);
    int err = errno;
    fprintf(stderr, "berth: cannot run %s: %s\n", args[0], strerror(err));
    return err == ENOENT ? 127 : 126;
}

int main(int argc, char **argv) {
    if (argc >= 4 && strcmp(argv[1], "--fd3") == 0) {
        /* on the host, before `crun run --preserve-fds 1`: put the container's end of the socket at fd 3 (the
         * worker's Python can only do that in a preexec_fn, which makes it fork its whole heap) */
        int fd = atoi(argv[2]);
        if (fd != CONTROL_FD && dup2(fd, CONTROL_FD) < 0) return 126;
        if (fd != CONTROL_FD) close(fd);
        execvp(argv[3], argv + 3);
        fprintf(stderr, "berth: cannot run %s: %s\n", argv[3], strerror(errno));
        return 127;
    }
    if (argc == 2 && strcmp(argv[1], "--stdin") == 0) return read_entrypoint();
    int wait_mode = argc == 2 && strcmp(argv[1], "--wait") == 0;
    if (!wait_mode && (argc < 3 || strcmp(argv[1], "--") != 0)) {
        fprintf(stderr, "usage: execd -- COMMAND...  |  execd --wait  |  execd --stdin  |  execd --fd3 FD COMMAND...\n");
        return 2;
    }
    int pair[2];
    if (wait_mode) {
        sigset_t handled, old;
        sigemptyset(&handled);
        sigaddset(&handled, SIGCHLD);
        for (size_t i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++) sigaddset(&handled, forwarded[i]);
        sigprocmask(SIG_BLOCK, &handled, &old);
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) return 1;
        send_reply('H', 0, 0, 0, pair[1]); /* over fd 3 */
        close(pair[1]);
        close(CONTROL_FD);
        control = pair[0];
        return serve(&handled, &old);
    }
    if (fcntl(CONTROL_FD, F_GETFD) >= 0 && socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) == 0) {
        pid_t child = fork();
        if (child == 0) {
            /* fork again so tini (pid 1) adopts the server, not the entrypoint */
            if (fork() == 0) {
                sigset_t handled, old;
                sigemptyset(&handled);
                sigaddset(&handled, SIGCHLD);
                sigprocmask(SIG_BLOCK, &handled, &old);
                close(CONTROL_FD);
                close(pair[1]);
                control = pair[0];
                for (int fd = 0; fd < 3; fd++) {
                    int null = open("/dev/null", O_RDWR);
                    if (null >= 0 && null != fd) {
                        dup2(null, fd);
                        close(null);
                    }
                }
                _exit(serve(&handled, &old));
            }
            _exit(0);
        }
        if (child > 0) waitpid(child, NULL, 0);
        send_reply('H', 0, 0, 0, pair[1]); /* over fd 3 (control is still CONTROL_FD here) */
        close(pair[0]);
        close(pair[1]);
        close(CONTROL_FD);
    }
    execvp(argv[2], argv + 2);
    fprintf(stderr, "berth: cannot run %s: %s\n", argv[2], strerror(errno));
    return errno == ENOENT ? 127 : 126;
}
