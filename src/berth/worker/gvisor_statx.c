/* berth-gvisor-statx: preloaded (/etc/ld.so.preload) into the dynamically linked processes of a runsc
 * sandbox. runsc 20221219 answers statx() with AT_NO_AUTOMOUNT with EINVAL for every path; coreutils 9 (ls,
 * stat) always passes it. Later gVisor drops the flag (it has no automounts): so does this, and makes the
 * call itself. No libc of its own (-nostdlib), so it loads into any glibc process; errno is set through the
 * process's libc. */

#define SYS_STATX 332
#define AT_NO_AUTOMOUNT 0x800

extern int *__errno_location(void) __attribute__((weak));

static long raw_statx(long dirfd, long path, long flags, long mask, long buf) {
    long ret;
    register long r10 __asm__("r10") = mask;
    register long r8 __asm__("r8") = buf;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(SYS_STATX), "D"(dirfd), "S"(path), "d"(flags), "r"(r10), "r"(r8)
                     : "rcx", "r11", "memory");
    return ret;
}

int statx(int dirfd, const char *path, int flags, unsigned int mask, void *buf) {
    long ret = raw_statx(dirfd, (long)path, flags & ~AT_NO_AUTOMOUNT, mask, (long)buf);
    if (ret < 0 && ret > -4096) {
        if (__errno_location)
            *__errno_location() = (int)-ret;
        return -1;
    }
    return (int)ret;
}
